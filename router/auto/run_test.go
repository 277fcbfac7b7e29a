package auto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestRunScoreFormat(t *testing.T) {
	in := `{"id": "a1", "prompt": "What is 2+2?"}

{"id": "b2", "prompt": "Write a python function to sort a list."}
{"id": 3, "prompt": "¿Cuál es la capital de Francia?"}
`
	var out bytes.Buffer
	if err := RunScore(strings.NewReader(in), &out, []string{"gpt-4o", "gpt-4o-mini"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), out.String())
	}
	wantIDs := []string{`"a1"`, `"b2"`, `3`}
	for i, l := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if len(m) != 4 || string(m["id"]) != wantIDs[i] {
			t.Errorf("line %d: keys/id wrong: %s", i, l)
		}
		var r struct {
			Difficulty float64            `json:"difficulty"`
			Domain     string             `json:"domain"`
			PSuccess   map[string]float64 `json:"p_success"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Difficulty <= 0 || r.Difficulty >= 1 || r.Domain == "" || len(r.PSuccess) != 2 {
			t.Errorf("line %d: %s", i, l)
		}
		for m, p := range r.PSuccess {
			if !(p > 0 && p < 1) {
				t.Errorf("line %d: p_success[%s] = %v", i, m, p)
			}
		}
	}
}

func TestRunScoreDefaultsToEveryModel(t *testing.T) {
	var out bytes.Buffer
	if err := RunScore(strings.NewReader(`{"id":"x","prompt":"hello"}`), &out, nil); err != nil {
		t.Fatal(err)
	}
	var r struct {
		PSuccess map[string]float64 `json:"p_success"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	for _, m := range append(append([]string(nil), trainModels...), "gpt-4o", "claude-3-5-sonnet", "gemini-2.5-pro") {
		if _, ok := r.PSuccess[m]; !ok {
			t.Errorf("p_success lacks %q", m)
		}
	}
	if len(r.PSuccess) != len(Default().Models()) {
		t.Errorf("%d models, table has %d", len(r.PSuccess), len(Default().Models()))
	}
}

func TestRunScoreBadLine(t *testing.T) {
	err := RunScore(strings.NewReader("{\"id\":\"x\",\"prompt\":\"a\"}\nnot json\n"), &bytes.Buffer{}, []string{"gpt-4o"})
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("err = %v, want one naming line 2", err)
	}
}

func TestExplain(t *testing.T) {
	s := Default()
	cands := []Candidate{
		{Name: "gpt-4o", Provider: "openai", InputPer1K: 0.0025, OutputPer1K: 0.01, LatencyMS: 800},
		{Name: "mini", Model: "gpt-4o-mini", Provider: "openai", InputPer1K: 0.00015, OutputPer1K: 0.0006, LatencyMS: 400},
		{Name: "o3", Provider: "openai", InputPer1K: 0.002, OutputPer1K: 0.008, LatencyMS: 9000},
	}
	e := s.Explain(Prompt{User: "Prove that there are infinitely many primes."}, cands, Tokens{}, Constraints{QualityFloor: 0.5, MaxLatencyMS: 5000}, ModeFloor)
	if e.Err != nil {
		t.Fatal(e.Err)
	}
	if e.Tokens.In == 0 || e.Tokens.Out != DefaultOutputTokens {
		t.Errorf("tokens = %+v", e.Tokens)
	}
	var b bytes.Buffer
	if err := e.Format(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"difficulty", "domain", "nearest training task ", "prior weight", "RANK", "P(SUCCESS)", "EXPECTED COST", "gpt-4o", "mini", "excluded: max_latency_ms: 9000ms > 5000ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	for _, r := range e.Decision.Ranking {
		if r.PSuccess <= 0 || r.ExpectedCost <= 0 {
			t.Errorf("%s: p %v cost %v", r.Name, r.PSuccess, r.ExpectedCost)
		}
	}
	// Nothing qualifies: the error and the ranking are still explained.
	e = s.Explain(Prompt{User: "hi"}, cands, Tokens{In: 10, Out: 10}, Constraints{MaxCostPer1K: 0.0000001}, ModeFloor)
	b.Reset()
	e.Format(&b)
	if e.Err == nil || !strings.Contains(b.String(), "error: no auto candidate qualifies") || !strings.Contains(b.String(), "best effort") {
		t.Errorf("explain without a qualifying candidate:\n%s", b.String())
	}
	if len(e.Unknown) != 0 || strings.Contains(b.String(), "not in the ability table") {
		t.Errorf("known models reported unknown: %v", e.Unknown)
	}
	// A model the table does not know is scored at the default quality,
	// and the explanation says so.
	cands = append(cands, Candidate{Name: "house", Model: "acme-house-model-7", InputPer1K: 0.001, OutputPer1K: 0.002})
	e = s.Explain(Prompt{User: "hi"}, cands, Tokens{}, Constraints{}, ModeFloor)
	b.Reset()
	e.Format(&b)
	if len(e.Unknown) != 1 || e.Unknown[0] != "house" ||
		!strings.Contains(b.String(), "not in the ability table, scored at the default quality 0.70 (set model_info.quality): house\n") {
		t.Errorf("unknown model not flagged (%v):\n%s", e.Unknown, b.String())
	}
}

func BenchmarkRunScore1000(b *testing.B) {
	var in bytes.Buffer
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&in, "{\"id\":\"%d\",\"prompt\":%q}\n", i, longPrompt(50+i%400))
	}
	data := in.Bytes()
	for i := 0; i < b.N; i++ {
		if err := RunScore(bytes.NewReader(data), &bytes.Buffer{}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
