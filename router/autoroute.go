package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/pricing"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router/auto"
	"github.com/lumengw/lumen/tokens"
)

// Model "auto" (router/auto scores the prompt, this file turns the decision
// into a call):
//
//   - "auto" uses router_settings.auto; its candidates default to every
//     model group whose model has a known ability: a learned or public
//     model of the scorer's table (matched by model_info.base_model, else
//     the upstream model id), or model_info.quality/abilities in config;
//   - "auto:floor", "auto:best", "auto:fast", "auto:smart" pick the mode;
//   - a named auto route (a model_list entry with auto:) uses its own
//     candidates and limits, and "<route>:<mode>" overrides its mode.
//
// Per-request limits come from the body's "lumen" object (quality_floor,
// max_cost_per_1k, max_latency_ms, prefer), which wins over the
// x-lumen-quality-floor, x-lumen-max-cost-per-1k, x-lumen-max-latency-ms and
// x-lumen-prefer headers, which win over the route. The "lumen" key is
// removed before any body goes upstream, auto or not. A pinned model
// ignores them.
//
// The chosen group is then called like any other, so its fallbacks apply.
// Every decision is remembered by request id (the last recentDecisions)
// for POST /v1/feedback, and the call's outcome feeds the bandit of
// auto:smart: an upstream error or timeout of the chosen group (also when a
// fallback answered instead) and, for a non-streamed answer to a request
// that asked for JSON, content that is not JSON, count as failures. An
// answer that arrived is not counted as a success: it says nothing of its
// quality, which only feedback does.

// recentDecisions bounds the decisions remembered for feedback.
const recentDecisions = 10000

// AutoDecision is what model "auto" chose for a call.
type AutoDecision struct {
	// Route is the model name the client sent ("auto", "auto:best",
	// "auto-coding") and Mode the mode that decided.
	Route string
	Mode  string
	// Selected is the model group called.
	Selected string
	// Domain and Difficulty (0..1, 0.5 is a median prompt) are the scorer's
	// reading of the prompt; PredictedQuality is Selected's predicted
	// success probability.
	Domain           string
	Difficulty       float64
	PredictedQuality float64
	// Reason explains the choice in one line.
	Reason string
	// BestEffort is true when no candidate met the constraints and the
	// route's best_effort served the best excluded one.
	BestEffort bool
}

// ErrUnknownRequest is returned by Feedback for a request id that is not
// among the recent auto decisions.
var ErrUnknownRequest = errors.New("no recent auto-routed request with this id")

// autoRouting is a router's configuration of model "auto". It is immutable
// once built, except learn, which a reload hands on (KeepLearning) before
// the router serves.
type autoRouting struct {
	scorer   *auto.Scorer
	defaults config.AutoRoute
	routes   map[string]*config.AutoRoute
	ability  map[string]string // group -> name its ability is scored under
	known    []string          // groups with a known ability, sorted
	learn    *learning
}

// learning is the online state of model "auto": the bandit of auto:smart
// and the recent decisions feedback refers to. It outlives a config reload.
type learning struct {
	bandit *auto.Bandit

	mu     sync.Mutex
	recent map[string]armRef
	ring   []string // request ids in arrival order, a ring of recentDecisions
	next   int
}

// armRef is what a recent auto decision chose, and for whom: caller is
// Call.Caller, so only that caller (or the master key) can score it.
type armRef struct{ domain, model, caller string }

func newLearning() *learning {
	return &learning{bandit: auto.NewBandit(rand.Uint64()), recent: map[string]armRef{}}
}

// remember records the arm a request was routed to, evicting the oldest.
func (l *learning) remember(id string, a armRef) {
	if id == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.recent[id]; ok {
		l.recent[id] = a
		return
	}
	if len(l.ring) < recentDecisions {
		l.ring = append(l.ring, id)
	} else {
		delete(l.recent, l.ring[l.next])
		l.ring[l.next] = id
		l.next = (l.next + 1) % recentDecisions
	}
	l.recent[id] = a
}

func (l *learning) lookup(id string) (armRef, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.recent[id]
	return a, ok
}

