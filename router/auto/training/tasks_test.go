package training

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestFitTaskTable(t *testing.T) {
	rows, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{BucketBits: 10, Epochs: 3, TaskDims: 64}
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
	cfg.TaskDims = 0
	w3, _ := Fit(rows, cfg)
	if w3.Tasks != nil {
		t.Error("TaskDims 0 built a task table")
	}
}
