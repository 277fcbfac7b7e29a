package auto

import (
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// trainModels are the exact model names of shared/routing/train.jsonl.
var trainModels = []string{
	"gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1",
	"WizardLM/WizardLM-13B-V1.2", "claude-instant-v1", "claude-v1", "claude-v2", "gpt-3.5-turbo-1106",
	"meta/code-llama-instruct-34b-chat", "meta/llama-2-70b-chat", "mistralai/mistral-7b-chat",
	"mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat",
	"codegemma-7b", "gemma-2-9b-it", "llama-3.1-8b-instruct", "llama-3.1-nemotron-51b-instruct",
	"llama-3.3-nemotron-super-49b-v1", "llama3-chatqa-1.5-70b", "llama3-chatqa-1.5-8b",
	"mistral-7b-instruct-v0.3", "qwen2.5-7b-instruct",
}

func TestEmbeddedWeights(t *testing.T) {
	s, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if len(embedded) > 5<<20 {
		t.Errorf("embedded weights are %d bytes, over the 5 MB budget", len(embedded))
	}
	models := s.Models()
	for _, m := range trainModels {
		a, ok := s.Ability(m)
		if !ok || !a.Learned {
			t.Errorf("training model %q is not a learned row of the ability table", m)
		}
	}
	for _, p := range PublicModels {
		if !slices.Contains(models, p.Model) {
			t.Errorf("public model %q missing from the table", p.Model)
		}
		if p.Source == "" {
			t.Errorf("public model %q has no source", p.Model)
		}
	}
}

func TestPublicPlacementIsMonotone(t *testing.T) {
	s := Default()
	// A higher public figure must give a higher mean ability.
	ps := append([]PublicModel(nil), PublicModels...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Score < ps[j].Score })
	prev := math.Inf(-1)
	for _, p := range ps {
		a, _ := s.Ability(p.Model)
		var m float64
		for _, th := range a.Theta {
			m += th
		}
		m /= float64(len(a.Theta))
		if m < prev-1e-4 {
			t.Errorf("%s (%.3f) has mean ability %.3f below a lower-scored model's %.3f", p.Model, p.Score, m, prev)
		}
		prev = m
	}
}

func TestLookupNormalisesNames(t *testing.T) {
	s := Default()
	for _, tt := range []struct{ in, want string }{
		{"gpt-4o", "gpt-4o"},
		{"openai/gpt-4o-2024-08-06", "gpt-4o"},
		{"claude-3-5-sonnet-20241022", "claude-3-5-sonnet"},
		{"anthropic/claude-3.5-sonnet-latest", "claude-3-5-sonnet"},
		{"anthropic/claude-opus-4-5-20251101", "claude-opus-4-5"},
		{"claude-haiku-4-5", "claude-haiku-4-5"},
		{"gemini/gemini-3.1-pro-preview", "gemini-3.1-pro-preview"},
		{"mistralai/Mixtral-8x7B-Instruct-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"},
	} {
		a, ok := s.Ability(tt.in)
		if !ok || a.Model != tt.want {
			t.Errorf("Ability(%q) = %q, %v; want %q", tt.in, a.Model, ok, tt.want)
		}
	}
	if _, ok := s.Ability("no-such-model"); ok {
		t.Error("unknown model reported as known")
	}
}

func TestScoreOrdersModels(t *testing.T) {
	s := Default()
	models := []string{"gpt-4o", "gpt-4o-mini", "llama-3.2-1b-instruct", "unknown-model"}
	out := make([]float64, len(models))
	for _, p := range []string{
		"What is the capital of France?",
		"Write a python function that merges two sorted lists.",
		"Explain the causes of the First World War.",
	} {
		sc := s.Score(Prompt{User: p}, models, out)
		if !(out[0] > out[1] && out[1] > out[2]) {
			t.Errorf("%q: p_success %v not ordered by public ability", p, out)
		}
		for _, v := range out {
			if !(v > 0 && v < 1) {
				t.Errorf("%q: p_success %v out of (0,1)", p, out)
			}
		}
		if sc.Difficulty <= 0 || sc.Difficulty >= 1 || sc.Domain == "" {
			t.Errorf("%q: bad score %+v", p, sc)
		}
	}
}

