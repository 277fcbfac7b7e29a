package auto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestRunScoreFormat(t *testing.T) {
	in := `{"id": "a1", "prompt": "What is 2+2?"}

{"id": "b2", "prompt": "Write a python function to sort a list."}
{"id": 3, "prompt": "¿Cuál es la capital de Francia?"}
`
	var out bytes.Buffer
	if err := RunScore(strings.NewReader(in), &out, nil, []string{"gpt-4o", "gpt-4o-mini"}); err != nil {
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
	if err := RunScore(strings.NewReader(`{"id":"x","prompt":"hello"}`), &out, nil, nil); err != nil {
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

// A bad line is reported with its number and skipped; the lines around it
// are scored, and the error at the end says lines were bad.
func TestRunScoreBadLines(t *testing.T) {
	ok := func(id string) string { return `{"id":"` + id + `","prompt":"What is 2+2?"}` + "\n" }
	tests := []struct {
		name    string
		in      string
		ids     []string // ids of the lines written, in order
		stderr  []string // line numbers reported, in order
		wantErr string   // "": none
	}{
		{"all good", ok("a") + ok("b"), []string{"a", "b"}, nil, ""},
		{"bad last line", ok("a") + ok("b") + "not json\n", []string{"a", "b"}, []string{"3"},
			"line 3 could not be scored; every other line was"},
		{"bad lines in between", "[1]\n" + ok("a") + "\n{\"id\":\n" + ok("b") + `{"prompt": 5}` + "\n", []string{"a", "b"}, []string{"1", "4", "6"},
			"3 lines could not be scored (the first: line 1); every other line was"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := RunScore(strings.NewReader(tt.in), &out, &errOut, []string{"gpt-4o"})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			var bl *BadLinesError
			if tt.wantErr != "" && !errors.As(err, &bl) {
				t.Fatalf("err %T, want *BadLinesError", err)
			}
			var ids []string
			for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
				if l != "" {
					ids = append(ids, outputID(t, l))
				}
			}
			if strings.Join(ids, ",") != strings.Join(tt.ids, ",") {
				t.Fatalf("scored %v, want %v:\n%s", ids, tt.ids, out.String())
			}
			var reported []string
			for _, l := range strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n") {
				var n int
				if _, err := fmt.Sscanf(l, "lumen: skipping line %d: want a JSON object", &n); err == nil {
					reported = append(reported, fmt.Sprint(n))
				} else if l != "" {
					t.Fatalf("stderr line %q", l)
				}
			}
			if strings.Join(reported, ",") != strings.Join(tt.stderr, ",") {
				t.Fatalf("reported lines %v, want %v:\n%s", reported, tt.stderr, errOut.String())
			}
		})
	}
}

func outputID(t *testing.T, line string) string {
	t.Helper()
	var v struct{ ID string }
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("output line %q: %v", line, err)
	}
	return v.ID
}

// Each result is written before the next line is read: a consumer of a
// pipe gets it at once, not when the input ends.
func TestRunScoreWritesAsItGoes(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- RunScore(inR, outW, nil, []string{"gpt-4o"}); outW.Close() }()
	lines := bufio.NewReader(outR)
	for _, id := range []string{"a", "b"} {
		if _, err := io.WriteString(inW, `{"id":"`+id+`","prompt":"hi"}`+"\n"); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() { l, _ := lines.ReadString('\n'); got <- l }()
		select {
		case l := <-got:
			if !strings.HasPrefix(l, `{"id":"`+id+`"`) {
				t.Fatalf("got %q for %s", l, id)
			}
		case <-time.After(10 * time.Second): // a hang guard, not a timing goal
			t.Fatalf("no output for %s while the input is still open", id)
		}
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
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
		if err := RunScore(bytes.NewReader(data), &bytes.Buffer{}, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
