package auto

import (
	"math"
	"strings"
	"testing"
)

// taskWeights builds small weights with two learned models and a task table
// of two tasks whose centroids are the sketches of two prompts.
func taskWeights(t *testing.T, shape TaskShape, temp float32) (*Weights, []string) {
	t.Helper()
	w := &Weights{BucketBits: 8, K: 1, Domains: []string{"a", "b"},
		Models: []ModelParams{
			{Name: "m", Theta: []float32{0, 0}, Disc: []float32{1, 1}, U: []float32{0}},
			{Name: "n", Theta: []float32{0, 0}, Disc: []float32{1, 1}, U: []float32{0}},
		}}
	r := w.R()
	w.Hashed = make([]float32, 256*r)
	w.Dense = make([]float32, NumDense*r)
	prompts := []string{
		"Which bone of the human skeleton is in the upper arm and which muscle flexes the elbow?",
		"Write a Python function that returns the reverse of a list of integers.",
	}
	const E = 64
	shape.Group = "src"
	tt := TaskTable{Dims: E, Temp: temp, Shapes: []TaskShape{shape}}
	tt.Names = []string{"src/anatomy", "src/code"}
	// m is measured on both tasks (0.9 on anatomy, 0.2 on code), n only
	// on code.
	tt.Priors = [][]float32{{0.9, 0}, {0.2, 0.6}}
	tt.Mean = make([]float32, E)
	tt.InvStd = make([]float32, E)
	var f Features
	x := make([]float32, E)
	for j := range tt.Mean {
		tt.InvStd[j] = 1
	}
	for _, p := range prompts {
		Extract(Prompt{User: p}, &f)
		TaskSketch(&f, x)
		tt.Centroids = append(tt.Centroids, x...)
	}
	w.Tasks = &tt
	return w, prompts
}

func TestTaskTableBlendsPrior(t *testing.T) {
	// w(s) ≈ 1 for s well above 0.5, ≈ 0 below.
	w, prompts := taskWeights(t, TaskShape{S0: 0.5, Slope: 60, WMax: 1}, 0)
	s, err := NewScorer(w)
	if err != nil {
		t.Fatal(err)
	}
	plain := *w
	plain.Tasks = nil
	base, err := NewScorer(&plain)
	if err != nil {
		t.Fatal(err)
	}
	models := []string{"m", "n"}
	out, ref := make([]float64, 2), make([]float64, 2)
	// The anatomy prompt is its own centroid: similarity 1, m moves to its
	// anatomy prior, n (never measured on anatomy) keeps its own estimate.
	sc := s.Score(Prompt{User: prompts[0]}, models, out)
	base.Score(Prompt{User: prompts[0]}, models, ref)
	if sc.Task != "src/anatomy" || sc.TaskWeight < 0.99 {
		t.Errorf("task %q weight %v, want src/anatomy at ~1", sc.Task, sc.TaskWeight)
	}
	if math.Abs(out[0]-0.9) > 0.01 {
		t.Errorf("m on the anatomy prompt = %.3f, want the prior 0.9 (scorer alone %.3f)", out[0], ref[0])
	}
	if math.Abs(out[1]-ref[1]) > 1e-6 {
		t.Errorf("n on the anatomy prompt = %.3f, want its own %.3f (no prior there)", out[1], ref[1])
	}
	s.Score(Prompt{User: prompts[1]}, models, out)
	if math.Abs(out[0]-0.2) > 0.01 || math.Abs(out[1]-0.6) > 0.01 {
		t.Errorf("code prompt: m %.3f n %.3f, want the priors 0.2 and 0.6", out[0], out[1])
	}
	// A prompt unlike both tasks keeps the scorer's predictions.
	far := Prompt{User: "Translate into French: the weather is lovely in Lyon this spring, isn't it"}
	sc = s.Score(far, models, out)
	base.Score(far, models, ref)
	if sc.TaskWeight > 0.01 || math.Abs(out[0]-ref[0]) > 0.01 {
		t.Errorf("unrelated prompt: weight %v, m %.3f vs scorer %.3f", sc.TaskWeight, out[0], ref[0])
	}
}

