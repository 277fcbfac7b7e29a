package router

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/pricing"
	"github.com/lumengw/lumen/providers"
)

// Deployment is one model_list entry that reaches an upstream. Its
// configuration fields are immutable once the router is built; its
// counters are atomics, safe for concurrent use.
type Deployment struct {
	// ID is model_info.id (default "<model_name>/<index>").
	ID string
	// Group is the model_name clients send.
	Group string
	// ProviderName is the provider id ("openai", "anthropic", "mock").
	ProviderName string
	// Model is the upstream model id, provider prefix removed.
	Model string
	// Provider sends the requests.
	Provider providers.Provider
	// Params and Info are the entry's configuration.
	Params config.Params
	Info   config.ModelInfo
	// Price is what the deployment charges (model_info prices over the
	// embedded table); Priced is false when neither knows it, and its calls
	// then cost 0 in the ledger and budgets.
	Price  pricing.Price
	Priced bool

	group   *Group
	index   int     // position in its group
	retries int     // retries of a failed call (num_retries or max_retries)
	weight  float64 // simple-shuffle weight, resolved at build
	price   float64 // blended USD per token (input + output); +Inf when unknown
	health  health

	inflight atomic.Int64
	latency  ewma // whole non-streaming calls (a lost hedge race: what it ran, as a floor)
	ttft     ewma // time to a stream's first event (likewise)
	usage    minuteUsage
	check    atomic.Pointer[checkResult]
}

// State reports the deployment's circuit state: closed, open (cooled down)
// or half-open (the next request probes it).
func (d *Deployment) State(now time.Time) string { return d.health.state(now) }

// Name is "provider/model", what x-lumen-deployment reports.
func (d *Deployment) Name() string { return d.ProviderName + "/" + d.Model }

// resolvePrice is a deployment's blended price per token for
// cost-based-routing: model_info prices (then litellm_params ones) over the
// embedded table. Unknown prices are +Inf: they rank after every priced
// deployment and tie with each other.
func resolvePrice(pr pricing.Price, ok bool) float64 {
	if !ok {
		return math.Inf(1)
	}
	return pr.Input + pr.Output
}

// deploymentPrice is a deployment's price: model_info prices (then
// litellm_params ones) over the embedded table.
func deploymentPrice(provider, model string, p *config.Params, mi *config.ModelInfo) (pricing.Price, bool) {
	o := pricing.Override{
		InputCostPerToken:           firstSet(mi.InputCostPerToken, p.InputCostPerToken),
		OutputCostPerToken:          firstSet(mi.OutputCostPerToken, p.OutputCostPerToken),
		CacheReadInputTokenCost:     mi.CacheReadInputTokenCost,
		CacheCreationInputTokenCost: mi.CacheCreationInputTokenCost,
		OutputCostPerImage:          mi.OutputCostPerImage,
		InputCostPerCharacter:       mi.InputCostPerCharacter,
		InputCostPerSecond:          mi.InputCostPerSecond,
	}
	return pricing.For(provider, model, mi.BaseModel, o)
}

func firstSet(a, b *float64) *float64 {
	if a != nil {
		return a
	}
	return b
}

// ewmaAlpha weighs a new latency sample: 0.3 lets three or four fast
// answers pull a recovered deployment's average back down.
const ewmaAlpha = 0.3

// ewma is an exponentially weighted moving average of durations, lock-free.
// Zero means no sample yet.
type ewma struct{ bits atomic.Uint64 }

func (e *ewma) observe(d time.Duration) { e.fold(d, false) }

// atLeast folds in a censored sample: one known only to be d or more (an
// attempt cancelled after running for d). An average already at or above
// d agrees with it and stays; a lower one, or none, moves as observe(d)
// would move it.
func (e *ewma) atLeast(d time.Duration) { e.fold(d, true) }

func (e *ewma) fold(d time.Duration, floor bool) {
	if d <= 0 {
		d = 1
	}
	for {
		old := e.bits.Load()
		v := float64(d)
		if old != 0 {
			f := math.Float64frombits(old)
			if floor && f >= v {
				return
			}
			v = f + ewmaAlpha*(v-f)
		}
		if e.bits.CompareAndSwap(old, math.Float64bits(v)) {
			return
		}
	}
}

func (e *ewma) value() time.Duration {
	b := e.bits.Load()
	if b == 0 {
		return 0
	}
	return time.Duration(math.Float64frombits(b))
}

