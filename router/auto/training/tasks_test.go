package training

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/lumengw/lumen/router/auto"
)

func TestFitTaskTable(t *testing.T) {
	rows, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{BucketBits: 10, Epochs: 3, TaskDims: 64, TaskMatch: "centroid", TaskObjective: "logloss", TaskFolds: 1}
	w, err := Fit(rows, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tt := w.Tasks
	if tt == nil {
		t.Fatal("TaskDims set but no task table")
	}
	want := []string{"llmrouter/mbpp", "routellm/gsm8k", "routellm/mmlu-anatomy", "routerbench/mbpp"}
	if got := taskNames(tt); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("tasks %v, want %v", got, want)
	}
	mi := map[string]int{}
	for i, m := range w.Models {
		mi[m.Name] = i
	}
	for k, name := range tt.Names {
		if name == "routellm/gsm8k" {
			// One row: gpt-4 1, Mixtral 0, shrunk 1/(1+10) of the way from
			// the math-domain rate (the same row) — so exactly the row.
			if p := tt.Priors[k][mi["gpt-4-1106-preview"]]; math.Abs(float64(p)-0.99) > 1e-6 {
				t.Errorf("gsm8k prior of gpt-4 = %v, want 0.99 (clamped 1)", p)
			}
			if p := tt.Priors[k][mi["x"]]; p != 0 {
				t.Errorf("gsm8k prior of x (not measured there) = %v, want 0", p)
			}
		}
	}
	for k := 0; k < len(tt.Names); k++ {
		var n float64
		for _, v := range tt.Centroids[k*tt.Dims : (k+1)*tt.Dims] {
			n += float64(v) * float64(v)
		}
		if math.Abs(n-1) > 1e-4 {
			t.Errorf("centroid %d has norm² %v", k, n)
		}
	}
	a, _ := w.MarshalBinary()
	w2, _ := Fit(rows, cfg)
	b, _ := w2.MarshalBinary()
	if !bytes.Equal(a, b) {
		t.Error("two fits with a task table differ")
	}
	cfg.TaskDims = -1
	w3, _ := Fit(rows, cfg)
	if w3.Tasks != nil {
		t.Error("TaskDims -1 built a task table")
	}
}

// TestFitTaskClassifier fits the default task component, a classifier: it
// has a bias per task, recognises the task of every training prompt, and
// two fits agree byte for byte.
func TestFitTaskClassifier(t *testing.T) {
	rows, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{BucketBits: 10, Epochs: 3, TaskDims: 256, TaskEpochs: 30}
	w, err := Fit(rows, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tt := w.Tasks
	if tt == nil || len(tt.Bias) != len(tt.Names) {
		t.Fatalf("default fit: task table %v, want a classifier (a bias per task)", tt)
	}
	for j := range tt.Mean {
		if tt.Mean[j] != 0 || tt.InvStd[j] != 1 {
			t.Fatalf("classifier table standardises (bucket %d: mean %v, 1/std %v)", j, tt.Mean[j], tt.InvStd[j])
		}
	}
	s, err := auto.NewScorer(w)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 1)
	for _, r := range rows {
		if got := s.Score(auto.Prompt{User: r.Prompt}, nil, out).Task; got != r.Source+"/"+r.Task {
			t.Errorf("%s: recognised as %q", r.ID, got)
		}
	}
	a, _ := w.MarshalBinary()
	w2, _ := Fit(rows, cfg)
	b, _ := w2.MarshalBinary()
	if !bytes.Equal(a, b) {
		t.Error("two fits with a task classifier differ")
	}
	for _, bad := range []Config{{TaskMatch: "knn"}, {TaskObjective: "accuracy"}} {
		if _, err := Fit(rows, bad); err == nil {
			t.Errorf("Fit accepted %+v", bad)
		}
	}
}

// TestEvaluateLogsTaskRecognition: on the known-task split, the evaluation
// logs how many test rows the task table recognises, and the ranking by
// the recognised task's prior appears in the log's summary lines but not
// in the report; so does the router's APGR with each task's mean predicted
// gain removed.
func TestEvaluateLogsTaskRecognition(t *testing.T) {
	tasks := []struct {
		task  string
		words []string
	}{
		{"mmlu-anatomy", []string{"bone", "muscle", "artery", "nerve", "skull", "tendon"}},
		{"gsm8k", []string{"apples", "dollars", "bakes", "buys", "weekly", "crates"}},
	}
	var data strings.Builder
	for _, tk := range tasks {
		task, ws := tk.task, tk.words
		for i := 0; i < 40; i++ {
			gpt, mix := (i%3+1)/2, i%2
			fmt.Fprintf(&data, `{"id": "routellm/%s/%d", "source": "routellm", "task": %q, "prompt": "%s %s %s %d?", `+
				`"scores": {"gpt-4-1106-preview": %d, "mistralai/Mixtral-8x7B-Instruct-v0.1": %d}}`+"\n",
				task, i, task, ws[i%6], ws[(i+1)%6], ws[(i+3)%6], i, min(gpt, 1), mix)
		}
	}
	rows, err := Read(strings.NewReader(data.String()))
	if err != nil {
		t.Fatal(err)
	}
	var out, log bytes.Buffer
	cfg := EvalConfig{Fit: Config{BucketBits: 10, K: -1, Epochs: 2, TaskDims: 64, TaskEpochs: 20, TaskFolds: 1}, Seeds: 1, Folds: 2, Out: &out, Log: &log}
	if err := Evaluate(rows, cfg); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`recognised task: routellm (\d+) of (\d+) known-task test rows`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("log has no task recognition line:\n%s", log.String())
	}
	if m[1] != m[2] || m[2] == "0" {
		t.Errorf("recognised %s of %s rows of two tasks with disjoint words", m[1], m[2])
	}
	if !regexp.MustCompile(`summary known routellm MMLU.*` + diagRecognised + ` +APGR`).MatchString(log.String()) {
		t.Errorf("log has no %q summary for known MMLU:\n%s", diagRecognised, log.String())
	}
	if !regexp.MustCompile(`summary unseen routellm MMLU.*router \(this scorer\) +APGR, task means removed`).MatchString(log.String()) {
		t.Errorf("log has no APGR with the task means removed:\n%s", log.String())
	}
	if strings.Contains(out.String(), diagRecognised) {
		t.Errorf("the report lists the diagnostic %q", diagRecognised)
	}
}
