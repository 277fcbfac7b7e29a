package pricing

import (
	"regexp"
	"strings"
)

// The embedded price table, in USD per million tokens.
//
// Source: each provider's public list prices (openai.com/api/pricing,
// anthropic.com/pricing, ai.google.dev/gemini-api/docs/pricing,
// mistral.ai/pricing, groq.com/pricing, together.ai/pricing,
// fireworks.ai/pricing, api-docs.deepseek.com/quick_start/pricing,
// aws.amazon.com/bedrock/pricing, docs.x.ai, docs.perplexity.ai,
// cerebras.ai/pricing) as of November 2025, and the newer models of
// OpenAI, Anthropic, Google, xAI, DeepSeek and Mistral as of November 2026
// (each section says where from), transcribed by hand without a live check:
// prices change, and a deployment whose bill matters should set
// model_info.input_cost_per_token and friends.
//
// Rules of the table:
//   - read is the cached-input rate and write the cache-write rate; zero
//     means the provider has no such discount or surcharge, so those
//     tokens cost the input rate.
//   - Anthropic's write is the 5-minute cache write (1.25x input); 1-hour
//     writes (2x) are not told apart in usage and are billed at that rate.
//   - Gemini has no per-token cache write (storage is billed per hour and
//     not here); its cache creation tokens cost the input rate.
//   - Hosted open-weight models are keyed "provider/model" because each
//     host prices them differently; first-party models are keyed by bare id
//     and match under any provider prefix (azure/gpt-4o, openrouter, ...).
//   - Claude on Bedrock and Vertex costs Anthropic's list price; its ids
//     normalize to the Anthropic ids (see candidates).
//   - Not priced: per-request search fees (Perplexity, web search tools),
//     audio and image tokens, batch discounts, DeepSeek off-peak discounts,
//     regional surcharges.
var table = map[string]Price{}

// long is a long-context tier: above tokens of input, the whole request
// costs these rates.
type long struct {
	above                int
	in, out, read, write float64
}

type row struct {
	id                   string
	in, out, read, write float64
	long                 *long
}

