package training

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/lumengw/lumen/router/auto"
)

// taskOutcomes is what the task table is built and tuned from: per row,
// its unit task sketch and the scorer's logit for each model of the row.
type taskOutcomes struct {
	sk     [][]bucket // row → the sketch's non-zero buckets, in bucket order
	task   []int      // row → task index (in names)
	names  []string
	domain []int       // row → domain index
	models [][]int32   // row → model indices (in Weights.Models)
	logits [][]float32 // row → scorer logit per model
	ys     [][]float32
}

func collectOutcomes(rows []Row, w *auto.Weights, E int) (*taskOutcomes, error) {
	s, err := auto.NewScorer(w)
	if err != nil {
		return nil, err
	}
	mi := map[string]int32{}
	for i, m := range w.Models {
		mi[m.Name] = int32(i)
	}
	o := &taskOutcomes{sk: make([][]bucket, len(rows)), task: make([]int, len(rows)),
		models: make([][]int32, len(rows)), logits: make([][]float32, len(rows)), ys: make([][]float32, len(rows))}
	ti := map[string]int{}
	var f auto.Features
	out := make([]float64, 16)
	x := make([]float32, E)
	for i, r := range rows {
		p := auto.Prompt{User: r.Prompt, Turns: 1}
		auto.Extract(p, &f)
		auto.TaskSketch(&f, x)
		for j, v := range x {
			if v != 0 {
				o.sk[i] = append(o.sk[i], bucket{int32(j), v})
			}
		}
		k := r.Source + "/" + r.Task
		t, ok := ti[k]
		if !ok {
			t = len(o.names)
			ti[k] = t
			o.names = append(o.names, k)
		}
		o.task[i] = t
		o.domain = append(o.domain, DomainOf(r.Task))
		names := sortedModels(r)
		if len(out) < len(names) {
			out = make([]float64, len(names))
		}
		s.Score(p, names, out)
		for j, m := range names {
			idx, ok := mi[m]
			if !ok {
				continue
			}
			pj := min(1-1e-6, max(1e-6, out[j]))
			o.models[i] = append(o.models[i], idx)
			o.logits[i] = append(o.logits[i], float32(math.Log(pj/(1-pj))))
			o.ys[i] = append(o.ys[i], float32(r.Scores[m]))
		}
	}
	return o, nil
}

// bucket is one non-zero bucket of a task sketch.
type bucket struct {
	j int32
	v float32
}

// sketch writes row i's sketch into x (E wide).
func (o *taskOutcomes) sketch(i int, x []float32) {
	clear(x)
	for _, b := range o.sk[i] {
		x[b.j] = b.v
	}
}

// newTaskTable builds the task table of o's tasks: the per-model priors
// (buildTaskTable) and, by cfg.TaskMatch, the centroids (fitCentroids) or
// the classifier (fitClassifier). The shape of w(s) is left to the caller.
func newTaskTable(o *taskOutcomes, models int, cfg Config) *auto.TaskTable {
	t := buildTaskTable(o, models, cfg.TaskDims, cfg.TaskShrink)
	if cfg.TaskMatch == "classifier" {
		fitClassifier(o, t, cfg)
	} else {
		fitCentroids(o, t)
	}
	return t
}

// fitCentroids sets t's standardisation (Mean, InvStd) and the unit
// centroid of each task's standardised sketches.
func fitCentroids(o *taskOutcomes, t *auto.TaskTable) {
	E, T, n := t.Dims, len(t.Names), len(o.task)
	t.Mean, t.InvStd, t.Centroids = make([]float32, E), make([]float32, E), make([]float32, T*E)
	x := make([]float32, E)
	for i := 0; i < n; i++ {
		o.sketch(i, x)
		for j, v := range x {
			t.Mean[j] += v / float32(n)
		}
	}
	// Standardise every dimension (a diagonal whitening), so buckets that
	// every prompt fills (template words) do not dominate the cosine.
	vr := make([]float64, E)
	var mv float64
	for i := 0; i < n; i++ {
		o.sketch(i, x)
		for j, v := range x {
			d := float64(v - t.Mean[j])
			vr[j] += d * d / float64(n)
		}
	}
	for _, v := range vr {
		mv += v / float64(E)
	}
	for j, v := range vr {
		t.InvStd[j] = float32(1 / math.Sqrt(v+0.05*mv))
	}
	for i := 0; i < n; i++ {
		o.sketch(i, x)
		t.Standardise(x)
		c := t.Centroids[o.task[i]*E : (o.task[i]+1)*E]
		for j, v := range x {
			c[j] += v
		}
	}
	for k := 0; k < T; k++ {
		unit(t.Centroids[k*E : (k+1)*E])
	}
}

