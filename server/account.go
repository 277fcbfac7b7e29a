package server

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/pricing"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tokens"
)

// defaultMaxOutput is the output a budget reserves for from a deployment
// when neither the request (max_tokens) nor the deployment
// (model_info.max_output_tokens) bounds it.
const defaultMaxOutput = 4096

// scope is one rate-limit window or budget a request counts against.
type scope struct {
	id     string // the Limiter and BudgetStore id: "key:<id>", "tag:<name>=<value>", "user:<user>", "group:<name>" or "global" (a key's budget: its id)
	limit  limits.Limit
	budget limits.Budget
	kind   string // for metrics: key, tag, user, model_group, global
	name   string // the key's name, the tag, the user or the model group, for messages
	tokens int    // the tokens the window counted for the request (its estimate), until settle corrects them
}

// rateWindows are the rate-limit windows that counted an exchange, each
// with the tokens it holds for it, until settle or refundLimits gives
// back what was not used. admit adds the windows that apply before the
// request is routed; admitGroup adds a model group's when the router
// turns to that group, which may happen on a cache flight's goroutine
// while the handler finishes: hence the lock.
type rateWindows struct {
	mu     sync.Mutex
	scopes []scope
	buf    [3]scope // scopes' backing array
	done   bool     // settled or refunded: a window counted later keeps its estimate
}

// add records a window that counted the request.
func (w *rateWindows) add(sc scope) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.scopes = append(w.scopes, sc)
	}
}

// counted reports whether the window id counted the request.
func (w *rateWindows) counted(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.ContainsFunc(w.scopes, func(sc scope) bool { return sc.id == id })
}

// take returns the windows to settle or refund, once.
func (w *rateWindows) take() []scope {
	w.mu.Lock()
	defer w.mu.Unlock()
	scopes := w.scopes
	w.scopes, w.done = nil, true
	return scopes
}

// owner says whose limit sc is, for messages ("the tag team=search"). It
// is built only for a refusal.
func (sc scope) owner() string {
	switch sc.kind {
	case "key":
		return "key " + strconv.Quote(sc.name)
	case "tag":
		return "the tag " + sc.name
	case "user":
		return "the user " + strconv.Quote(sc.name)
	case "model_group":
		return "model " + strconv.Quote(sc.name)
	default:
		return "this gateway"
	}
}

// scopes lists the limits that apply to a request for group from key k
// (nil without keys) on behalf of user (the body's user field, "" when
// none), in the order they are checked: the key's, its tags', the user's,
// the model group's, the gateway's. rate has the rpm/tpm windows, budget
// the budgets; both are appended to the slices given. The windows of the
// other groups the router may turn to are counted when it does
// (admitGroup), their budgets held by holdOtherGroups.
func (s *Server) scopes(k *ledger.Key, group, user string, rate, budget []scope) ([]scope, []scope) {
	lim := s.cfg.Limits
	add := func(id, kind, name string, l config.Limit) {
		if l.RPM > 0 || l.TPM > 0 {
			rate = append(rate, scope{id: id, limit: limits.Limit{RPM: l.RPM, TPM: l.TPM}, kind: kind, name: name})
		}
		if l.BudgetUSD > 0 {
			budget = append(budget, scope{id: id, budget: l.Budget(), kind: kind, name: name})
		}
	}
	if k != nil {
		if k.RPM > 0 || k.TPM > 0 {
			rate = append(rate, scope{id: "key:" + k.ID, limit: limits.Limit{RPM: k.RPM, TPM: k.TPM}, kind: "key", name: k.Name})
		}
		// A key's spend is tracked even without a cap (lumen keys info).
		budget = append(budget, scope{id: k.ID, budget: k.Budget(), kind: "key", name: k.Name})
		if len(lim.Tags) > 0 { // else no need to spell the key's tags
			for name, v := range k.Tags {
				tag := name + "=" + v
				if l, ok := lim.Tags[tag]; ok {
					add(limits.TagAccount(tag), "tag", tag, l)
				}
			}
		}
	}
	if u := lim.Users; user != "" && (u.RPM > 0 || u.TPM > 0 || u.BudgetUSD > 0) {
		add(limits.UserAccount(user), "user", user, u)
	}
	if l, ok := lim.ModelGroups[group]; ok {
		add(limits.GroupAccount(group), "model_group", group, l)
	}
	add(limits.GlobalAccount, "global", "", lim.Global)
	return rate, budget
}