var rows = []row{
	// OpenAI.
	// 2026 models, read November 2026 from developers.openai.com model
	// pages where they could be, else from two third-party price lists
	// that agree. From GPT-5.4 on, a request with more than 272K input
	// tokens pays twice the input and cache rates and 1.5 times the output
	// rate on all its tokens. Where no cached rate was confirmed (Astra
	// 6.2, the Pro models) cached tokens cost the input rate. GPT-5.6
	// Sol is at its list price; its promotional $4/$20 (until at least
	// 2026-11-21) is not modelled.
	{id: "gpt-6.2-astra", in: 8, out: 40,
		long: &long{above: 272_000, in: 16, out: 60}},
	{id: "gpt-6.2-sol", in: 2, out: 10, read: 0.10, write: 2.50,
		long: &long{above: 272_000, in: 4, out: 15, read: 0.20, write: 5}},
	{id: "gpt-6.1-sol", in: 2, out: 10, read: 0.10, write: 2.50,
		long: &long{above: 272_000, in: 4, out: 15, read: 0.20, write: 5}},
	{id: "gpt-6.1-terra", in: 1, out: 5, read: 0.05, write: 1.25,
		long: &long{above: 272_000, in: 2, out: 7.50, read: 0.10, write: 2.50}},
	{id: "gpt-6-astra", in: 10, out: 50, read: 1, write: 12.50,
		long: &long{above: 272_000, in: 20, out: 75, read: 2, write: 25}},
	{id: "gpt-6-sol", in: 2, out: 10, read: 0.20, write: 2.50,
		long: &long{above: 272_000, in: 4, out: 15, read: 0.40, write: 5}},
	{id: "gpt-6-luna", in: 0.10, out: 0.50, read: 0.01, write: 0.125,
		long: &long{above: 272_000, in: 0.20, out: 0.75, read: 0.02, write: 0.25}},
	{id: "gpt-5.6-sol", in: 5, out: 30, read: 0.50,
		long: &long{above: 272_000, in: 10, out: 45, read: 1}},
	{id: "gpt-5.6-terra", in: 2, out: 12, read: 0.20,
		long: &long{above: 272_000, in: 4, out: 18, read: 0.40}},
	{id: "gpt-5.6-luna", in: 0.20, out: 1.20, read: 0.02,
		long: &long{above: 272_000, in: 0.40, out: 1.80, read: 0.04}},
	{id: "gpt-5.5", in: 5, out: 30, read: 0.50,
		long: &long{above: 272_000, in: 10, out: 45, read: 1}},
	{id: "gpt-5.5-pro", in: 30, out: 180,
		long: &long{above: 272_000, in: 60, out: 270}},
	{id: "gpt-5.4", in: 2.50, out: 15, read: 0.25,
		long: &long{above: 272_000, in: 5, out: 22.50, read: 0.50}},
	{id: "gpt-5.4-mini", in: 0.75, out: 4.50, read: 0.075},
	{id: "gpt-5.4-nano", in: 0.20, out: 1.25, read: 0.02},
	{id: "gpt-5.4-pro", in: 30, out: 180},
	{id: "gpt-5.3-codex", in: 1.75, out: 14, read: 0.175},
	{id: "gpt-5.2", in: 1.75, out: 14, read: 0.175},
	{id: "gpt-5.2-pro", in: 21, out: 168},
	// 2025 and earlier (some retired by OpenAI; kept for other hosts and
	// old ledgers).
	{id: "gpt-5.1", in: 1.25, out: 10, read: 0.125},
	{id: "gpt-5", in: 1.25, out: 10, read: 0.125},
	{id: "gpt-5-chat-latest", in: 1.25, out: 10, read: 0.125},
	{id: "gpt-5-mini", in: 0.25, out: 2, read: 0.025},
	{id: "gpt-5-nano", in: 0.05, out: 0.40, read: 0.005},
	{id: "gpt-4.1", in: 2, out: 8, read: 0.50},
	{id: "gpt-4.1-mini", in: 0.40, out: 1.60, read: 0.10},
	{id: "gpt-4.1-nano", in: 0.10, out: 0.40, read: 0.025},
	{id: "gpt-4.5-preview", in: 75, out: 150, read: 37.5},
	{id: "gpt-4o", in: 2.50, out: 10, read: 1.25},
	{id: "gpt-4o-2024-05-13", in: 5, out: 15},
	{id: "chatgpt-4o-latest", in: 5, out: 15},
	{id: "gpt-4o-mini", in: 0.15, out: 0.60, read: 0.075},
	{id: "gpt-4-turbo", in: 10, out: 30},
	{id: "gpt-4-1106-preview", in: 10, out: 30},
	{id: "gpt-4-0125-preview", in: 10, out: 30},
	{id: "gpt-4", in: 30, out: 60},
	{id: "gpt-4-32k", in: 60, out: 120},
	{id: "gpt-3.5-turbo", in: 0.50, out: 1.50},
	{id: "gpt-3.5-turbo-instruct", in: 1.50, out: 2},
	{id: "o1", in: 15, out: 60, read: 7.50},
	{id: "o1-pro", in: 150, out: 600},
	{id: "o1-mini", in: 1.10, out: 4.40, read: 0.55},
	{id: "o3", in: 2, out: 8, read: 0.50},
	{id: "o3-pro", in: 20, out: 80},
	{id: "o3-mini", in: 1.10, out: 4.40, read: 0.55},
	{id: "o3-deep-research", in: 10, out: 40, read: 2.50},
	{id: "o4-mini", in: 1.10, out: 4.40, read: 0.275},
	{id: "o4-mini-deep-research", in: 2, out: 8, read: 0.50},
	{id: "text-embedding-3-small", in: 0.02},
	{id: "text-embedding-3-large", in: 0.13},
	{id: "text-embedding-ada-002", in: 0.10},

	// Anthropic (also Bedrock and Vertex Claude, normalized to these ids).
	// 2026 models: each model's overview page on platform.claude.com
	// (docs/<lang>/models/<model>/overview) and the pricing page
	// (docs/about-claude/pricing), read November 2026. Fable 5.2's cache
	// rates, Haiku 5.5's cache reads and Sonnet 5.5's cut cache reads are
	// from third-party release notes that agree. They price 1M tokens of
	// context at one rate, except Haiku 5.5's prompts over 100K.
	{id: "claude-fable-5-2", in: 8, out: 40, read: 0.20, write: 10},
	{id: "claude-fable-5-1", in: 10, out: 50, read: 0.25, write: 12.50},
	{id: "claude-mythos-5-1", in: 10, out: 50, read: 0.25, write: 12.50},
	{id: "claude-fable-5", in: 10, out: 50, read: 1, write: 12.50},
	{id: "claude-mythos-5", in: 10, out: 50, read: 1, write: 12.50},
	{id: "claude-opus-5-5", in: 4, out: 20, read: 0.20, write: 5},
	{id: "claude-opus-5", in: 5, out: 25, read: 0.50, write: 6.25},
	{id: "claude-opus-4-8", in: 5, out: 25, read: 0.50, write: 6.25},
	{id: "claude-opus-4-7", in: 5, out: 25, read: 0.50, write: 6.25},
	{id: "claude-opus-4-6", in: 5, out: 25, read: 0.50, write: 6.25},
	{id: "claude-sonnet-5-5", in: 2, out: 10, read: 0.10, write: 2.50}, // cache reads cut from 0.20 on 2026-10-07
	{id: "claude-sonnet-5", in: 2, out: 10, read: 0.20, write: 2.50},
	{id: "claude-sonnet-4-6", in: 3, out: 15, read: 0.30, write: 3.75},
	{id: "claude-haiku-5-5", in: 0.10, out: 0.50, read: 0.01, write: 0.125,
		long: &long{above: 100_000, in: 0.50, out: 2.50, read: 0.05, write: 0.625}},
	{id: "claude-opus-4-5", in: 5, out: 25, read: 0.50, write: 6.25},
	{id: "claude-opus-4-1", in: 15, out: 75, read: 1.50, write: 18.75},
	{id: "claude-opus-4", in: 15, out: 75, read: 1.50, write: 18.75},
	{id: "claude-opus-4-0", in: 15, out: 75, read: 1.50, write: 18.75},
	{id: "claude-sonnet-4-5", in: 3, out: 15, read: 0.30, write: 3.75,
		long: &long{above: 200_000, in: 6, out: 22.5, read: 0.60, write: 7.50}},
	{id: "claude-sonnet-4", in: 3, out: 15, read: 0.30, write: 3.75,
		long: &long{above: 200_000, in: 6, out: 22.5, read: 0.60, write: 7.50}},
	{id: "claude-sonnet-4-0", in: 3, out: 15, read: 0.30, write: 3.75,
		long: &long{above: 200_000, in: 6, out: 22.5, read: 0.60, write: 7.50}},
	{id: "claude-haiku-4-5", in: 1, out: 5, read: 0.10, write: 1.25},
	{id: "claude-3-7-sonnet", in: 3, out: 15, read: 0.30, write: 3.75},
	{id: "claude-3-5-sonnet", in: 3, out: 15, read: 0.30, write: 3.75},
	{id: "claude-3-5-sonnet-v2", in: 3, out: 15, read: 0.30, write: 3.75}, // Vertex's name for 20241022
	{id: "claude-3-5-haiku", in: 0.80, out: 4, read: 0.08, write: 1},
	{id: "claude-3-opus", in: 15, out: 75, read: 1.50, write: 18.75},
	{id: "claude-3-sonnet", in: 3, out: 15, read: 0.30, write: 3.75},
	{id: "claude-3-haiku", in: 0.25, out: 1.25, read: 0.03, write: 0.30},

	// Google Gemini (AI Studio and Vertex list the same figures).
	// 2026 models from two third-party copies of
	// ai.google.dev/gemini-api/docs/pricing that agree (November 2026);
	// cached rates only where confirmed. Gemini 3.7 and 3.8 Flash are at
	// the price they return to on 2027-01-01; their promotional $0.75/$3.75
	// until then is not modelled.
	{id: "gemini-3.1-pro-preview", in: 2, out: 12, read: 0.20,
		long: &long{above: 200_000, in: 4, out: 18, read: 0.40}},
	{id: "gemini-3.8-flash", in: 1.50, out: 7.50},
	{id: "gemini-3.7-flash", in: 1.50, out: 7.50},
	{id: "gemini-3.5-flash", in: 1.50, out: 9},
	{id: "gemini-3.5-flash-lite", in: 0.30, out: 2.50},
	{id: "gemini-3-flash-preview", in: 0.50, out: 3, read: 0.05},
	{id: "gemini-3.1-flash-lite-preview", in: 0.25, out: 1.50, read: 0.025},
	{id: "gemini-3-pro-preview", in: 2, out: 12, read: 0.20,
		long: &long{above: 200_000, in: 4, out: 18, read: 0.40}},
	{id: "gemini-2.5-pro", in: 1.25, out: 10, read: 0.125,
		long: &long{above: 200_000, in: 2.50, out: 15, read: 0.25}},
	{id: "gemini-2.5-flash", in: 0.30, out: 2.50, read: 0.03},
	{id: "gemini-2.5-flash-lite", in: 0.10, out: 0.40, read: 0.01},
	{id: "gemini-2.0-flash", in: 0.10, out: 0.40, read: 0.025},
	{id: "gemini-2.0-flash-lite", in: 0.075, out: 0.30},
	{id: "gemini-1.5-pro", in: 1.25, out: 5, read: 0.3125,
		long: &long{above: 128_000, in: 2.50, out: 10, read: 0.625}},
	{id: "gemini-1.5-flash", in: 0.075, out: 0.30, read: 0.01875,
		long: &long{above: 128_000, in: 0.15, out: 0.60, read: 0.0375}},
	{id: "gemini-1.5-flash-8b", in: 0.0375, out: 0.15, read: 0.01,
		long: &long{above: 128_000, in: 0.075, out: 0.30, read: 0.02}},
	{id: "gemini-embedding-001", in: 0.15},

	// Mistral (la Plateforme).
	// Mistral Large 3 (the -latest alias since 2512) and Medium 3.5, from
	// two third-party lists that agree (November 2026).
	{id: "mistral-large-2512", in: 0.50, out: 1.50},
	{id: "mistral-large-latest", in: 0.50, out: 1.50},
	{id: "mistral-medium-latest", in: 1.50, out: 7.50},
	{id: "mistral-large", in: 2, out: 6},
	{id: "mistral-medium", in: 0.40, out: 2},
	{id: "mistral-small", in: 0.10, out: 0.30},
	{id: "magistral-medium", in: 2, out: 5},
	{id: "magistral-small", in: 0.50, out: 1.50},
	{id: "codestral", in: 0.30, out: 0.90},
	{id: "pixtral-large", in: 2, out: 6},
	{id: "pixtral-12b", in: 0.15, out: 0.15},
	{id: "open-mistral-nemo", in: 0.15, out: 0.15},
	{id: "ministral-8b", in: 0.10, out: 0.10},
	{id: "ministral-3b", in: 0.04, out: 0.04},
	{id: "open-mixtral-8x22b", in: 2, out: 6},
	{id: "open-mixtral-8x7b", in: 0.70, out: 0.70},
	{id: "open-mistral-7b", in: 0.25, out: 0.25},
	{id: "mistral-embed", in: 0.10},

	// DeepSeek (V3.2-Exp prices from 2025-09-29; both ids cost the same).
	{id: "deepseek-flash", in: 0.30, out: 1.20, read: 0.006}, // api-docs.deepseek.com, November 2026: peak rates (off-peak is half, not modelled)
	{id: "deepseek-v4-flash", in: 0.30, out: 1.20, read: 0.006},
	{id: "deepseek-v4-pro", in: 1.32, out: 3.96, read: 0.044},
	{id: "deepseek-chat", in: 0.28, out: 0.42, read: 0.028},
	{id: "deepseek-reasoner", in: 0.28, out: 0.42, read: 0.028},

	// xAI.
	// 2026 models from docs.x.ai (November 2026); a request of 200K input
	// tokens or more pays twice every rate. Grok 4.3's tier and the 4.5-4.7
	// cached rates and tiers are from two third-party lists that agree.
	{id: "grok-4.3", in: 1.25, out: 2.50, read: 0.20,
		long: &long{above: 199_999, in: 2.50, out: 5, read: 0.40}},
	{id: "grok-4.20-0309-reasoning", in: 1.25, out: 2.50, read: 0.20,
		long: &long{above: 199_999, in: 2.50, out: 5, read: 0.40}},
	{id: "grok-4.20-0309-non-reasoning", in: 1.25, out: 2.50, read: 0.20,
		long: &long{above: 199_999, in: 2.50, out: 5, read: 0.40}},
	{id: "grok-4.20-multi-agent-0309", in: 1.25, out: 2.50, read: 0.20,
		long: &long{above: 199_999, in: 2.50, out: 5, read: 0.40}},
	{id: "grok-4.7", in: 2, out: 6, read: 0.50,
		long: &long{above: 199_999, in: 4, out: 12, read: 1}},
	{id: "grok-4.6", in: 2, out: 6, read: 0.50,
		long: &long{above: 199_999, in: 4, out: 12, read: 1}},
	{id: "grok-4.5", in: 2, out: 6, read: 0.50,
		long: &long{above: 199_999, in: 4, out: 12, read: 1}},
	{id: "grok-4", in: 3, out: 15, read: 0.75},
	{id: "grok-3", in: 3, out: 15, read: 0.75},
	{id: "grok-3-mini", in: 0.30, out: 0.50, read: 0.075},
	{id: "grok-code-fast-1", in: 0.20, out: 1.50, read: 0.02},

	// Perplexity (token prices only; per-request search fees are not here).
	{id: "sonar", in: 1, out: 1},
	{id: "sonar-pro", in: 3, out: 15},
	{id: "sonar-reasoning", in: 1, out: 5},
	{id: "sonar-reasoning-pro", in: 2, out: 8},

	// Groq.
	{id: "groq/llama-3.3-70b-versatile", in: 0.59, out: 0.79},
	{id: "groq/llama-3.1-8b-instant", in: 0.05, out: 0.08},
	{id: "groq/llama3-70b-8192", in: 0.59, out: 0.79},
	{id: "groq/llama3-8b-8192", in: 0.05, out: 0.08},
	{id: "groq/meta-llama/llama-4-scout-17b-16e-instruct", in: 0.11, out: 0.34},
	{id: "groq/meta-llama/llama-4-maverick-17b-128e-instruct", in: 0.20, out: 0.60},
	{id: "groq/deepseek-r1-distill-llama-70b", in: 0.75, out: 0.99},
	{id: "groq/qwen/qwen3-32b", in: 0.29, out: 0.59},
	{id: "groq/moonshotai/kimi-k2-instruct", in: 1, out: 3},
	{id: "groq/openai/gpt-oss-120b", in: 0.15, out: 0.75},
	{id: "groq/openai/gpt-oss-20b", in: 0.10, out: 0.50},
	{id: "groq/gemma2-9b-it", in: 0.20, out: 0.20},
	{id: "groq/mixtral-8x7b-32768", in: 0.24, out: 0.24},

	// Together AI.
	{id: "together_ai/meta-llama/llama-3.3-70b-instruct-turbo", in: 0.88, out: 0.88},
	{id: "together_ai/meta-llama/meta-llama-3.1-8b-instruct-turbo", in: 0.18, out: 0.18},
	{id: "together_ai/meta-llama/meta-llama-3.1-70b-instruct-turbo", in: 0.88, out: 0.88},
	{id: "together_ai/meta-llama/meta-llama-3.1-405b-instruct-turbo", in: 3.50, out: 3.50},
	{id: "together_ai/meta-llama/llama-4-maverick-17b-128e-instruct-fp8", in: 0.27, out: 0.85},
	{id: "together_ai/meta-llama/llama-4-scout-17b-16e-instruct", in: 0.18, out: 0.59},
	{id: "together_ai/deepseek-ai/deepseek-v3", in: 1.25, out: 1.25},
	{id: "together_ai/deepseek-ai/deepseek-r1", in: 3, out: 7},
	{id: "together_ai/qwen/qwen2.5-72b-instruct-turbo", in: 1.20, out: 1.20},
	{id: "together_ai/qwen/qwen2.5-7b-instruct-turbo", in: 0.30, out: 0.30},
	{id: "together_ai/mistralai/mixtral-8x7b-instruct-v0.1", in: 0.60, out: 0.60},
	{id: "together_ai/openai/gpt-oss-120b", in: 0.15, out: 0.60},

	// Fireworks AI (ids without the accounts/fireworks/models/ path).
	{id: "fireworks_ai/llama-v3p3-70b-instruct", in: 0.90, out: 0.90},
	{id: "fireworks_ai/llama-v3p1-70b-instruct", in: 0.90, out: 0.90},
	{id: "fireworks_ai/llama-v3p1-8b-instruct", in: 0.20, out: 0.20},
	{id: "fireworks_ai/llama-v3p1-405b-instruct", in: 3, out: 3},
	{id: "fireworks_ai/llama4-maverick-instruct-basic", in: 0.22, out: 0.88},
	{id: "fireworks_ai/llama4-scout-instruct-basic", in: 0.15, out: 0.60},
	{id: "fireworks_ai/deepseek-v3", in: 0.90, out: 0.90},
	{id: "fireworks_ai/deepseek-r1", in: 3, out: 8},
	{id: "fireworks_ai/qwen2p5-72b-instruct", in: 0.90, out: 0.90},
	{id: "fireworks_ai/mixtral-8x22b-instruct", in: 1.20, out: 1.20},

	// Cerebras.
	{id: "cerebras/llama3.1-8b", in: 0.10, out: 0.10},
	{id: "cerebras/llama-3.3-70b", in: 0.85, out: 1.20},
	{id: "cerebras/gpt-oss-120b", in: 0.25, out: 0.69},

	// Amazon Bedrock, non-Anthropic models (ids after the region prefix and
	// version suffix are removed; see candidates).
	{id: "amazon.nova-premier", in: 2.50, out: 12.50},
	{id: "amazon.nova-pro", in: 0.80, out: 3.20, read: 0.20},
	{id: "amazon.nova-lite", in: 0.06, out: 0.24, read: 0.015},
	{id: "amazon.nova-micro", in: 0.035, out: 0.14, read: 0.00875},
	{id: "amazon.titan-embed-text-v2:0", in: 0.02},
	{id: "meta.llama3-3-70b-instruct", in: 0.72, out: 0.72},
	{id: "meta.llama3-1-405b-instruct", in: 2.40, out: 2.40},
	{id: "meta.llama3-1-70b-instruct", in: 0.72, out: 0.72},
	{id: "meta.llama3-1-8b-instruct", in: 0.22, out: 0.22},
	{id: "mistral.mistral-large-2407", in: 2, out: 6},
	{id: "cohere.command-r-plus", in: 3, out: 15},
	{id: "cohere.command-r", in: 0.50, out: 1.50},
	{id: "cohere.embed-english-v3", in: 0.10},
	{id: "cohere.embed-multilingual-v3", in: 0.10},
}