// buildTaskTable computes the per-model priors of o's tasks. A task's
// prior for model m is its success rate on the task's rows, shrunk towards
// its rate on the task's domain by n/(n+shrink), n the task's rows: a
// small task says less.
func buildTaskTable(o *taskOutcomes, models, E int, shrink float64) *auto.TaskTable {
	T := len(o.names)
	n := len(o.task)
	t := &auto.TaskTable{Dims: E, Names: append([]string(nil), o.names...)}
	// Priors: each (task, model)'s and each (domain, model)'s outcomes.
	type acc struct{ y, n float64 }
	cells := make([]map[int32]*acc, T)
	for k := range cells {
		cells[k] = map[int32]*acc{}
	}
	dom := map[[2]int32]*acc{}
	taskDom := make([]int, T)
	for i := 0; i < n; i++ {
		taskDom[o.task[i]] = o.domain[i]
		for j, m := range o.models[i] {
			c := cells[o.task[i]][m]
			if c == nil {
				c = &acc{}
				cells[o.task[i]][m] = c
			}
			c.y += float64(o.ys[i][j])
			c.n++
			k := [2]int32{int32(o.domain[i]), m}
			d := dom[k]
			if d == nil {
				d = &acc{}
				dom[k] = d
			}
			d.y += float64(o.ys[i][j])
			d.n++
		}
	}
	t.Priors = make([][]float32, T)
	for k := 0; k < T; k++ {
		t.Priors[k] = make([]float32, models)
		for m, c := range cells[k] {
			d := dom[[2]int32{int32(taskDom[k]), m}]
			p := (c.y + shrink*d.y/d.n) / (c.n + shrink)
			t.Priors[k][m] = float32(min(0.99, max(0.01, p)))
		}
	}
	return t
}