func TestDomains(t *testing.T) {
	s := Default()
	out := make([]float64, 1)
	for _, tt := range []struct{ prompt, want string }{
		{"Write a python function to check whether a number is a perfect square.", "code"},
		{"Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?", "math"},
		{"A 45-year-old man presents with chest pain radiating to the left arm. Which of the following is the most likely diagnosis?\nA. Myocardial infarction\nB. Pneumonia\nC. Gastritis\nD. Anxiety\nAnswer:", "health"},
	} {
		if got := s.Score(Prompt{User: tt.prompt}, []string{"gpt-4o"}, out).Domain; got != tt.want {
			t.Errorf("domain of %.40q = %s, want %s", tt.prompt, got, tt.want)
		}
	}
}

func TestOverrides(t *testing.T) {
	s := Default()
	hi, lo := 0.95, 0.5
	o, err := s.With(map[string]Override{
		"my-model":    {Quality: &hi},
		"gpt-4o":      {Quality: &lo},
		"gpt-4o-mini": {Abilities: map[string]float64{"code": 0.95}},
	})
	if err != nil {
		t.Fatal(err)
	}
	models := []string{"my-model", "gpt-4o", "gpt-4o-mini"}
	before, after := make([]float64, 3), make([]float64, 3)
	p := Prompt{User: "Write a python function to reverse a string."}
	s.Score(p, models, before)
	o.Score(p, models, after)
	if after[0] <= before[0] {
		t.Errorf("quality 0.95 did not raise an unknown model: %v -> %v", before[0], after[0])
	}
	if after[1] >= before[1] {
		t.Errorf("quality 0.5 did not lower gpt-4o: %v -> %v", before[1], after[1])
	}
	if after[2] <= before[2] {
		t.Errorf("code ability 0.95 did not raise gpt-4o-mini on code: %v -> %v", before[2], after[2])
	}
	if _, err := s.With(map[string]Override{"x": {Abilities: map[string]float64{"cooking": 0.9}}}); err == nil || !strings.Contains(err.Error(), "unknown domain") {
		t.Errorf("unknown domain: err = %v", err)
	}
	bad := 1.5
	if _, err := s.With(map[string]Override{"x": {Quality: &bad}}); err == nil {
		t.Error("quality 1.5 accepted")
	}
}

func TestScoreDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	s := Default()
	p := Prompt{System: "You are helpful.", User: longPrompt(2000), Turns: 3}
	models := []string{"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet-20241022", "mistralai/Mixtral-8x7B-Instruct-v0.1"}
	out := make([]float64, len(models))
	s.Score(p, models, out)
	if n := testing.AllocsPerRun(100, func() { s.Score(p, models, out) }); n != 0 {
		t.Errorf("Score allocates %v times per call", n)
	}
}

// longPrompt builds a prompt of about n tokens (prose, code and math).
func longPrompt(n int) string {
	parts := []string{
		"The mitochondria is the powerhouse of the cell, and its membrane potential drives ATP synthesis. ",
		"def merge(a, b):\n    out = []\n    while a and b:\n        out.append(a.pop(0) if a[0] < b[0] else b.pop(0))\n    return out + a + b\n",
		"Solve for x: 3x^2 + 2x - 5 = 0, then compute $\\frac{x_1}{x_2}$. ",
		"Which of the following statements about the Treaty of Westphalia is NOT correct?\nA. It ended the Thirty Years' War\nB. It was signed in 1648\n",
	}
	var b strings.Builder
	for i := 0; estimateTokens(b.String()) < n; i++ {
		b.WriteString(parts[i%len(parts)])
	}
	return b.String()
}

func estimateTokens(s string) int { return len(s) / 4 }

// BenchmarkScore2000Tokens scores a ~2,000-token prompt for 4 models and
// reports the p99 latency of single calls.
func BenchmarkScore2000Tokens(b *testing.B) {
	s := Default()
	p := Prompt{System: "You are a helpful assistant.", User: longPrompt(2000), Turns: 3}
	models := []string{"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "mistralai/Mixtral-8x7B-Instruct-v0.1"}
	out := make([]float64, len(models))
	s.Score(p, models, out)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		s.Score(p, models, out)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkScoreShort scores a one-line prompt against every model of the
// table.
func BenchmarkScoreShort(b *testing.B) {
	s := Default()
	p := Prompt{User: "What is the capital of Australia?"}
	models := s.Models()
	out := make([]float64, len(models))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.Score(p, models, out)
	}
}
