// Package metrics exposes Lumen's Prometheus metrics (all named lumen_*) on
// a registry of its own, and gives the request path cheap handles to update
// them.
//
// Cardinality is bounded by construction. Labels carry only names from the
// config (model groups, deployments, providers, key tags) and small fixed
// sets (status, token direction, rejection scope); never request ids, key
// ids or anything a client typed. Each label keeps at most
// Options.MaxLabelValues distinct values; later values, values that are not
// valid UTF-8 and values longer than 128 bytes are reported as "other", and
// lumen_metrics_label_overflow_total{label} counts every such replacement so
// a too-small cap shows. Key tags are stricter: only tags on the allow-list
// (Options.KeyTags, extended with AllowKeyTags when keys are created) are
// kept, any other tag is "other".
//
// Hot-path use: resolve a *Route once per deployment (Route caches them) and
// call its methods; they do not allocate.
package metrics

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures New.
type Options struct {
	// KeyTags is the allow-list of key tag values (from the config and the
	// keys in the ledger). Tags not on it are counted as "other".
	KeyTags []string
	// MaxLabelValues caps the distinct values of each label. Zero means 100.
	MaxLabelValues int
	// NoProcessMetrics leaves out the Go runtime and process collectors
	// (go_*, process_*), which are registered by default.
	NoProcessMetrics bool
}

const defaultMaxLabelValues = 100

// LatencyBuckets are the histogram buckets, in seconds, for request
// duration and time to first token: 5 ms (cache hits) to 120 s (long
// generations).
var LatencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120}

// CircuitState is a deployment's circuit breaker state, the value of
// lumen_deployment_circuit_state.
type CircuitState int

// Circuit states.
const (
	CircuitClosed   CircuitState = 0
	CircuitOpen     CircuitState = 1
	CircuitHalfOpen CircuitState = 2
)

// Metrics holds every Lumen metric. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests   *prometheus.CounterVec   // model_group, deployment, provider, status
	duration   *prometheus.HistogramVec // model_group, deployment, provider
	ttft       *prometheus.HistogramVec // model_group, deployment, provider
	tokens     *prometheus.CounterVec   // model_group, deployment, provider, direction
	cost       *prometheus.CounterVec   // model_group, deployment, provider
	circuit    *prometheus.GaugeVec     // model_group, deployment, provider
	retries    *prometheus.CounterVec   // model_group
	fallbacks  *prometheus.CounterVec   // model_group
	failovers  *prometheus.CounterVec   // model_group
	hedges     *prometheus.CounterVec   // model_group
	cacheHits  *prometheus.CounterVec   // model_group
	cacheMiss  *prometheus.CounterVec   // model_group
	cacheCoal  *prometheus.CounterVec   // model_group
	cacheSaved *prometheus.CounterVec   // model_group
	budget     *prometheus.CounterVec   // scope
	rateLimit  *prometheus.CounterVec   // kind
	tagReqs    *prometheus.CounterVec   // key_tag
	tagCost    *prometheus.CounterVec   // key_tag
	guardrail  *prometheus.CounterVec   // guardrail, rule, action
	limitsDown *prometheus.CounterVec   // store
	inflight   prometheus.Gauge
	streams    prometheus.Gauge

	ledgerDepth, auditDepth     atomic.Pointer[func() int]
	ledgerDropped, auditDropped atomic.Pointer[func() uint64]
	ledgerFailed, auditFailed   atomic.Pointer[func() uint64]
	cacheErrors                 atomic.Pointer[func() uint64]
	limitsRate, limitsBudget    prometheus.Counter

	groupVals, deployVals, providerVals, tagVals, scopeVals, kindVals *valueSet

	mu     sync.RWMutex
	routes map[routeKey]*Route

	// circuitMu guards circuits, the labels SetCircuits set last.
	circuitMu sync.Mutex
	circuits  map[[3]string]bool
	groups    map[string]*Group
	tags      map[string]*KeyTag
	scopes    map[string]prometheus.Counter
	kinds     map[string]prometheus.Counter
}