// newAutoRouting reads the auto routes and the abilities config gives.
func newAutoRouting(cfg *config.Config, groups map[string]*Group, routes map[string]*config.AutoRoute) (*autoRouting, error) {
	s, err := auto.Embedded()
	if err != nil {
		return nil, err
	}
	a := &autoRouting{defaults: cfg.RouterSettings.Auto, routes: routes, ability: map[string]string{}, learn: newLearning()}
	overrides := map[string]auto.Override{}
	for i := range cfg.ModelList {
		m := &cfg.ModelList[i]
		if m.Auto != nil || (m.ModelInfo.Quality == nil && len(m.ModelInfo.Abilities) == 0) {
			continue
		}
		if _, ok := overrides[m.ModelName]; !ok {
			overrides[m.ModelName] = auto.Override{Quality: m.ModelInfo.Quality, Abilities: m.ModelInfo.Abilities}
		}
	}
	if len(overrides) > 0 {
		if s, err = s.With(overrides); err != nil {
			return nil, fmt.Errorf("model_info abilities: %w", err)
		}
	}
	a.scorer = s
	for name, g := range groups {
		d := g.Deployments[0]
		key := d.Model
		if d.Info.BaseModel != "" {
			key = d.Info.BaseModel
		}
		if _, ok := overrides[name]; ok {
			key = name
		}
		a.ability[name] = key
		if _, ok := s.Ability(key); ok {
			a.known = append(a.known, name)
		}
	}
	sort.Strings(a.known)
	return a, nil
}

// autoWarnings names, per auto route, the candidate groups whose model the
// ability table does not know and that set no model_info.quality: they are
// scored at auto.DefaultQuality, so the route ranks them by price alone.
// The default "auto" route only warns for the candidates it lists (without
// a list it leaves such groups out).
func (r *Router) autoWarnings() []string {
	if r.autoRT == nil {
		return nil
	}
	known := map[string]bool{}
	for _, n := range r.autoRT.known {
		known[n] = true
	}
	var out []string
	check := func(route string, groups []string) {
		var unknown []string
		for _, g := range groups {
			if _, ok := r.groups[g]; ok && !known[g] {
				unknown = append(unknown, g)
			}
		}
		if len(unknown) > 0 {
			out = append(out, fmt.Sprintf("auto route %q: no known ability for %s: scored at the default quality %.2f; set model_info.quality (0..1)",
				route, strings.Join(unknown, ", "), auto.DefaultQuality))
		}
	}
	check("auto", r.autoRT.defaults.Candidates)
	names := make([]string, 0, len(r.autoRT.routes))
	for name := range r.autoRT.routes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		groups := r.autoRT.routes[name].Candidates
		if len(groups) == 0 {
			groups = r.names
		}
		check(name, groups)
	}
	return out
}

// isAuto reports whether model names an auto route rather than a group.
func (r *Router) isAuto(model string) bool {
	if _, ok := r.groups[model]; ok || r.autoRT == nil {
		return false
	}
	_, _, ok := r.autoRoute(model)
	return ok
}

// autoRoute resolves a model name to its route settings and mode name.
func (r *Router) autoRoute(model string) (route config.AutoRoute, mode string, ok bool) {
	name, suffix, hasMode := strings.Cut(model, ":")
	rt := r.autoRT
	if name == "auto" {
		route = rt.defaults
	} else if ar, found := rt.routes[name]; found {
		route = *ar
		if route.QualityFloor == 0 {
			route.QualityFloor = rt.defaults.QualityFloor
		}
	} else {
		return route, "", false
	}
	mode = route.Mode
	if hasMode {
		mode = suffix
	}
	return route, mode, true
}

// wantsAuto is the cheap test at the start of Do: an auto model name, or a
// body that carries a top-level "lumen" object to strip.
func (r *Router) wantsAuto(call *Call) bool {
	if r.autoRT == nil {
		return false
	}
	if bytes.Contains(call.Body, []byte(`"lumen"`)) && gjson.GetBytes(call.Body, "lumen").Exists() {
		return true
	}
	return r.isAuto(call.Group)
}

// autoPlan is one auto decision's input.
type autoPlan struct {
	route  string
	mode   auto.Mode
	prompt auto.Prompt
	cands  []auto.Candidate
	tok    auto.Tokens
	cons   auto.Constraints
}

