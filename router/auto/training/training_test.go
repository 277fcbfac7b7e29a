package training

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/lumengw/lumen/router/auto"
)

func TestPairCurve(t *testing.T) {
	weak := []float64{0, 1, 0, 0}
	strong := []float64{1, 1, 0, 1}
	// Perfect order: the two gains first.
	c := PairCurve(weak, strong, []float64{3, 0, 0, 2})
	want := []float64{0, 0.5, 1, 1, 1}
	for k := range want {
		if math.Abs(c.PGR[k]-want[k]) > 1e-12 {
			t.Fatalf("PGR = %v, want %v", c.PGR, want)
		}
	}
	if c.QWeak != 0.25 || c.QStrong != 0.75 {
		t.Errorf("qualities %v %v", c.QWeak, c.QStrong)
	}
	if got := c.CallsFor(0.5); got != 0.25 {
		t.Errorf("calls for 50%% = %v", got)
	}
	if got := c.APGR(); math.Abs(got-(0.25+0.75+1+1)/4) > 1e-12 {
		t.Errorf("APGR = %v", got)
	}
	// All ties: the expectation over random orders, a straight line.
	c = PairCurve(weak, strong, []float64{0, 0, 0, 0})
	if math.Abs(c.APGR()-0.5) > 1e-12 || math.Abs(c.CallsFor(0.8)-1) > 1e-12 {
		t.Errorf("tied APGR = %v, calls80 = %v", c.APGR(), c.CallsFor(0.8))
	}
}

func TestBudgetPick(t *testing.T) {
	// Two models: cheap (cost 1) right on prompt 0 only, strong (cost 10)
	// right on both. Budget 5.5 per prompt allows one strong call.
	pred := [][]float64{{0.9, 0.95}, {0.1, 0.9}}
	y := [][]float64{{1, 1}, {0, 1}}
	cost := [][]float64{{1, 10}, {1, 10}}
	q, c := budgetPick(pred, y, cost, 5.5)
	if q != 1 || c != 5.5 {
		t.Errorf("quality %v cost %v, want 1 and 5.5", q, c)
	}
}

func TestInferTask(t *testing.T) {
	for _, tt := range []struct{ prompt, want string }{
		{"Q: There are 3 houses in a row... Clue(s):\n1. ...", "logic-puzzle"},
		{"\ndef add(a, b):\n    \"\"\"Add.\n    >>> add(1, 2)\n    3\n    \"\"\"\n", "humaneval"},
		{"Write a python function to find the maximum.", "mbpp"},
		{"gum, butter, trim, chest, watermelon", "commongen"},
		{"Find $\\frac{1}{2}$ of 10.", "math"},
		{"when did the suite life of zach and cody come out", "nq"},
		{"Who wrote 'The Boys From Brazil'?", "trivia-qa"},
		{"Why would someone be listening to music?", "commonsense-qa"},
	} {
		if got := InferTask(tt.prompt); got != tt.want {
			t.Errorf("InferTask(%.30q) = %s, want %s", tt.prompt, got, tt.want)
		}
	}
	if Domains[DomainOf("mmlu-professional_law")] != "law" || Domains[DomainOf("gsm8k")] != "math" || Domains[DomainOf("mbpp")] != "code" {
		t.Error("domain mapping broken")
	}
}

const sample = `{"id": "s/a/0", "source": "routellm", "task": "mmlu-anatomy", "prompt": "Which bone is in the arm?\nA. Femur\nB. Humerus\nAnswer:", "scores": {"mistralai/Mixtral-8x7B-Instruct-v0.1": 1.0, "gpt-4-1106-preview": 1.0}, "cost_usd": null}
{"id": "s/a/1", "source": "routellm", "task": "gsm8k", "prompt": "Tom has 3 apples and buys 5 more. How many apples does he have?", "scores": {"mistralai/Mixtral-8x7B-Instruct-v0.1": 0.0, "gpt-4-1106-preview": 1.0}, "cost_usd": null}
{"id": "s/b/0", "source": "llmrouter", "task": null, "prompt": "Write a python function to add two numbers.", "scores": {"m1": 1.0, "m2": null}, "cost_usd": null}
{"id": "s/c/0", "source": "routerbench", "task": "mbpp", "prompt": "Write a function to reverse a list.", "scores": {"gpt-4-1106-preview": 1.0, "x": 0.0}, "cost_usd": {"gpt-4-1106-preview": 0.01, "x": 0.001}}
`

