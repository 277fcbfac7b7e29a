package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/pricing"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tokens"
)

// defaultMaxOutput is the output a budget reserves for when neither the
// request (max_tokens) nor the deployment (model_info.max_output_tokens)
// bounds it.
const defaultMaxOutput = 4096

// admit checks a virtual key's model list, rate limits and budget before
// anything reaches an upstream (or the cache), and holds what the request
// may use: its worst-case cost against the budget, its estimated tokens
// against tpm. finish gives back what was not used. Requests without a
// virtual key are not limited.
func (s *Server) admit(ctx context.Context, w http.ResponseWriter, x *exchange) error {
	k := x.key
	if k == nil {
		return nil
	}
	rt := s.Router()
	g, plain := rt.Group(x.group)
	if plain && !k.Allows(x.group) {
		// Checked here too (the router checks every group it tries) so a
		// cached answer of a model the key may not use is not served.
		return &router.NotAllowedError{Group: x.group}
	}
	x.promptEst = tokens.Prompt(x.body)
	maxOut := requestedOutput(x.body)
	if maxOut == 0 {
		maxOut = groupMaxOutput(g)
	}
	if s.limiter != nil && (k.RPM > 0 || k.TPM > 0) {
		want := x.promptEst + maxOut
		d, err := s.limiter.Allow(ctx, "key:"+k.ID, limits.Limit{RPM: k.RPM, TPM: k.TPM}, want)
		switch {
		case err != nil:
			// A shared limiter that is down must not stop traffic.
			s.log.Warn().Err(err).Str("request_id", x.id).Msg("rate limiter unavailable: request admitted unchecked")
		case !d.Allowed:
			if s.metrics != nil {
				s.metrics.RateLimited(limitKind(d, k))
			}
			return rateLimited(d, k, want)
		default:
			d.Headers(w.Header())
			x.limitedTokens, x.limited = want, true
		}
	}
	if s.budgets != nil {
		worst := worstPrice(rt, g).WorstCase(x.promptEst, maxOut)
		res, err := s.budgets.Reserve(ctx, k.ID, limits.Budget{LimitUSD: k.BudgetUSD, Period: limits.Period(k.BudgetPeriod)}, worst)
		var be *limits.BudgetError
		switch {
		case errors.As(err, &be):
			s.refundLimit(x)
			if s.metrics != nil {
				s.metrics.BudgetRejected("key")
			}
			return err
		case err != nil:
			s.log.Warn().Err(err).Str("request_id", x.id).Msg("budget store unavailable: request admitted unchecked")
		default:
			x.reservation, x.reserved = res, true
		}
	}
	return nil
}

// settle charges the request's real cost to the key's budget and its real
// tokens to its tpm window, once, in place of what admit held.
func (s *Server) settle(x *exchange) {
	if x.reserved {
		x.reserved = false
		if err := s.budgets.Settle(context.Background(), x.reservation, x.cost); err != nil {
			s.log.Warn().Err(err).Str("request_id", x.id).Msg("settling the budget reservation")
		}
	}
	if x.limited {
		x.limited = false
		used := 0
		if x.attempts > 0 { // a cache hit or a refused request used no tokens upstream
			used = x.usage.PromptTokens + x.usage.CompletionTokens
		}
		if d := used - x.limitedTokens; d != 0 {
			if err := s.limiter.Adjust(context.Background(), "key:"+x.key.ID, 0, d); err != nil {
				s.log.Warn().Err(err).Str("request_id", x.id).Msg("adjusting the rate-limit window")
			}
		}
	}
}

// refundLimit gives back the request and tokens admit counted, for a
// request refused after the limiter admitted it.
func (s *Server) refundLimit(x *exchange) {
	if !x.limited {
		return
	}
	x.limited = false
	if err := s.limiter.Adjust(context.Background(), "key:"+x.key.ID, -1, -x.limitedTokens); err != nil {
		s.log.Warn().Err(err).Str("request_id", x.id).Msg("refunding the rate-limit window")
	}
}

