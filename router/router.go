// Package router turns a model group name into a call to one of its
// deployments, and keeps that call alive when upstreams misbehave.
//
// A model group is every model_list entry sharing a model_name. Per call
// the router:
//
//   - picks a deployment by router_settings.routing_strategy (strategy.go),
//     skipping cooled-down deployments while a healthy one remains, and
//     deployments whose model_info.max_input_tokens the prompt exceeds;
//   - retries retryable failures (connect errors, timeouts, 408/409/429/5xx)
//     up to num_retries (or the deployment's max_retries): at once on
//     another healthy deployment, else on the same after exponential
//     backoff with full jitter and the upstream's Retry-After (attempt.go);
//   - cools a deployment down after allowed_fails failures within
//     cooldown_time, then lets one probe decide (health.go);
//   - sends a second, hedged attempt when the first has produced no byte
//     within hedge_after, and keeps whichever answers first (attempt.go);
//   - falls back to other groups: router_settings.fallbacks,
//     context_window_fallbacks, content_policy_fallbacks, or the request's
//     own OpenRouter-style "models"/"fallbacks" lists (fallback.go);
//   - continues a stream that breaks mid-answer on another deployment
//     (failover.go);
//   - optionally checks every deployment in the background (check.go).
//
// A Router is immutable once built and safe for concurrent use; its
// per-deployment counters are atomics and no lock is held across I/O. A
// config reload builds a new Router, which takes over the deployment
// state of the one it replaces (KeepState).
package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tokens"
)

// Group is every deployment sharing a model_name.
type Group struct {
	Name        string
	Deployments []*Deployment

	hedge     config.HedgeDelay // zero: no hedging
	maxInput  bool              // some deployment sets max_input_tokens
	firstByte quantile          // recent time to first byte, for a percentile hedge
}

// hedgeAfter is how long an attempt may go without a first byte before a
// hedge starts; zero means do not hedge (a percentile hedge waits for
// enough observations).
func (g *Group) hedgeAfter() time.Duration {
	if g.hedge.Percentile > 0 {
		return g.firstByte.value()
	}
	return g.hedge.After
}

// Router routes calls to model groups. It is safe for concurrent use and
// immutable once built; a config reload builds a new one and hands it the
// old one's deployment state (KeepState) and auto learning (KeepLearning).
type Router struct {
	groups map[string]*Group
	names  []string
	auto   map[string]*config.AutoRoute
	alias  map[string]string // router_settings.model_group_alias
	autoRT *autoRouting      // model "auto" (autoroute.go)

	strategy   string
	fallbacks  [numKinds]map[string][]string // by failure kind, from group
	failover   bool                          // router_settings.stream_failover
	checkEvery time.Duration                 // router_settings.health_check_interval

	log     zerolog.Logger
	obs     Observer
	minWait time.Duration // router_settings.retry_after
	stats   stats

	// Seams for tests: the clock, sleeping, and randomness.
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(n int64) int64 // uniform in [0, n)
	float  func() float64      // uniform in [0, 1)
}

// Backoff bounds: the first retry on the same deployment waits up to
// baseBackoff (full jitter), doubling per attempt up to maxBackoff. An
// upstream Retry-After is honoured up to maxRetryAfter (30 s): a longer
// one is not waited for, the error goes back to the client with the hint
// (or to a fallback group), since holding a client for minutes is worse
// than telling it when to come back.
const (
	baseBackoff   = 100 * time.Millisecond
	maxBackoff    = 5 * time.Second
	maxRetryAfter = 30 * time.Second
)

// ErrUnknownGroup is returned (wrapped in *UnknownGroupError) for a model
// name the config does not define.
var ErrUnknownGroup = errors.New("unknown model group")

// UnknownGroupError names the model that was asked for and the groups the
// caller may use instead (only those Call.Allow admits: a restricted key is
// not told the names of the others).
type UnknownGroupError struct {
	Model     string
	Available []string
}

// available is what an unknown-model error tells a caller exists: the
// groups allow admits, every group when allow is nil.
func (r *Router) available(allow func(group string) bool) []string {
	if allow == nil {
		return r.names
	}
	out := make([]string, 0, len(r.names))
	for _, n := range r.names {
		if allow(n) {
			out = append(out, n)
		}
	}
	return out
}

