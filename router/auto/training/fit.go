package training

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/lumengw/lumen/router/auto"
)

// Config controls a fit. The zero value of a field means its default.
type Config struct {
	// BucketBits is log2 of the hashed table's rows (default 15).
	BucketBits int
	// K is the width of the prompt embedding z(x) that the per-model
	// residual u_m·z(x) reads (default 4; 0 gives pure IRT).
	K int
	// Epochs over the data (default 2: more overfits, see EVAL.md).
	Epochs int
	// Average, when above 1, replaces the fitted parameters by the mean of
	// that many snapshots taken evenly through the last epoch (iterate
	// averaging), which damps the noise of the last stochastic steps.
	Average int
	// Seed fixes shuffling and initialisation (default 1).
	Seed uint64
	// LR is the AdaGrad step for the prompt weights (default 0.05) and
	// ModelLR for the per-model parameters (default 0.05).
	LR, ModelLR float64
	// L2 is the per-step weight decay of the prompt weights (default 1e-5).
	L2 float64
	// DomainWeight scales the domain cross-entropy against the outcome
	// loss (default 0.5).
	DomainWeight float64
	// SharedAbility fits each model's per-domain ability and
	// discrimination as an overall value plus a deviation that
	// DomainShrink (per-step weight decay, default 1e-3) pulls towards
	// zero, so a domain the model was never measured on falls back to its
	// overall ability. Off by default: on the leave-task-out evaluation it
	// did not help (EVAL.md).
	SharedAbility bool
	DomainShrink  float64
	// ResidualL2 is the per-step weight decay of the models' residual
	// weights u_m (default 1e-4).
	ResidualL2 float64
	// ResidualTasks is c in the n/(n+c) shrink of a model's residual
	// weights, n the number of tasks it was measured on (0: no shrink).
	ResidualTasks float64
	// TaskCentre, when positive, fits the residual on z(x) minus its
	// running mean over the example's task and pulls every task's mean z
	// towards zero with this weight: u·z then ranks prompts within a task
	// and the task-level offsets are left to the domain abilities.
	TaskCentre float64
	// ResidualInit is the standard deviation of the models' initial
	// residual weights (default 0.3).
	ResidualInit float64
	// ResidualDropout is the share of training examples fit without the
	// residual u·z (0: none).
	ResidualDropout float64
	// TaskDims is the sketch width of the task-identity component
	// (auto.TaskTable): per training task a classifier row (or centroid)
	// and each model's success rate, blended in by how sure the prompt's
	// task is (default 4096; negative: no task table).
	TaskDims int
	// TaskShrink is c in the n/(n+c) shrink of a task's offsets towards
	// the scorer's own mean on the task, n its rows (default 10).
	TaskShrink float64
	// TaskObjective is what the shape of the task blend is fitted to on
	// the inner splits: "apgr" (default), the APGR of the two-model views
	// on known plus unseen tasks, never losing more than 0.005 of the
	// unseen APGR in any inner split, with w ≤ 1; "logloss", the mean
	// log-loss of every (prompt, model) outcome; or "gain", the mean
	// squared error of every pair of models' predicted gain p_a − p_b
	// against y_a − y_b.
	TaskObjective string
	// TaskMargin gates the task blend on the nearest task's lead over the
	// second nearest instead of on its similarity (centroids only).
	TaskMargin bool
	// TaskMatch is how a prompt's task is recognised: "classifier"
	// (default), a softmax regression over the sketches fit on the
	// training prompts' task labels, gated on its confidence; or
	// "centroid", the cosine to each task's mean sketch.
	TaskMatch string
	// TaskEpochs and TaskL2 tune that classifier's fit (defaults 8, 1e-4).
	TaskEpochs int
	TaskL2     float64
	// TaskFolds is the number of inner splits the task blend's shape is
	// fitted on, each task held out in one (default 5; 1: a single split
	// holding out one task in five).
	TaskFolds int
	// noTaskTable is set for the inner fit that tunes the task table.
	noTaskTable bool
	// NoDifficulty freezes b(x) and z(x) at zero: the domain-only model,
	// used as a baseline.
	NoDifficulty bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

func (c Config) withDefaults() Config {
	if c.BucketBits == 0 {
		c.BucketBits = 15
	}
	if c.K < 0 {
		c.K = 0
	} else if c.K == 0 {
		c.K = 4
	}
	if c.Epochs == 0 {
		c.Epochs = 2
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.LR == 0 {
		c.LR = 0.05
	}
	if c.ModelLR == 0 {
		c.ModelLR = 0.05
	}
	if c.L2 == 0 {
		c.L2 = 1e-5
	}
	if c.ResidualInit == 0 {
		c.ResidualInit = 0.3
	}
	if c.ResidualL2 == 0 {
		c.ResidualL2 = 1e-4
	}
	if c.DomainShrink == 0 {
		c.DomainShrink = 1e-3
	}
	if c.TaskDims < 0 {
		c.TaskDims = 0
	} else if c.TaskDims == 0 {
		c.TaskDims = 4096
	}
	if c.TaskMatch == "" {
		c.TaskMatch = "classifier"
	}
	if c.TaskObjective == "" {
		c.TaskObjective = "apgr"
	}
	if c.TaskFolds == 0 {
		c.TaskFolds = 5
	}
	if c.TaskEpochs == 0 {
		c.TaskEpochs = 8
	}
	if c.TaskL2 == 0 {
		c.TaskL2 = 1e-4
	}
	if c.TaskShrink == 0 {
		c.TaskShrink = 10
	}
	if c.DomainWeight == 0 {
		c.DomainWeight = 0.5
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Anchors used to place public models: the two models of the routellm
// source, with public MMLU figures (see router/auto/public.go).
var Anchors = []auto.Anchor{
	{Model: "mistralai/Mixtral-8x7B-Instruct-v0.1", Score: 0.706}, // Mixtral of Experts paper, MMLU 5-shot
	{Model: "gpt-4-1106-preview", Score: 0.847},                   // openai/simple-evals, MMLU 0-shot CoT
}

// example is a featurised row.
type example struct {
	idx    []int32
	val    []float32
	dense  [auto.NumDense]float32
	domain int
	task   int32
	models []int32
	ys     []float32
}

func featurise(rows []Row, bucketBits int, modelIndex map[string]int) []example {
	out := make([]example, len(rows))
	mask := uint32(1)<<bucketBits - 1
	var f auto.Features
	type kv struct {
		k int32
		v float32
	}
	var buf []kv
	for i, r := range rows {
		auto.Extract(auto.Prompt{User: r.Prompt, Turns: 1}, &f)
		buf = buf[:0]
		for _, e := range f.Hashed {
			buf = append(buf, kv{int32(e & mask), f.Scale(int(e >> 28))})
		}
		sort.Slice(buf, func(a, b int) bool { return buf[a].k < buf[b].k })
		ex := example{dense: f.Dense, domain: DomainOf(r.Task)}
		for j := 0; j < len(buf); {
			k, v := buf[j].k, float32(0)
			for ; j < len(buf) && buf[j].k == k; j++ {
				v += buf[j].v
			}
			ex.idx = append(ex.idx, k)
			ex.val = append(ex.val, v)
		}
		names := make([]string, 0, len(r.Scores))
		for m := range r.Scores {
			if _, ok := modelIndex[m]; ok {
				names = append(names, m)
			}
		}
		sort.Strings(names)
		for _, m := range names {
			ex.models = append(ex.models, int32(modelIndex[m]))
			ex.ys = append(ex.ys, float32(r.Scores[m]))
		}
		out[i] = ex
	}
	return out
}

// adagrad is a parameter vector with its squared-gradient accumulator.
type adagrad struct {
	w, g2 []float32
}

func newAdagrad(n int) adagrad { return adagrad{make([]float32, n), make([]float32, n)} }

func (a *adagrad) step(i int, grad, lr float32) {
	a.g2[i] += grad * grad
	a.w[i] -= lr * grad / float32(math.Sqrt(float64(a.g2[i]))+1e-6)
}

// Fit trains weights on rows. Every model named in rows is learned under
// its exact name. The fit is deterministic for a given Config.
func Fit(rows []Row, cfg Config) (*auto.Weights, error) {
	orig := cfg
	cfg = cfg.withDefaults()
	switch cfg.TaskMatch {
	case "classifier", "centroid":
	default:
		return nil, fmt.Errorf("task match %q: want classifier or centroid", cfg.TaskMatch)
	}
	switch cfg.TaskObjective {
	case "apgr", "logloss", "gain":
	default:
		return nil, fmt.Errorf("task objective %q: want apgr, logloss or gain", cfg.TaskObjective)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("fitting scorer: no rows")
	}
	start := time.Now()
	ms := Models(rows)
	modelIndex := map[string]int{}
	for i, m := range ms {
		modelIndex[m.Model] = i
	}
	K, D, M := cfg.K, len(Domains), len(ms)
	R := 1 + K + D
	exs := featurise(rows, cfg.BucketBits, modelIndex)
	taskIndex := map[string]int32{}
	for i, r := range rows {
		k := r.Source + "/" + r.Task
		if _, ok := taskIndex[k]; !ok {
			taskIndex[k] = int32(len(taskIndex))
		}
		exs[i].task = taskIndex[k]
	}
	// zbar holds each task's running mean of z(x) (TaskCentre).
	zbar := make([]float32, len(taskIndex)*cfg.K)
	zc := make([]float32, cfg.K)
	tasksOf := make([]map[string]bool, len(ms))
	for i := range tasksOf {
		tasksOf[i] = map[string]bool{}
	}
	for _, r := range rows {
		for m := range r.Scores {
			if i, ok := modelIndex[m]; ok {
				tasksOf[i][r.Source+"/"+r.Task] = true
			}
		}
	}
	fmt.Fprintf(cfg.Log, "featurised %d rows, %d models in %v\n", len(exs), M, time.Since(start).Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6c756d656e))
	W := newAdagrad((1 << cfg.BucketBits) * R)
	Wd := newAdagrad(auto.NumDense * R)
	// With SharedAbility a model's ability in domain d is θ_m + δ_md and
	// its log-discrimination α_m + ε_md, the deviations shrunk towards
	// zero; otherwise θ_m = α_m = 0 and every (model, domain) is free.
	theta0 := newAdagrad(M)
	theta := newAdagrad(M * D)
	logA0 := newAdagrad(M)
	logA := newAdagrad(M * D)
	shrink := float32(cfg.DomainShrink)
	ul2 := float32(cfg.ResidualL2)
	U := newAdagrad(M * K)
	for i := range U.w {
		U.w[i] = float32(rng.NormFloat64() * cfg.ResidualInit)
	}
	// Start each model's ability at its mean success logit, so the early
	// epochs spend their steps on the prompts, not on the offsets.
	for m := range ms {
		var s, n float64
		for _, ex := range exs {
			for j, mi := range ex.models {
				if int(mi) == m {
					s += float64(ex.ys[j])
					n++
				}
			}
		}
		mean := min(0.97, max(0.03, s/max(n, 1)))
		if cfg.SharedAbility {
			theta0.w[m] = float32(math.Log(mean / (1 - mean)))
			continue
		}
		for d := 0; d < D; d++ {
			theta.w[m*D+d] = float32(math.Log(mean / (1 - mean)))
		}
	}

	order := make([]int, len(exs))
	for i := range order {
		order[i] = i
	}
	h := make([]float32, R)
	p := make([]float32, D)
	gh := make([]float32, R)
	lr, mlr, l2 := float32(cfg.LR), float32(cfg.ModelLR), float32(cfg.L2)
	wD := float32(cfg.DomainWeight)
	params := [][]float32{W.w, Wd.w, theta0.w, theta.w, logA0.w, logA.w, U.w}
	var sums [][]float32 // with Average: the snapshots' running sums
	taken := 0
	snapshot := func() {
		taken++
		if sums == nil {
			for _, p := range params {
				sums = append(sums, make([]float32, len(p)))
			}
		}
		for i, p := range params {
			for j, v := range p {
				sums[i][j] += v
			}
		}
	}
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var loss, dloss float64
		var n int
		last := epoch == cfg.Epochs-1 && cfg.Average > 1
		for step, oi := range order {
			if last && step > 0 && step%(len(order)/cfg.Average+1) == 0 {
				snapshot()
			}
			ex := &exs[oi]
			forward(ex, W.w, Wd.w, R, h)
			if cfg.NoDifficulty {
				for j := 0; j <= K; j++ {
					h[j] = 0
				}
			}
			// Residual dropout: on some examples the model is fit without
			// u·z, so the IRT part stays calibrated on its own.
			drop := cfg.ResidualDropout > 0 && rng.Float64() < cfg.ResidualDropout
			if drop {
				for j := 1; j <= K; j++ {
					h[j] = 0
				}
			}
			copy(zc, h[1:1+K])
			var zb []float32
			if cfg.TaskCentre > 0 && !drop {
				zb = zbar[int(ex.task)*K : int(ex.task)*K+K]
				for k := 0; k < K; k++ {
					zb[k] += 0.02 * (h[1+k] - zb[k])
					zc[k] = h[1+k] - zb[k]
				}
			}
			softmax32(h[1+K:], p)
			clear(gh)
			for d := 0; d < D; d++ {
				y := float32(0)
				if d == ex.domain {
					y = 1
				}
				gh[1+K+d] = wD * (p[d] - y)
			}
			dloss -= math.Log(float64(max(p[ex.domain], 1e-7)))
			b := h[0]
			for j, mi := range ex.models {
				m := int(mi)
				y := ex.ys[j]
				var lg, pa float32
				for d := 0; d < D; d++ {
					a := float32(math.Exp(float64(logA0.w[m] + logA.w[m*D+d])))
					lg += p[d] * a * (theta0.w[m] + theta.w[m*D+d] - b)
					pa += p[d] * a
				}
				for k := 0; k < K; k++ {
					lg += U.w[m*K+k] * zc[k]
				}
				P := float32(1 / (1 + math.Exp(-float64(lg))))
				g := P - y
				loss -= float64(y)*math.Log(float64(max(P, 1e-7))) + float64(1-y)*math.Log(float64(max(1-P, 1e-7)))
				n++
				gh[0] -= g * pa
				for k := 0; k < K && !drop; k++ {
					gh[1+k] += g * U.w[m*K+k]
					U.step(m*K+k, g*zc[k]+ul2*U.w[m*K+k], mlr)
				}
				var gt0, ga0 float32
				for d := 0; d < D; d++ {
					a := float32(math.Exp(float64(logA0.w[m] + logA.w[m*D+d])))
					t := theta0.w[m] + theta.w[m*D+d]
					gt, ga := g*p[d]*a, g*p[d]*a*(t-b)
					gt0 += gt
					ga0 += ga
					if cfg.SharedAbility {
						theta.step(m*D+d, gt+shrink*theta.w[m*D+d], mlr)
						logA.step(m*D+d, ga+shrink*logA.w[m*D+d], mlr*0.3)
					} else {
						theta.step(m*D+d, gt+1e-5*t, mlr)
						logA.step(m*D+d, ga+1e-3*logA.w[m*D+d], mlr*0.3)
					}
				}
				if cfg.SharedAbility {
					theta0.step(m, gt0+1e-5*theta0.w[m], mlr)
					logA0.step(m, ga0+1e-3*logA0.w[m], mlr*0.3)
				}
			}
			// Pull each task's mean z towards zero, so that at inference
			// (where the task is unknown) u·z carries within-task
			// differences, not task offsets learned on few tasks.
			for k := 0; k < len(zb); k++ {
				gh[1+k] += float32(cfg.TaskCentre) * zb[k]
			}
			if cfg.NoDifficulty {
				for j := 0; j <= K; j++ {
					gh[j] = 0
				}
			}
			for fi, bi := range ex.idx {
				v := ex.val[fi]
				base := int(bi) * R
				for j := 0; j < R; j++ {
					if gh[j] == 0 {
						continue
					}
					W.step(base+j, v*gh[j]+l2*W.w[base+j], lr)
				}
			}
			for i, x := range ex.dense {
				if x == 0 {
					continue
				}
				for j := 0; j < R; j++ {
					if gh[j] == 0 {
						continue
					}
					Wd.step(i*R+j, x*gh[j]+l2*Wd.w[i*R+j], lr)
				}
			}
		}
		fmt.Fprintf(cfg.Log, "epoch %d: outcome log-loss %.4f, domain log-loss %.4f (%v)\n",
			epoch+1, loss/float64(max(n, 1)), dloss/float64(len(exs)), time.Since(start).Round(time.Millisecond))
	}
	if cfg.Average > 1 {
		snapshot() // the end of the last epoch
		inv := 1 / float32(taken)
		for i, p := range params {
			for j := range p {
				p[j] = sums[i][j] * inv
			}
		}
	}

	w := &auto.Weights{
		BucketBits: cfg.BucketBits,
		K:          K,
		Domains:    append([]string(nil), Domains...),
		Hashed:     W.w,
		Dense:      Wd.w,
	}
	for m, mm := range ms {
		mp := auto.ModelParams{Name: mm.Model, Source: mm.Source,
			Theta: make([]float32, D), Disc: make([]float32, D), U: make([]float32, K)}
		for d := 0; d < D; d++ {
			mp.Theta[d] = theta0.w[m] + theta.w[m*D+d]
			mp.Disc[d] = float32(math.Exp(float64(logA0.w[m] + logA.w[m*D+d])))
		}
		// The residual of a model measured on few tasks is mostly those
		// tasks' own profile; shrink it by n/(n+c) with n its task count.
		us := float32(1)
		if cfg.ResidualTasks > 0 {
			n := float32(len(tasksOf[m]))
			us = n / (n + float32(cfg.ResidualTasks))
		}
		for k := 0; k < K; k++ {
			mp.U[k] = us * U.w[m*K+k]
		}
		w.Models = append(w.Models, mp)
	}
	if _, ok := modelIndex[Anchors[0].Model]; ok {
		if _, ok := modelIndex[Anchors[1].Model]; ok {
			w.Anchors = append([]auto.Anchor(nil), Anchors...)
		}
	}
	bs := make([]float64, len(exs))
	for i := range exs {
		forward(&exs[i], W.w, Wd.w, R, h)
		bs[i] = float64(h[0])
	}
	sort.Float64s(bs)
	w.DiffMedian = float32(bs[len(bs)/2])
	w.Info = fmt.Sprintf("fit on %d rows, %d models, bucket_bits=%d k=%d epochs=%d seed=%d lr=%g l2=%g",
		len(rows), M, cfg.BucketBits, K, cfg.Epochs, cfg.Seed, cfg.LR, cfg.L2)
	if cfg.Average > 1 {
		w.Info += fmt.Sprintf(" average=%d", cfg.Average)
	}
	if cfg.TaskDims > 0 && !cfg.noTaskTable {
		t, err := fitTaskTable(rows, w, orig, cfg)
		if err != nil {
			return nil, err
		}
		w.Tasks = t
		w.Info += fmt.Sprintf(" task_dims=%d task_shrink=%g task_match=%s task_objective=%s task_folds=%d", cfg.TaskDims, cfg.TaskShrink, cfg.TaskMatch, cfg.TaskObjective, cfg.TaskFolds)
	}
	fmt.Fprintf(cfg.Log, "fit done in %v\n", time.Since(start).Round(time.Millisecond))
	return w, nil
}

// forward is the scorer's forward pass over a featurised example; it must
// match router/auto's scratch.forward.
func forward(ex *example, W, Wd []float32, R int, h []float32) {
	clear(h)
	for fi, bi := range ex.idx {
		v := ex.val[fi]
		row := W[int(bi)*R : int(bi)*R+R]
		for j, x := range row {
			h[j] += v * x
		}
	}
	for i, x := range ex.dense {
		if x == 0 {
			continue
		}
		row := Wd[i*R : i*R+R]
		for j, v := range row {
			h[j] += x * v
		}
	}
}

func softmax32(logits, out []float32) {
	m := logits[0]
	for _, v := range logits {
		m = max(m, v)
	}
	var s float32
	for i, v := range logits {
		out[i] = float32(math.Exp(float64(v - m)))
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
}