func TestTaskIndexMatchesDenseCosine(t *testing.T) {
	w, prompts := taskWeights(t, TaskShape{S0: 0.5, Slope: 60, WMax: 1}, 0.1)
	tt := w.Tasks
	// A non-trivial standardisation.
	for j := range tt.Mean {
		tt.Mean[j] = 0.01 * float32(j%7)
		tt.InvStd[j] = 1 + 0.1*float32(j%5)
	}
	ix := newTaskIndex(tt)
	var f Features
	x := make([]float32, tt.Dims)
	pi := make([]float32, 2)
	for _, p := range append(prompts, "What is the capital of Australia?") {
		Extract(Prompt{User: p}, &f)
		TaskSketch(&f, x)
		dense := append([]float32(nil), x...)
		tt.Standardise(dense)
		var want [2]float32
		for k := range want {
			for j, v := range dense {
				want[k] += v * tt.Centroids[k*tt.Dims+j]
			}
		}
		idx := sketch(&f, x, nil, make([]uint64, (len(x)+63)/64))
		best, sim := ix.assign(x, pi, make([]float32, ix.np), idx, make([]float32, 0, len(x)))
		wb := 0
		if want[1] > want[0] {
			wb = 1
		}
		if best != wb || math.Abs(float64(sim-want[wb])) > 1e-4 {
			t.Errorf("%q: assign = task %d sim %v, dense cosine task %d sim %v", p, best, sim, wb, want[wb])
		}
		if s := pi[0] + pi[1]; math.Abs(float64(s-1)) > 1e-5 {
			t.Errorf("π sums to %v", s)
		}
	}
}

func TestTaskTableRoundTripAndNoAllocs(t *testing.T) {
	w, _ := taskWeights(t, TaskShape{S0: 0.3, Slope: 20, WMax: 0.75}, 0.05)
	w.Anchors = []Anchor{{"m", 0.7}, {"n", 0.8}}
	b, err := w.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Weights
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Tasks == nil || len(got.Tasks.Centroids) != 2*64 || got.Tasks.Priors[1][1] != 0.6 || got.Tasks.Temp != 0.05 ||
		f16(got.Tasks.Centroids[70]) != f16(w.Tasks.Centroids[70]) {
		t.Fatalf("task table lost in the round trip: %+v", got.Tasks)
	}
	var trunc Weights
	if err := trunc.UnmarshalBinary(b[:len(b)-2]); err == nil {
		t.Error("truncated task table decoded")
	}
	bad := *w
	tt := *w.Tasks
	tt.Priors = [][]float32{{0.9, 0}}
	bad.Tasks = &tt
	if _, err := bad.MarshalBinary(); err == nil {
		t.Error("a task table with a missing prior row encoded")
	}
	if raceEnabled {
		return
	}
	s, err := NewScorer(&got)
	if err != nil {
		t.Fatal(err)
	}
	models := []string{"m", "n", "gpt-4o", "unknown-model"}
	out := make([]float64, len(models))
	p := Prompt{User: longPromptForTasks()}
	s.Score(p, models, out)
	if n := testing.AllocsPerRun(100, func() { s.Score(p, models, out) }); n != 0 {
		t.Errorf("Score with a task table allocates %v times per call", n)
	}
}

func longPromptForTasks() string {
	b := make([]byte, 0, 8000)
	for len(b) < 8000 {
		b = append(b, "Which bone of the human skeleton is in the upper arm? Write a function to reverse a list. "...)
	}
	return string(b)
}

func TestTaskShapePerGroup(t *testing.T) {
	w, prompts := taskWeights(t, TaskShape{S0: 0.5, Slope: 60, WMax: 1}, 0)
	// Only the anatomy task's group has a shape: the code prompt, whose
	// nearest task is in another group, keeps the scorer's prediction.
	w.Tasks.Names[1] = "other/code"
	s, err := NewScorer(w)
	if err != nil {
		t.Fatal(err)
	}
	plain := *w
	plain.Tasks = nil
	base, _ := NewScorer(&plain)
	out, ref := make([]float64, 1), make([]float64, 1)
	sc := s.Score(Prompt{User: prompts[1]}, []string{"m"}, out)
	base.Score(Prompt{User: prompts[1]}, []string{"m"}, ref)
	if sc.Task != "other/code" || sc.TaskWeight != 0 || out[0] != ref[0] {
		t.Errorf("code prompt: task %q weight %v, m %.3f vs scorer %.3f; want no blend", sc.Task, sc.TaskWeight, out[0], ref[0])
	}
	if sc := s.Score(Prompt{User: prompts[0]}, []string{"m"}, out); sc.TaskWeight < 0.99 || math.Abs(out[0]-0.9) > 0.01 {
		t.Errorf("anatomy prompt: weight %v, m %.3f; want the prior 0.9", sc.TaskWeight, out[0])
	}
}