func (e *UnknownGroupError) Error() string {
	return fmt.Sprintf("model %q does not exist", e.Model)
}

func (e *UnknownGroupError) Unwrap() error { return ErrUnknownGroup }

// ErrModelNotAllowed is returned (wrapped in *NotAllowedError) when
// Call.Allow refuses the requested model group.
var ErrModelNotAllowed = errors.New("model not allowed for this key")

// NotAllowedError names the model group the caller may not use.
type NotAllowedError struct {
	Group string
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("this key may not use model %q", e.Group)
}

func (e *NotAllowedError) Unwrap() error { return ErrModelNotAllowed }

// ErrInvalidRequest is returned (wrapped in *RequestError) when a field the
// router reads from the body ("models", "fallbacks") is malformed.
var ErrInvalidRequest = errors.New("invalid request")

// RequestError says which request field is wrong and how.
type RequestError struct {
	Param   string
	Message string
}

func (e *RequestError) Error() string { return e.Param + ": " + e.Message }

func (e *RequestError) Unwrap() error { return ErrInvalidRequest }

// Builder makes the provider for one deployment.
type Builder func(cfg providers.Config) (providers.Provider, error)

// New builds a router from a validated config. It starts nothing: active
// health checks run only inside Run.
func New(cfg *config.Config, build Builder) (*Router, error) {
	rs := &cfg.RouterSettings
	r := &Router{groups: map[string]*Group{}, auto: map[string]*config.AutoRoute{}, alias: rs.ModelGroupAlias,
		strategy: rs.RoutingStrategy, failover: rs.StreamFailover == nil || *rs.StreamFailover,
		checkEvery: rs.HealthCheckInterval.D(),
		log:        zerolog.Nop(), minWait: rs.RetryAfter.D(),
		now: time.Now, sleep: sleepCtx, jitter: rand.Int64N, float: rand.Float64}
	if r.strategy == "" {
		r.strategy = SimpleShuffle
	}
	retries := config.DefaultNumRetries
	if rs.NumRetries != nil {
		retries = *rs.NumRetries
	}
	allowed := config.DefaultAllowedFails
	if rs.AllowedFails != nil {
		allowed = *rs.AllowedFails
	}
	cooldown := rs.CooldownTime.D()
	for i := range cfg.ModelList {
		m := &cfg.ModelList[i]
		if m.Auto != nil {
			r.auto[m.ModelName] = m.Auto
			continue
		}
		p := m.Deployment()
		pc := ProviderConfig(cfg, m)
		prov, err := build(pc)
		if err != nil {
			return nil, fmt.Errorf("model_list[%d] (%s): %w", i, m.ModelName, err)
		}
		prov = providers.Scrub(prov, pc.Secrets())
		price, priced := deploymentPrice(pc.Provider, pc.Model, p, &m.ModelInfo)
		d := &Deployment{ID: m.ModelInfo.ID, Group: m.ModelName, ProviderName: pc.Provider, Model: pc.Model,
			Provider: prov, Params: *p, Info: m.ModelInfo, retries: retries,
			Price: price, Priced: priced, price: resolvePrice(price, priced),
			health: health{allowed: allowed, cooldown: cooldown}}
		if p.MaxRetries != nil {
			d.retries = *p.MaxRetries
		}
		g := r.groups[m.ModelName]
		if g == nil {
			g = &Group{Name: m.ModelName, hedge: rs.HedgeAfter}
			if h, ok := rs.ModelGroupHedgeAfter[m.ModelName]; ok {
				g.hedge = h
			}
			g.firstByte.p = g.hedge.Percentile
			r.groups[m.ModelName] = g
			r.names = append(r.names, m.ModelName)
		}
		d.group = g
		d.index = len(g.Deployments)
		g.Deployments = append(g.Deployments, d)
		g.maxInput = g.maxInput || d.Info.MaxInputTokens > 0
	}
	for _, g := range r.groups {
		resolveWeights(g)
	}
	r.fallbacks[failGeneric] = flatten(rs.Fallbacks)
	r.fallbacks[failContextWindow] = flatten(rs.ContextWindowFallbacks)
	r.fallbacks[failContentPolicy] = flatten(rs.ContentPolicyFallbacks)
	var err error
	if r.autoRT, err = newAutoRouting(cfg, r.groups, r.auto); err != nil {
		return nil, err
	}
	// Auto routes are served by autoroute.go and listed by AutoNames.
	sort.Strings(r.names)
	return r, nil
}