// doAuto strips the "lumen" object, chooses a group when the model is
// auto, and calls it.
func (r *Router) doAuto(ctx context.Context, call *Call) (*Result, error) {
	body := call.Body
	var over overrides
	if lo := gjson.GetBytes(body, "lumen"); lo.Exists() {
		var err error
		if over, err = parseBodyOverrides(lo); err != nil {
			return nil, err
		}
		if body, err = sjson.DeleteBytes(body, "lumen"); err != nil {
			return nil, &RequestError{Param: "lumen", Message: "cannot remove the lumen object: " + err.Error()}
		}
	}
	c := *call
	c.Body = body
	if !r.isAuto(call.Group) {
		return r.Do(ctx, &c) // a pinned model wins
	}
	hdr, err := parseHeaderOverrides(call.Header)
	if err != nil {
		return nil, err
	}
	p, err := r.planAuto(call.Group, body, hdr.merge(over), call.Allow, call.Skip)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(p.cands))
	for i := range p.cands {
		names[i] = p.cands[i].Model
	}
	ps := make([]float64, len(p.cands))
	score := r.autoRT.scorer.Score(p.prompt, names, ps)
	for i := range p.cands {
		p.cands[i].PSuccess = ps[i]
	}
	learn := r.autoRT.learn
	d, err := r.decideAdmitted(ctx, call, p, score.Domain)
	if err != nil {
		return nil, err
	}
	ch := d.Choice
	arm := armRef{domain: score.Domain, model: ch.Model}
	arm.caller = call.Caller
	learn.remember(call.RequestID, arm)
	ad := &AutoDecision{Route: call.Group, Mode: p.mode.String(), Selected: ch.Name, Domain: score.Domain,
		Difficulty: score.Difficulty, PredictedQuality: ch.PSuccess, Reason: d.Reason, BestEffort: d.BestEffort}
	c.Group, c.admitted = ch.Name, true // decideAdmitted asked Admit
	res, err := r.Do(ctx, &c)
	if res == nil {
		res = &Result{Group: ch.Name, Strategy: r.strategy}
	}
	res.Auto = ad
	if failed(ctx, res, err, &c) {
		learn.bandit.Observe(arm.domain, arm.model, 0)
	}
	return res, err
}

// decideAdmitted makes p's decision and asks Call.Admit for the chosen
// group. A group Admit refuses (its rate window is full) leaves the
// candidates and the decision is made again without it; when that leaves
// none that qualifies, the call ends with the refusal, which is why
// nothing answers.
func (r *Router) decideAdmitted(ctx context.Context, call *Call, p *autoPlan, domain string) (auto.Decision, error) {
	var refused error
	for {
		var d auto.Decision
		var err error
		if p.mode == auto.ModeSmart {
			d, err = r.autoRT.learn.bandit.Decide(domain, p.cands, p.tok, p.cons)
		} else {
			d, err = auto.Decide(p.cands, p.tok, p.cons, p.mode)
		}
		switch {
		case err != nil && refused != nil:
			return d, refused
		case err != nil:
			return d, fmt.Errorf("routing model %q: %w", call.Group, err)
		case call.Admit == nil:
			return d, nil
		}
		name := d.Choice.Name
		if refused = call.Admit(ctx, name); refused == nil {
			return d, nil
		}
		r.log.Warn().Str("request_id", call.RequestID).Str("model", call.Group).Str("candidate", name).
			Str("reason", redact(refused.Error())).Msg("auto route passing over a candidate that refused the request")
		p.cands = slices.DeleteFunc(p.cands, func(c auto.Candidate) bool { return c.Name == name })
	}
}

// failed reports whether a call's outcome counts against the chosen model:
// an upstream error or timeout (not the client leaving), a fallback having
// answered instead, or a non-JSON answer to a request for JSON.
func failed(ctx context.Context, res *Result, err error, call *Call) bool {
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		var ue *providers.UpstreamError
		if errors.As(err, &ue) {
			return ue.Status == 0 || ue.Status >= 500 || errors.Is(err, context.DeadlineExceeded)
		}
		return errors.Is(err, context.DeadlineExceeded)
	}
	if res.FallbackFrom != "" {
		return true
	}
	if res.Response != nil && wantsJSON(call.Body) {
		content := gjson.GetBytes(res.Response.Body, "choices.0.message.content")
		// The depth check first: gjson's validator recurses per level.
		return content.Type == gjson.String &&
			(providers.JSONTooDeep(content.Str, providers.MaxJSONDepth) || !gjson.Valid(content.Str))
	}
	return false
}

func wantsJSON(body []byte) bool {
	t := gjson.GetBytes(body, "response_format.type").Str
	return t == "json_object" || t == "json_schema"
}