func TestTaskMarginGate(t *testing.T) {
	w, prompts := taskWeights(t, TaskShape{S0: 0.3, Slope: 60, WMax: 1}, 0)
	w.Tasks.Margin = true
	s, err := NewScorer(w)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 1)
	if sc := s.Score(Prompt{User: prompts[0]}, []string{"m"}, out); sc.TaskWeight < 0.9 {
		t.Errorf("a clear winner: weight %v, want ~1", sc.TaskWeight)
	}
	// Two identical centroids: the nearest task leads by nothing, so the
	// margin gate keeps the scorer's prediction.
	E := w.Tasks.Dims
	copy(w.Tasks.Centroids[E:], w.Tasks.Centroids[:E])
	s, _ = NewScorer(w)
	if sc := s.Score(Prompt{User: prompts[0]}, []string{"m"}, out); sc.TaskWeight > 0.01 {
		t.Errorf("a tie: weight %v, want ~0", sc.TaskWeight)
	}
}

// TestTaskIndexClassifier checks a classifier table (Bias set): π is the
// softmax of the weights' products with the standardised sketch plus the
// bias, and the gate input is the largest π.
func TestTaskIndexClassifier(t *testing.T) {
	w, prompts := taskWeights(t, TaskShape{S0: 0.5, Slope: 60, WMax: 1}, 0.1)
	tt := w.Tasks
	for j := range tt.Mean {
		tt.Mean[j], tt.InvStd[j] = 0, 1
	}
	for k := range tt.Centroids {
		tt.Centroids[k] *= 3 // weights, not unit centroids
	}
	tt.Bias = []float32{0.4, -0.2}
	ix := newTaskIndex(tt)
	var f Features
	x := make([]float32, tt.Dims)
	pi := make([]float32, 2)
	for _, p := range append(prompts, "What is the capital of Australia?") {
		Extract(Prompt{User: p}, &f)
		TaskSketch(&f, x)
		var z [2]float64
		for k := range z {
			z[k] = float64(tt.Bias[k])
			for j, v := range x {
				z[k] += float64(v * tt.Centroids[k*tt.Dims+j])
			}
		}
		p0 := 1 / (1 + math.Exp(z[1]-z[0]))
		wb, wp := 0, p0
		if p0 < 0.5 {
			wb, wp = 1, 1-p0
		}
		idx := sketch(&f, x, nil, make([]uint64, (len(x)+63)/64))
		best, conf := ix.assign(x, pi, make([]float32, ix.np), idx, make([]float32, 0, len(x)))
		if best != wb || math.Abs(float64(conf)-wp) > 1e-4 || math.Abs(float64(pi[0])-p0) > 1e-4 {
			t.Errorf("%q: assign = task %d conf %v π0 %v; want task %d conf %v π0 %v", p, best, conf, pi[0], wb, wp, p0)
		}
	}
}

// TestSparseSketchMatchesDense checks that the scorer's sketch (which
// tracks its touched buckets) equals TaskSketch's and lists every non-zero
// bucket exactly once, also for buckets whose entries cancel out.
func TestSparseSketchMatchesDense(t *testing.T) {
	var f Features
	for _, dims := range []int{8, 64, 4096} {
		for _, p := range []string{"", "What is the capital of Australia?", longPrompt(2000), strings.Repeat("alpha beta gamma delta ", 200)} {
			Extract(Prompt{User: p, System: "You are terse."}, &f)
			dense, sparse := make([]float32, dims), make([]float32, dims)
			TaskSketch(&f, dense)
			idx := sketch(&f, sparse, nil, make([]uint64, (dims+63)/64))
			seen := map[uint32]bool{}
			for _, j := range idx {
				if seen[j] {
					t.Fatalf("dims %d: bucket %d listed twice", dims, j)
				}
				seen[j] = true
			}
			for j := range dense {
				if math.Abs(float64(dense[j]-sparse[j])) > 1e-6 {
					t.Fatalf("dims %d, bucket %d: sparse %v, dense %v", dims, j, sparse[j], dense[j])
				}
				if dense[j] != 0 && !seen[uint32(j)] {
					t.Fatalf("dims %d: non-zero bucket %d not listed", dims, j)
				}
			}
		}
	}
}
