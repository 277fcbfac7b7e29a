package training

import (
	"fmt"
	"math"
	"sort"

	"github.com/lumengw/lumen/router/auto"
)

// taskOutcomes is what the task table is built and tuned from: per row,
// its unit task sketch and the scorer's logit for each model of the row.
type taskOutcomes struct {
	sk     []float32 // rows × E
	task   []int     // row → task index (in names)
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
	o := &taskOutcomes{sk: make([]float32, len(rows)*E), task: make([]int, len(rows)),
		models: make([][]int32, len(rows)), logits: make([][]float32, len(rows)), ys: make([][]float32, len(rows))}
	ti := map[string]int{}
	var f auto.Features
	out := make([]float64, 16)
	for i, r := range rows {
		p := auto.Prompt{User: r.Prompt, Turns: 1}
		auto.Extract(p, &f)
		auto.TaskSketch(&f, o.sk[i*E:(i+1)*E])
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

// buildTaskTable computes the centroids and per-model priors of o's tasks
// (the shape w(s) is left to the caller). A task's prior for model m is its
// success rate on the task's rows, shrunk towards its rate on the task's
// domain by n/(n+shrink), n the task's rows: a small task says less.
func buildTaskTable(o *taskOutcomes, models, E int, shrink float64) *auto.TaskTable {
	T := len(o.names)
	n := len(o.task)
	t := &auto.TaskTable{Dims: E, Names: append([]string(nil), o.names...), Mean: make([]float32, E), InvStd: make([]float32, E), Centroids: make([]float32, T*E)}
	for i := 0; i < n; i++ {
		for j, v := range o.sk[i*E : (i+1)*E] {
			t.Mean[j] += v / float32(n)
		}
	}
	// Standardise every dimension (a diagonal whitening), so buckets that
	// every prompt fills (template words) do not dominate the cosine.
	vr := make([]float64, E)
	var mv float64
	for i := 0; i < n; i++ {
		for j, v := range o.sk[i*E : (i+1)*E] {
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
	x := make([]float32, E)
	for i := 0; i < n; i++ {
		copy(x, o.sk[i*E:(i+1)*E])
		t.Standardise(x)
		c := t.Centroids[o.task[i]*E : (o.task[i]+1)*E]
		for j, v := range x {
			c[j] += v
		}
	}
	for k := 0; k < T; k++ {
		unit(t.Centroids[k*E : (k+1)*E])
	}
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
// fits the shape of w(s) on an inner split of the same rows: one task in
// five (by name) and one row in five of the other tasks are held out, the
// scorer and a table are fit on the rest, and the shape that minimises the
// log-loss of the held-out outcomes is kept. orig is the caller's
// (undefaulted) config, refit for the inner split.
func fitTaskTable(rows []Row, w *auto.Weights, orig, cfg Config) (*auto.TaskTable, error) {
	E := cfg.TaskDims
	var in, held []Row
	var heldUnseen []bool
	for _, r := range rows {
		switch {
		case hash64("inner-task/"+r.Source+"/"+r.Task)%5 == 0:
			held, heldUnseen = append(held, r), append(heldUnseen, true)
		case hash64("inner-row/"+r.ID)%5 == 0:
			held, heldUnseen = append(held, r), append(heldUnseen, false)
		default:
			in = append(in, r)
		}
	}
	shape := auto.TaskTable{}
	if len(in) > 0 && len(held) > 0 {
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
		ti := buildTaskTable(oi, len(wi.Models), E, cfg.TaskShrink)
		oh, err := collectOutcomes(held, wi, E)
		if err != nil {
			return nil, err
		}
		shape = fitShape(oh, heldUnseen, ti, cfg)
	}
	o, err := collectOutcomes(rows, w, E)
	if err != nil {
		return nil, err
	}
	t := buildTaskTable(o, len(w.Models), E, cfg.TaskShrink)
	t.Shapes, t.Temp, t.Margin = shape.Shapes, shape.Temp, shape.Margin
	return t, nil
}

// fitShape grid-searches Temp and, per group of the nearest task, S0,
// Slope and WMax on the held-out outcomes oh with the inner table ti. It
// returns a table holding only Temp and Shapes.
func fitShape(oh *taskOutcomes, unseen []bool, ti *auto.TaskTable, cfg Config) auto.TaskTable {
	E := ti.Dims
	T := len(ti.Names)
	n := len(oh.task)
	sim := make([]float32, n)
	gate := make([]float32, n) // w's input: sim, or with TaskMargin the lead over the second task
	near := make([]int, n)
	raw := make([]float32, n*T) // similarities to every centroid
	x := make([]float32, E)
	innerIndex := map[string]int{}
	for k, name := range ti.Names {
		innerIndex[name] = k
	}
	hard := *ti
	var hit, known float64
	var simKnown, simUnseen, nu float64
	for i := 0; i < n; i++ {
		copy(x, oh.sk[i*E:(i+1)*E])
		hard.Standardise(x)
		for k := 0; k < T; k++ {
			var d float32
			for j, v := range ti.Centroids[k*E : (k+1)*E] {
				d += v * x[j]
			}
			raw[i*T+k] = d
			if k == 0 || d > sim[i] {
				near[i], sim[i] = k, d
			}
		}
		if cfg.TaskMargin {
			second := float32(-1)
			for k := 0; k < T; k++ {
				if k != near[i] && raw[i*T+k] > second {
					second = raw[i*T+k]
				}
			}
			gate[i] = sim[i] - second
		} else {
			gate[i] = sim[i]
		}
		if unseen[i] {
			simUnseen += float64(gate[i])
			nu++
		} else {
			simKnown += float64(gate[i])
			known++
			if k, ok := innerIndex[oh.names[oh.task[i]]]; ok && k == near[i] {
				hit++
			}
		}
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
	// mixed gives, per row and model of the row, Σ_t π_t·h_t·prior logit_t
	// and Σ_t π_t·h_t for one temperature.
	type mix struct{ a, h [][]float32 }
	mixed := func(temp float32) mix {
		out := mix{make([][]float32, n), make([][]float32, n)}
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
	// Rows by the group of their nearest task.
	groups := map[string][]int{}
	var gnames []string
	for i := 0; i < n; i++ {
		g := auto.TaskGroup(ti.Names[near[i]])
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
	// loss sums the log-loss of rows (and counts outcomes), with w from
	// shape(i) for row i.
	type sums struct{ all, kn, un, cnt, ck, cu float64 }
	gain := cfg.TaskObjective == "gain"
	ps := make([]float64, 64)
	loss := func(rows []int, shape func(i int) *auto.TaskShape, off mix) (r sums) {
		add := func(i int, l float64) {
			r.all += l
			r.cnt++
			if unseen[i] {
				r.un += l
				r.cu++
			} else {
				r.kn += l
				r.ck++
			}
		}
		for _, i := range rows {
			wt := float64(shape(i).Weight(gate[i]))
			for j := range oh.models[i] {
				z := float64(oh.logits[i][j])
				p := sigmoid(z + wt*(float64(off.a[i][j])-float64(off.h[i][j])*z))
				p = min(1-1e-6, max(1e-6, p))
				y := float64(oh.ys[i][j])
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
			ys := oh.ys[i]
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
	// A reference: known rows given their own task's prior at full weight.
	oracle := mix{make([][]float32, n), make([][]float32, n)}
	for i := 0; i < n; i++ {
		oracle.a[i] = make([]float32, len(oh.models[i]))
		oracle.h[i] = make([]float32, len(oh.models[i]))
		if k, ok := innerIndex[oh.names[oh.task[i]]]; ok {
			for j, m := range oh.models[i] {
				oracle.a[i][j], oracle.h[i][j] = lg[k][m], has[k][m]
			}
		}
	}
	var knownRows []int
	for i := 0; i < n; i++ {
		if !unseen[i] {
			knownRows = append(knownRows, i)
		}
	}
	or := loss(knownRows, fixed(auto.TaskShape{WMax: 1, Slope: 1, S0: -100}), oracle)
	zero := mixed(0)
	z := loss(all, fixed(auto.TaskShape{}), zero)
	best, bl := auto.TaskTable{}, z.all
	for _, temp := range gridTemp {
		off := mixed(temp)
		cand := auto.TaskTable{Temp: temp, Margin: cfg.TaskMargin}
		var total float64
		for _, g := range gnames {
			rows := groups[g]
			gb := auto.TaskShape{Group: g}
			gl := loss(rows, fixed(gb), off).all
			s0s := gridS0
			if cfg.TaskMargin {
				s0s = gridMargin
			}
			for _, s0 := range s0s {
				for _, sl := range gridSlope {
					for _, wm := range gridWMax {
						sh := auto.TaskShape{Group: g, S0: s0, Slope: sl, WMax: wm}
						if l := loss(rows, fixed(sh), off).all; l < gl-1e-6 {
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
		g := auto.TaskGroup(ti.Names[near[i]])
		for k := range best.Shapes {
			if best.Shapes[k].Group == g {
				return &best.Shapes[k]
			}
		}
		return &auto.TaskShape{}
	}
	bs := loss(all, shapeOf, mixed(best.Temp))
	var desc string
	for _, sh := range best.Shapes {
		desc += fmt.Sprintf(" %s %.2f·σ(%.0f·(s − %.2f));", sh.Group, sh.WMax, sh.Slope, sh.S0)
	}
	fmt.Fprintf(cfg.Log, "task table: inner split %d held rows (%.0f of unseen tasks); nearest task right on %.1f%% of known-task rows; mean s known %.3f, unseen %.3f; "+
		"temp %.2f, w(s):%s held-out %s %.4f → %.4f (known %.4f → %.4f [own task's prior: %.4f], unseen %.4f → %.4f)\n",
		len(oh.task), nu, 100*hit/max(known, 1), simKnown/max(known, 1), simUnseen/max(nu, 1),
		best.Temp, desc, objective(cfg), z.all/z.cnt, bs.all/bs.cnt, z.kn/max(z.ck, 1), bs.kn/max(bs.ck, 1), or.kn/max(or.ck, 1), z.un/max(z.cu, 1), bs.un/max(bs.cu, 1))
	return best
}

// taskNames is for tests: the table's task names, sorted.
func taskNames(t *auto.TaskTable) []string {
	out := append([]string(nil), t.Names...)
	sort.Strings(out)
	return out
}

func objective(cfg Config) string {
	if cfg.TaskObjective == "gain" {
		return "squared gain error"
	}
	return "log-loss"
}