// minuteUsage counts requests and tokens in the current wall-clock minute,
// for usage-based-routing. At the minute boundary a few concurrent counts
// can land in the old minute; the counts are a routing signal, not a
// limit anyone is billed by.
type minuteUsage struct {
	minute atomic.Int64 // unix minute the counts belong to
	reqs   atomic.Int64
	toks   atomic.Int64
}

func (u *minuteUsage) roll(m int64) {
	if cur := u.minute.Load(); cur != m && u.minute.CompareAndSwap(cur, m) {
		u.reqs.Store(0)
		u.toks.Store(0)
	}
}

func (u *minuteUsage) addRequest(now time.Time) {
	u.roll(now.Unix() / 60)
	u.reqs.Add(1)
}

func (u *minuteUsage) addTokens(now time.Time, n int) {
	if n <= 0 {
		return
	}
	u.roll(now.Unix() / 60)
	u.toks.Add(int64(n))
}

// get returns the requests and tokens counted in now's minute.
func (u *minuteUsage) get(now time.Time) (reqs, toks int64) {
	if u.minute.Load() != now.Unix()/60 {
		return 0, 0
	}
	return u.reqs.Load(), u.toks.Load()
}

// headroom is the fraction (0..1] of the deployment's rpm/tpm left this
// minute, the tighter of the two; 1 when it sets neither. ok is false when
// the deployment is at a limit and must be skipped.
func (d *Deployment) headroom(now time.Time) (frac float64, ok bool) {
	reqs, toks := d.usage.get(now)
	frac = 1
	if rpm := int64(d.Params.RPM); rpm > 0 {
		if reqs >= rpm {
			return 0, false
		}
		frac = min(frac, float64(rpm-reqs)/float64(rpm))
	}
	if tpm := int64(d.Params.TPM); tpm > 0 {
		if toks >= tpm {
			return 0, false
		}
		frac = min(frac, float64(tpm-toks)/float64(tpm))
	}
	return frac, true
}

func (u *minuteUsage) takeOver(old *minuteUsage) {
	u.minute.Store(old.minute.Load())
	u.reqs.Store(old.reqs.Load())
	u.toks.Store(old.toks.Load())
}

// KeepState hands the state of old's deployments to r's, so a config
// reload does not forget which upstreams are down or busy: a deployment of
// r takes over the circuit (failures in the window, open or half-open),
// the requests and tokens counted this minute (rpm, tpm,
// usage-based-routing), the latency and TTFT averages and the last health
// check of old's deployment with the same model_info.id, provided both call
// the same upstream (sameUpstream). Default ids are positional
// ("<model_name>/<index>"), so an entry inserted above others gives them
// new ids, or another entry's; sameUpstream keeps a different upstream's
// health from being carried, and a deployment whose id changed starts
// fresh. The in-flight count is not carried: old's calls still running end
// on old's deployments. Neither are a half-open probe in flight nor a
// group's hedge percentile. Call it before r serves; old may be nil.
func (r *Router) KeepState(old *Router) {
	if old == nil {
		return
	}
	prev := map[string]*Deployment{}
	for _, g := range old.groups {
		for _, d := range g.Deployments {
			prev[d.ID] = d
		}
	}
	for _, g := range r.groups {
		for _, d := range g.Deployments {
			if o := prev[d.ID]; o != nil && d.sameUpstream(o) {
				d.takeOver(o)
			}
		}
	}
}

// sameUpstream reports whether d and o call the same upstream with the same
// credentials: provider, model, api_base and aws_region_name, and api_key
// and aws_access_key_id, since a new key may have a quota (and 429s) of its
// own. Other changes (rpm, weight, timeouts, prices) keep the upstream.
func (d *Deployment) sameUpstream(o *Deployment) bool {
	p, q := &d.Params, &o.Params
	return d.ProviderName == o.ProviderName && d.Model == o.Model &&
		p.APIBase == q.APIBase && p.AWSRegionName == q.AWSRegionName &&
		p.APIKey.Value() == q.APIKey.Value() && p.AWSAccessKeyID.Value() == q.AWSAccessKeyID.Value()
}

// takeOver gives d the state of old (see KeepState).
func (d *Deployment) takeOver(old *Deployment) {
	d.health.takeOver(&old.health)
	d.usage.takeOver(&old.usage)
	d.latency.bits.Store(old.latency.bits.Load())
	d.ttft.bits.Store(old.ttft.bits.Load())
	d.check.Store(old.check.Load())
}

// checkResult is the outcome of the last active health check.
type checkResult struct {
	at  time.Time
	err string
}

