package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/pricing"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tokens"
)

// defaultMaxOutput is the output a budget reserves for when neither the
// request (max_tokens) nor the deployment (model_info.max_output_tokens)
// bounds it.
const defaultMaxOutput = 4096

// scope is one rate-limit window a request counts against.
type scope struct {
	id    string // the Limiter id: "key:<id>", "group:<name>" or "global"
	limit limits.Limit
	kind  string // for messages and metrics: key, model group, global
}

// admit checks a virtual key's model list, the rate limits that apply
// (the key's, the model group's, the gateway's) and the key's budget
// before anything reaches an upstream (or the cache), and holds what the
// request may use: its worst-case cost against the budget, its estimated
// tokens against each tpm window. settle gives back what was not used.
func (s *Server) admit(ctx context.Context, w http.ResponseWriter, x *exchange) error {
	k := x.key
	rt := s.Router()
	group := rt.Resolve(x.group) // the group an alias stands for
	g, plain := rt.Group(group)
	if k != nil && plain && !k.Allows(g.Name) {
		// Checked here too (the router checks every group it tries) so a
		// cached answer of a model the key may not use is not served.
		return &router.NotAllowedError{Group: g.Name}
	}
	// The windows that apply; x.scopes collects those that counted the
	// request, for settle and refundLimits.
	var apply [3]scope
	scopes := apply[:0]
	if s.limiter != nil {
		if k != nil && (k.RPM > 0 || k.TPM > 0) {
			scopes = append(scopes, scope{"key:" + k.ID, limits.Limit{RPM: k.RPM, TPM: k.TPM}, "key"})
		}
		if l, ok := s.cfg.Limits.ModelGroups[group]; ok && (l.RPM > 0 || l.TPM > 0) {
			scopes = append(scopes, scope{"group:" + group, limits.Limit{RPM: l.RPM, TPM: l.TPM}, "model_group"})
		}
		if l := s.cfg.Limits.Global; l.RPM > 0 || l.TPM > 0 {
			scopes = append(scopes, scope{"global", limits.Limit{RPM: l.RPM, TPM: l.TPM}, "global"})
		}
	}
	budgeted := k != nil && s.budgets != nil
	if len(scopes) == 0 && !budgeted {
		return nil
	}
	x.promptEst = tokens.Prompt(x.body)
	maxOut := requestedOutput(x.body)
	if maxOut == 0 {
		maxOut = groupMaxOutput(g)
	}
	want := x.promptEst + maxOut
	for _, sc := range scopes {
		d, err := s.limiter.Allow(ctx, sc.id, sc.limit, want)
		switch {
		case err != nil:
			// A shared limiter that is down must not stop traffic.
			s.log.Warn().Err(err).Str("request_id", x.id).Msg("rate limiter unavailable: request admitted unchecked")
		case !d.Allowed:
			s.refundLimits(x)
			if s.metrics != nil {
				s.metrics.RateLimited(limitKind(d, sc.limit))
			}
			return rateLimited(d, sc, x, want)
		default:
			if sc.kind == "key" || len(x.scopes) == 0 {
				d.Headers(w.Header()) // the key's own window, else the first that counted
			}
			x.scopes = append(x.scopes, sc)
			x.limitedTokens = want
		}
	}
	if budgeted {
		worst := worstPrice(rt, g).WorstCase(x.promptEst, maxOut)
		res, err := s.budgets.Reserve(ctx, k.ID, limits.Budget{LimitUSD: k.BudgetUSD, Period: limits.Period(k.BudgetPeriod)}, worst)
		var be *limits.BudgetError
		switch {
		case errors.As(err, &be):
			s.refundLimits(x)
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
// tokens to its tpm windows, once, in place of what admit held.
func (s *Server) settle(x *exchange) {
	if x.reserved {
		x.reserved = false
		if err := s.budgets.Settle(context.Background(), x.reservation, x.cost); err != nil {
			s.log.Warn().Err(err).Str("request_id", x.id).Msg("settling the budget reservation")
		}
	}
	used := 0
	if x.attempts > 0 { // a cache hit or a refused request used no tokens upstream
		used = x.usage.PromptTokens + x.usage.CompletionTokens
	}
	if d := used - x.limitedTokens; d != 0 {
		for _, sc := range x.scopes {
			if err := s.limiter.Adjust(context.Background(), sc.id, 0, d); err != nil {
				s.log.Warn().Err(err).Str("request_id", x.id).Msg("adjusting the rate-limit window")
			}
		}
	}
	x.scopes = x.scopes[:0]
}

// refundLimits gives back the request and tokens admit counted, for a
// request refused after some limiter windows admitted it.
func (s *Server) refundLimits(x *exchange) {
	for _, sc := range x.scopes {
		if err := s.limiter.Adjust(context.Background(), sc.id, -1, -x.limitedTokens); err != nil {
			s.log.Warn().Err(err).Str("request_id", x.id).Msg("refunding the rate-limit window")
		}
	}
	x.scopes = x.scopes[:0]
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
		x.cost = pricing.Cost(x.usage, x.deployment.Price) + x.abandoned
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

func limitKind(d limits.Decision, l limits.Limit) string {
	if l.RPM > 0 && d.Requests.Limit > 0 && d.Requests.Remaining <= 0 {
		return "rpm"
	}
	return "tpm"
}

func rateLimited(d limits.Decision, sc scope, x *exchange, want int) *apiError {
	h := http.Header{}
	d.Headers(h)
	ae := &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limit_exceeded", Header: h}
	who := "this gateway"
	switch sc.kind {
	case "key":
		who = sprintf("key %q", x.key.Name)
	case "model_group":
		who = sprintf("model %q", x.group)
	}
	switch {
	case d.TooLarge:
		ae.Code = "request_too_large"
		ae.Message = sprintf("this request needs about %d tokens (prompt plus max_tokens) but %s is limited to %d tokens per minute; lower max_tokens", want, who, sc.limit.TPM)
	case limitKind(d, sc.limit) == "rpm":
		ae.Message = sprintf("rate limit reached for %s: %d requests per minute; retry after %ss", who, sc.limit.RPM, h.Get("Retry-After"))
	default:
		ae.Message = sprintf("rate limit reached for %s: %d tokens per minute; retry after %ss", who, sc.limit.TPM, h.Get("Retry-After"))
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
