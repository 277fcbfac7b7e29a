package auto

import (
	_ "embed"
	"fmt"
	"math"
	"sync"
)

// Ability is one model's place on the scorer's scale: per domain, the
// ability θ and discrimination a of P(success) = σ(a·(θ − b(x)) + u·z(x)).
type Ability struct {
	Model string
	// Theta and Disc are indexed like Scorer.Domains.
	Theta []float64
	Disc  []float64
	// U is the model's weight on the prompt embedding z(x) (may be nil).
	U []float64
	// Learned is true when the model was fit on training outcomes.
	Learned bool
	// Source says where the figure comes from: the training source, the
	// public benchmark figure it is anchored on, or a config override.
	Source string
}

// Override sets a model's ability from config. Quality is on the scale of
// MMLU accuracy (0..1), which is how public figures are mapped too: 0.86
// places a model at GPT-4 (1106) level, 0.71 at Mixtral-8x7B level.
// Abilities do the same per domain and win over Quality for their domains.
type Override struct {
	Quality   *float64
	Abilities map[string]float64
}

// Scorer predicts per-prompt difficulty, domain and each model's success
// probability. It is immutable after construction and safe for concurrent
// use; scoring with a caller-provided out slice does not allocate.
type Scorer struct {
	w       *Weights
	r       int
	models  []ability
	index   map[string]int
	unknown ability
	pool    sync.Pool

	// aliasMu guards alias: names resolved through canonical(), cached so
	// that the hot path does not normalise (and allocate) twice.
	aliasMu sync.RWMutex
	alias   map[string]int
}

// ability is Ability in the float32 layout the hot path reads.
type ability struct {
	name    string
	theta   []float32
	disc    []float32
	u       []float32
	learned bool
	source  string
}

//go:embed weights.bin
var embedded []byte

var (
	defaultOnce   sync.Once
	defaultScorer *Scorer
	defaultErr    error
)

// Default returns the scorer built from the embedded weights and the public
// ability table. It panics if the embedded weights do not decode, which a
// test guards.
func Default() *Scorer {
	s, err := Embedded()
	if err != nil {
		panic(err)
	}
	return s
}

// Embedded is Default that returns the decoding error instead of panicking.
func Embedded() (*Scorer, error) {
	defaultOnce.Do(func() {
		var w Weights
		if err := w.UnmarshalBinary(embedded); err != nil {
			defaultErr = fmt.Errorf("loading embedded auto-router weights: %w", err)
			return
		}
		defaultScorer, defaultErr = NewScorer(&w)
	})
	return defaultScorer, defaultErr
}

// NewScorer builds a scorer from weights: every learned model under its
// exact training name, plus the public table (PublicModels) mapped onto the
// learned scale through the weights' anchors.
func NewScorer(w *Weights) (*Scorer, error) {
	s := &Scorer{w: w, r: w.R(), index: map[string]int{}}
	for _, m := range w.Models {
		a := ability{name: m.Name, theta: m.Theta, disc: m.Disc, u: m.U, learned: true, source: "learned: " + m.Source}
		s.index[m.Name] = len(s.models)
		s.models = append(s.models, a)
	}
	if len(w.Anchors) == 2 {
		for _, p := range PublicModels {
			if _, ok := s.index[p.Model]; ok {
				continue
			}
			a, err := s.fromQuality(p.Model, func(string) float64 { return p.Score }, p.Source)
			if err != nil {
				return nil, err
			}
			s.index[p.Model] = len(s.models)
			s.models = append(s.models, a)
		}
		s.unknown, _ = s.fromQuality("", func(string) float64 { return DefaultQuality }, "unknown model: default quality")
	} else if len(s.models) > 0 {
		s.unknown = s.models[0]
	}
	s.pool.New = func() any { return new(scratch) }
	return s, nil
}

// DefaultQuality is the quality (MMLU-scale) assumed for a model that is
// neither learned, nor in the public table, nor overridden by config.
const DefaultQuality = 0.70