// planAuto reads the route, candidates, prompt and limits of an auto call.
func (r *Router) planAuto(model string, body []byte, over overrides, allow func(string) bool, skip func(string) error) (*autoPlan, error) {
	route, modeName, _ := r.autoRoute(model)
	mode, err := auto.ParseMode(modeName)
	if err != nil {
		return nil, &RequestError{Param: "model", Message: err.Error()}
	}
	groups, every := r.autoGroups(model, route)
	p := &autoPlan{route: model, mode: mode, prompt: promptOf(body)}
	for _, name := range groups {
		g, ok := r.groups[name]
		if !ok || (allow != nil && !allow(name)) || every && !answersChat(g) || skip != nil && skip(name) != nil {
			continue
		}
		p.cands = append(p.cands, r.candidate(g))
	}
	if len(p.cands) == 0 {
		if len(groups) > 0 && allow != nil {
			return nil, &NotAllowedError{Group: model}
		}
		return nil, fmt.Errorf("routing model %q (no model group has a known ability: list candidates in router_settings.auto or the route, or set model_info.quality): %w",
			model, &auto.NoCandidateError{})
	}
	p.tok = auto.Tokens{In: tokens.Prompt(body), Out: auto.DefaultOutputTokens}
	for _, f := range [...]string{"max_completion_tokens", "max_tokens"} {
		if v := gjson.GetBytes(body, f); v.Type == gjson.Number && v.Int() > 0 {
			p.tok.Out = min(p.tok.Out, int(v.Int()))
			break
		}
	}
	p.cons = auto.Constraints{QualityFloor: route.QualityFloor, MaxCostPer1K: route.MaxCostPer1K,
		MaxLatencyMS: float64(route.MaxLatencyMS), BestEffort: route.BestEffort}
	if p.cons.QualityFloor == 0 {
		p.cons.QualityFloor = r.autoRT.defaults.QualityFloor
	}
	over.apply(&p.cons)
	return p, nil
}

// autoGroups are the groups an auto route chooses among: its candidates,
// those of known ability for "auto" without a list, every group (every is
// true: only those answering chat) for a named route without one.
func (r *Router) autoGroups(model string, route config.AutoRoute) (groups []string, every bool) {
	if len(route.Candidates) > 0 {
		return route.Candidates, false
	}
	if name, _, _ := strings.Cut(model, ":"); name == "auto" {
		return r.autoRT.known, false
	}
	return r.names, true
}

// candidate describes a group to the decision: the cheapest deployment's
// prices (unknown prices are +Inf) and the fastest observed latency.
func (r *Router) candidate(g *Group) auto.Candidate {
	c := auto.Candidate{Name: g.Name, Model: r.autoRT.ability[g.Name], Provider: g.Deployments[0].ProviderName,
		InputPer1K: math.Inf(1), OutputPer1K: math.Inf(1)}
	for _, d := range g.Deployments {
		p := &d.Params
		o := pricing.Override{InputCostPerToken: firstSet(d.Info.InputCostPerToken, p.InputCostPerToken),
			OutputCostPerToken: firstSet(d.Info.OutputCostPerToken, p.OutputCostPerToken)}
		if pr, ok := pricing.For(d.ProviderName, d.Model, d.Info.BaseModel, o); ok &&
			pr.Input+pr.Output < (c.InputPer1K+c.OutputPer1K)/1000 {
			c.InputPer1K, c.OutputPer1K = pr.Input*1000, pr.Output*1000
		}
		lat := d.latency.value()
		if lat == 0 {
			lat = d.ttft.value()
		}
		if ms := float64(lat.Microseconds()) / 1000; ms > 0 && (c.LatencyMS == 0 || ms < c.LatencyMS) {
			c.LatencyMS = ms
		}
	}
	return c
}

// promptOf reads what the scorer needs from an OpenAI-format body: the
// system messages, the last user turn and the number of messages (or a
// completion prompt, or an embedding input).
func promptOf(body []byte) auto.Prompt {
	var p auto.Prompt
	if msgs := gjson.GetBytes(body, "messages"); msgs.IsArray() {
		var sys []string
		msgs.ForEach(func(_, m gjson.Result) bool {
			p.Turns++
			switch m.Get("role").Str {
			case "system", "developer":
				sys = append(sys, text(m.Get("content")))
			case "user":
				p.User = text(m.Get("content"))
			}
			return true
		})
		p.System = strings.Join(sys, "\n")
		return p
	}
	for _, f := range [...]string{"prompt", "input"} {
		if v := gjson.GetBytes(body, f); v.Exists() {
			p.User, p.Turns = text(v), 1
			break
		}
	}
	return p
}