// fitClassifier sets t's centroids to the weights of a softmax
// regression of o's task labels on the unit sketches and sets its biases
// (AdaGrad, cfg.TaskEpochs passes, weight decay cfg.TaskL2 on the weights
// an example touches). The sketches are used as they are, sparse: Mean is
// set to 0 and InvStd to 1, so that standardising leaves them unchanged.
func fitClassifier(o *taskOutcomes, t *auto.TaskTable, cfg Config) {
	E, T, n := t.Dims, len(t.Names), len(o.task)
	t.Mean, t.InvStd, t.Centroids = make([]float32, E), make([]float32, E), make([]float32, T*E)
	for j := range t.InvStd {
		t.InvStd[j] = 1
	}
	xs := o.sk
	// Weights are bucket-major (E×T) while fitting, like the scorer reads them.
	W, b := newAdagrad(E*T), newAdagrad(T)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7a5c))
	order := rng.Perm(n)
	logits := make([]float32, T)
	lr, l2 := float32(0.1), float32(cfg.TaskL2)
	for ep := 0; ep < cfg.TaskEpochs; ep++ {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		var loss float64
		for _, i := range order {
			copy(logits, b.w)
			for _, e := range xs[i] {
				row := W.w[int(e.j)*T : int(e.j)*T+T]
				for k, w := range row {
					logits[k] += w * e.v
				}
			}
			softmax32(logits, logits)
			loss -= math.Log(max(1e-9, float64(logits[o.task[i]])))
			logits[o.task[i]]--
			for k, g := range logits {
				b.step(k, g, lr)
			}
			for _, e := range xs[i] {
				off := int(e.j) * T
				for k, g := range logits {
					W.step(off+k, g*e.v+l2*W.w[off+k], lr)
				}
			}
		}
		fmt.Fprintf(cfg.Log, "task classifier: epoch %d loss %.4f\n", ep+1, loss/float64(n))
	}
	t.Bias = b.w
	for j := 0; j < E; j++ {
		for k := 0; k < T; k++ {
			t.Centroids[k*E+j] = W.w[j*T+k]
		}
	}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func unit(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

// Shape grid searched for w(s) = WMax·σ(Slope·(s − S0)).
var (
	gridS0    = []float32{0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9}
	gridSlope = []float32{5, 10, 20, 40, 80}
	gridWMax  = []float32{0.25, 0.5, 0.75, 1, 1.25}
	gridTemp  = []float32{0, 0.02, 0.05, 0.1}
	// S0 grid for the margin gate (TaskMargin).
	gridMargin = []float32{0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3}
)

// fitTaskTable builds the task table of the fitted weights w on rows and
// fits the shape of w(s) on inner splits of the same rows: one task in
// five (by name) and one row in five of the other tasks are held out, the
// scorer and a table are fit on the rest, and the shape that does best on
// the held-out rows (cfg.TaskObjective) is kept. With cfg.TaskFolds > 1
// there are that many inner splits, each task held out in one of them, and
// the shape is fit on all their held-out rows together. orig is the
// caller's (undefaulted) config, refit for the inner splits.
func fitTaskTable(rows []Row, w *auto.Weights, orig, cfg Config) (*auto.TaskTable, error) {
	E := cfg.TaskDims
	folds := max(1, cfg.TaskFolds)
	var pooled held
	for f := 0; f < folds; f++ {
		var in, out []Row
		var outUnseen []bool
		for _, r := range rows {
			switch {
			case folds == 1 && hash64("inner-task/"+r.Source+"/"+r.Task)%5 == 0,
				folds > 1 && int(hash64("inner-task/"+r.Source+"/"+r.Task)%uint64(folds)) == f:
				out, outUnseen = append(out, r), append(outUnseen, true)
			case hash64(fmt.Sprintf("inner-row/%d/%s", f, r.ID))%5 == 0:
				out, outUnseen = append(out, r), append(outUnseen, false)
			default:
				in = append(in, r)
			}
		}
		if len(in) == 0 || len(out) == 0 {
			continue
		}
		ic := orig
		ic.noTaskTable = true
		ic.Log = nil
		wi, err := Fit(in, ic)
		if err != nil {
			return nil, err
		}
		oi, err := collectOutcomes(in, wi, E)
		if err != nil {
			return nil, err
		}
		ti := newTaskTable(oi, len(wi.Models), cfg)
		oh, err := collectOutcomes(out, wi, E)
		if err != nil {
			return nil, err
		}
		pooled.append(prepareHeld(oh, outUnseen, ti, modelNames(wi), f, cfg))
	}
	var shape auto.TaskTable
	if pooled.n() > 0 {
		shape = fitShape(&pooled, cfg)
	}
	o, err := collectOutcomes(rows, w, E)
	if err != nil {
		return nil, err
	}
	t := newTaskTable(o, len(w.Models), cfg)
	t.Shapes, t.Temp, t.Margin = shape.Shapes, shape.Temp, shape.Margin
	return t, nil
}

// mix holds, per row and model of the row, Σ_t π_t·h_t·prior logit_t and
// Σ_t π_t·h_t.
type mix struct{ a, h [][]float32 }

func (m *mix) append(o mix) {
	m.a = append(m.a, o.a...)
	m.h = append(m.h, o.h...)
}

// held is what the shape of w(s) is fitted on: per held-out row of an
// inner split, its outcomes, the scorer's logits, the gate input s, the
// group of the nearest task, and the prior mixes the inner table gives it.
type held struct {
	task   []string // "<source>/<task>"
	unseen []bool
	models [][]string
	logits [][]float32
	ys     [][]float32
	gate   []float32
	group  []string
	hit    []bool           // the nearest task is the row's own
	fold   []int            // the inner split it was held out of
	mixes  map[float32]*mix // by temperature
	oracle mix              // the row's own task's prior (known tasks)
	temps  []float32
}

func (h *held) n() int { return len(h.task) }

func (h *held) append(o *held) {
	h.task = append(h.task, o.task...)
	h.unseen = append(h.unseen, o.unseen...)
	h.models = append(h.models, o.models...)
	h.logits = append(h.logits, o.logits...)
	h.ys = append(h.ys, o.ys...)
	h.gate = append(h.gate, o.gate...)
	h.group = append(h.group, o.group...)
	h.hit = append(h.hit, o.hit...)
	h.fold = append(h.fold, o.fold...)
	h.oracle.append(o.oracle)
	if h.mixes == nil {
		h.mixes, h.temps = map[float32]*mix{}, o.temps
	}
	for t, m := range o.mixes {
		if h.mixes[t] == nil {
			h.mixes[t] = &mix{}
		}
		h.mixes[t].append(*m)
	}
}

// prepareHeld computes the held rows of one inner split: oh's outcomes
// with the inner table ti.
func prepareHeld(oh *taskOutcomes, unseen []bool, ti *auto.TaskTable, models []string, fold int, cfg Config) *held {
	E := ti.Dims
	T := len(ti.Names)
	n := len(oh.task)
	h := &held{unseen: unseen, logits: oh.logits, ys: oh.ys, gate: make([]float32, n), mixes: map[float32]*mix{}}
	h.temps = gridTemp
	if ti.Bias != nil {
		h.temps = []float32{1} // π is the classifier's softmax
	}
	sim := make([]float32, n)
	near := make([]int, n)
	raw := make([]float32, n*T) // similarities to (or scores of) every task
	x := make([]float32, E)
	innerIndex := map[string]int{}
	for k, name := range ti.Names {
		innerIndex[name] = k
	}
	std := *ti
	for i := 0; i < n; i++ {
		oh.sketch(i, x)
		std.Standardise(x)
		for k := 0; k < T; k++ {
			var d float32
			for j, v := range ti.Centroids[k*E : (k+1)*E] {
				d += v * x[j]
			}
			if ti.Bias != nil {
				d += ti.Bias[k]
			}
			raw[i*T+k] = d
			if k == 0 || d > sim[i] {
				near[i], sim[i] = k, d
			}
		}
		switch {
		case ti.Bias != nil:
			// The gate is the classifier's confidence, max π.
			var sum float64
			for k := 0; k < T; k++ {
				sum += math.Exp(float64(raw[i*T+k] - sim[i]))
			}
			h.gate[i] = float32(1 / sum)
		case cfg.TaskMargin:
			second := float32(-1)
			for k := 0; k < T; k++ {
				if k != near[i] && raw[i*T+k] > second {
					second = raw[i*T+k]
				}
			}
			h.gate[i] = sim[i] - second
		default:
			h.gate[i] = sim[i]
		}
		name := oh.names[oh.task[i]]
		h.task = append(h.task, name)
		h.group = append(h.group, auto.TaskGroup(ti.Names[near[i]]))
		k, ok := innerIndex[name]
		h.hit = append(h.hit, ok && k == near[i])
		h.fold = append(h.fold, fold)
		ms := make([]string, len(oh.models[i]))
		for j, m := range oh.models[i] {
			ms[j] = models[m]
		}
		h.models = append(h.models, ms)
	}
	lg := make([][]float32, T) // prior logits per task and model (0: none)
	has := make([][]float32, T)
	for k := 0; k < T; k++ {
		lg[k], has[k] = make([]float32, len(ti.Priors[k])), make([]float32, len(ti.Priors[k]))
		for m, p := range ti.Priors[k] {
			if p > 0 {
				lg[k][m], has[k][m] = float32(math.Log(float64(p/(1-p)))), 1
			}
		}
	}
	mixed := func(temp float32) *mix {
		out := &mix{make([][]float32, n), make([][]float32, n)}
		pi := make([]float32, T)
		for i := 0; i < n; i++ {
			if temp <= 0 {
				clear(pi)
				pi[near[i]] = 1
			} else {
				var sum float32
				for k := 0; k < T; k++ {
					pi[k] = float32(math.Exp(float64((raw[i*T+k] - sim[i]) / temp)))
					sum += pi[k]
				}
				for k := range pi {
					pi[k] /= sum
				}
			}
			out.a[i] = make([]float32, len(oh.models[i]))
			out.h[i] = make([]float32, len(oh.models[i]))
			for j, m := range oh.models[i] {
				for k := 0; k < T; k++ {
					out.a[i][j] += pi[k] * lg[k][m]
					out.h[i][j] += pi[k] * has[k][m]
				}
			}
		}
		return out
	}
	h.mixes[0] = mixed(0)
	for _, t := range h.temps {
		h.mixes[t] = mixed(t)
	}
	h.oracle = mix{make([][]float32, n), make([][]float32, n)}
	for i := 0; i < n; i++ {
		h.oracle.a[i] = make([]float32, len(oh.models[i]))
		h.oracle.h[i] = make([]float32, len(oh.models[i]))
		if k, ok := innerIndex[h.task[i]]; ok {
			for j, m := range oh.models[i] {
				h.oracle.a[i][j], h.oracle.h[i][j] = lg[k][m], has[k][m]
			}
		}
	}
	return h
}

// fitShape grid-searches Temp and, per group of the nearest task, S0,
// Slope and WMax on the held rows h. It returns a table holding only Temp
// and Shapes.
func fitShape(h *held, cfg Config) auto.TaskTable {
	n := h.n()
	var hit, known, simKnown, simUnseen, nu float64
	for i := 0; i < n; i++ {
		if h.unseen[i] {
			simUnseen += float64(h.gate[i])
			nu++
		} else {
			simKnown += float64(h.gate[i])
			known++
			if h.hit[i] {
				hit++
			}
		}
	}
	// Rows by the group of their nearest task.
	groups := map[string][]int{}
	var gnames []string
	for i := 0; i < n; i++ {
		g := h.group[i]
		if groups[g] == nil {
			gnames = append(gnames, g)
		}
		groups[g] = append(groups[g], i)
	}
	sort.Strings(gnames)
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	pred := func(i, j int, wt float64, off *mix) float64 {
		z := float64(h.logits[i][j])
		return sigmoid(z + wt*(float64(off.a[i][j])-float64(off.h[i][j])*z))
	}
	// loss sums the log-loss of rows (and counts outcomes), with w from
	// shape(i) for row i.
	type sums struct{ all, kn, un, cnt, ck, cu float64 }
	gain := cfg.TaskObjective == "gain"
	ps := make([]float64, 64)
	loss := func(rows []int, shape func(i int) *auto.TaskShape, off *mix) (r sums) {
		add := func(i int, l float64) {
			r.all += l
			r.cnt++
			if h.unseen[i] {
				r.un += l
				r.cu++
			} else {
				r.kn += l
				r.ck++
			}
		}
		for _, i := range rows {
			wt := float64(shape(i).Weight(h.gate[i]))
			for j := range h.models[i] {
				p := min(1-1e-6, max(1e-6, pred(i, j, wt, off)))
				y := float64(h.ys[i][j])
				if gain {
					ps[j] = p
					continue
				}
				add(i, -(y*math.Log(p) + (1-y)*math.Log(1-p)))
			}
			if !gain {
				continue
			}
			// The squared error of every pair's predicted gain.
			ys := h.ys[i]
			for j := range ys {
				for k := j + 1; k < len(ys); k++ {
					d := (ps[j] - ps[k]) - float64(ys[j]-ys[k])
					add(i, d*d)
				}
			}
		}
		return r
	}
	fixed := func(sh auto.TaskShape) func(int) *auto.TaskShape { return func(int) *auto.TaskShape { return &sh } }
	var knownRows []int
	for i := 0; i < n; i++ {
		if !h.unseen[i] {
			knownRows = append(knownRows, i)
		}
	}
	or := loss(knownRows, fixed(auto.TaskShape{WMax: 1, Slope: 1, S0: -100}), &h.oracle)
	zero := h.mixes[0]
	apgr := cfg.TaskObjective == "apgr"
	// With the APGR objective, each group's rows by inner split, and the
	// unseen-task APGR the scorer has alone (w = 0) on each.
	folds := map[string][][]int{}
	unseenBase := map[string][]float64{}
	if apgr {
		for _, g := range gnames {
			for _, i := range groups[g] {
				for len(folds[g]) <= h.fold[i] {
					folds[g] = append(folds[g], nil)
				}
				folds[g][h.fold[i]] = append(folds[g][h.fold[i]], i)
			}
			for _, rows := range folds[g] {
				_, un := rankObjective(h, rows, func(i, j int) float64 { return sigmoid(float64(h.logits[i][j])) })
				unseenBase[g] = append(unseenBase[g], un)
			}
		}
	}
	// obj is what the grid search minimises on a group's rows: the
	// log-loss (or squared gain error), or with TaskObjective "apgr" minus
	// the sum, over the group's two-model views and the inner splits, of
	// the APGR on the rows of known tasks and the APGR on the rows of
	// unseen ones.
	obj := func(g string, shape func(i int) *auto.TaskShape, off *mix) float64 {
		if !apgr {
			return loss(groups[g], shape, off).all
		}
		var total float64
		for f, rows := range folds[g] {
			kn, un := rankObjective(h, rows, func(i, j int) float64 {
				return pred(i, j, float64(shape(i).Weight(h.gate[i])), off)
			})
			// A shape may not buy known-task ranking with unseen-task
			// ranking: one that loses more than 0.005 of the unseen APGR
			// the scorer has alone in any inner split is rejected.
			if un < unseenBase[g][f]-0.005 {
				return math.Inf(1)
			}
			total += kn + un
		}
		return -total
	}
	z := loss(all, fixed(auto.TaskShape{}), zero)
	best, bl := auto.TaskTable{}, z.all
	if apgr {
		bl = 0
		for _, g := range gnames {
			bl += obj(g, fixed(auto.TaskShape{}), zero)
		}
	}
	for _, temp := range h.temps {
		off := h.mixes[temp]
		cand := auto.TaskTable{Temp: temp, Margin: cfg.TaskMargin}
		var total float64
		for _, g := range gnames {
			gb := auto.TaskShape{Group: g}
			gl := obj(g, fixed(gb), off)
			s0s := gridS0
			if cfg.TaskMargin {
				s0s = gridMargin
			}
			for _, s0 := range s0s {
				for _, sl := range gridSlope {
					for _, wm := range gridWMax {
						if apgr && wm > 1 {
							// Ranking alone would take the prior past
							// itself (w > 1), at a cost in calibration:
							// blends only.
							continue
						}
						sh := auto.TaskShape{Group: g, S0: s0, Slope: sl, WMax: wm}
						if l := obj(g, fixed(sh), off); l < gl-1e-6 {
							gb, gl = sh, l
						}
					}
				}
			}
			if gb.WMax > 0 {
				cand.Shapes = append(cand.Shapes, gb)
			}
			total += gl
		}
		if total < bl-1e-6 {
			best, bl = cand, total
		}
	}
	shapeOf := func(i int) *auto.TaskShape {
		for k := range best.Shapes {
			if best.Shapes[k].Group == h.group[i] {
				return &best.Shapes[k]
			}
		}
		return &auto.TaskShape{}
	}
	off := zero
	if m := h.mixes[best.Temp]; m != nil {
		off = m
	}
	bs := loss(all, shapeOf, off)
	var desc string
	for _, sh := range best.Shapes {
		desc += fmt.Sprintf(" %s %.2f·σ(%.0f·(s − %.2f));", sh.Group, sh.WMax, sh.Slope, sh.S0)
	}
	fmt.Fprintf(cfg.Log, "task table: inner splits %d held rows (%.0f of unseen tasks); nearest task right on %.1f%% of known-task rows; mean s known %.3f, unseen %.3f; "+
		"temp %.2f, w(s):%s fitted to %s; held-out log-loss %.4f → %.4f (known %.4f → %.4f [own task's prior: %.4f], unseen %.4f → %.4f)\n",
		n, nu, 100*hit/max(known, 1), simKnown/max(known, 1), simUnseen/max(nu, 1),
		best.Temp, desc, objective(cfg), z.all/z.cnt, bs.all/bs.cnt, z.kn/max(z.ck, 1), bs.kn/max(bs.ck, 1), or.kn/max(or.ck, 1), z.un/max(z.cu, 1), bs.un/max(bs.cu, 1))
	return best
}

// rankObjective sums, over the two-model views (pairViews) that rows
// fall in, the APGR of the known-task rows and that of the unseen-task rows,
// ranking by p(i, strong) − p(i, weak), p(i, j) the prediction for row i's
// j-th model. Views with fewer than 20 rows are left out.
func rankObjective(h *held, rows []int, p func(i, j int) float64) (known, unseen float64) {
	for _, v := range pairViews {
		for _, wantUnseen := range []bool{false, true} {
			var weak, strong, score []float64
			for _, i := range rows {
				if h.unseen[i] != wantUnseen {
					continue
				}
				src, task, _ := strings.Cut(h.task[i], "/")
				if !v.match(Row{Source: src, Task: task}) {
					continue
				}
				js, jw := -1, -1
				for j, m := range h.models[i] {
					switch m {
					case v.strong:
						js = j
					case v.weak:
						jw = j
					}
				}
				if js < 0 || jw < 0 {
					continue
				}
				strong = append(strong, float64(h.ys[i][js]))
				weak = append(weak, float64(h.ys[i][jw]))
				score = append(score, p(i, js)-p(i, jw))
			}
			if len(score) >= 20 {
				a := PairCurve(weak, strong, score).APGR()
				if wantUnseen {
					unseen += a
				} else {
					known += a
				}
			}
		}
	}
	return known, unseen
}

func modelNames(w *auto.Weights) []string {
	out := make([]string, len(w.Models))
	for i, m := range w.Models {
		out[i] = m.Name
	}
	return out
}

// taskNames is for tests: the table's task names, sorted.
func taskNames(t *auto.TaskTable) []string {
	out := append([]string(nil), t.Names...)
	sort.Strings(out)
	return out
}

func objective(cfg Config) string {
	switch cfg.TaskObjective {
	case "gain":
		return "squared gain error"
	case "apgr":
		return "minus APGR (known + unseen)"
	}
	return "log-loss"
}
