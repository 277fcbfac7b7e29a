package pricing

import (
	"math"
	"testing"

	"github.com/lumengw/lumen/providers"
)

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-12+1e-9*math.Abs(b) }

func mustLookup(t *testing.T, provider, model string) Price {
	t.Helper()
	p, ok := Lookup(provider, model)
	if !ok {
		t.Fatalf("Lookup(%q, %q): not found", provider, model)
	}
	return p
}

// The translators normalize each provider's usage object into
// providers.Usage; these helpers restate those rules so that the cases
// below read in the provider's own terms.

// openAIUsage: prompt_tokens includes prompt_tokens_details.cached_tokens.
func openAIUsage(promptTokens, cachedTokens, completionTokens int) providers.Usage {
	return providers.Usage{PromptTokens: promptTokens, CachedTokens: cachedTokens, CompletionTokens: completionTokens}
}

// anthropicUsage: input_tokens excludes cache_read_input_tokens and
// cache_creation_input_tokens, so the prompt is their sum.
func anthropicUsage(input, cacheRead, cacheCreation, output int) providers.Usage {
	return providers.Usage{
		PromptTokens:     input + cacheRead + cacheCreation,
		CachedTokens:     cacheRead,
		CacheWriteTokens: cacheCreation,
		CompletionTokens: output,
	}
}

// geminiUsage: promptTokenCount includes cachedContentTokenCount; thoughts
// are billed as output.
func geminiUsage(prompt, cached, candidates, thoughts int) providers.Usage {
	return providers.Usage{PromptTokens: prompt, CachedTokens: cached, CompletionTokens: candidates + thoughts}
}

// deepSeekUsage: prompt_cache_hit_tokens + prompt_cache_miss_tokens =
// prompt_tokens.
func deepSeekUsage(hit, miss, completion int) providers.Usage {
	return providers.Usage{PromptTokens: hit + miss, CachedTokens: hit, CompletionTokens: completion}
}