// requestedOutput is the request's output cap: max_completion_tokens or
// max_tokens (Anthropic's name is the same); zero when it sets none.
func requestedOutput(body []byte) int {
	r := gjson.GetManyBytes(body, "max_completion_tokens", "max_tokens")
	for _, v := range r {
		if n := v.Int(); n > 0 {
			return int(n)
		}
	}
	return 0
}

// groupMaxOutput is the largest output cap a group's deployments declare,
// else defaultMaxOutput.
func groupMaxOutput(g *router.Group) int {
	n := 0
	if g != nil {
		for _, d := range g.Deployments {
			n = max(n, d.Info.MaxOutputTokens, d.Info.MaxTokens)
		}
	}
	if n == 0 {
		return defaultMaxOutput
	}
	return n
}

// worstPrice is the dearest price the request could be charged: of its
// group's deployments, or of every deployment when the group is not a plain
// one (auto routes, unknown names). A fallback to a dearer group can cost
// more than was reserved; settle still charges the real cost.
func worstPrice(rt *router.Router, g *router.Group) pricing.Price {
	var worst pricing.Price
	consider := func(d *router.Deployment) {
		if d.Price.Input+d.Price.Output > worst.Input+worst.Output {
			worst = d.Price
		}
	}
	if g != nil {
		for _, d := range g.Deployments {
			consider(d)
		}
		return worst
	}
	for _, name := range rt.Names() {
		if g, ok := rt.Group(name); ok {
			for _, d := range g.Deployments {
				consider(d)
			}
		}
	}
	return worst
}

// price computes the exchange's cost, and for a cache hit or a coalesced
// answer what it saved, from the deployment's price.
func (s *Server) price(x *exchange) {
	if x.deployment != nil && x.attempts > 0 {
		x.cost = pricing.Cost(x.usage, x.deployment.Price)
	}
	if x.saved.Total() > 0 {
		d := x.deployment
		if d == nil {
			if g, ok := s.Router().Group(x.group); ok && len(g.Deployments) > 0 {
				d = g.Deployments[0]
			}
		}
		if d != nil {
			x.savedUSD = pricing.Cost(x.saved, d.Price)
		}
	}
}

func limitKind(d limits.Decision, k *ledger.Key) string {
	if k.RPM > 0 && d.Requests.Limit > 0 && d.Requests.Remaining <= 0 {
		return "rpm"
	}
	return "tpm"
}

func rateLimited(d limits.Decision, k *ledger.Key, want int) *apiError {
	h := http.Header{}
	d.Headers(h)
	ae := &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limit_exceeded", Header: h}
	switch {
	case d.TooLarge:
		ae.Code = "request_too_large"
		ae.Message = sprintf("this request needs about %d tokens (prompt plus max_tokens) but key %q is limited to %d tokens per minute; lower max_tokens", want, k.Name, k.TPM)
	case limitKind(d, k) == "rpm":
		ae.Message = sprintf("rate limit reached for key %q: %d requests per minute; retry after %s", k.Name, k.RPM, h.Get("Retry-After")+"s")
	default:
		ae.Message = sprintf("rate limit reached for key %q: %d tokens per minute; retry after %s", k.Name, k.TPM, h.Get("Retry-After")+"s")
	}
	return ae
}

// requestTags reads x-lumen-tags ("team=search,feature-x"): at most 16
// tags of at most 64 bytes each, so a client cannot bloat the ledger.
func requestTags(r *http.Request) []string {
	v := r.Header.Get("x-lumen-tags")
	if v == "" {
		return nil
	}
	var tags []string
	for t := range strings.SplitSeq(v, ",") {
		t = strings.TrimSpace(t)
		if t == "" || len(t) > 64 {
			continue
		}
		tags = append(tags, t)
		if len(tags) == 16 {
			break
		}
	}
	return tags
}

// costHeader formats a USD amount for x-lumen-cost-usd.
func costHeader(usd float64) string { return strconv.FormatFloat(usd, 'f', -1, 64) }
