package cmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lumengw/lumen/router/auto"
)

// runRoot runs the lumen command tree with args and stdin, and returns
// stdout, stderr and the error.
func runRoot(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewCmdRoot(&Factory{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func TestRouteScoreFormat(t *testing.T) {
	in := `{"id": "a1", "prompt": "What is the capital of France?"}
{"id": 7, "prompt": "Prove that every prime p > 3 has p^2 - 1 divisible by 24."}

{"id": "x", "prompt": "def f(x):\n    return x ** 2"}
`
	tests := []struct {
		name       string
		args       []string
		wantModels []string // must be present
		exact      bool     // and nothing else
	}{
		{"candidates", []string{"--candidates", "gpt-4o,gpt-4o-mini"}, []string{"gpt-4o", "gpt-4o-mini"}, true},
		{"default: the whole ability table", nil, auto.Default().Models(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runRoot(t, in, append([]string{"route", "score"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 3 {
				t.Fatalf("%d output lines for 3 prompts:\n%s", len(lines), out)
			}
			wantIDs := []string{`"a1"`, `7`, `"x"`}
			for i, line := range lines {
				var raw map[string]json.RawMessage
				if err := json.Unmarshal([]byte(line), &raw); err != nil {
					t.Fatalf("line %d is not JSON: %s", i, line)
				}
				if len(raw) != 4 || string(raw["id"]) != wantIDs[i] {
					t.Fatalf("line %d: want exactly id (%s), difficulty, domain, p_success: %s", i, wantIDs[i], line)
				}
				var v struct {
					Difficulty float64            `json:"difficulty"`
					Domain     string             `json:"domain"`
					PSuccess   map[string]float64 `json:"p_success"`
				}
				if err := json.Unmarshal([]byte(line), &v); err != nil {
					t.Fatal(err)
				}
				if v.Difficulty <= 0 || v.Difficulty >= 1 || v.Domain == "" {
					t.Fatalf("line %d: %s", i, line)
				}
				for _, m := range tt.wantModels {
					if p, ok := v.PSuccess[m]; !ok || p <= 0 || p >= 1 {
						t.Fatalf("line %d: p_success[%s] = %v, %v", i, m, p, ok)
					}
				}
				if tt.exact && len(v.PSuccess) != len(tt.wantModels) {
					t.Fatalf("line %d: %d models, want %d", i, len(v.PSuccess), len(tt.wantModels))
				}
			}
		})
	}
	// The training file's models are in the table under their exact names.
	out, _, err := runRoot(t, `{"id":"1","prompt":"hi"}`, "route", "score")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"} {
		if !strings.Contains(out, `"`+m+`":`) {
			t.Errorf("default output lacks %s", m)
		}
	}
	if _, _, err := runRoot(t, "not json\n", "route", "score"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad input: %v", err)
	}
}

// A bad line does not lose the scores before it or stop those after it:
// it is reported on stderr by number, and the command fails at the end.
func TestRouteScoreBadLine(t *testing.T) {
	in := `{"id":"a","prompt":"hi"}
{"id":"b","prompt":"hello"}
not json
{"id":"c","prompt":"bye"}
`
	out, errOut, err := runRoot(t, in, "route", "score", "--candidates", "gpt-4o")
	if got := strings.Count(out, "\n"); got != 3 || !strings.HasPrefix(out, `{"id":"a",`) || !strings.Contains(out, "\n"+`{"id":"c",`) {
		t.Fatalf("stdout has %d lines, want a, b and c:\n%s", got, out)
	}
	if !strings.HasPrefix(errOut, "lumen: skipping line 3: ") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("stderr %q, want one line naming line 3", errOut)
	}
	if err == nil || err.Error() != "line 3 could not be scored; every other line was" {
		t.Fatalf("err = %v, want the run to fail naming line 3", err)
	}
}

const routeConfig = `
model_list:
  - model_name: cheap
    params: {model: mock/cheap}
    model_info: {quality: 0.71, input_cost_per_token: 0.0000006, output_cost_per_token: 0.0000006}
  - model_name: strong
    params: {model: mock/strong}
    model_info: {quality: 0.88, input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}
  - model_name: auto-budget
    auto: {candidates: [cheap, strong], max_cost_per_1k: 0.001}
router_settings:
  auto: {candidates: [cheap, strong]}
`

func TestRouteExplain(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(path, []byte(routeConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	mockOnly := t.TempDir() + "/mock.yaml" // like the embedded default config
	if err := os.WriteFile(mockOnly, []byte("model_list:\n  - model_name: demo\n    litellm_params: {model: mock/demo}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const hard = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24, and then derive the closed form of the sum over k of binomial(n,k)^2 using generating functions. Show all steps rigorously."
	tests := []struct {
		name    string
		args    []string
		first   string // the rank-1 candidate
		want    []string
		wantErr string
	}{
		{"easy prompt, floor", []string{"What is the capital of France?", "--config", path}, "cheap",
			[]string{"RANK  CANDIDATE", "chosen: cheapest that clears floor 0.80", "strong", "clears floor; +0."}, ""},
		{"hard prompt", []string{hard, "--config", path}, "strong", []string{"floor relaxed", "below floor"}, ""},
		{"mode best", []string{"What is the capital of France?", "--config", path, "--mode", "best"}, "strong",
			[]string{"chosen: highest predicted quality"}, ""},
		{"named route with a price ceiling", []string{hard, "--config", path, "--model", "auto-budget"}, "cheap",
			[]string{"excluded: max_cost_per_1k"}, ""},
		{"candidates from the tables", []string{"What is the capital of France?", "--candidates", "gpt-4o,gpt-4o-mini"}, "gpt-4o-mini",
			[]string{"EXPECTED COST", "$0.0006"}, ""},
		{"candidate without a price ranks last, not free", []string{"hi", "--candidates", "foo-model,gpt-4o-mini"}, "gpt-4o-mini",
			[]string{"2     foo-model", "$+Inf"}, ""},
		{"not an auto route", []string{"hi", "--config", path, "--model", "cheap"}, "", nil, `"cheap" is not an auto route in this config; auto routes: auto, auto-budget`},
		{"bad mode", []string{"hi", "--config", path, "--mode", "cheapest"}, "", nil, "unknown mode"},
		{"no group with a known ability", []string{"hi", "--config", mockOnly}, "", nil, "no candidates configured; or rank models of the ability table without a config: --candidates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runRoot(t, "", append([]string{"route", "explain"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(out, "\n")
			if len(lines) < 4 || !strings.HasPrefix(lines[0], "difficulty ") || !strings.HasPrefix(lines[3], "1     "+tt.first+" ") {
				t.Fatalf("want %s ranked first:\n%s", tt.first, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// --candidates says what it does with a model it has no price for.
func TestRouteExplainUnpricedWarning(t *testing.T) {
	_, errOut, err := runRoot(t, "", "route", "explain", "hi", "--candidates", "foo-model,gpt-4o-mini")
	want := "lumen: no price known for foo-model; its cost counts as unknown ($+Inf): it ranks after every priced candidate on cost\n"
	if err != nil || errOut != want {
		t.Fatalf("err %v, stderr %q, want %q", err, errOut, want)
	}
}

func TestRouteTrain(t *testing.T) {
	dir := t.TempDir()
	var data strings.Builder
	for i := 0; i < 60; i++ {
		strong, weak := 1.0, float64(i%2)
		fmt.Fprintf(&data, `{"id":"t/%d","source":"test","task":"task-%d","prompt":"question number %d about topic %d?","scores":{"big":%g,"small":%g},"cost_usd":null}`+"\n",
			i, i%3, i, i%5, strong, weak)
	}
	path := dir + "/train.jsonl"
	if err := os.WriteFile(path, []byte(data.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out := dir + "/w.bin"
	_, logs, err := runRoot(t, "", "route", "train", "--data", path, "--out", out, "--bucket-bits", "10")
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var w auto.Weights
	if err := w.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if len(w.Models) != 2 || !strings.Contains(logs, "wrote "+out) {
		t.Fatalf("weights for %d models; log:\n%s", len(w.Models), logs)
	}
	for _, args := range [][]string{{"--out", out}, {"--data", path}} {
		if _, _, err := runRoot(t, "", append([]string{"route", "train"}, args...)...); err == nil || !strings.Contains(err.Error(), "required") {
			t.Fatalf("%v: err = %v", args, err)
		}
	}
}