func init() {
	const perM = 1e-6
	rates := func(in, out, read, write float64) Rates {
		if read == 0 {
			read = in
		}
		if write == 0 {
			write = in
		}
		return Rates{Input: in * perM, Output: out * perM, CacheRead: read * perM, CacheWrite: write * perM}
	}
	for _, r := range rows {
		p := Price{Rates: rates(r.in, r.out, r.read, r.write)}
		if l := r.long; l != nil {
			p.LongContextAbove = l.above
			p.LongContext = rates(l.in, l.out, l.read, l.write)
		}
		if _, dup := table[r.id]; dup {
			panic("pricing: duplicate table id " + r.id)
		}
		table[r.id] = p
	}
}

// Lookup returns the table price of model as served by provider. Both are
// matched case-insensitively; provider may be empty and model may carry a
// provider prefix ("openai/gpt-4o"). Dated and versioned ids fall back to
// their base when the table has no entry of their own:
// "gpt-4o-2024-08-06" → "gpt-4o", "claude-3-5-sonnet-20241022" and
// "us.anthropic.claude-3-5-sonnet-20241022-v2:0" → "claude-3-5-sonnet",
// "gemini-1.5-pro-002" → "gemini-1.5-pro", "mistral-large-latest" →
// "mistral-large".
func Lookup(provider, model string) (Price, bool) {
	provider = strings.ToLower(strings.TrimSpace(provider))
	for _, c := range candidates(strings.ToLower(strings.TrimSpace(model))) {
		if provider != "" {
			if p, ok := table[provider+"/"+c]; ok {
				return p, true
			}
		}
		if p, ok := table[c]; ok {
			return p, true
		}
	}
	return Price{}, false
}

