package auto

import (
	"fmt"
	"math"
)

// TaskTable is the scorer's task-identity component: a centroid per
// training task of the prompts' task sketches (TaskSketch), and per task and
// learned model the model's success rate on the task's training prompts,
// shrunk towards its rate on the task's domain (the per-task prior).
//
// At scoring time the prompt's sketch is standardised (Mean, InvStd) and
// compared (cosine) with every centroid; with s the best similarity, each
// learned model's logit l(x) is blended with the prior's logit:
//
//	l'(x) = l(x) + w(s)·Σ_t π_t·h_tm·(logit Priors[t][m] − l(x))
//	w(s)  = WMax·σ(Slope·(s − S0)),   π = softmax(similarities / Temp)
//
// (Temp 0: π is the nearest task only; h_tm is 1 where model m was measured
// on task t, else 0), so a prompt unlike every training task (small s)
// keeps the scorer's own prediction, and one that clearly belongs to a
// known task moves towards that task's per-model level. The shape of w
// (S0, Slope, WMax) is per group of tasks — the source, the part of the
// nearest task's name before "/" — because how reliably a prompt's task is
// recognised differs between them (one MMLU question among 45 subjects
// versus a benchmark's template). Temp and the shapes are fitted on an
// inner split of the training rows (router/auto/training).
type TaskTable struct {
	// Dims is the sketch width E (a power of two).
	Dims int `json:"dims"`
	// Names are the tasks, "<source>/<task>".
	Names []string `json:"names"`
	// Priors[t][m] is the shrunk success rate of Weights.Models[m] on task
	// t, in (0, 1); 0 for a model never measured on it.
	Priors [][]float32 `json:"priors"`
	// Shapes are w(s) per group; a task whose group has none gets w = 0.
	Shapes []TaskShape `json:"shapes"`
	Temp   float32     `json:"temp"`
	// Margin makes s the best similarity minus the second best, instead of
	// the best: how clearly one task wins rather than how close it is.
	Margin bool `json:"margin,omitempty"`
	// Bias, when set (one per task), makes the table a classifier: the
	// rows of Centroids are the weights of a softmax regression over the
	// standardised sketch, π = softmax(Centroids·x + Bias), and the gate
	// input s is the largest π (how sure the classifier is) rather than a
	// similarity. Temp and Margin are then unused.
	Bias []float32 `json:"bias,omitempty"`

	// Mean is the mean unit sketch over the training prompts and InvStd
	// the inverse of each dimension's standard deviation (E floats each);
	// Centroids the T×E unit centroids of the standardised sketches. All
	// are stored as float16 after the dense table.
	Mean      []float32 `json:"-"`
	InvStd    []float32 `json:"-"`
	Centroids []float32 `json:"-"`
}

// TaskShape is w(s) = WMax·σ(Slope·(s − S0)) for the tasks of one group.
type TaskShape struct {
	Group string  `json:"group"`
	S0    float32 `json:"s0"`
	Slope float32 `json:"slope"`
	WMax  float32 `json:"wmax"`
}

// Weight is w(s).
func (sh *TaskShape) Weight(s float32) float32 {
	return sh.WMax / (1 + float32(math.Exp(float64(-sh.Slope*(s-sh.S0)))))
}

// TaskGroup is the group of a task name: the part before the first "/".
func TaskGroup(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			return name[:i]
		}
	}
	return name
}

// Shape returns the shape of task k's group, or nil.
func (t *TaskTable) Shape(k int) *TaskShape {
	g := TaskGroup(t.Names[k])
	for i := range t.Shapes {
		if t.Shapes[i].Group == g {
			return &t.Shapes[i]
		}
	}
	return nil
}