// With returns a scorer whose abilities include the config overrides. The
// receiver is not changed; the weights are shared.
func (s *Scorer) With(overrides map[string]Override) (*Scorer, error) {
	n := &Scorer{w: s.w, r: s.r, index: map[string]int{}, unknown: s.unknown}
	n.models = append([]ability(nil), s.models...)
	for k, v := range s.index {
		n.index[k] = v
	}
	for name, o := range overrides {
		if o.Quality == nil && len(o.Abilities) == 0 {
			continue
		}
		for d := range o.Abilities {
			if s.domainIndex(d) < 0 {
				return nil, fmt.Errorf("overriding ability of %q: unknown domain %q (known: %v)", name, d, s.w.Domains)
			}
		}
		base, had := n.index[name]
		q := func(domain string) float64 {
			if v, ok := o.Abilities[domain]; ok {
				return v
			}
			if o.Quality != nil {
				return *o.Quality
			}
			return math.NaN() // keep the table's figure for this domain
		}
		a, err := n.fromQuality(name, q, "config override")
		if err != nil {
			return nil, err
		}
		if had {
			old := n.models[base]
			for d := range a.theta {
				if math.IsNaN(float64(a.theta[d])) {
					a.theta[d], a.disc[d] = old.theta[d], old.disc[d]
				}
			}
			if o.Quality == nil {
				a.u = old.u
			}
			n.models[base] = a
		} else {
			for d := range a.theta {
				if math.IsNaN(float64(a.theta[d])) {
					a.theta[d], a.disc[d] = s.unknown.theta[d], s.unknown.disc[d]
				}
			}
			n.index[name] = len(n.models)
			n.models = append(n.models, a)
		}
	}
	n.pool.New = func() any { return new(scratch) }
	return n, nil
}

// fromQuality places a model with MMLU-scale quality q(domain) between the
// two anchors: t = (logit q − logit q_weak)/(logit q_strong − logit q_weak),
// then θ, a and u are interpolated (extrapolated, for t outside 0..1) between
// the anchors' learned values (see the comment on the profile below). A NaN
// quality leaves NaN in that domain.
func (s *Scorer) fromQuality(name string, q func(domain string) float64, source string) (ability, error) {
	w := s.w
	weak, strong := s.lookup(w.Anchors[0].Model), s.lookup(w.Anchors[1].Model)
	if weak == nil || strong == nil {
		return ability{}, fmt.Errorf("placing %q: anchor models %q/%q are not in the weights", name, w.Anchors[0].Model, w.Anchors[1].Model)
	}
	lw, ls := logit(w.Anchors[0].Score), logit(w.Anchors[1].Score)
	D := len(w.Domains)
	// The strong anchor's per-domain profile carries its source's grading
	// artefacts (routellm's GPT-4 scores 3% on high-school mathematics
	// because its answers were not parsed), so a placed model takes the weak
	// anchor's profile shifted by the anchors' mean gap, not the strong
	// anchor's profile.
	var gapTheta, gapDisc float64
	for d := 0; d < D; d++ {
		gapTheta += float64(strong.theta[d]-weak.theta[d]) / float64(D)
		gapDisc += float64(strong.disc[d]-weak.disc[d]) / float64(D)
	}
	a := ability{name: name, theta: make([]float32, D), disc: make([]float32, D), u: make([]float32, w.K), source: source}
	var tSum float64
	var tN int
	for d, dn := range w.Domains {
		qd := q(dn)
		if math.IsNaN(qd) {
			a.theta[d], a.disc[d] = float32(math.NaN()), float32(math.NaN())
			continue
		}
		if qd <= 0 || qd >= 1 {
			return ability{}, fmt.Errorf("placing %q: quality %v for domain %s is not strictly between 0 and 1", name, qd, dn)
		}
		t := (logit(qd) - lw) / (ls - lw)
		t = max(-1.5, min(2.5, t))
		a.theta[d] = float32(float64(weak.theta[d]) + t*gapTheta)
		a.disc[d] = float32(max(0.2, float64(weak.disc[d])+t*gapDisc))
		tSum += t
		tN++
	}
	if tN > 0 {
		t := tSum / float64(tN)
		for k := range a.u {
			a.u[k] = float32(lerp(float64(weak.u[k]), float64(strong.u[k]), t))
		}
	}
	return a, nil
}

func (s *Scorer) lookup(name string) *ability {
	if i, ok := s.index[name]; ok {
		return &s.models[i]
	}
	return nil
}

// find resolves a model name: exactly, then through canonical() (cached).
// It returns nil for a model the table does not know.
func (s *Scorer) find(name string) *ability {
	if i, ok := s.index[name]; ok {
		return &s.models[i]
	}
	s.aliasMu.RLock()
	i, ok := s.alias[name]
	s.aliasMu.RUnlock()
	if !ok {
		i = -1
		if j, found := s.index[canonical(name)]; found {
			i = j
		}
		s.aliasMu.Lock()
		if s.alias == nil {
			s.alias = map[string]int{}
		}
		if len(s.alias) < 4096 {
			s.alias[name] = i
		}
		s.aliasMu.Unlock()
	}
	if i < 0 {
		return nil
	}
	return &s.models[i]
}

func lerp(a, b, t float64) float64 { return a + t*(b-a) }

