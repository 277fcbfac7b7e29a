// Package pricing turns token usage into US dollars.
//
// A Price holds USD per token for four kinds of token: uncached input,
// output, input read from the provider's prompt cache, and input written to
// it. Lookup finds a model's list price in the embedded table (table.go);
// For adds a deployment's model_info overrides and prices local models at
// zero. Cost prices a normalized providers.Usage; WorstCase is what a budget
// reserves before the call.
//
// Prices are resolved once per deployment (when the router is built or
// reloaded), not per request: Lookup tries several spellings of a model id
// and is not meant for the hot path. Cost and WorstCase are cheap.
package pricing

import "github.com/lumengw/lumen/providers"

// Rates are USD per token.
type Rates struct {
	// Input is the price of an input token that is neither read from nor
	// written to the prompt cache.
	Input float64
	// Output is the price of an output token, reasoning included.
	Output float64
	// CacheRead is the price of an input token read from the prompt cache
	// (OpenAI cached_tokens, Anthropic cache_read_input_tokens).
	CacheRead float64
	// CacheWrite is the price of an input token written to the prompt cache
	// (Anthropic cache_creation_input_tokens).
	CacheWrite float64
}

// Price is what one model costs.
type Price struct {
	Rates
	// Image is USD per generated image (model_info output_cost_per_image),
	// on top of any token rates.
	Image float64
	// Character is USD per character read out by a speech model
	// (model_info input_cost_per_character).
	Character float64
	// Second is USD per second of audio a transcription model heard
	// (model_info input_cost_per_second).
	Second float64
	// LongContextAbove, when positive, is the prompt size (all input tokens)
	// above which the provider charges LongContext rates for the whole
	// request, as Gemini 1.5 (128k), Gemini 2.5 Pro and Claude Sonnet 4
	// (200k) do. Zero means one flat rate.
	LongContextAbove int
	// LongContext are the rates above LongContextAbove.
	LongContext Rates
}

// Free reports whether every rate of p is zero (a local model, or one priced
// at zero on purpose).
func (p Price) Free() bool { return p == Price{} }

// rates returns the rates that apply to a request with prompt input tokens.
func (p Price) rates(prompt int) Rates {
	if p.LongContextAbove > 0 && prompt > p.LongContextAbove {
		return p.LongContext
	}
	return p.Rates
}

// Cost returns the USD cost of u at price p.
//
// u must be normalized as providers.Usage documents: PromptTokens counts all
// input tokens, and CachedTokens and CacheWriteTokens are parts of it. The
// cached part is priced at the cache-read rate and the written part at the
// cache-write rate; only the rest is priced as input, so no token is billed
// twice. Counts that do not fit (negative, or parts larger than the whole)
// are clamped rather than billed.
func Cost(u providers.Usage, p Price) float64 {
	prompt := max(u.PromptTokens, 0)
	cached := min(max(u.CachedTokens, 0), prompt)
	written := min(max(u.CacheWriteTokens, 0), prompt-cached)
	uncached := prompt - cached - written
	r := p.rates(prompt)
	return float64(uncached)*r.Input +
		float64(cached)*r.CacheRead +
		float64(written)*r.CacheWrite +
		float64(max(u.CompletionTokens, 0))*r.Output +
		float64(max(u.Images, 0))*p.Image +
		float64(max(u.Characters, 0))*p.Character +
		max(u.Seconds, 0)*p.Second
}

// WorstCase returns the most a request with promptTokens input tokens and
// at most maxOutputTokens output tokens can cost at price p: every input
// token at the dearest input rate (a cache write usually), every allowed
// output token produced. A budget reserves this before the call and
// settles the real Cost after it.
func (p Price) WorstCase(promptTokens, maxOutputTokens int) float64 {
	prompt := max(promptTokens, 0)
	r := p.rates(prompt)
	in := max(r.Input, r.CacheRead, r.CacheWrite)
	return float64(prompt)*in + float64(max(maxOutputTokens, 0))*r.Output
}

// Override is a deployment's own prices, in USD per token, under LiteLLM's
// model_info names. A nil field keeps the table's rate.
type Override struct {
	InputCostPerToken           *float64 // input_cost_per_token
	OutputCostPerToken          *float64 // output_cost_per_token
	CacheReadInputTokenCost     *float64 // cache_read_input_token_cost
	CacheCreationInputTokenCost *float64 // cache_creation_input_token_cost
	OutputCostPerImage          *float64 // output_cost_per_image
	InputCostPerCharacter       *float64 // input_cost_per_character
	InputCostPerSecond          *float64 // input_cost_per_second
}

// IsZero reports whether o overrides nothing.
func (o Override) IsZero() bool { return o == Override{} }

// Apply returns base with o's rates in place of its own.
//
// A deployment that sets its own prices is charged them flat: the table's
// long-context tier is dropped. When the input rate is overridden but a
// cache rate is not, the cache rate keeps its ratio to the input rate in
// base (a negotiated 20% discount on gpt-4o input also discounts its cached
// input by 20%); without a base input rate it equals the new input rate.
func (o Override) Apply(base Price) Price {
	if o.IsZero() {
		return base
	}
	p := Price{Rates: base.Rates, Image: base.Image, Character: base.Character, Second: base.Second}
	if o.InputCostPerSecond != nil {
		p.Second = *o.InputCostPerSecond
	}
	if o.OutputCostPerImage != nil {
		p.Image = *o.OutputCostPerImage
	}
	if o.InputCostPerCharacter != nil {
		p.Character = *o.InputCostPerCharacter
	}
	if o.InputCostPerToken != nil {
		in := *o.InputCostPerToken
		scale := func(r float64) float64 {
			if base.Input == 0 {
				return in
			}
			return r / base.Input * in
		}
		p.Input = in
		p.CacheRead = scale(base.CacheRead)
		p.CacheWrite = scale(base.CacheWrite)
	}
	if o.OutputCostPerToken != nil {
		p.Output = *o.OutputCostPerToken
	}
	if o.CacheReadInputTokenCost != nil {
		p.CacheRead = *o.CacheReadInputTokenCost
	}
	if o.CacheCreationInputTokenCost != nil {
		p.CacheWrite = *o.CacheCreationInputTokenCost
	}
	return p
}

// local are the providers that run models on hardware the operator owns;
// their tokens cost nothing unless model_info says otherwise.
var local = map[string]bool{
	"ollama": true, "ollama_chat": true, "vllm": true, "hosted_vllm": true,
	"lm_studio": true, "mock": true,
}

// IsLocal reports whether provider serves models the operator runs itself.
func IsLocal(provider string) bool { return local[provider] }

// For returns the price of one deployment: provider and model are its
// litellm_params (prefix split off or not), baseModel is model_info's
// base_model (it names the priced model when the upstream id is a custom
// deployment name, as on Azure), o its model_info prices.
//
// ok is false when nothing prices the deployment: the model is not in the
// table, the provider is not local and o sets neither both the input and
// the output rate nor a price per image, character or second. The caller should then say so once (a cost of 0 means
// budgets cannot stop that deployment's spend).
func For(provider, model, baseModel string, o Override) (p Price, ok bool) {
	switch {
	case baseModel != "":
		p, ok = Lookup(provider, baseModel)
	case IsLocal(provider):
		ok = true
	default:
		p, ok = Lookup(provider, model)
	}
	if o.InputCostPerToken != nil && o.OutputCostPerToken != nil || o.OutputCostPerImage != nil || o.InputCostPerCharacter != nil ||
		o.InputCostPerSecond != nil {
		ok = true
	}
	return o.Apply(p), ok
}
