package auto

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
)

// Arm is the observed outcomes of one candidate model on one domain, as
// Beta pseudo-counts (the scorer's prediction is added as the prior at
// decision time and is not part of the state).
type Arm struct {
	Domain string  `json:"domain"`
	Model  string  `json:"model"`
	Alpha  float64 `json:"alpha"` // summed successes (score)
	Beta   float64 `json:"beta"`  // summed failures (1 − score)
}

type armKey struct{ domain, model string }

// Bandit is the online layer of auto:smart: Thompson sampling per (domain,
// candidate) with Beta posteriors whose prior is the scorer's prediction
// (PriorStrength pseudo-observations) and whose evidence is the outcomes fed
// to Observe. It never routes below the quality floor: the floor is checked
// on the posterior mean, the sample only orders the candidates that clear
// it. Safe for concurrent use; it owns no goroutine.
//
// The outcomes observed since the last TakePending are also kept apart, so
// that a store several instances share (the ledger) can add them to
// everyone's and hand back the sum (Restore).
type Bandit struct {
	// PriorStrength is how many observations the scorer's prediction is
	// worth (default 10).
	PriorStrength float64
	// MaxCount caps Alpha+Beta of an arm by rescaling, so old outcomes fade
	// and the bandit keeps adapting (default 500).
	MaxCount float64

	mu      sync.Mutex
	arms    map[armKey]*Arm
	pending map[armKey]*Arm // outcomes since TakePending, uncapped
	rng     *rand.Rand
}

// NewBandit returns an empty bandit whose sampling is seeded by seed.
func NewBandit(seed uint64) *Bandit {
	return &Bandit{
		PriorStrength: 10,
		MaxCount:      500,
		arms:          map[armKey]*Arm{},
		pending:       map[armKey]*Arm{},
		rng:           rand.New(rand.NewPCG(seed, 0x62616e646974)),
	}
}

// Observe records an outcome of model on domain: score 1 is a success
// (answer accepted), 0 a failure (upstream error, timeout, invalid JSON
// when JSON was asked, failed tool call), and values between are partial
// credit such as POST /v1/feedback scores. Scores outside 0..1 are clamped.
func (b *Bandit) Observe(domain, model string, score float64) {
	if math.IsNaN(score) {
		return
	}
	score = max(0, min(1, score))
	b.mu.Lock()
	defer b.mu.Unlock()
	o := Arm{Domain: domain, Model: model, Alpha: score, Beta: 1 - score}
	addTo(b.arms, o, b.MaxCount)
	addTo(b.pending, o, 0)
}

// addTo adds o's counts to its arm in arms, capping the arm at limit (0: no
// cap) by rescaling.
func addTo(arms map[armKey]*Arm, o Arm, limit float64) {
	k := armKey{o.Domain, o.Model}
	a := arms[k]
	if a == nil {
		a = &Arm{Domain: o.Domain, Model: o.Model}
		arms[k] = a
	}
	a.Alpha += o.Alpha
	a.Beta += o.Beta
	if limit > 0 && a.Alpha+a.Beta > limit {
		f := limit / (a.Alpha + a.Beta)
		a.Alpha *= f
		a.Beta *= f
	}
}

// Add adds arms' counts to the state, as observations (e.g. the state an
// older Lumen kept in a file, to be merged into the ledger's). Arms with
// negative or NaN counts are dropped.
func (b *Bandit) Add(arms []Arm) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range arms {
		if a.Alpha >= 0 && a.Beta >= 0 {
			addTo(b.arms, a, b.MaxCount)
			addTo(b.pending, a, 0)
		}
	}
}

// TakePending returns the outcomes observed since the last call (or Add),
// sorted, and forgets them: the caller stores them, or hands them back
// with Requeue when it could not.
func (b *Bandit) TakePending() []Arm {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := sorted(b.pending)
	b.pending = map[armKey]*Arm{}
	return out
}

// Requeue puts back outcomes TakePending returned that could not be
// stored, to go with the next.
func (b *Bandit) Requeue(arms []Arm) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range arms {
		addTo(b.pending, a, 0)
	}
}

// Posterior returns the Beta parameters of (domain, model) given the
// scorer's prediction prior.
func (b *Bandit) Posterior(domain, model string, prior float64) (alpha, beta float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.posterior(domain, model, prior)
}

func (b *Bandit) posterior(domain, model string, prior float64) (alpha, beta float64) {
	prior = max(1e-3, min(1-1e-3, prior))
	n := b.PriorStrength
	if n <= 0 {
		n = 10
	}
	alpha, beta = prior*n, (1-prior)*n
	if a := b.arms[armKey{domain, model}]; a != nil {
		alpha += a.Alpha
		beta += a.Beta
	}
	return alpha, beta
}

// Decide is Decide in ModeSmart for a prompt of the given domain: each
// candidate's PSuccess is replaced by its posterior mean (which the floor is
// checked on) and a Thompson sample orders those that clear the floor.
func (b *Bandit) Decide(domain string, cands []Candidate, tok Tokens, c Constraints) (Decision, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return decide(cands, tok, c, ModeSmart, func(cand *Candidate) (float64, float64) {
		al, be := b.posterior(domain, cand.model(), cand.PSuccess)
		return betaSample(b.rng, al, be), al / (al + be)
	})
}

// Snapshot returns the state, sorted by domain and model.
func (b *Bandit) Snapshot() []Arm {
	b.mu.Lock()
	defer b.mu.Unlock()
	return sorted(b.arms)
}

func sorted(arms map[armKey]*Arm) []Arm {
	out := make([]Arm, 0, len(arms))
	for _, a := range arms {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Domain != out[j].Domain {
			return out[i].Domain < out[j].Domain
		}
		return out[i].Model < out[j].Model
	})
	return out
}

// Restore replaces the state with arms (the ledger's sum of every
// instance's outcomes) plus the outcomes observed here since the last
// TakePending, which the ledger does not have yet. Arms with negative or
// NaN counts are dropped.
func (b *Bandit) Restore(arms []Arm) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.arms = make(map[armKey]*Arm, len(arms))
	for _, a := range arms {
		if !(a.Alpha >= 0) || !(a.Beta >= 0) {
			continue
		}
		cp := a
		b.arms[armKey{a.Domain, a.Model}] = &cp
	}
	for _, p := range b.pending {
		addTo(b.arms, *p, b.MaxCount)
	}
}

// betaSample draws from Beta(a, b) as X/(X+Y) with X~Gamma(a), Y~Gamma(b).
func betaSample(r *rand.Rand, a, b float64) float64 {
	x := gammaSample(r, a)
	y := gammaSample(r, b)
	if x+y == 0 {
		return a / (a + b)
	}
	return x / (x + y)
}

// gammaSample is Marsaglia and Tsang's method (shape k, scale 1); shapes
// below 1 use the boost Gamma(k) = Gamma(k+1)·U^(1/k).
func gammaSample(r *rand.Rand, k float64) float64 {
	if k < 1 {
		return gammaSample(r, k+1) * math.Pow(r.Float64(), 1/k)
	}
	d := k - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