func (t *TaskTable) check(models int) error {
	if t.Dims < 8 || t.Dims > 4096 || t.Dims&(t.Dims-1) != 0 {
		return fmt.Errorf("task table: dims %d is not a power of two in 8..4096", t.Dims)
	}
	if len(t.Bias) != 0 && len(t.Bias) != len(t.Names) {
		return fmt.Errorf("task table: %d biases for %d tasks", len(t.Bias), len(t.Names))
	}
	if len(t.Priors) != len(t.Names) {
		return fmt.Errorf("task table: %d prior rows for %d tasks", len(t.Priors), len(t.Names))
	}
	for i, o := range t.Priors {
		if len(o) != models {
			return fmt.Errorf("task table: task %q has %d priors for %d models", t.Names[i], len(o), models)
		}
		for _, p := range o {
			if !(p >= 0 && p < 1) {
				return fmt.Errorf("task table: task %q has prior %v outside [0, 1)", t.Names[i], p)
			}
		}
	}
	return nil
}

// sketchNS weighs each namespace in the task sketch: the words and bigrams
// of the read window, the question's words and the system prompt. Character
// 4-grams are left out: they spread a prompt over many buckets and mostly
// carry morphology, not topic.
var sketchNS = [numNS]bool{nsWord: true, nsBigram: true, nsTail: true, nsSystem: true, nsChar: true}

// TaskSketch writes the unit-norm count sketch of f's hashed features
// (bucket e mod E, sign from a higher hash bit, each entry weighted like
// the scorer weighs its namespace) into out, whose length E must be a power
// of two. It reads only what Extract computed and does not allocate.
func TaskSketch(f *Features, out []float32) {
	sketch(f, out, nil, nil)
}

// sketch is TaskSketch that also appends the buckets it touched, each
// once, to touched and returns it, when seen (a bitmap of E bits, scratch)
// is not nil: the sketch's non-zero entries are among them, so the norm
// and the task scores need not read all E buckets.
func sketch(f *Features, out []float32, touched []uint32, seen []uint64) []uint32 {
	clear(out)
	clear(seen)
	mask := uint32(len(out) - 1)
	var scale [16]float32
	for ns := 1; ns < numNS; ns++ {
		if sketchNS[ns] {
			scale[ns] = f.Scale(ns)
		}
	}
	track := seen != nil
	for _, e := range f.Hashed {
		v := scale[e>>28]
		if v == 0 {
			continue
		}
		if e&(1<<20) != 0 {
			v = -v
		}
		j := e & mask
		if track && seen[j>>6]&(1<<(j&63)) == 0 {
			seen[j>>6] |= 1 << (j & 63)
			touched = append(touched, j)
		}
		out[j] += v
	}
	if !track {
		normalise(out)
		return touched
	}
	var n float32
	for _, j := range touched {
		n += out[j] * out[j]
	}
	if n == 0 {
		return touched
	}
	inv := 1 / float32(math.Sqrt(float64(n)))
	for _, j := range touched {
		out[j] *= inv
	}
	return touched
}

func normalise(v []float32) {
	var n float32
	for _, x := range v {
		n += x * x
	}
	if n == 0 {
		return
	}
	inv := 1 / float32(math.Sqrt(float64(n)))
	for i := range v {
		v[i] *= inv
	}
}

// Standardise centres and scales the unit sketch x like the centroids
// were, then re-normalises it, in place.
func (t *TaskTable) Standardise(x []float32) {
	for i, m := range t.Mean {
		x[i] = (x[i] - m) * t.InvStd[i]
	}
	normalise(x)
}

// taskIndex is a TaskTable laid out for scoring: the similarity of a
// sparse sketch to every centroid is computed from the sketch's non-zero
// buckets only, with the centring folded into per-task constants:
//
//	(x − μ)⊙σ⁻¹ · c_t = Σ_j x_j·σ⁻¹_j·c_tj − Σ_j μ_j·σ⁻¹_j·c_tj
//	‖(x − μ)⊙σ⁻¹‖²   = Σ_j (x_j·σ⁻¹_j)² − 2·Σ_j x_j·μ_j·σ⁻²_j + Σ_j (μ_j·σ⁻¹_j)²
type taskIndex struct {
	t     *TaskTable
	shape []*TaskShape // per task (nil: w = 0)
	n     int          // tasks
	np    int          // n rounded up to a multiple of 64: ct's row stride
	ct    []float32    // E×np: σ⁻¹_j·c_tj, bucket-major
	k     []float32    // n: Σ_j μ_j·σ⁻¹_j·c_tj
	ms2   []float32    // E: μ_j·σ⁻²_j
	s     []float32    // E: σ⁻¹_j
	q     float32      // Σ_j (μ_j·σ⁻¹_j)²
	temp  float32
}