type routeKey struct{ group, deployment, provider string }

// New builds the metrics on a fresh registry.
func New(opts Options) *Metrics {
	if opts.MaxLabelValues <= 0 {
		opts.MaxLabelValues = defaultMaxLabelValues
	}
	reg := prometheus.NewRegistry()
	f := factory{reg}
	route := []string{"model_group", "deployment", "provider"}
	group := []string{"model_group"}
	m := &Metrics{
		reg: reg,
		requests: f.counterVec("lumen_requests_total",
			"Requests answered, by model group, deployment, provider and HTTP status (a code for the common ones, else a class).",
			"model_group", "deployment", "provider", "status"),
		duration: f.histogramVec("lumen_request_duration_seconds",
			"Time from receiving a request to its last byte, in seconds.", route...),
		ttft: f.histogramVec("lumen_time_to_first_token_seconds",
			"Time from receiving a streamed request to its first token, in seconds.", route...),
		tokens: f.counterVec("lumen_tokens_total",
			"Tokens by direction: prompt (all input, cached included), completion, and cached (the part of prompt read from a provider's prompt cache).",
			"model_group", "deployment", "provider", "direction"),
		cost: f.counterVec("lumen_cost_usd_total", "Cost of answered requests, in US dollars.", route...),
		circuit: f.gaugeVec("lumen_deployment_circuit_state",
			"Circuit breaker state of a deployment: 0 closed, 1 open, 2 half-open.", route...),
		retries:    f.counterVec("lumen_retries_total", "Upstream calls retried.", group...),
		fallbacks:  f.counterVec("lumen_fallbacks_total", "Requests that fell back from this model group to another.", group...),
		failovers:  f.counterVec("lumen_midstream_failovers_total", "Streams continued from another deployment after the first byte.", group...),
		hedges:     f.counterVec("lumen_hedges_total", "Hedged (duplicate) upstream calls started.", group...),
		cacheHits:  f.counterVec("lumen_cache_hits_total", "Requests answered from the response cache.", group...),
		cacheMiss:  f.counterVec("lumen_cache_misses_total", "Cacheable requests not found in the response cache.", group...),
		cacheCoal:  f.counterVec("lumen_cache_coalesced_total", "Requests that waited for an identical in-flight request instead of calling upstream.", group...),
		cacheSaved: f.counterVec("lumen_cache_saved_usd_total", "Upstream cost avoided by cache hits and coalescing, in US dollars.", group...),
		budget: f.counterVec("lumen_budget_rejections_total",
			"Requests refused because a budget was exhausted, by budget scope (key, team, user, global, …).", "scope"),
		rateLimit: f.counterVec("lumen_rate_limit_rejections_total",
			"Requests refused by a rate limit, by kind (rpm, tpm, parallel, …).", "kind"),
		tagReqs: f.counterVec("lumen_key_tag_requests_total",
			"Requests by tag of the calling key (allow-listed tags only; others are \"other\", untagged keys \"none\"). A key with several tags counts once per tag.", "key_tag"),
		tagCost: f.counterVec("lumen_key_tag_cost_usd_total",
			"Cost by tag of the calling key, in US dollars (see lumen_key_tag_requests_total).", "key_tag"),
		guardrail: f.counterVec("lumen_guardrail_matches_total",
			"Guardrail matches, by guardrail, rule (a prebuilt pattern's name, a regex's name, or blocked_word) and action (block or mask).",
			"guardrail", "rule", "action"),
		limitsDown: f.counterVec("lumen_limits_unavailable_total",
			"Rate-limit (store=rate) and budget (store=budget) checks and updates a shared store (Redis) could not make, failed or skipped while it is down: the request was admitted unchecked, or its use not counted.", "store"),
		inflight: f.gauge("lumen_inflight_requests", "Requests being served."),
		streams:  f.gauge("lumen_inflight_streams", "Streamed responses being sent."),
		routes:   map[routeKey]*Route{},
		groups:   map[string]*Group{},
		tags:     map[string]*KeyTag{},
		scopes:   map[string]prometheus.Counter{},
		kinds:    map[string]prometheus.Counter{},
	}
	overflow := f.counterVec("lumen_metrics_label_overflow_total",
		"Label values replaced by \"other\" because the label reached its cap or the value was not allowed.", "label")
	max := opts.MaxLabelValues
	m.groupVals = newValueSet("model_group", max, false, overflow)
	m.deployVals = newValueSet("deployment", max, false, overflow)
	m.providerVals = newValueSet("provider", max, false, overflow)
	m.tagVals = newValueSet("key_tag", max, true, overflow)
	m.scopeVals = newValueSet("scope", min(max, 16), false, overflow)
	m.kindVals = newValueSet("kind", min(max, 16), false, overflow)
	m.tagVals.allow(opts.KeyTags...)
	m.limitsRate, m.limitsBudget = m.limitsDown.WithLabelValues("rate"), m.limitsDown.WithLabelValues("budget")

	f.gaugeFunc("lumen_ledger_queue_depth", "Ledger records waiting to be written.", loadInt(&m.ledgerDepth))
	f.counterFunc("lumen_ledger_dropped_total", "Ledger records dropped: the queue was full, or the writer had closed.", loadUint(&m.ledgerDropped))
	f.counterFunc("lumen_ledger_failed_total", "Ledger records lost because their batch failed to commit, after retries.", loadUint(&m.ledgerFailed))
	f.gaugeFunc("lumen_audit_queue_depth", "Audit entries waiting to be written.", loadInt(&m.auditDepth))
	f.counterFunc("lumen_audit_dropped_total", "Audit entries dropped: the queue was full, or the log had closed.", loadUint(&m.auditDropped))
	f.counterFunc("lumen_audit_failed_total", "Audit entries lost because their batch failed to commit, after retries.", loadUint(&m.auditFailed))
	f.counterFunc("lumen_cache_errors_total", "Response cache backend failures (Redis unreachable, an embedder error) and calls skipped while Redis is down after one, each served as a miss or a dropped write.", loadUint(&m.cacheErrors))

	if !opts.NoProcessMetrics {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry returns the registry the metrics live on, to add more or gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats, for
// GET /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SetLedger makes lumen_ledger_queue_depth, lumen_ledger_dropped_total and
// lumen_ledger_failed_total report depth(), dropped() and failed() at each
// scrape. Any may be nil (reports 0). All must be cheap and safe for
// concurrent use.
func (m *Metrics) SetLedger(depth func() int, dropped, failed func() uint64) {
	m.ledgerDepth.Store(&depth)
	m.ledgerDropped.Store(&dropped)
	m.ledgerFailed.Store(&failed)
}

// SetAudit is SetLedger for lumen_audit_queue_depth,
// lumen_audit_dropped_total and lumen_audit_failed_total, e.g.
// SetAudit(log.QueueDepth, log.Dropped, log.Failed).
func (m *Metrics) SetAudit(depth func() int, dropped, failed func() uint64) {
	m.auditDepth.Store(&depth)
	m.auditDropped.Store(&dropped)
	m.auditFailed.Store(&failed)
}

// SetCache makes lumen_cache_errors_total report errors() at each scrape
// (cache.Stats.Errors). It may be nil (reports 0); it must be cheap and
// safe for concurrent use.
func (m *Metrics) SetCache(errors func() uint64) { m.cacheErrors.Store(&errors) }

// LimitsUnavailable counts a rate-limit (store "rate") or budget (store
// "budget") check or update a shared store could not make. Other stores
// are counted as "budget".
func (m *Metrics) LimitsUnavailable(store string) {
	if store == "rate" {
		m.limitsRate.Inc()
		return
	}
	m.limitsBudget.Inc()
}

func loadInt(p *atomic.Pointer[func() int]) func() float64 {
	return func() float64 {
		if f := p.Load(); f != nil && *f != nil {
			return float64((*f)())
		}
		return 0
	}
}

func loadUint(p *atomic.Pointer[func() uint64]) func() float64 {
	return func() float64 {
		if f := p.Load(); f != nil && *f != nil {
			return float64((*f)())
		}
		return 0
	}
}

// RequestStarted and RequestFinished move lumen_inflight_requests; call
// them in pairs.
func (m *Metrics) RequestStarted() { m.inflight.Inc() }

// RequestFinished ends what RequestStarted began.
func (m *Metrics) RequestFinished() { m.inflight.Dec() }

// StreamStarted and StreamFinished move lumen_inflight_streams; call them
// in pairs.
func (m *Metrics) StreamStarted() { m.streams.Inc() }

// StreamFinished ends what StreamStarted began.
func (m *Metrics) StreamFinished() { m.streams.Dec() }

// BudgetRejected counts a request refused by the budget of scope ("key",
// "tag", "model_group", "global"). At most 16 scopes are kept.
func (m *Metrics) BudgetRejected(scope string) {
	m.small(m.budget, m.scopeVals, m.scopes, scope).Inc()
}

// GuardrailMatched counts a guardrail match. The labels come from the
// config, so their values are bounded.
func (m *Metrics) GuardrailMatched(guardrail, rule, action string) {
	m.guardrail.WithLabelValues(guardrail, rule, action).Inc()
}

// RateLimited counts a request refused by a rate limit of kind ("rpm",
// "tpm", "parallel"). At most 16 kinds are kept.
func (m *Metrics) RateLimited(kind string) {
	m.small(m.rateLimit, m.kindVals, m.kinds, kind).Inc()
}

func (m *Metrics) small(vec *prometheus.CounterVec, set *valueSet, cache map[string]prometheus.Counter, v string) prometheus.Counter {
	m.mu.RLock()
	c, ok := cache[v]
	m.mu.RUnlock()
	if ok {
		return c
	}
	lv, _ := set.canon(v)
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := cache[lv]; ok {
		return c
	}
	c = vec.WithLabelValues(lv)
	cache[lv] = c
	return c
}

// Route returns the handles for one deployment of one model group. Values
// past a label's cap become "other". The result is cached: callers may call
// Route per request (a read lock and a map lookup) or keep it.
func (m *Metrics) Route(modelGroup, deployment, provider string) *Route {
	k := routeKey{modelGroup, deployment, provider}
	m.mu.RLock()
	r, ok := m.routes[k]
	m.mu.RUnlock()
	if ok {
		return r
	}
	g, gok := m.groupVals.canon(modelGroup)
	d, dok := m.deployVals.canon(deployment)
	p, pok := m.providerVals.canon(provider)
	ck := routeKey{g, d, p}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.routes[ck]; ok {
		return r
	}
	r = m.newRoute(ck)
	m.routes[ck] = r
	// Raw values the sets accepted are the label values themselves (or ""),
	// so the raw key is cached only for "": the cache stays as bounded as the
	// labels and never keeps a caller's string alive.
	if gok && dok && pok && k != ck {
		m.routes[k] = r
	}
	return r
}

// Group returns the handles for one model group; like Route, it is cached.
func (m *Metrics) Group(modelGroup string) *Group {
	m.mu.RLock()
	g, ok := m.groups[modelGroup]
	m.mu.RUnlock()
	if ok {
		return g
	}
	v, accepted := m.groupVals.canon(modelGroup)
	m.mu.Lock()
	defer m.mu.Unlock()
	g = m.groupLocked(v)
	if accepted && modelGroup != v { // "" -> "none"; see Route
		m.groups[modelGroup] = g
	}
	return g
}

// groupLocked returns the Group for the label value v, which canon
// returned (so caching it keeps the cache bounded); m.mu is held.
func (m *Metrics) groupLocked(v string) *Group {
	if g, ok := m.groups[v]; ok {
		return g
	}
	g := &Group{
		retries:    m.retries.WithLabelValues(v),
		fallbacks:  m.fallbacks.WithLabelValues(v),
		failovers:  m.failovers.WithLabelValues(v),
		hedges:     m.hedges.WithLabelValues(v),
		cacheHits:  m.cacheHits.WithLabelValues(v),
		cacheMiss:  m.cacheMiss.WithLabelValues(v),
		cacheCoal:  m.cacheCoal.WithLabelValues(v),
		cacheSaved: m.cacheSaved.WithLabelValues(v),
	}
	m.groups[v] = g
	return g
}

// AllowKeyTags adds tags to the key tag allow-list (for keys created at
// run time). Tags past MaxLabelValues are not added and are returned.
func (m *Metrics) AllowKeyTags(tags ...string) (rejected []string) {
	return m.tagVals.allow(tags...)
}

// KeyTag returns the handles for one key tag: an allow-listed tag, "none"
// for "" (an untagged key) and "other" for any other. Cached like Route.
func (m *Metrics) KeyTag(tag string) *KeyTag {
	m.mu.RLock()
	t, ok := m.tags[tag]
	m.mu.RUnlock()
	if ok {
		return t
	}
	v, accepted := m.tagVals.canon(tag)
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.tags[v]; ok {
		return t
	}
	t = &KeyTag{requests: m.tagReqs.WithLabelValues(v), cost: m.tagCost.WithLabelValues(v)}
	m.tags[v] = t
	if accepted && tag != v { // "" -> "none"; see Route
		m.tags[tag] = t
	}
	return t
}

// ObserveKeyTags counts one request costing costUSD for each of tags, or
// for "none" when tags is empty. At most 8 tags of one key are counted.
func (m *Metrics) ObserveKeyTags(tags []string, costUSD float64) {
	if len(tags) == 0 {
		m.KeyTag("").Observe(costUSD)
		return
	}
	for _, t := range tags[:min(len(tags), 8)] {
		m.KeyTag(t).Observe(costUSD)
	}
}

// KeyTag holds the handles for one key tag. Its methods do not allocate.
type KeyTag struct {
	requests, cost prometheus.Counter
}

// Observe counts one request costing costUSD.
func (t *KeyTag) Observe(costUSD float64) {
	t.requests.Inc()
	if costUSD > 0 {
		t.cost.Add(costUSD)
	}
}

// Group holds the handles for one model group. Its methods do not allocate.
type Group struct {
	retries, fallbacks, failovers, hedges prometheus.Counter
	cacheHits, cacheMiss, cacheCoal       prometheus.Counter
	cacheSaved                            prometheus.Counter
}

// Retry counts an upstream call retried (same or another deployment).
func (g *Group) Retry() { g.retries.Inc() }

// Fallback counts a request that fell back from this group to another.
func (g *Group) Fallback() { g.fallbacks.Inc() }

// MidstreamFailover counts a stream continued from another deployment
// after its first byte reached the client.
func (g *Group) MidstreamFailover() { g.failovers.Inc() }

// Hedge counts a hedged (duplicate) upstream call.
func (g *Group) Hedge() { g.hedges.Inc() }

// CacheHit counts a request answered from the cache; savedUSD is the
// upstream cost it avoided (0 if unknown).
func (g *Group) CacheHit(savedUSD float64) {
	g.cacheHits.Inc()
	if savedUSD > 0 {
		g.cacheSaved.Add(savedUSD)
	}
}

// CacheMiss counts a cacheable request that was not in the cache.
func (g *Group) CacheMiss() { g.cacheMiss.Inc() }

// CacheCoalesced counts a request that waited for an identical in-flight
// one; savedUSD is the upstream cost it avoided.
func (g *Group) CacheCoalesced(savedUSD float64) {
	g.cacheCoal.Inc()
	if savedUSD > 0 {
		g.cacheSaved.Add(savedUSD)
	}
}

// Route holds the handles for one (model group, deployment, provider). Its
// methods do not allocate once each status seen has been used once.
type Route struct {
	m      *Metrics
	labels [3]string
	group  *Group

	duration, ttft                   prometheus.Observer
	prompt, completion, cached, cost prometheus.Counter

	status [len(statusLabels)]atomic.Pointer[prometheus.Counter] // filled on first use
}

func (m *Metrics) newRoute(k routeKey) *Route {
	l := []string{k.group, k.deployment, k.provider}
	return &Route{
		m:          m,
		labels:     [3]string{k.group, k.deployment, k.provider},
		group:      m.groupLocked(k.group),
		duration:   m.duration.WithLabelValues(l...),
		ttft:       m.ttft.WithLabelValues(l...),
		prompt:     m.tokens.WithLabelValues(k.group, k.deployment, k.provider, "prompt"),
		completion: m.tokens.WithLabelValues(k.group, k.deployment, k.provider, "completion"),
		cached:     m.tokens.WithLabelValues(k.group, k.deployment, k.provider, "cached"),
		cost:       m.cost.WithLabelValues(l...),
	}
}

// Group returns the Group of the route's model group.
func (r *Route) Group() *Group { return r.group }

// Outcome is what one finished request reports.
type Outcome struct {
	// Status is the HTTP status sent to the client; 0 if none was.
	Status int
	// Duration is from receiving the request to its last byte.
	Duration time.Duration
	// TTFT is the time to the first token of a stream; zero means not
	// streamed (or no token was sent) and is not observed.
	TTFT time.Duration
	// PromptTokens (cached included), CompletionTokens and CachedTokens are
	// the request's usage.
	PromptTokens, CompletionTokens, CachedTokens int
	// CostUSD is what the request cost.
	CostUSD float64
}

// Observe records one finished request.
func (r *Route) Observe(o Outcome) {
	r.statusCounter(o.Status).Inc()
	r.duration.Observe(o.Duration.Seconds())
	if o.TTFT > 0 {
		r.ttft.Observe(o.TTFT.Seconds())
	}
	if o.PromptTokens > 0 {
		r.prompt.Add(float64(o.PromptTokens))
	}
	if o.CompletionTokens > 0 {
		r.completion.Add(float64(o.CompletionTokens))
	}
	if o.CachedTokens > 0 {
		r.cached.Add(float64(o.CachedTokens))
	}
	if o.CostUSD > 0 {
		r.cost.Add(o.CostUSD)
	}
}

func (r *Route) statusCounter(code int) prometheus.Counter {
	slot := &r.status[statusSlot(code)]
	if c := slot.Load(); c != nil {
		return *c
	}
	c := r.m.requests.WithLabelValues(r.labels[0], r.labels[1], r.labels[2], StatusLabel(code))
	slot.CompareAndSwap(nil, &c)
	return c
}

// Circuit is one deployment's circuit state, for SetCircuits.
type Circuit struct {
	Route *Route
	State CircuitState
}

// SetCircuits sets lumen_deployment_circuit_state to cs, the deployments
// in service, and removes the gauges of those set last time that are not
// in cs (a reload removed them: an open circuit left behind would alert
// for ever). Deployments folded into "other" share one gauge; the last
// one set wins. Call it at scrape time.
func (m *Metrics) SetCircuits(cs []Circuit) {
	m.circuitMu.Lock()
	defer m.circuitMu.Unlock()
	now := make(map[[3]string]bool, len(cs))
	for _, c := range cs {
		now[c.Route.labels] = true
		m.circuit.WithLabelValues(c.Route.labels[:]...).Set(float64(c.State))
	}
	for l := range m.circuits {
		if !now[l] {
			m.circuit.DeleteLabelValues(l[:]...)
		}
	}
	m.circuits = now
}

// factory registers on one registry; it panics on a duplicate name, which
// is a programming error caught by any test.
type factory struct{ reg *prometheus.Registry }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: LatencyBuckets}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() float64) {
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

func (f factory) counterFunc(name, help string, fn func() float64) {
	f.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// Hedge counts a hedged call of modelGroup (router.Observer).
func (m *Metrics) Hedge(modelGroup string) { m.Group(modelGroup).Hedge() }

// MidstreamFailover counts a stream of modelGroup continued on another
// deployment (router.Observer).
func (m *Metrics) MidstreamFailover(modelGroup string) { m.Group(modelGroup).MidstreamFailover() }