// admit checks a virtual key's model list, the rate limits that apply
// (the key's, its tags', the end user's, the model group's, the gateway's)
// and the budgets (the same) before anything reaches an upstream (or
// the cache), and holds what the request may use: its worst-case cost
// against each budget, its estimated tokens against each tpm window.
// settle gives back what was not used. A full window refuses the request,
// but the model group's own when the request may fall back to another
// group: the router then starts at the fallbacks (x.groupFull).
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
	// The windows and budgets that apply; x.scopes collects the windows
	// that counted the request and x.reservations the budgets that hold
	// money for it, for settle and release.
	var rateBuf, budgetBuf [4]scope
	rate, budget := s.scopes(k, group, x.user, rateBuf[:0], budgetBuf[:0])
	if s.limiter == nil {
		rate = rate[:0]
	}
	if s.budgets == nil {
		budget = budget[:0]
	}
	others := s.otherGroupBudgets(x, group)
	if len(rate) == 0 && len(budget) == 0 && len(others) == 0 {
		if s.groupRates {
			x.promptEst = tokens.Prompt(x.body) // admitGroup's, read before routing
		}
		return nil
	}
	x.promptEst = tokens.Prompt(x.body)
	maxOut := worstOutput(rt, g, nil, requestedOutput(x.body))
	want := x.promptEst + maxOut
	counted := 0
	for _, sc := range rate {
		d, err := s.limiter.Allow(ctx, sc.id, sc.limit, want)
		switch {
		case err != nil:
			// A shared limiter that is down must not stop traffic.
			s.limitsUnavailable(x, "rate", err, "rate limiter unavailable: request admitted unchecked")
		case !d.Allowed && sc.kind == "model_group" && plain && len(s.reach(x, group)) > 0:
			// The group's own window is full, but the request may fall
			// back: the router passes the group over to its fallbacks
			// (admitGroup refuses it there), each admitted by its own
			// window, and answers with this 429 if none has room.
			x.groupFull = true
		case !d.Allowed:
			s.refundLimits(x)
			if s.metrics != nil {
				s.metrics.RateLimited(limitKind(d, sc.limit))
			}
			return rateLimited(d, sc, want)
		default:
			if sc.kind == "key" || counted == 0 {
				d.Headers(w.Header()) // the key's own window, else the first that counted
			}
			counted++
			sc.tokens = want
			x.windows.add(sc)
		}
	}
	if len(budget) == 0 && len(others) == 0 {
		return nil
	}
	// The worst case covers the groups the request may fall back to: the
	// one that answers is charged, whatever it costs.
	worst := worstCost(rt, x, g, s.reach(x, group))
	for _, sc := range budget {
		res, err := s.budgets.Reserve(ctx, sc.id, sc.budget, worst)
		var be *limits.BudgetError
		switch {
		case errors.As(err, &be):
			if sc.kind != "key" {
				be.Owner = sc.owner() // a key's own says "this key"
			}
			s.releaseBudgets(x)
			s.refundLimits(x)
			if s.metrics != nil {
				s.metrics.BudgetRejected(sc.kind)
			}
			return err
		case err != nil:
			s.limitsUnavailable(x, "budget", err, "budget store unavailable: request admitted unchecked")
		default:
			res.At = x.start // charged to the period its ledger row is in
			x.reservations = append(x.reservations, res)
		}
	}
	return s.holdOtherGroups(ctx, x, others, plain)
}