// text is a content value's text: a string, or the text parts of an array.
func text(v gjson.Result) string {
	if v.Type == gjson.String {
		return v.Str
	}
	var parts []string
	v.ForEach(func(_, part gjson.Result) bool {
		switch {
		case part.Type == gjson.String:
			parts = append(parts, part.Str)
		case part.Get("text").Exists():
			parts = append(parts, part.Get("text").Str)
		}
		return true
	})
	return strings.Join(parts, "\n")
}

// overrides are per-request limits; nil fields are unset.
type overrides struct {
	floor, cost, latency *float64
	prefer               []string
}

// merge returns o with the fields b sets replaced (b wins).
func (o overrides) merge(b overrides) overrides {
	if b.floor != nil {
		o.floor = b.floor
	}
	if b.cost != nil {
		o.cost = b.cost
	}
	if b.latency != nil {
		o.latency = b.latency
	}
	if b.prefer != nil {
		o.prefer = b.prefer
	}
	return o
}

func (o overrides) apply(c *auto.Constraints) {
	if o.floor != nil {
		c.QualityFloor = *o.floor
	}
	if o.cost != nil {
		c.MaxCostPer1K = *o.cost
	}
	if o.latency != nil {
		c.MaxLatencyMS = *o.latency
	}
	if o.prefer != nil {
		c.Prefer = o.prefer
	}
}

func parseBodyOverrides(v gjson.Result) (overrides, error) {
	var o overrides
	if !v.IsObject() {
		return o, &RequestError{Param: "lumen", Message: "must be an object: {\"quality_floor\": 0.9, \"max_cost_per_1k\": 2.0, \"max_latency_ms\": 800, \"prefer\": [\"anthropic\"]}"}
	}
	var err error
	v.ForEach(func(k, f gjson.Result) bool {
		param := "lumen." + k.Str
		switch k.Str {
		case "quality_floor", "max_cost_per_1k", "max_latency_ms":
			if f.Type != gjson.Number {
				err = &RequestError{Param: param, Message: "must be a number"}
				return false
			}
			var x *float64
			if x, err = limit(param, f.Num); err == nil {
				switch k.Str {
				case "quality_floor":
					o.floor = x
				case "max_cost_per_1k":
					o.cost = x
				default:
					o.latency = x
				}
			}
		case "prefer":
			if !f.IsArray() {
				err = &RequestError{Param: param, Message: "must be an array of provider or model group names"}
				return false
			}
			o.prefer = []string{}
			f.ForEach(func(_, s gjson.Result) bool {
				o.prefer = append(o.prefer, s.String())
				return true
			})
		default:
			err = &RequestError{Param: param, Message: "unknown field; use quality_floor, max_cost_per_1k, max_latency_ms or prefer"}
		}
		return err == nil
	})
	return o, err
}

// Header names of the per-request limits.
const (
	HeaderQualityFloor = "x-lumen-quality-floor"
	HeaderMaxCostPer1K = "x-lumen-max-cost-per-1k"
	HeaderMaxLatencyMS = "x-lumen-max-latency-ms"
	HeaderPrefer       = "x-lumen-prefer"
)

func parseHeaderOverrides(h http.Header) (overrides, error) {
	var o overrides
	for _, f := range []struct {
		name string
		dst  **float64
	}{{HeaderQualityFloor, &o.floor}, {HeaderMaxCostPer1K, &o.cost}, {HeaderMaxLatencyMS, &o.latency}} {
		s := strings.TrimSpace(h.Get(f.name))
		if s == "" {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return o, &RequestError{Param: f.name, Message: fmt.Sprintf("header must be a number, got %q", s)}
		}
		if *f.dst, err = limit(f.name, v); err != nil {
			return o, err
		}
	}
	if s := h.Get(HeaderPrefer); s != "" {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				o.prefer = append(o.prefer, p)
			}
		}
	}
	return o, nil
}

// limit checks a per-request limit's range.
func limit(param string, v float64) (*float64, error) {
	if math.IsNaN(v) || v < 0 || (strings.HasSuffix(param, "quality_floor") || strings.HasSuffix(param, "quality-floor")) && v > 1 {
		return nil, &RequestError{Param: param, Message: fmt.Sprintf("out of range: %g (quality floor is 0..1, limits are >= 0)", v)}
	}
	return &v, nil
}