func newTaskIndex(t *TaskTable) *taskIndex {
	E, n := t.Dims, len(t.Names)
	np := (n + 63) &^ 63
	ix := &taskIndex{t: t, n: n, np: np, ct: make([]float32, E*np), k: make([]float32, n), ms2: make([]float32, E), s: t.InvStd, temp: t.Temp}
	ix.shape = make([]*TaskShape, n)
	for k := range ix.shape {
		ix.shape[k] = t.Shape(k)
	}
	for j := 0; j < E; j++ {
		s := t.InvStd[j]
		ix.ms2[j] = t.Mean[j] * s * s
		ix.q += t.Mean[j] * s * t.Mean[j] * s
		for k := 0; k < n; k++ {
			c := t.Centroids[k*E+j]
			ix.ct[j*np+k] = s * c
			ix.k[k] += t.Mean[j] * s * c
		}
	}
	return ix
}

// weight is w(s) of task k's group.
func (ix *taskIndex) weight(k int, s float32) float32 {
	if k < 0 || ix.shape[k] == nil {
		return 0
	}
	return ix.shape[k].Weight(s)
}

// assign writes the task weights π of the unit sketch x (len E) into pi
// (len n) and returns the nearest task and the gate input s: its
// similarity, or with Margin its lead over the second nearest (with a
// classifier table, its confidence). idx lists the buckets where x may be
// non-zero (each once); acc (len np) and val (cap E) are scratch.
func (ix *taskIndex) assign(x, pi, acc []float32, idx []uint32, val []float32) (int, float32) {
	norm := ix.q
	val = val[:0]
	for _, j := range idx {
		v := x[j]
		xs := v * ix.s[j]
		norm += xs*xs - 2*v*ix.ms2[j]
		val = append(val, v)
	}
	axpyRows(acc, ix.ct, idx, val, ix.np)
	for k := range pi {
		pi[k] = acc[k] - ix.k[k]
	}
	inv := float32(0)
	if norm > 1e-12 {
		inv = 1 / float32(math.Sqrt(float64(norm)))
	}
	best, bs, second := -1, float32(-2), float32(-2)
	for k := range pi {
		pi[k] *= inv
		if pi[k] > bs {
			best, bs, second = k, pi[k], bs
		} else if pi[k] > second {
			second = pi[k]
		}
	}
	if b := ix.t.Bias; len(b) == len(pi) {
		return classify(pi, b)
	}
	gate := bs
	if ix.t.Margin {
		gate = bs - max(second, -1)
	}
	if ix.temp <= 0 {
		clear(pi)
		if best >= 0 {
			pi[best] = 1
		}
		return best, gate
	}
	var sum float32
	it := 1 / ix.temp
	for k, d := range pi {
		e := float32(math.Exp(float64((d - bs) * it)))
		pi[k] = e
		sum += e
	}
	for k := range pi {
		pi[k] /= sum
	}
	return best, gate
}

// classify turns the products of a classifier table's weights with the
// standardised sketch (in pi) into π = softmax(pi + bias) and returns the
// most likely task and its π, the classifier's confidence.
func classify(pi, bias []float32) (int, float32) {
	bias = bias[:len(pi)]
	best, top := -1, float32(math.Inf(-1))
	for k := range pi {
		pi[k] += bias[k]
		if pi[k] > top {
			best, top = k, pi[k]
		}
	}
	var sum float32
	for k, d := range pi {
		e := float32(math.Exp(float64(d - top)))
		pi[k] = e
		sum += e
	}
	inv := 1 / sum
	for k := range pi {
		pi[k] *= inv
	}
	return best, inv // the largest π is exp(0)/sum
}