func TestCostUsageShapes(t *testing.T) {
	tests := []struct {
		name            string
		provider, model string
		usage           providers.Usage
		want            float64 // USD, worked out by hand from the list prices
	}{
		{
			name: "openai no cache", provider: "openai", model: "gpt-4o",
			usage: openAIUsage(1000, 0, 500),
			want:  1000*2.50e-6 + 500*10e-6,
		},
		{
			// 800 of 1000 prompt tokens cached: 200 at $2.50/M, 800 at $1.25/M.
			name: "openai cached tokens priced once, at the cached rate", provider: "openai", model: "gpt-4o",
			usage: openAIUsage(1000, 800, 500),
			want:  200*2.50e-6 + 800*1.25e-6 + 500*10e-6,
		},
		{
			name: "openai mini dated id", provider: "openai", model: "gpt-4o-mini-2024-07-18",
			usage: openAIUsage(10_000, 4_096, 1_000),
			want:  5_904*0.15e-6 + 4_096*0.075e-6 + 1_000*0.60e-6,
		},
		{
			name: "openai embeddings", provider: "openai", model: "text-embedding-3-small",
			usage: openAIUsage(8_000, 0, 0),
			want:  8_000 * 0.02e-6,
		},
		{
			// input_tokens 100 (uncached), 1000 read, 200 written, 50 out.
			name: "anthropic cache read and write", provider: "anthropic", model: "claude-3-5-sonnet-20241022",
			usage: anthropicUsage(100, 1000, 200, 50),
			want:  100*3e-6 + 1000*0.30e-6 + 200*3.75e-6 + 50*15e-6,
		},
		{
			name: "anthropic no cache", provider: "anthropic", model: "claude-opus-4-1-20250805",
			usage: anthropicUsage(2_000, 0, 0, 1_000),
			want:  2_000*15e-6 + 1_000*75e-6,
		},
		{
			name: "anthropic sonnet 4 above 200k", provider: "anthropic", model: "claude-sonnet-4-20250514",
			usage: anthropicUsage(150_000, 60_000, 0, 1_000),
			want:  150_000*6e-6 + 60_000*0.60e-6 + 1_000*22.5e-6,
		},
		{
			name: "claude haiku 5.5 above 100k", provider: "anthropic", model: "claude-haiku-5-5",
			usage: anthropicUsage(90_000, 20_000, 0, 1_000),
			want:  90_000*0.50e-6 + 20_000*0.05e-6 + 1_000*2.50e-6,
		},
		{
			name: "gpt-5.5 above 272k", provider: "openai", model: "gpt-5.5",
			usage: openAIUsage(300_000, 100_000, 2_000),
			want:  200_000*10e-6 + 100_000*1e-6 + 2_000*45e-6,
		},
		{
			name: "gpt-5.5 at 272k", provider: "openai", model: "gpt-5.5",
			usage: openAIUsage(272_000, 0, 2_000),
			want:  272_000*5e-6 + 2_000*30e-6,
		},
		{
			name: "bedrock claude via converse shape", provider: "bedrock", model: "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
			usage: anthropicUsage(500, 2_000, 0, 300),
			want:  500*3e-6 + 2_000*0.30e-6 + 300*15e-6,
		},
		{
			name: "gemini implicit cache and thoughts", provider: "gemini", model: "gemini-2.5-flash",
			usage: geminiUsage(10_000, 6_000, 400, 600),
			want:  4_000*0.30e-6 + 6_000*0.03e-6 + 1_000*2.50e-6,
		},
		{
			name: "gemini 2.5 pro at 200k is still the low tier", provider: "gemini", model: "gemini-2.5-pro",
			usage: geminiUsage(200_000, 0, 1_000, 0),
			want:  200_000*1.25e-6 + 1_000*10e-6,
		},
		{
			name: "gemini 2.5 pro above 200k", provider: "gemini", model: "gemini-2.5-pro",
			usage: geminiUsage(200_001, 100_000, 1_000, 0),
			want:  100_001*2.50e-6 + 100_000*0.25e-6 + 1_000*15e-6,
		},
		{
			name: "deepseek cache hit and miss", provider: "deepseek", model: "deepseek-chat",
			usage: deepSeekUsage(3_000, 1_000, 2_000),
			want:  3_000*0.028e-6 + 1_000*0.28e-6 + 2_000*0.42e-6,
		},
		{
			name: "mistral no cache discount", provider: "mistral", model: "mistral-large-latest",
			usage: openAIUsage(1_000, 0, 1_000),
			want:  1_000*0.5e-6 + 1_000*1.5e-6, // Large 3 since 2512
		},
		{
			name: "groq hosted open model", provider: "groq", model: "llama-3.3-70b-versatile",
			usage: openAIUsage(1_000_000, 0, 1_000_000),
			want:  0.59 + 0.79,
		},
		{
			name: "together hosted open model", provider: "together_ai", model: "meta-llama/Llama-3.3-70B-Instruct-Turbo",
			usage: openAIUsage(1_000_000, 0, 1_000_000),
			want:  0.88 + 0.88,
		},
		{
			// A provider reporting cached tokens for a model without a cache
			// discount: they cost the input rate, still only once.
			name: "cached tokens without a discount", provider: "openai", model: "gpt-4-turbo",
			usage: openAIUsage(1_000, 500, 0),
			want:  1_000 * 10e-6,
		},
		{
			name: "parts larger than the prompt are clamped", provider: "openai", model: "gpt-4o",
			usage: providers.Usage{PromptTokens: 100, CachedTokens: 80, CacheWriteTokens: 80, CompletionTokens: -5},
			want:  80*1.25e-6 + 20*2.50e-6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Cost(tt.usage, mustLookup(t, tt.provider, tt.model))
			if !approx(got, tt.want) {
				t.Errorf("Cost = %.10f, want %.10f", got, tt.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		provider, model string
		in, out         float64 // USD per million; both 0 means not found
	}{
		{"openai", "gpt-4o", 2.50, 10},
		{"", "openai/gpt-4o", 2.50, 10},
		{"", "gpt-4o", 2.50, 10},
		{"openai", "gpt-4o-2024-08-06", 2.50, 10},
		{"openai", "gpt-4o-2024-05-13", 5, 15}, // its own, older price
		{"openai", "GPT-4o", 2.50, 10},
		{"azure", "gpt-4o", 2.50, 10},
		{"openai", "gpt-4.1-2025-04-14", 2, 8},
		{"openai", "gpt-4.1-mini", 0.40, 1.60},
		{"openai", "o3-mini-2025-01-31", 1.10, 4.40},
		{"openai", "o1-preview", 15, 60},
		{"openai", "gpt-4-0613", 30, 60},
		{"openai", "gpt-4-1106-preview", 10, 30},
		{"openai", "gpt-3.5-turbo-0125", 0.50, 1.50},
		{"anthropic", "claude-3-5-sonnet-20241022", 3, 15},
		{"anthropic", "claude-3-5-haiku-latest", 0.80, 4},
		{"anthropic", "claude-3-7-sonnet-20250219", 3, 15},
		{"anthropic", "claude-sonnet-4-0", 3, 15},
		{"anthropic", "claude-opus-4-5-20251101", 5, 25},
		{"anthropic", "claude-haiku-4-5-20251001", 1, 5},
		{"openrouter", "anthropic/claude-3.5-sonnet", 3, 15},
		{"", "vertex_ai/claude-3-5-sonnet-v2@20241022", 3, 15},
		{"bedrock", "anthropic.claude-3-haiku-20240307-v1:0", 0.25, 1.25},
		{"bedrock", "eu.anthropic.claude-sonnet-4-20250514-v1:0", 3, 15},
		{"bedrock", "amazon.nova-pro-v1:0", 0.80, 3.20},
		{"bedrock", "us.meta.llama3-3-70b-instruct-v1:0", 0.72, 0.72},
		{"bedrock", "mistral.mistral-large-2407-v1:0", 2, 6},
		{"bedrock", "amazon.titan-embed-text-v2:0", 0.02, 0},
		{"gemini", "gemini-1.5-pro-002", 1.25, 5},
		{"gemini", "models/gemini-2.0-flash-001", 0.10, 0.40},
		{"gemini", "gemini-2.5-pro-preview-05-06", 1.25, 10},
		{"gemini", "gemini-2.5-flash-preview-09-2025", 0.30, 2.50},
		{"mistral", "mistral-large-2411", 2, 6},
		{"mistral", "mistral-large-latest", 0.50, 1.50}, // Large 3
		// 2026 models.
		{"openai", "gpt-5.5", 5, 30},
		{"azure", "gpt-5.5-2026-04-23", 5, 30},
		{"openai", "gpt-6.2-sol", 2, 10},
		{"openai", "gpt-5.4-mini", 0.75, 4.50},
		{"anthropic", "claude-opus-4-7", 5, 25},
		{"anthropic", "claude-opus-5-5", 4, 20},
		{"anthropic", "claude-sonnet-4-6-20260217", 3, 15},
		{"bedrock", "us.anthropic.claude-sonnet-5-5-v1:0", 2, 10},
		{"openrouter", "anthropic/claude-fable-5.2", 8, 40},
		{"gemini", "gemini-3.1-pro-preview", 2, 12},
		{"xai", "grok-4.3", 1.25, 2.50},
		{"deepseek", "deepseek-flash", 0.30, 1.20},
		{"mistral", "mistral-small-latest", 0.10, 0.30},
		{"deepseek", "deepseek-reasoner", 0.28, 0.42},
		{"groq", "openai/gpt-oss-120b", 0.15, 0.75},
		{"", "groq/llama-3.1-8b-instant", 0.05, 0.08},
		{"together_ai", "deepseek-ai/DeepSeek-R1", 3, 7},
		{"fireworks_ai", "accounts/fireworks/models/llama-v3p1-8b-instruct", 0.20, 0.20},
		{"xai", "grok-4-0709", 3, 15},
		// Not priced: a hosted open model on a host the table does not know,
		// an unknown id, a suffix that is not a date.
		{"openrouter", "meta-llama/llama-3.3-70b-instruct", 0, 0},
		{"openai", "gpt-4o-audio-preview", 0, 0},
		{"openai", "my-finetune", 0, 0},
		{"", "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.provider+"/"+tt.model, func(t *testing.T) {
			p, ok := Lookup(tt.provider, tt.model)
			if want := tt.in != 0 || tt.out != 0; ok != want {
				t.Fatalf("found = %v, want %v (price %+v)", ok, want, p)
			}
			if !approx(p.Input, tt.in*1e-6) || !approx(p.Output, tt.out*1e-6) {
				t.Errorf("input/output = %g/%g per token, want %g/%g per million", p.Input, p.Output, tt.in, tt.out)
			}
		})
	}
}

// Every table entry must be usable: positive input, no discount that costs
// more than input, long tiers above their base.
func TestTableSane(t *testing.T) {
	if Known() < 100 {
		t.Errorf("table has %d ids, expected the common models of every provider", Known())
	}
	for id, p := range table {
		if p.Input <= 0 || p.Output < 0 {
			t.Errorf("%s: input %g output %g", id, p.Input, p.Output)
		}
		if p.CacheRead > p.Input {
			t.Errorf("%s: cached input %g costs more than input %g", id, p.CacheRead, p.Input)
		}
		if p.CacheWrite < p.Input {
			t.Errorf("%s: cache write %g costs less than input %g", id, p.CacheWrite, p.Input)
		}
		if p.LongContextAbove > 0 && (p.LongContext.Input < p.Input || p.LongContext.Output < p.Output) {
			t.Errorf("%s: long-context tier %+v below base %+v", id, p.LongContext, p.Rates)
		}
		if _, ok := Lookup("", id); !ok {
			t.Errorf("%s: not found by its own id", id)
		}
	}
}

func f(v float64) *float64 { return &v }

func TestOverrideApply(t *testing.T) {
	gpt4o := mustLookup(t, "openai", "gpt-4o")
	sonnet4 := mustLookup(t, "anthropic", "claude-sonnet-4")
	tests := []struct {
		name string
		base Price
		o    Override
		want Price
	}{
		{"nothing overridden", sonnet4, Override{}, sonnet4},
		{
			name: "all four set",
			base: gpt4o,
			o:    Override{InputCostPerToken: f(1e-6), OutputCostPerToken: f(2e-6), CacheReadInputTokenCost: f(0.1e-6), CacheCreationInputTokenCost: f(1.5e-6)},
			want: Price{Rates: Rates{Input: 1e-6, Output: 2e-6, CacheRead: 0.1e-6, CacheWrite: 1.5e-6}},
		},
		{
			// gpt-4o caches at half price; a 20% input discount keeps that ratio.
			name: "input only keeps the cache ratio",
			base: gpt4o,
			o:    Override{InputCostPerToken: f(2e-6)},
			want: Price{Rates: Rates{Input: 2e-6, Output: 10e-6, CacheRead: 1e-6, CacheWrite: 2e-6}},
		},
		{
			name: "override drops the long-context tier",
			base: sonnet4,
			o:    Override{OutputCostPerToken: f(10e-6)},
			want: Price{Rates: Rates{Input: 3e-6, Output: 10e-6, CacheRead: 0.3e-6, CacheWrite: 3.75e-6}},
		},
		{
			name: "no base: cache rates follow input",
			base: Price{},
			o:    Override{InputCostPerToken: f(1e-6), OutputCostPerToken: f(3e-6)},
			want: Price{Rates: Rates{Input: 1e-6, Output: 3e-6, CacheRead: 1e-6, CacheWrite: 1e-6}},
		},
		{
			name: "explicit zero prices a model at nothing",
			base: gpt4o,
			o:    Override{InputCostPerToken: f(0), OutputCostPerToken: f(0)},
			want: Price{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.o.Apply(tt.base)
			if !approx(got.Input, tt.want.Input) || !approx(got.Output, tt.want.Output) ||
				!approx(got.CacheRead, tt.want.CacheRead) || !approx(got.CacheWrite, tt.want.CacheWrite) ||
				got.LongContextAbove != tt.want.LongContextAbove {
				t.Errorf("Apply = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFor(t *testing.T) {
	tests := []struct {
		name                       string
		provider, model, baseModel string
		o                          Override
		wantOK                     bool
		wantIn                     float64 // per token
	}{
		{"table", "openai", "gpt-4o", "", Override{}, true, 2.5e-6},
		{"azure deployment named by base_model", "azure", "prod-gpt4o-eastus", "gpt-4o-2024-08-06", Override{}, true, 2.5e-6},
		{"azure deployment without base_model", "azure", "prod-gpt4o-eastus", "", Override{}, false, 0},
		{"local model is free", "ollama", "llama3.1:8b", "", Override{}, true, 0},
		{"local model with a custom price", "hosted_vllm", "qwen2.5", "", Override{InputCostPerToken: f(1e-7), OutputCostPerToken: f(2e-7)}, true, 1e-7},
		{"unknown model with both prices", "openai_compatible", "my-model", "", Override{InputCostPerToken: f(1e-6), OutputCostPerToken: f(1e-6)}, true, 1e-6},
		{"unknown model with input only", "openai_compatible", "my-model", "", Override{InputCostPerToken: f(1e-6)}, false, 1e-6},
		{"table with override", "anthropic", "claude-3-haiku-20240307", "", Override{InputCostPerToken: f(0.2e-6)}, true, 0.2e-6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := For(tt.provider, tt.model, tt.baseModel, tt.o)
			if ok != tt.wantOK || !approx(p.Input, tt.wantIn) {
				t.Errorf("For = %+v, %v; want input %g, %v", p, ok, tt.wantIn, tt.wantOK)
			}
		})
	}
	if p, _ := For("ollama", "llama3.1:8b", "", Override{}); !p.Free() {
		t.Errorf("local price %+v is not free", p)
	}
}

func TestWorstCase(t *testing.T) {
	tests := []struct {
		name            string
		provider, model string
		prompt, maxOut  int
		want            float64
	}{
		// Every input token could be a cache write at $3.75/M.
		{"anthropic input at the write rate", "anthropic", "claude-3-5-sonnet", 1_000, 4_096, 1_000*3.75e-6 + 4_096*15e-6},
		{"openai input at the input rate", "openai", "gpt-4o", 1_000, 4_096, 1_000*2.50e-6 + 4_096*10e-6},
		{"long context tier", "gemini", "gemini-2.5-pro", 300_000, 1_000, 300_000*2.50e-6 + 1_000*15e-6},
		{"negative counts", "openai", "gpt-4o", -1, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustLookup(t, tt.provider, tt.model)
			if got := p.WorstCase(tt.prompt, tt.maxOut); !approx(got, tt.want) {
				t.Errorf("WorstCase = %.10f, want %.10f", got, tt.want)
			}
			// The reservation must cover any usage the call can report.
			u := providers.Usage{PromptTokens: max(tt.prompt, 0), CacheWriteTokens: max(tt.prompt, 0), CompletionTokens: max(tt.maxOut, 0)}
			if c := Cost(u, p); c > p.WorstCase(tt.prompt, tt.maxOut)+1e-12 {
				t.Errorf("Cost %g of a worst usage exceeds WorstCase", c)
			}
		})
	}
}

func BenchmarkCost(b *testing.B) {
	p := mustPrice(b)
	u := providers.Usage{PromptTokens: 1200, CachedTokens: 1000, CompletionTokens: 300}
	var sink float64
	for b.Loop() {
		sink += Cost(u, p)
	}
	_ = sink
}

func mustPrice(b *testing.B) Price {
	p, ok := Lookup("openai", "gpt-4o")
	if !ok {
		b.Fatal("gpt-4o not priced")
	}
	return p
}

// A price per image alone prices a deployment (image models have no token
// rates in the table), and each image made costs it.
func TestImagePrice(t *testing.T) {
	per := 0.04
	p, ok := For("openai", "dall-e-3", "", Override{OutputCostPerImage: &per})
	if !ok || p.Image != 0.04 {
		t.Fatalf("For = %+v, %v", p, ok)
	}
	if got := Cost(providers.Usage{Images: 2}, p); got != 0.08 {
		t.Errorf("2 images cost %v", got)
	}
	if _, ok := For("openai", "dall-e-3", "", Override{}); ok {
		t.Error("dall-e-3 without a price is priced")
	}
}

// A price per character prices a speech model, and each character read
// out costs it.
func TestCharacterPrice(t *testing.T) {
	per := 0.000015
	p, ok := For("openai", "tts-1", "", Override{InputCostPerCharacter: &per})
	if got := Cost(providers.Usage{Characters: 1000}, p); !ok || math.Abs(got-0.015) > 1e-12 {
		t.Fatalf("For = %+v, %v", p, ok)
	}
}