// worstCost is the most x can cost answered by g or a group in reach:
// at the dearest price (worstPrice), its prompt and the most output
// (worstOutput), and for an image, speech or transcription request the
// images, characters or seconds of audio it is priced by. admit holds it
// for the group the client named, with that group's reach, and
// holdOtherGroups for each other group, alone: one worst case for both,
// so a fallback priced per image holds its images.
func worstCost(rt *router.Router, x *exchange, g *router.Group, reach []string) float64 {
	wp := worstPrice(rt, g, reach)
	worst := wp.WorstCase(x.promptEst, worstOutput(rt, g, reach, requestedOutput(x.body)))
	switch x.op {
	case providers.OpImage, providers.OpImageEdit:
		worst += float64(x.images) * wp.Image
	case providers.OpSpeech:
		worst += float64(utf8.RuneCountInString(gjson.GetBytes(x.body, "input").Str)) * wp.Character
	case providers.OpTranscription:
		if wp.Second > 0 { // read the recording's length only when it is priced
			worst += x.audioSeconds() * wp.Second
		}
	}
	return worst
}

// audioSeconds is the length of a transcription's audio (audioSeconds),
// read once however many budgets hold it.
func (x *exchange) audioSeconds() float64 {
	if x.audioSecs == 0 && len(x.audio) > 0 {
		x.audioSecs = audioSeconds(x.audio)
	}
	return x.audioSecs
}