// Feedback feeds an explicit score (0..1) for a recent auto-routed request
// to the bandit of auto:smart. It returns ErrUnknownRequest when the id is
// not among the last decisions kept.
//
// caller is who sends the feedback (Call.Caller's convention); "*" may
// score any request (the master key). Another caller's request is
// ErrUnknownRequest, so ids cannot be probed.
func (r *Router) Feedback(requestID string, score float64, caller string) error {
	if r.autoRT == nil {
		return ErrUnknownRequest
	}
	if math.IsNaN(score) || score < 0 || score > 1 {
		return &RequestError{Param: "score", Message: fmt.Sprintf("must be between 0 and 1, got %g", score)}
	}
	a, ok := r.autoRT.learn.lookup(requestID)
	if !ok || (caller != "*" && caller != a.caller) {
		return ErrUnknownRequest
	}
	r.autoRT.learn.bandit.Observe(a.domain, a.model, score)
	return nil
}

// KeepLearning hands old's bandit and recent decisions to r, so a config
// reload does not forget what auto:smart learned (KeepState does the same
// for deployment health and usage). Call it before r serves.
func (r *Router) KeepLearning(old *Router) {
	if r.autoRT != nil && old != nil && old.autoRT != nil {
		r.autoRT.learn = old.autoRT.learn
	}
}

// ArmStore keeps what auto:smart learned where it survives restarts and
// every instance reads it (the ledger). MergeArms adds deltas (outcomes
// observed since the last merge) to the stored arms, caps each arm's
// Alpha+Beta at maxCount by rescaling, and returns every stored arm.
type ArmStore interface {
	MergeArms(ctx context.Context, deltas []auto.Arm, maxCount float64) ([]auto.Arm, error)
}

// SyncLearning hands store the outcomes auto:smart observed since the last
// sync and takes back everyone's, so that the bandit decides on what every
// instance sharing the store learned. When store fails, the outcomes are
// kept for the next sync.
func (r *Router) SyncLearning(ctx context.Context, store ArmStore) error {
	if r.autoRT == nil {
		return nil
	}
	b := r.autoRT.learn.bandit
	deltas := b.TakePending()
	arms, err := store.MergeArms(ctx, deltas, b.MaxCount)
	if err != nil {
		b.Requeue(deltas)
		return fmt.Errorf("syncing what auto:smart learned: %w", err)
	}
	b.Restore(arms)
	return nil
}

// BanditPath is where Lumen before 2026-11-28 kept the bandit's state,
// beside the ledger file; ImportBandit reads it into the ledger's.
func BanditPath(ledgerPath string) string { return ledgerPath + ".bandit.json" }

// ImportBandit adds the arms of an old bandit state file to what the next
// SyncLearning stores, and reports how many there were; a missing file is
// 0, not an error.
func (r *Router) ImportBandit(path string) (int, error) {
	if r.autoRT == nil {
		return 0, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("importing auto bandit: %w", err)
	}
	var arms []auto.Arm
	if err := json.Unmarshal(b, &arms); err != nil {
		return 0, fmt.Errorf("importing auto bandit from %s: %w", path, err)
	}
	r.autoRT.learn.bandit.Add(arms)
	return len(arms), nil
}

// ExplainAuto scores prompt for an auto model name ("auto", "auto:best", a
// named route) against its candidates with their configured prices and
// observed latency, as `lumen route explain` prints it.
func (r *Router) ExplainAuto(model, prompt string) (auto.Explanation, error) {
	if r.autoRT == nil || !r.isAuto(model) {
		return auto.Explanation{}, &UnknownGroupError{Model: model, Available: r.AutoNames()}
	}
	body, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": prompt}}})
	p, err := r.planAuto(model, body, overrides{}, nil, nil)
	if err != nil {
		return auto.Explanation{}, err
	}
	return r.autoRT.scorer.Explain(p.prompt, p.cands, p.tok, p.cons, p.mode), nil
}

// AutoNames returns the auto model names: "auto" and the named auto routes,
// sorted.
func (r *Router) AutoNames() []string {
	out := []string{"auto"}
	if r.autoRT != nil {
		for name := range r.autoRT.routes {
			out = append(out, name)
		}
	}
	sort.Strings(out[1:])
	return out
}

// answersChat reports whether g serves chat: not a group of embedding,
// moderation, rerank, image, speech or transcription models
// (model_info.mode), which a route over every group must leave out.
func answersChat(g *Group) bool {
	for _, d := range g.Deployments {
		switch d.Info.Mode {
		case "embedding", "moderation", "rerank", "image_generation", "audio_speech", "audio_transcription":
			return false
		}
	}
	return true
}

// AutoCandidates returns the groups model "auto" chooses among when
// router_settings.auto names none: those with a known ability.
func (r *Router) AutoCandidates() []string {
	if r.autoRT == nil {
		return nil
	}
	return r.autoRT.known
}
