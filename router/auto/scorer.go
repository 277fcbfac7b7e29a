package auto

import (
	_ "embed"
	"fmt"
	"math"
	"sort"
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
	stride  int       // r rounded up to a multiple of 8
	hashed  []float32 // w.Hashed with rows padded to stride
	models  []ability
	index   map[string]int
	unknown ability
	anch    *anchors
	tasks   *taskIndex // nil without a task table
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
	// placed models have no parameters of their own: t (per domain) says
	// where they sit between the anchors (see place).
	placed bool
	t      []float32
	// tlog and thas are a learned model's prior logit per task of the
	// task table and whether it has one (1 or 0); nil without a table.
	tlog, thas []float32
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
	s.stride = (s.r + 7) &^ 7
	s.hashed = padRows(w.Hashed, s.r, s.stride)
	for _, m := range w.Models {
		a := ability{name: m.Name, theta: m.Theta, disc: m.Disc, u: m.U, learned: true, source: "learned: " + m.Source}
		if t := w.Tasks; t != nil {
			if err := t.check(len(w.Models)); err != nil {
				return nil, err
			}
			a.tlog, a.thas = make([]float32, len(t.Names)), make([]float32, len(t.Names))
			for k := range t.Priors {
				if p := float64(t.Priors[k][len(s.models)]); p > 0 {
					a.tlog[k], a.thas[k] = float32(logit(p)), 1
				}
			}
		}
		s.index[m.Name] = len(s.models)
		s.models = append(s.models, a)
	}
	if t := w.Tasks; t != nil {
		if err := t.check(len(w.Models)); err != nil {
			return nil, err
		}
		if len(t.Mean) != t.Dims || len(t.InvStd) != t.Dims || len(t.Centroids) != t.Dims*len(t.Names) {
			return nil, fmt.Errorf("task table: tables do not match dims %d and %d tasks", t.Dims, len(t.Names))
		}
		s.tasks = newTaskIndex(t)
	}
	s.anch = newAnchors(s)
	if s.anch != nil {
		for _, p := range PublicModels {
			if _, ok := s.index[p.Model]; ok {
				continue
			}
			a, err := s.place(p.Model, func(string) float64 { return p.Score }, p.Source)
			if err != nil {
				return nil, err
			}
			s.index[p.Model] = len(s.models)
			s.models = append(s.models, a)
		}
		s.unknown, _ = s.place("", func(string) float64 { return DefaultQuality }, "unknown model: default quality")
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
	n := &Scorer{w: s.w, r: s.r, stride: s.stride, hashed: s.hashed, index: map[string]int{}, unknown: s.unknown, anch: s.anch, tasks: s.tasks}
	n.models = append([]ability(nil), s.models...)
	for k, v := range s.index {
		n.index[k] = v
	}
	names := make([]string, 0, len(overrides))
	for name := range overrides {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		o := overrides[name]
		if o.Quality == nil && len(o.Abilities) == 0 {
			continue
		}
		for d := range o.Abilities {
			if s.domainIndex(d) < 0 {
				return nil, fmt.Errorf("overriding ability of %q: unknown domain %q (known: %v)", name, d, s.w.Domains)
			}
		}
		if n.anch == nil {
			return nil, fmt.Errorf("overriding ability of %q: the weights have no anchor models to place it with", name)
		}
		// Domains the override does not set keep the model's current
		// place (or the unknown model's).
		cur := s.find(name)
		if cur == nil {
			cur = &s.unknown
		}
		keep := s.placeOf(cur)
		q := func(domain string) float64 {
			if v, ok := o.Abilities[domain]; ok {
				return v
			}
			if o.Quality != nil {
				return *o.Quality
			}
			return math.NaN()
		}
		a, err := n.place(name, q, "config override")
		if err != nil {
			return nil, err
		}
		for d := range a.t {
			if math.IsNaN(float64(a.t[d])) {
				a.t[d] = keep[d]
			}
		}
		n.fillPlaced(&a)
		if i, had := n.index[name]; had {
			n.models[i] = a
		} else {
			n.index[name] = len(n.models)
			n.models = append(n.models, a)
		}
	}
	n.pool.New = func() any { return new(scratch) }
	return n, nil
}

// anchors are the two learned models that placed models are positioned
// between, and what placement reads of them.
type anchors struct {
	weak, strong *ability
	lw, ls       float64 // logit of their public scores
	// dTheta is the strong anchor's mean ability lead over the weak one
	// (averaged over domains), du the difference of their residual weights.
	dTheta float32
	du     []float32
}

func newAnchors(s *Scorer) *anchors {
	w := s.w
	if len(w.Anchors) != 2 {
		return nil
	}
	weak, strong := s.lookup(w.Anchors[0].Model), s.lookup(w.Anchors[1].Model)
	if weak == nil || strong == nil {
		return nil
	}
	a := &anchors{weak: weak, strong: strong, lw: logit(w.Anchors[0].Score), ls: logit(w.Anchors[1].Score)}
	D := len(w.Domains)
	for d := 0; d < D; d++ {
		a.dTheta += (strong.theta[d] - weak.theta[d]) / float32(D)
	}
	a.du = make([]float32, w.K)
	for k := range a.du {
		a.du[k] = strong.u[k] - weak.u[k]
	}
	return a
}

// place positions a model of MMLU-scale quality q(domain) on the learned
// scale: t = (logit q − logit q_weak)/(logit q_strong − logit q_weak) per
// domain, 0 at the weak anchor, 1 at the strong one (clamped to −1.5..2.5).
// A NaN quality leaves NaN in that domain for the caller to fill.
//
// A placed model's success logit is the weak anchor's plus t times the
// anchors' gain on this prompt, G(x) = a(x)·Δθ + Δu·z(x), floored at a
// quarter of a(x)·Δθ. Using the weak anchor's per-domain profile and the
// mean gap Δθ (not the strong anchor's own profile) keeps the strong
// anchor's grading artefacts out — routellm's GPT-4 scores 3% on
// high-school mathematics because its answers were not parsed — and the
// floor keeps P(success) increasing in quality on every prompt, while the
// prompt-specific part of the learned gain still moves the estimate.
func (s *Scorer) place(name string, q func(domain string) float64, source string) (ability, error) {
	a := ability{name: name, source: source, placed: true, t: make([]float32, len(s.w.Domains))}
	if s.anch == nil {
		return ability{}, fmt.Errorf("placing %q: the weights have no anchor models", name)
	}
	for d, dn := range s.w.Domains {
		qd := q(dn)
		if math.IsNaN(qd) {
			a.t[d] = float32(math.NaN())
			continue
		}
		if qd <= 0 || qd >= 1 {
			return ability{}, fmt.Errorf("placing %q: quality %v for domain %s is not strictly between 0 and 1", name, qd, dn)
		}
		t := (logit(qd) - s.anch.lw) / (s.anch.ls - s.anch.lw)
		a.t[d] = float32(max(-1.5, min(2.5, t)))
	}
	s.fillPlaced(&a)
	return a, nil
}

// fillPlaced sets the reported θ/disc/u of a placed model from its t.
func (s *Scorer) fillPlaced(a *ability) {
	an := s.anch
	D := len(s.w.Domains)
	a.theta, a.disc = make([]float32, D), make([]float32, D)
	var tm float32
	for d := 0; d < D; d++ {
		a.theta[d] = an.weak.theta[d] + a.t[d]*an.dTheta
		a.disc[d] = an.weak.disc[d]
		tm += a.t[d] / float32(D)
	}
	a.u = make([]float32, len(an.du))
	for k := range a.u {
		a.u[k] = an.weak.u[k] + tm*an.du[k]
	}
}

// placeOf returns the per-domain t of any model: a placed model's own, or
// for a learned one its ability lead over the weak anchor in units of Δθ.
func (s *Scorer) placeOf(a *ability) []float32 {
	if a.placed {
		return append([]float32(nil), a.t...)
	}
	t := make([]float32, len(a.theta))
	for d := range t {
		t[d] = (a.theta[d] - s.anch.weak.theta[d]) / s.anch.dTheta
	}
	return t
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
	// Task is the nearest training task of the task table ("" without
	// one) and TaskWeight the weight w(s) its per-model offsets got.
	Task       string
	TaskWeight float64
}

// scratch is the per-call working memory, pooled.
type scratch struct {
	f     Features
	row   []float32
	probs []float32
	sk    []float32 // task sketch
	pi    []float32 // task weights
	acc   []float32 // task scores, padded (taskIndex.np)
	idx   []uint32  // the sketch's touched buckets
	val   []float32 // and their values
	seen  []uint64  // bitmap of touched buckets
}

// Score reads p and writes each model's predicted success probability into
// out (len(out) must be at least len(models)). A model the table does not
// know is scored with DefaultQuality. It does not allocate once the pool is
// warm.
func (s *Scorer) Score(p Prompt, models []string, out []float64) Score {
	sc := s.pool.Get().(*scratch)
	defer s.pool.Put(sc)
	sc.forward(s, p)
	D := len(s.w.Domains)
	K := s.w.K
	h := sc.row
	task, tw := -1, float32(0)
	var pi []float32
	if ix := s.tasks; ix != nil {
		if len(sc.sk) != ix.t.Dims || len(sc.pi) != ix.n || len(sc.acc) != ix.np {
			sc.sk = make([]float32, ix.t.Dims)
			sc.pi = make([]float32, ix.n)
			sc.acc = make([]float32, ix.np)
			sc.idx = make([]uint32, 0, ix.t.Dims)
			sc.val = make([]float32, 0, ix.t.Dims)
			sc.seen = make([]uint64, (ix.t.Dims+63)/64)
		}
		sc.idx = sketch(&sc.f, sc.sk, sc.idx[:0], sc.seen)
		var sim float32
		task, sim = ix.assign(sc.sk, sc.pi, sc.acc, sc.idx, sc.val)
		tw = ix.weight(task, sim)
		pi = sc.pi
	}
	// The anchors' task sums, shared by every placed model.
	var ta taskSums
	if pi != nil && s.anch != nil {
		ta.aw, ta.hw = s.anch.weak.taskSums(pi)
		ta.as, ta.hs = s.anch.strong.taskSums(pi)
	}
	for i, name := range models {
		a := s.find(name)
		if a == nil {
			a = &s.unknown
		}
		if a.placed {
			out[i] = s.placedProb(a, h, sc.probs, K, D, &ta, tw)
		} else {
			out[i] = a.prob(h, sc.probs, K, D, pi, tw)
		}
	}
	res := s.summary(sc)
	if task >= 0 {
		res.Task, res.TaskWeight = s.w.Tasks.Names[task], float64(tw)
	}
	return res
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

// prob is σ(l) with l = Σ_d p_d·a_d·(θ_d − b) + u·z, blended with the task
// prior when there is a task table (pi non-nil; see TaskTable).
func (a *ability) prob(h, probs []float32, K, D int, pi []float32, tw float32) float64 {
	return sigmoid(float64(a.blend(a.logit(h, probs, K, D), pi, tw)))
}

// blend is l + w·Σ_t π_t·h_t·(prior logit_t − l).
func (a *ability) blend(l float32, pi []float32, tw float32) float32 {
	A, H := a.taskSums(pi)
	return l + tw*(A-H*l)
}

// taskSums are Σ_t π_t·h_t·prior logit_t and Σ_t π_t·h_t (0 without a
// task table).
func (a *ability) taskSums(pi []float32) (A, H float32) {
	if len(pi) == 0 || len(a.tlog) != len(pi) {
		return 0, 0
	}
	tl, th := a.tlog[:len(pi)], a.thas[:len(pi)]
	for t, p := range pi {
		A += p * tl[t]
		H += p * th[t]
	}
	return A, H
}

// taskSums of the two anchors for one prompt.
type taskSums struct{ aw, hw, as, hs float32 }

func (a *ability) logit(h, probs []float32, K, D int) float32 {
	b := h[0]
	var lg float32
	for d := 0; d < D; d++ {
		lg += probs[d] * a.disc[d] * (a.theta[d] - b)
	}
	for k := 0; k < K && k < len(a.u); k++ {
		lg += a.u[k] * h[1+k]
	}
	return lg
}

// placedProb is σ(L_weak(x) + t(x)·max(¼·A(x), A(x) + Δu·z(x))) with
// A(x) = a_weak(x)·Δθ and t(x) the domain-weighted place (see place). With
// a task table the anchors' task offsets move L_weak and the gain the same
// way they move the anchors' own predictions.
func (s *Scorer) placedProb(a *ability, h, probs []float32, K, D int, ta *taskSums, tw float32) float64 {
	an := s.anch
	w := an.weak
	b := h[0]
	var lw, aw, t float32
	for d := 0; d < D; d++ {
		lw += probs[d] * w.disc[d] * (w.theta[d] - b)
		aw += probs[d] * w.disc[d]
		t += probs[d] * a.t[d]
	}
	var du float32
	for k := 0; k < K; k++ {
		lw += w.u[k] * h[1+k]
		du += an.du[k] * h[1+k]
	}
	A := aw * an.dTheta
	if tw != 0 {
		// Blend both anchors' logits with their task priors.
		ls := lw + A + du
		ls += tw * (ta.as - ta.hs*ls)
		lw += tw * (ta.aw - ta.hw*lw)
		du = ls - lw - A
	}
	g := max(A/4, A+du)
	return sigmoid(float64(lw + t*g))
}

// forward computes the row h = W·φ(x) and the domain softmax.
func (sc *scratch) forward(s *Scorer, p Prompt) {
	w := s.w
	r, stride := s.r, s.stride
	if len(sc.row) != stride {
		sc.row = make([]float32, stride)
		sc.probs = make([]float32, len(w.Domains))
	}
	Extract(p, &sc.f)
	// Entries carry their namespace in the top 4 bits, so a 16-entry
	// table is indexed without a bounds check; namespace 0 is unused.
	var scale [16]float32
	for ns := 1; ns < numNS; ns++ {
		scale[ns] = sc.f.Scale(ns)
	}
	h := sc.row
	mask := uint32(1)<<w.BucketBits - 1
	gather(h, s.hashed, sc.f.Hashed, &scale, mask, stride)
	for i, x := range sc.f.Dense {
		if x == 0 {
			continue
		}
		row := w.Dense[i*r : i*r+r]
		for j, v := range row {
			h[j] += x * v
		}
	}
	softmax(h[1+w.K:r], sc.probs)
}

// gather sets h (stride floats) to the sum over the entries e of feats of
// scale[e>>28] times row e&mask of table (rows of stride floats, a multiple
// of 8). It sums eight columns at a time in local variables: summing into
// memory makes every entry's adds wait for the previous entry's stores.
// gatherFast does the same with AVX2 where the CPU has it.
func gather(h, table []float32, feats []uint32, scale *[16]float32, mask uint32, stride int) {
	if !gatherFast(h, table, feats, scale, mask, stride) {
		gatherGo(h, table, feats, scale, mask, stride)
	}
}

func gatherGo(h, table []float32, feats []uint32, scale *[16]float32, mask uint32, stride int) {
	for c := 0; c+8 <= stride; c += 8 {
		var a0, a1, a2, a3, a4, a5, a6, a7 float32
		for _, e := range feats {
			x := scale[e>>28]
			off := int(e&mask)*stride + c
			v := table[off : off+8 : off+8]
			a0 += x * v[0]
			a1 += x * v[1]
			a2 += x * v[2]
			a3 += x * v[3]
			a4 += x * v[4]
			a5 += x * v[5]
			a6 += x * v[6]
			a7 += x * v[7]
		}
		o := h[c : c+8 : c+8]
		o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7] = a0, a1, a2, a3, a4, a5, a6, a7
	}
}

// axpyRows sets h (stride floats) to the sum over i of val[i] times row
// idx[i] of table (rows of stride floats). axpyRowsFast does the same with
// AVX2 where the CPU has it.
func axpyRows(h, table []float32, idx []uint32, val []float32, stride int) {
	if !axpyRowsFast(h, table, idx, val, stride) {
		axpyRowsGo(h, table, idx, val, stride)
	}
}

func axpyRowsGo(h, table []float32, idx []uint32, val []float32, stride int) {
	clear(h[:stride])
	for i, j := range idx {
		v := val[i]
		row := table[int(j)*stride : int(j)*stride+stride]
		o := h[:len(row)]
		for k, c := range row {
			o[k] += v * c
		}
	}
}

// padRows copies an n×r table into rows of stride floats.
func padRows(t []float32, r, stride int) []float32 {
	n := len(t) / r
	out := make([]float32, n*stride)
	for i := 0; i < n; i++ {
		copy(out[i*stride:], t[i*r:(i+1)*r])
	}
	return out
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