func TestReadAndFitDeterministic(t *testing.T) {
	rows, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[2].Task != "mbpp" || rows[2].TaskKnown || len(rows[2].Scores) != 1 || rows[3].Cost["x"] != 0.001 {
		t.Fatalf("rows parsed wrong: %+v", rows)
	}
	cfg := Config{BucketBits: 10, Epochs: 3}
	a, err := Fit(rows, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Fit(rows, cfg)
	ba, _ := a.MarshalBinary()
	bb, _ := b.MarshalBinary()
	if !bytes.Equal(ba, bb) {
		t.Error("two fits with the same config differ")
	}
	names := map[string]bool{}
	for _, m := range a.Models {
		names[m.Name] = true
	}
	for _, m := range []string{"gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "m1", "x"} {
		if !names[m] {
			t.Errorf("model %q not learned", m)
		}
	}
	s, err := auto.NewScorer(a)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 2)
	s.Score(auto.Prompt{User: "Tom has 3 apples and buys 5 more. How many apples does he have?"}, []string{"gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"}, out)
	if out[0] <= out[1] {
		t.Errorf("after fitting, gpt-4 %.3f should beat Mixtral %.3f on the prompt only it solved", out[0], out[1])
	}
	if _, err := Read(strings.NewReader("{bad")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad line: %v", err)
	}
}

func TestFitOptions(t *testing.T) {
	rows, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	base := Config{BucketBits: 10, Epochs: 3}
	def, err := Fit(rows, base)
	if err != nil {
		t.Fatal(err)
	}
	// ResidualTasks shrinks each model's residual by n/(n+c) at export and
	// changes nothing else: "x" was measured on 1 task, the routellm models
	// on 2.
	shr := base
	shr.ResidualTasks = 3
	w, err := Fit(rows, shr)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range w.Models {
		n := map[string]float32{"x": 1, "m1": 1, "gpt-4-1106-preview": 3, "mistralai/Mixtral-8x7B-Instruct-v0.1": 2}[m.Name]
		for k := range m.U {
			want := n / (n + 3) * def.Models[i].U[k]
			if math.Abs(float64(m.U[k]-want)) > 1e-6 {
				t.Errorf("%s: U[%d] = %v, want %v (n=%v)", m.Name, k, m.U[k], want, n)
			}
		}
		for d := range m.Theta {
			if m.Theta[d] != def.Models[i].Theta[d] {
				t.Fatalf("%s: ResidualTasks changed θ", m.Name)
			}
		}
	}
	// SharedAbility, ResidualDropout, TaskCentre and Average change the
	// fit, deterministically.
	for _, c := range []Config{{SharedAbility: true}, {ResidualDropout: 0.5}, {TaskCentre: 1}, {Average: 3}} {
		c.BucketBits, c.Epochs = base.BucketBits, base.Epochs
		a, _ := Fit(rows, c)
		b, _ := Fit(rows, c)
		ba, _ := a.MarshalBinary()
		bb, _ := b.MarshalBinary()
		bd, _ := def.MarshalBinary()
		if !bytes.Equal(ba, bb) {
			t.Errorf("%+v: two fits differ", c)
		}
		if bytes.Equal(ba, bd) {
			t.Errorf("%+v: fit equals the default fit", c)
		}
	}
}

func TestStatAndSeeds(t *testing.T) {
	if got := stat([]float64{0.5}, 3, 1, ""); got != "0.500" {
		t.Errorf("one run: %q", got)
	}
	if got := stat([]float64{0.2, 0.3, 0.4}, 1, 100, "%"); got != "30.0% [20.0%–40.0%]" {
		t.Errorf("three runs: %q", got)
	}
	if got := stat([]float64{0.7, 0.7}, 2, 1, ""); got != "0.70" {
		t.Errorf("equal runs: %q", got)
	}
	rows, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Evaluate(rows, EvalConfig{Fit: Config{BucketBits: 10, K: -1}, Seeds: 2, Folds: 2, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "mean over 2 fits (seeds 1–2)") {
		t.Errorf("report does not say it averages two seeds:\n%s", out.String())
	}
}