func logit(p float64) float64 { return math.Log(p / (1 - p)) }

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// Domains returns the domain names, in the order Ability.Theta uses.
func (s *Scorer) Domains() []string { return s.w.Domains }

func (s *Scorer) domainIndex(name string) int {
	for i, d := range s.w.Domains {
		if d == name {
			return i
		}
	}
	return -1
}

// Models returns the names of every model in the ability table, learned
// ones first (in training order), then the public table.
func (s *Scorer) Models() []string {
	out := make([]string, len(s.models))
	for i, m := range s.models {
		out[i] = m.name
	}
	return out
}

// Ability returns a model's ability; ok is false for a model the table does
// not know (Score then uses DefaultQuality for it).
func (s *Scorer) Ability(model string) (Ability, bool) {
	a := s.find(model)
	if a == nil {
		return Ability{}, false
	}
	return Ability{Model: a.name, Theta: f64s(a.theta), Disc: f64s(a.disc), U: f64s(a.u), Learned: a.learned, Source: a.source}, true
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// Score is the scorer's reading of one prompt.
type Score struct {
	// Difficulty is 0..1: σ(b(x) − median b over the training prompts), so
	// 0.5 is a prompt of median difficulty.
	Difficulty float64
	// B is the raw difficulty b(x) on the ability scale.
	B float64
	// Domain is the most likely domain and DomainProb its probability.
	Domain     string
	DomainProb float64
}

// scratch is the per-call working memory, pooled.
type scratch struct {
	f     Features
	acc   [numNS][]float32
	row   []float32
	probs []float32
}

// Score reads p and writes each model's predicted success probability into
// out (len(out) must be at least len(models)). A model the table does not
// know is scored with DefaultQuality. It does not allocate once the pool is
// warm.
func (s *Scorer) Score(p Prompt, models []string, out []float64) Score {
	sc := s.pool.Get().(*scratch)
	defer s.pool.Put(sc)
	sc.forward(s.w, p)
	D := len(s.w.Domains)
	K := s.w.K
	h := sc.row
	for i, name := range models {
		a := s.find(name)
		if a == nil {
			a = &s.unknown
		}
		out[i] = a.prob(h, sc.probs, K, D)
	}
	return s.summary(sc)
}

func (s *Scorer) summary(sc *scratch) Score {
	best := 0
	for d := range sc.probs {
		if sc.probs[d] > sc.probs[best] {
			best = d
		}
	}
	b := float64(sc.row[0])
	return Score{
		Difficulty: sigmoid(b - float64(s.w.DiffMedian)),
		B:          b,
		Domain:     s.w.Domains[best],
		DomainProb: float64(sc.probs[best]),
	}
}

// prob is σ(Σ_d p_d·a_d·(θ_d − b) + u·z).
func (a *ability) prob(h, probs []float32, K, D int) float64 {
	b := h[0]
	var lg float32
	for d := 0; d < D; d++ {
		lg += probs[d] * a.disc[d] * (a.theta[d] - b)
	}
	for k := 0; k < K && k < len(a.u); k++ {
		lg += a.u[k] * h[1+k]
	}
	return sigmoid(float64(lg))
}

// forward computes the row h = W·φ(x) and the domain softmax.
func (sc *scratch) forward(w *Weights, p Prompt) {
	r := w.R()
	if len(sc.row) != r {
		sc.row = make([]float32, r)
		sc.probs = make([]float32, len(w.Domains))
		for ns := range sc.acc {
			sc.acc[ns] = make([]float32, r)
		}
	}
	Extract(p, &sc.f)
	for ns := range sc.acc {
		clear(sc.acc[ns])
	}
	mask := uint32(1)<<w.BucketBits - 1
	for _, e := range sc.f.Hashed {
		acc := sc.acc[e>>28]
		row := w.Hashed[int(e&mask)*r : int(e&mask)*r+r]
		for j, v := range row {
			acc[j] += v
		}
	}
	h := sc.row
	clear(h)
	for ns := 1; ns < numNS; ns++ {
		scale := sc.f.Scale(ns)
		if scale == 0 {
			continue
		}
		for j, v := range sc.acc[ns] {
			h[j] += scale * v
		}
	}
	for i, x := range sc.f.Dense {
		if x == 0 {
			continue
		}
		row := w.Dense[i*r : i*r+r]
		for j, v := range row {
			h[j] += x * v
		}
	}
	softmax(h[1+w.K:], sc.probs)
}

func softmax(logits, out []float32) {
	m := logits[0]
	for _, v := range logits {
		m = max(m, v)
	}
	var sum float32
	for i, v := range logits {
		e := float32(math.Exp(float64(v - m)))
		out[i] = e
		sum += e
	}
	for i := range out {
		out[i] /= sum
	}
}