// Known reports how many model ids the table prices.
func Known() int { return len(table) }

// candidates lists the spellings of model to try, most specific first:
// the id itself, then each shorter form its leading "segment/" parts give,
// and for each of those the bases its suffixes strip down to.
func candidates(model string) []string {
	var out []string
	for m := model; m != ""; {
		out = append(out, m)
		for b := m; ; {
			next, ok := strip(b)
			if !ok {
				break
			}
			out = append(out, next)
			b = next
		}
		_, rest, ok := strings.Cut(m, "/")
		if !ok {
			break
		}
		m = rest
	}
	return out
}

// strips turn an id into a more general one, one step at a time. Each
// pattern's first group is kept.
var strips = []*regexp.Regexp{
	regexp.MustCompile(`^(?:us|eu|apac|jp|au|ca|global|us-gov)\.(.+)$`), // Bedrock cross-region profile
	regexp.MustCompile(`^anthropic\.(.+)$`),                             // Bedrock vendor
	regexp.MustCompile(`^(.+?)(?:-v\d+)?:\d+$`),                         // Bedrock version
	regexp.MustCompile(`^(.+)@(?:\d{8}|latest|default)$`),               // Vertex Claude
	regexp.MustCompile(`^(.+)-\d{4}-\d{2}-\d{2}$`),                      // OpenAI date
	regexp.MustCompile(`^(.+)-\d{8}$`),                                  // Anthropic date
	regexp.MustCompile(`^(.+)-latest$`),
	regexp.MustCompile(`^(.+)-preview(?:-\d{2}-\d{2}|-\d{2}-\d{4})?$`), // Gemini previews, o1-preview
	regexp.MustCompile(`^(.+)-exp(?:-\d{4})?$`),
	regexp.MustCompile(`^(.+)-\d{3}$`), // Gemini -001
	regexp.MustCompile(`^(.+)-\d{4}$`), // gpt-4-0613, mistral-large-2411, grok-4-0709
}

// claudeDots matches the dotted versions OpenRouter spells Claude ids with
// ("claude-3.5-sonnet", "claude-sonnet-4.5").
var claudeDots = regexp.MustCompile(`(\d)\.(\d)`)

// strip applies the first rule that changes id.
func strip(id string) (string, bool) {
	if strings.HasPrefix(id, "claude") && claudeDots.MatchString(id) {
		return claudeDots.ReplaceAllString(id, "$1-$2"), true
	}
	for _, re := range strips {
		if m := re.FindStringSubmatch(id); m != nil && m[1] != id {
			return m[1], true
		}
	}
	return "", false
}