// Resolve returns the model group or auto route name stands for: its
// target when it is an alias (router_settings.model_group_alias), else name.
func (r *Router) Resolve(name string) string {
	if t, ok := r.alias[name]; ok {
		return t
	}
	return name
}

// Aliases returns the alias names, sorted.
func (r *Router) Aliases() []string {
	out := make([]string, 0, len(r.alias))
	for a := range r.alias {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// SetLogger sends the router's log lines (failed attempts, fallbacks,
// failovers, hedges, health checks) to log. Call it before the router
// serves.
func (r *Router) SetLogger(log zerolog.Logger) { r.log = log }

// Observer hears of resilience events as they happen, by model group
// (metrics count them). Implementations must not block.
type Observer interface {
	Hedge(group string)
	MidstreamFailover(group string)
}

// SetObserver sets the Observer; call it before the router serves.
func (r *Router) SetObserver(o Observer) { r.obs = o }

// Strategy returns the routing strategy in force.
func (r *Router) Strategy() string { return r.strategy }

// ProviderConfig is the providers.Config of one model_list entry.
func ProviderConfig(cfg *config.Config, m *config.Model) providers.Config {
	p := m.Deployment()
	provider, model := config.SplitModel(p)
	pc := providers.Config{
		Provider: provider, Model: model, APIBase: p.APIBase.Value(), APIKey: p.APIKey.Value(),
		APIVersion: p.APIVersion, Headers: p.ExtraHeaders,
		Timeout: p.Timeout.D(), StreamTimeout: p.StreamTimeout.D(),
		AWSRegion: p.AWSRegionName, AWSAccessKeyID: p.AWSAccessKeyID.Value(),
		AWSSecretAccessKey: p.AWSSecretAccessKey.Value(), AWSSessionToken: p.AWSSessionToken.Value(),
		Mock: providers.MockConfig{Response: p.MockResponse, Latency: p.MockLatency.D(),
			ChunkInterval: p.MockChunkInterval.D(), FailureRate: p.MockFailureRate},
		ResponsesAPI: p.ResponsesAPI,
	}
	for _, ip := range p.CacheControlInjectionPoints {
		pc.CacheInjection = append(pc.CacheInjection, providers.CachePoint{Role: ip.Role, Index: ip.Index})
	}
	if pc.Timeout == 0 {
		pc.Timeout = cfg.RouterSettings.Timeout.D()
	}
	if pc.StreamTimeout == 0 {
		pc.StreamTimeout = cfg.RouterSettings.StreamTimeout.D()
	}
	return pc
}

// Names returns every model name clients may send, sorted.
func (r *Router) Names() []string { return r.names }

// Group returns the named deployment-backed model group.
func (r *Router) Group(name string) (*Group, bool) {
	g, ok := r.groups[name]
	return g, ok
}

// Call is one client request to route.
type Call struct {
	// Group is the model name the client sent.
	Group string
	// Op, Body and Stream describe the request (see providers.Request).
	// Body may carry OpenRouter-style "models" and "fallbacks" lists of
	// model groups to fall back to; the router removes them before the
	// body goes upstream. ContentType is Body's when it is not JSON (a
	// multipart transcription), which carries no lists.
	Op          providers.Op
	Body        []byte
	ContentType string
	Stream      bool
	// RequestID tags the log lines of failed attempts.
	RequestID string
	// Caller identifies who sent the call (a virtual key id; empty for the
	// master key or an open gateway): feedback on an auto decision is taken
	// from the same caller only.
	Caller string
	// Native and NativeHeader carry an Anthropic client's own request to
	// deployments that speak the Messages API (see providers.Request).
	Native       []byte
	NativeHeader http.Header
	// Responses carries a Responses API client's own request to deployments
	// that speak it (see providers.Request).
	Responses []byte
	// Allow reports whether the caller may use a model group (virtual keys
	// restricted to models); it is checked for every group tried, fallbacks
	// included: a refused fallback is skipped, a refused Group is a
	// *NotAllowedError. Nil allows all.
	Allow func(group string) bool
	// Skip reports why a model group the call must not be answered by
	// besides Group (one whose model-group budget is spent) is passed
	// over; nil means it may answer. A fallback it names is passed over,
	// and its error is kept, as a refusal of Admit's is, for the error the
	// call may end with (FallbacksRefusedError); an auto candidate it
	// names is not considered. Nil skips none.
	Skip func(group string) error
	// Admit is asked before the router turns to a model group: Group
	// itself (a plain group, first), a fallback (the config's, the
	// request's own lists', a mid-stream failover's) and the group an
	// auto route chose. It may count the call against that group's limits
	// there and then (the server counts its rpm/tpm window; a window that
	// already counted the call admits it again); an error refuses the
	// group: a refused Group is passed over to its fallbacks (as after a
	// failure; with none admitted, the call ends with the refusal), a
	// fallback is passed over, as one Skip names, and an auto route
	// decides again without it, ending with the error when no candidate
	// is left. Admit runs on the goroutine routing the call, which need
	// not be the caller's (a response-cache flight routes on its own). Nil
	// admits every group.
	Admit func(ctx context.Context, group string) error
	// Header is the client's request headers; model "auto" reads its
	// x-lumen-* limits from them (autoroute.go). Nil means none.
	Header http.Header

	// admitted is set when Admit already admitted Group: an auto route's
	// choice, which Do is then called with.
	admitted bool
}

// Result is what served a call.
type Result struct {
	// Response is set for non-streaming calls, Stream for streaming ones.
	// The Stream continues on another deployment if its upstream breaks
	// (router_settings.stream_failover); its caller must Close it.
	Response *providers.Response
	Stream   providers.Stream
	// Deployment answered (for a stream: the first one that did). On an
	// error it is the last deployment tried, nil when none was.
	Deployment *Deployment
	// Attempts counts upstream calls made before the answer began, failed
	// and hedged ones included.
	Attempts int
	// Abandoned is the estimated USD of attempts given up on that the
	// upstream may bill: each attempt cancelled because a hedge won the
	// race, its prompt (Lumen's estimate) at its own deployment's input
	// price; and each failed attempt followed by another, what it had
	// spent (providers.SpentError, a Gemini embeddings batch that went
	// through before another failed) at that deployment's price. Budgets
	// and the ledger count it; the answer's own usage does not include
	// it.
	Abandoned float64
	// Group is the model group that answered; it differs from Call.Group
	// after a fallback.
	Group string
	// FallbackFrom is the group first asked for when a fallback answered.
	FallbackFrom string
	// Strategy is the routing strategy that chose the deployment.
	Strategy string
	// Auto is model "auto"'s decision; nil for a pinned model.
	Auto *AutoDecision
}

// reqState is one Do call's routing state. The goroutine running Do owns
// it; attempt goroutines only read its immutable fields.
type reqState struct {
	call    *Call
	body    []byte   // Call.Body without "models"/"fallbacks"
	chain   []string // per-request fallback groups, in order; nil: config's
	res     *Result
	prompt  int      // estimated prompt tokens; -1 until needed
	groups  []string // groups tried, in order
	refused []error  // why fallbacks were passed over: Call.Admit's refusals, Call.Skip's reasons
	attempt int      // attempts made, for log lines
}

// promptTokens is the prompt estimate, computed once per request.
func (rs *reqState) promptTokens() int {
	if rs.prompt < 0 {
		rs.prompt = tokens.Prompt(rs.body)
	}
	return rs.prompt
}

func (rs *reqState) triedGroup(name string) bool {
	for _, g := range rs.groups {
		if g == name {
			return true
		}
	}
	return false
}

// Do routes call to a deployment of its group, or of a fallback group,
// and returns its answer.
//
// Retryable failures are retried within the group (attempt.go); when the
// group gives up, the next fallback group for that kind of failure is
// tried. Non-retryable client errors (400 other than a context-window or
// content-policy refusal) and a cancelled ctx return at once. A stream is
// returned once its first event has arrived, so everything before the
// first byte reaches the client is retried freely; after that the
// returned Stream fails over by itself.
//
// Every attempt for call shares one image memo (providers.WithImageMemo;
// ctx's own, if it carries one): the http(s) images a Gemini or Bedrock
// deployment needs as bytes are downloaded once per call, not once per
// attempt.
func (r *Router) Do(ctx context.Context, call *Call) (*Result, error) {
	ctx = providers.WithImageMemo(ctx)
	if t, ok := r.alias[call.Group]; ok {
		call.Group = t
	}
	if r.wantsAuto(call) {
		return r.doAuto(ctx, call)
	}
	g, ok := r.groups[call.Group]
	if !ok {
		return nil, &UnknownGroupError{Model: call.Group, Available: r.available(call.Allow)}
	}
	if call.Allow != nil && !call.Allow(g.Name) {
		return nil, &NotAllowedError{Group: g.Name}
	}
	res := &Result{Group: g.Name, Strategy: r.strategy}
	rs := &reqState{call: call, body: call.Body, res: res, prompt: -1}
	if call.ContentType == "" && mayHaveLists(call.Body) {
		if err := r.readLists(rs); err != nil {
			return nil, err
		}
	}
	g, err := r.admitted(ctx, rs, g)
	if err != nil {
		return res, err
	}
	again := false // g is being tried again after its fallbacks refused
	for {
		rs.groups = append(rs.groups, g.Name)
		o, err := r.tryGroup(ctx, g, rs)
		if err == nil {
			res.Deployment, res.Group = o.d, g.Name
			if g.Name != call.Group {
				res.FallbackFrom = call.Group
				r.stats.fallbacks.Add(1)
			}
			if call.Stream {
				res.Stream = r.newStream(ctx, rs, g, o)
			} else {
				res.Response = o.resp
				if o.cancel != nil {
					o.cancel() // a hedge winner's context: the body is read
				}
			}
			return res, nil
		}
		kind := failureKind(ctx, err)
		if kind == failFinal {
			return res, err
		}
		next := r.fallbackTo(ctx, rs, kind)
		if next == nil && isCoolingDown(err) && !again {
			// pick gave g up, every deployment cooled down, for a fallback
			// that Admit then refused: with none left, g's deployment that
			// comes back soonest is tried, as for a group without fallbacks.
			again = true
			continue
		}
		if next == nil {
			return res, withRefusals(rs, err)
		}
		r.log.Warn().Str("request_id", call.RequestID).Str("model_group", g.Name).Str("fallback", next.Name).
			Str("reason", kind.String()).Str("error", redact(err.Error())).Msg("falling back to another model group")
		rs.spend(o.d, err)
		g = next
	}
}

// admitted is the group a call for g starts with: g, unless Call.Admit
// refuses it (its rate window is full); then the first of g's fallbacks
// (the config's fallbacks, or the request's own lists) that Admit admits,
// as after a failure of g. With none, the call ends with g's refusal,
// carrying the fallbacks' (FallbacksRefusedError).
func (r *Router) admitted(ctx context.Context, rs *reqState, g *Group) (*Group, error) {
	if rs.call.Admit == nil || rs.call.admitted {
		return g, nil
	}
	err := rs.call.Admit(ctx, g.Name)
	if err == nil {
		return g, nil
	}
	rs.groups = append(rs.groups, g.Name) // refused, not tried: not a fallback either
	next := r.fallbackTo(ctx, rs, failGeneric)
	if next == nil {
		return nil, withRefusals(rs, err)
	}
	r.log.Warn().Str("request_id", rs.call.RequestID).Str("model_group", g.Name).Str("fallback", next.Name).
		Str("reason", redact(err.Error())).Msg("model group refused the request: falling back to another")
	return next, nil
}

// backoff is the wait before retry number try+1 on the same deployment:
// full jitter over an exponentially growing cap, at least
// router_settings.retry_after.
func (r *Router) backoff(try int) time.Duration {
	ceiling := min(baseBackoff<<min(try, 30), maxBackoff)
	return max(r.minWait, time.Duration(r.jitter(int64(ceiling)+1)))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// mayHaveLists is a cheap test for the per-request lists, so bodies
// without them are never parsed here.
func mayHaveLists(body []byte) bool {
	return bytes.Contains(body, []byte(`"models"`)) || bytes.Contains(body, []byte(`"fallbacks"`))
}