// DeploymentState is a point-in-time view of one deployment, for /health
// and metrics.
type DeploymentState struct {
	Group    string
	ID       string
	Provider string
	Model    string
	// State is the circuit: closed, open (cooled down) or half-open.
	State string
	// CooldownUntil is when an open circuit turns half-open; zero otherwise.
	CooldownUntil time.Time
	// RecentFailures counts retryable failures within the current window.
	RecentFailures int
	// InFlight is the number of calls and open streams on the deployment.
	InFlight int64
	// Latency is the moving average of whole non-streaming calls and TTFT
	// that of a stream's first event (a lost hedge race counts what the
	// loser ran as a floor); zero means no sample yet.
	Latency time.Duration
	TTFT    time.Duration
	// RequestsThisMinute and TokensThisMinute are what usage-based-routing
	// weighs against rpm and tpm.
	RequestsThisMinute int64
	TokensThisMinute   int64
	// LastCheck is when the last active health check finished (zero: none)
	// and LastCheckError its error, empty when it succeeded.
	LastCheck      time.Time
	LastCheckError string
}

// Stats are router-wide resilience counters since the router was built.
type Stats struct {
	// Failovers counts streams continued or restarted on another
	// deployment after they broke.
	Failovers uint64
	// Hedges counts second attempts started because the first was slow;
	// HedgeWins those that answered first.
	Hedges    uint64
	HedgeWins uint64
	// Fallbacks counts calls served by, or handed to, a fallback group.
	Fallbacks uint64
}

type stats struct {
	failovers, hedges, hedgeWins, fallbacks atomic.Uint64
}

// Snapshot returns the state of every deployment, groups in name order and
// deployments in config order. It takes no lock across I/O and is cheap
// enough for every /health or metrics scrape.
func (r *Router) Snapshot() []DeploymentState {
	now := r.now()
	var out []DeploymentState
	for _, name := range r.names {
		g := r.groups[name]
		if g == nil {
			continue
		}
		for _, d := range g.Deployments {
			st, until, fails := d.health.snapshot(now)
			reqs, toks := d.usage.get(now)
			s := DeploymentState{
				Group: d.Group, ID: d.ID, Provider: d.ProviderName, Model: d.Model,
				State: st, CooldownUntil: until, RecentFailures: fails,
				InFlight: d.inflight.Load(), Latency: d.latency.value(), TTFT: d.ttft.value(),
				RequestsThisMinute: reqs, TokensThisMinute: toks,
			}
			if c := d.check.Load(); c != nil {
				s.LastCheck, s.LastCheckError = c.at, c.err
			}
			out = append(out, s)
		}
	}
	return out
}

// Stats returns the router's resilience counters.
func (r *Router) Stats() Stats {
	return Stats{
		Failovers: r.stats.failovers.Load(), Hedges: r.stats.hedges.Load(),
		HedgeWins: r.stats.hedgeWins.Load(), Fallbacks: r.stats.fallbacks.Load(),
	}
}

// quantile tracks a percentile of the last quantileWindow durations
// observed (some of them lower bounds: atLeast). It is off (observe does nothing) when p is zero. value is a
// lock-free read of the figure last computed.
type quantile struct {
	p      float64 // percentile, 50 to 99.9; zero: off
	mu     sync.Mutex
	ring   [quantileWindow]time.Duration
	n      int // observations so far
	cached atomic.Int64
}

const (
	quantileWindow = 256
	quantileMin    = 20 // observations before the percentile is trusted
	quantileEvery  = 16 // recompute after this many observations
)

func (q *quantile) observe(d time.Duration) {
	if q.p == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ring[q.n%quantileWindow] = d
	q.n++
	if q.n < quantileMin || (q.n != quantileMin && q.n%quantileEvery != 0) {
		return
	}
	var sorted [quantileWindow]time.Duration
	k := min(q.n, quantileWindow)
	copy(sorted[:], q.ring[:k])
	slices.Sort(sorted[:k])
	i := int(math.Ceil(q.p/100*float64(k))) - 1
	q.cached.Store(int64(sorted[max(i, 0)]))
}

// atLeast enters a censored observation: one known only to be d or more
// (an attempt cancelled after running for d: it lost a hedge race or timed
// out). Left out, such attempts would leave the percentile to the winners
// (a deployment that always loses the race would never raise it). One at
// or above the current percentile enters as d, a lower bound: it is above
// the percentile whatever its true value. One below it may be on either
// side, and leaves the window as it is, as ewma.atLeast leaves an average
// at or above d.
func (q *quantile) atLeast(d time.Duration) {
	if q.p == 0 || d < q.value() {
		return
	}
	q.observe(d)
}

func (q *quantile) value() time.Duration { return time.Duration(q.cached.Load()) }