// otherGroupBudgets are the model groups other than group that may answer
// x (its fallbacks, the request's own lists, an auto route's candidates)
// and have a model-group budget: none unless limits.model_groups sets one.
func (s *Server) otherGroupBudgets(x *exchange, group string) []string {
	budgeted := s.cfg.Limits.ModelGroups
	if len(budgeted) == 0 || s.budgets == nil {
		return nil
	}
	var out []string
	for _, name := range s.reach(x, group) {
		if l, ok := budgeted[name]; ok && l.BudgetUSD > 0 && name != group && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// reach is the model groups other than group that may answer x: group's
// fallbacks (router.Router.Reachable), an auto route's candidates, and
// the groups of the request's own models and fallbacks lists.
func (s *Server) reach(x *exchange, group string) []string {
	rt := s.Router()
	reach := rt.Reachable(group)
	for _, f := range [...]string{"models", "fallbacks"} {
		for _, v := range gjson.GetBytes(x.body, f).Array() {
			if name := rt.Resolve(v.Str); name != group && !slices.Contains(reach, name) {
				reach = append(reach, name)
			}
		}
	}
	return reach
}

// holdOtherGroups holds the worst case in the budget of each group that
// may answer x besides the one it asked for, as admit does for that one:
// a fallback or an auto candidate spends its group's budget like a direct
// request. A group whose budget cannot take the request is one the router
// must not use (Call.Skip); if that leaves an auto route no group, the
// request is refused with that budget's error; else, should the request
// fail, its error names the budgets that passed fallbacks over. settle
// charges the group that answered and gives the others back their hold.
// Each group's worst case is its own: its deployments' dearest price and
// the most output they write for the request (max_tokens lowered to
// their max_output_tokens, or those when the request sets none), not the
// group asked for's, whose cap may be far lower, and, for an image,
// speech or transcription request, its own price per image, character or
// second (worstCost, as admit's).
func (s *Server) holdOtherGroups(ctx context.Context, x *exchange, others []string, plain bool) error {
	rt := s.Router()
	var refused error
	for _, name := range others {
		g, _ := rt.Group(name)
		worst := worstCost(rt, x, g, nil)
		l := s.cfg.Limits.ModelGroups[name]
		res, err := s.budgets.Reserve(ctx, limits.GroupAccount(name), l.Budget(), worst)
		var be *limits.BudgetError
		switch {
		case errors.As(err, &be):
			be.Owner = scope{kind: "model_group", name: name}.owner()
			if x.skipGroups == nil {
				x.skipGroups = map[string]error{}
			}
			x.skipGroups[name] = err // the router says so if the request fails
			refused = err
		case err != nil:
			s.limitsUnavailable(x, "budget", err, "budget store unavailable: request admitted unchecked")
		default:
			res.At = x.start // charged to the period its ledger row is in
			x.reservations = append(x.reservations, res)
		}
	}
	if !plain && refused != nil && len(x.skipGroups) == len(s.Router().Reachable(x.group)) {
		// Every group the auto route could choose is out of budget.
		s.releaseBudgets(x)
		s.refundLimits(x)
		if s.metrics != nil {
			s.metrics.BudgetRejected("model_group")
		}
		return refused
	}
	return nil
}

// skips is the exchange's Call.Skip: the budget error of a group it must
// not be answered by, a fallback or auto candidate whose budget is spent
// (holdOtherGroups); nil for any other group. A request that fails
// without an answer says so (FallbacksRefusedError, fallbacksRefused).
func (x *exchange) skips(group string) error { return x.skipGroups[group] }

// admitGroup is the exchange's Call.Admit: the router is about to turn to
// group (the one the client named, a fallback, an auto route's choice),
// so the request counts in that group's rpm/tpm window, as admit counts
// it in the window of the group the client named (a window admit counted
// it in admits it again): one request and its estimated tokens (prompt
// plus the most output the group's deployments write), which settle
// corrects to the real tokens if the group answers, to none if it does
// not. A full window refuses the group with the 429 a direct request
// would get, and the router passes it over (the group the client named:
// to its fallbacks); a request, or an auto route, left with no group
// answers with it. A limiter that fails admits the group unchecked.
func (s *Server) admitGroup(ctx context.Context, x *exchange, group string) error {
	l, ok := s.cfg.Limits.ModelGroups[group]
	if !ok || (l.RPM <= 0 && l.TPM <= 0) {
		return nil
	}
	sc := scope{id: limits.GroupAccount(group), limit: limits.Limit{RPM: l.RPM, TPM: l.TPM}, kind: "model_group", name: group}
	if x.windows.counted(sc.id) {
		return nil // a window counts a request once
	}
	rt := s.Router()
	g, _ := rt.Group(group)
	sc.tokens = x.promptEst + worstOutput(rt, g, nil, requestedOutput(x.body))
	d, err := s.limiter.Allow(ctx, sc.id, sc.limit, sc.tokens)
	switch {
	case err != nil:
		s.limitsUnavailable(x, "rate", err, "rate limiter unavailable: model group admitted unchecked")
	case !d.Allowed:
		if s.metrics != nil {
			s.metrics.RateLimited(limitKind(d, sc.limit))
		}
		return rateLimited(d, sc, sc.tokens)
	default:
		x.windows.add(sc)
	}
	return nil
}

// settle charges the request's real cost to each budget that held money
// for it and its real tokens to its tpm windows, once, in place of what
// admit and admitGroup held: a model group's window gets the tokens only
// if that group answered (after a fallback or an auto choice another
// group spent them). A request the router refused for a full window with
// no upstream asked (its group's and every fallback's windows full) is
// given back to the windows that counted it, as admit gives back one it
// refuses.
func (s *Server) settle(x *exchange) {
	s.chargeBudgets(x, x.cost)
	if x.attempts == 0 && x.err != nil && x.err.Type == "rate_limit_error" {
		s.refundLimits(x)
		return
	}
	used, served := 0, ""
	if x.attempts > 0 { // a cache hit or a refused request used no tokens upstream
		used = x.usage.PromptTokens + x.usage.CompletionTokens
		if x.deployment != nil {
			served = x.deployment.Group
		}
	}
	for _, sc := range x.windows.take() {
		n := used
		if sc.kind == "model_group" && sc.name != served {
			n = 0
		}
		if d := n - sc.tokens; d != 0 {
			if err := s.limiter.Adjust(context.Background(), sc.id, 0, d); err != nil {
				s.limitsUnavailable(x, "rate", err, "adjusting the rate-limit window")
			}
		}
	}
}

// releaseBudgets gives back the money admit held, for a request refused
// by a later budget.
func (s *Server) releaseBudgets(x *exchange) { s.chargeBudgets(x, 0) }

// chargeBudgets settles every reservation of x at usd, once, but a model
// group's at 0 when another group answered (a fallback, an auto choice):
// that one's is charged.
func (s *Server) chargeBudgets(x *exchange, usd float64) {
	served := ""
	if x.deployment != nil {
		served = x.deployment.Group
	}
	for _, res := range x.reservations {
		charge := usd
		if g, ok := limits.GroupOf(res.KeyID); ok && served != "" && g != served {
			charge = 0
		}
		if err := s.budgets.Settle(context.Background(), res, charge); err != nil {
			s.limitsUnavailable(x, "budget", err, "settling the budget reservation")
		}
	}
	x.reservations = x.reservations[:0]
}

// refundLimits gives back the request and tokens admit counted, for a
// request refused after some limiter windows admitted it.
func (s *Server) refundLimits(x *exchange) {
	for _, sc := range x.windows.take() {
		if err := s.limiter.Adjust(context.Background(), sc.id, -1, -sc.tokens); err != nil {
			s.limitsUnavailable(x, "rate", err, "refunding the rate-limit window")
		}
	}
}

// limitsUnavailable reports a rate-limit (store "rate") or budget (store
// "budget") call that failed, the request going on unchecked or its use
// uncounted: it counts it in lumen_limits_unavailable_total and logs msg,
// unless err is limits.ErrUnavailable, which the store logs itself, at
// most once a minute: a Redis that is down would otherwise log a line or
// more per request.
func (s *Server) limitsUnavailable(x *exchange, store string, err error, msg string) {
	if s.metrics != nil {
		s.metrics.LimitsUnavailable(store)
	}
	if !errors.Is(err, limits.ErrUnavailable) {
		s.log.Warn().Err(err).Str("request_id", x.id).Msg(msg)
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

// worstOutput is the most output tokens the request can be answered with,
// asking for requested (zero: no limit) and lowered to each deployment's
// model_info.max_output_tokens (router.Group.MaxOutput): over the
// deployments of its group and of the groups in reach, or over every
// deployment when the group is not a plain one, as worstPrice.
func worstOutput(rt *router.Router, g *router.Group, reach []string, requested int) int {
	n := 0
	eachGroup(rt, g, reach, func(g *router.Group) {
		n = max(n, g.MaxOutput(requested, defaultMaxOutput))
	})
	if n == 0 { // no deployment bounds it
		n = cmp.Or(requested, defaultMaxOutput)
	}
	return n
}

// worstPrice is the dearest price the request could be charged: of the
// deployments of its group and of the groups in reach (those it may fall
// back to: a fallback to a dearer group is charged the dearer price), or
// of every deployment when the group is not a plain one (auto routes,
// unknown names), with the dearest prices per image, per character and
// per second of audio among them.
func worstPrice(rt *router.Router, g *router.Group, reach []string) pricing.Price {
	var worst pricing.Price
	image, char, second := 0.0, 0.0, 0.0
	eachGroup(rt, g, reach, func(g *router.Group) {
		for _, d := range g.Deployments {
			if d.Price.Input+d.Price.Output > worst.Input+worst.Output {
				worst = d.Price
			}
			image, char, second = max(image, d.Price.Image), max(char, d.Price.Character), max(second, d.Price.Second)
		}
	})
	worst.Image, worst.Character, worst.Second = image, char, second
	return worst
}

// eachGroup calls fn with g and each group of rt named in reach, or with
// every group of rt when g is nil (the request's model is not a plain
// group, so any deployment may answer it).
func eachGroup(rt *router.Router, g *router.Group, reach []string, fn func(*router.Group)) {
	if g != nil {
		fn(g)
		for _, name := range reach {
			if r, ok := rt.Group(name); ok && r != g {
				fn(r)
			}
		}
		return
	}
	for _, name := range rt.Names() {
		if g, ok := rt.Group(name); ok {
			fn(g)
		}
	}
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

func rateLimited(d limits.Decision, sc scope, want int) *apiError {
	h := http.Header{}
	d.Headers(h)
	ae := &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limit_exceeded", Header: h}
	who := sc.owner()
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
// Tags starting "lumen:" are Lumen's own (PurposeTag marks the gateway's
// calls in the ledger) and are dropped, so a client cannot pass its
// request off as one of them.
func requestTags(r *http.Request) []string {
	v := r.Header.Get("x-lumen-tags")
	if v == "" {
		return nil
	}
	var tags []string
	for t := range strings.SplitSeq(v, ",") {
		t = strings.TrimSpace(t)
		if t == "" || len(t) > 64 || strings.HasPrefix(t, reservedTagPrefix) {
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
