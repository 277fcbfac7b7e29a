package auto

import "strings"

// PublicModel is a model without training outcomes, placed on the learned
// scale from one public benchmark figure (accuracy 0..1) between the two
// anchor models of the weights (see Weights.Anchors and Override).
type PublicModel struct {
	Model  string
	Score  float64
	Source string
}

// Sources of the figures below. Figures are MMLU accuracy unless the row
// says otherwise; protocols differ between vendors (5-shot, 0-shot CoT,
// multilingual MMMLU), which is noise of a point or two on this scale.
const (
	srcSimpleEvals = "openai/simple-evals README benchmark table, MMLU (0-shot CoT)"
	srcAnthropic3  = "Anthropic, 'Introducing the next generation of Claude' (Mar 2024), MMLU 5-shot"
	srcAnthropic4  = "Anthropic, 'Introducing Claude 4' (May 2025), MMMLU"
	srcAnthropic37 = "Anthropic, 'Claude 3.7 Sonnet' (Feb 2025), MMMLU"
	srcGemini25    = "Google, Gemini 2.5 model card / launch table, Global MMLU (Lite)"
	srcMeta31      = "Meta, Llama 3.1/3.3 model cards, MMLU (0-shot CoT)"
	srcMeta3       = "Meta, Llama 3 model card, MMLU 5-shot (instruct)"
	srcMeta32      = "Meta, Llama 3.2 model card, MMLU 5-shot"
	srcMistral     = "Mistral AI announcement of the model, MMLU"
	srcMixtral     = "Jiang et al. 2024, 'Mixtral of Experts', Table 2, MMLU 5-shot"
	srcDeepSeekV3  = "DeepSeek-V3 technical report (arXiv 2412.19437), MMLU (EM)"
	srcDeepSeekR1  = "DeepSeek-R1 paper (arXiv 2501.12948), MMLU (pass@1)"
	srcQwen25      = "Qwen2.5 technical report (arXiv 2412.15115), base model MMLU"
	srcGemma2      = "Gemma 2 technical report (arXiv 2408.00118), MMLU 5-shot"
	srcGPT4Report  = "OpenAI GPT-4 technical report (arXiv 2303.08774), MMLU 5-shot"
	srcEstimate    = "estimate: the vendor published no MMLU; placed beside the closest sibling it was compared with"
	// Read in November 2026 from copies of the vendor's table (the
	// vendor's page itself could not be fetched here).
	srcHaiku45     = "Anthropic, 'Introducing Claude Haiku 4.5' (Oct 2025) table, MMMLU"
	srcOpus45Card  = "Anthropic, Claude Opus 4.5 system card (Nov 2025) Table 2.3.A, MMMLU"
	srcOpus46      = "Anthropic, Claude Opus 4.6 / Sonnet 4.6 launch tables (2026), MMMLU"
	srcOpus47      = "Anthropic, 'Introducing Claude Opus 4.7' (Apr 2026) table, MMMLU"
	srcFable51Card = "Anthropic, Claude Fable 5.1 system card (2026), GMMLU (Global-MMLU, 42 languages), comparator row"
	srcGPT52       = "OpenAI, 'Introducing GPT-5.2' (Dec 2025) table, MMMLU (Thinking)"
	srcGPTOSS      = "OpenAI, gpt-oss model card (arXiv 2508.10925) Table 3, MMLU (high reasoning)"
	srcGemini3     = "Google, Gemini 3 Flash / Gemini 3.1 Pro model cards (2026), MMMLU"
	srcKimiK2      = "MoonshotAI/Kimi-K2 README, instruct model table, MMLU (EM)"
)

// PublicModels are the well-known models the router can rank without
// training data. Names are the API ids without date suffixes; lookups also
// strip a "provider/" prefix and a date suffix ("-2024-08-06", "-20241022").
// Models the training file names are learned and never taken from here.
var PublicModels = []PublicModel{
	// OpenAI
	{"gpt-5.2", 0.896, srcGPT52},
	{"gpt-5.1", 0.895, srcGPT52 + " (GPT-5.1 Thinking column)"},
	{"gpt-oss-120b", 0.900, srcGPTOSS},
	{"gpt-oss-20b", 0.853, srcGPTOSS},
	{"o3", 0.929, srcSimpleEvals},
	{"o4-mini", 0.900, srcSimpleEvals},
	{"o3-mini", 0.859, srcSimpleEvals},
	{"o1", 0.918, srcSimpleEvals},
	{"o1-mini", 0.852, srcSimpleEvals},
	{"gpt-4.1", 0.902, srcSimpleEvals},
	{"gpt-4.1-mini", 0.875, srcSimpleEvals},
	{"gpt-4.1-nano", 0.801, srcSimpleEvals},
	{"gpt-4.5-preview", 0.908, srcSimpleEvals},
	{"gpt-4o", 0.887, srcSimpleEvals + " (gpt-4o-2024-08-06)"},
	{"gpt-4o-mini", 0.820, srcSimpleEvals},
	{"gpt-4-turbo", 0.867, srcSimpleEvals + " (gpt-4-turbo-2024-04-09)"},
	{"gpt-4-0125-preview", 0.854, srcSimpleEvals},
	{"gpt-4", 0.864, srcGPT4Report},
	{"gpt-3.5-turbo", 0.700, srcGPT4Report},
	// Anthropic. From Claude 5 on Anthropic reports GMMLU, which reads a
	// point or two below MMMLU (Opus 4.7: 89.9% GMMLU, 91.5% MMMLU).
	{"claude-fable-5-1", 0.940, srcFable51Card + " (its own row)"},
	{"claude-fable-5", 0.936, srcFable51Card},
	{"claude-opus-5", 0.925, srcFable51Card},
	{"claude-sonnet-5", 0.890, srcFable51Card},
	{"claude-opus-4-7", 0.915, srcOpus47},
	{"claude-opus-4-6", 0.911, srcOpus46},
	{"claude-sonnet-4-6", 0.893, srcOpus46},
	{"claude-opus-4-5", 0.908, srcOpus45Card},
	{"claude-opus-4-1", 0.895, srcOpus45Card + " (Opus 4.1 column)"},
	{"claude-sonnet-4-5", 0.891, srcHaiku45 + " (Sonnet 4.5 column)"},
	{"claude-haiku-4-5", 0.830, srcHaiku45},
	{"claude-opus-4", 0.888, srcAnthropic4},
	{"claude-sonnet-4", 0.865, srcAnthropic4},
	{"claude-3-7-sonnet", 0.861, srcAnthropic37},
	{"claude-3-5-sonnet", 0.883, srcSimpleEvals + " (reported row, Claude 3.5 Sonnet)"},
	{"claude-3-5-haiku", 0.800, srcEstimate + " (between claude-3-haiku and claude-3-sonnet-class, as Anthropic positioned it)"},
	{"claude-3-opus", 0.868, srcAnthropic3},
	{"claude-3-sonnet", 0.790, srcAnthropic3},
	{"claude-3-haiku", 0.752, srcAnthropic3},
	// Google
	{"gemini-3.1-pro-preview", 0.926, srcGemini3},
	{"gemini-3-pro-preview", 0.918, srcGemini3 + " (Gemini 3 Pro comparator column)"},
	{"gemini-3-flash-preview", 0.918, srcGemini3},
	{"gemini-2.5-pro", 0.898, srcGemini25},
	{"gemini-2.5-flash", 0.884, srcGemini25},
	{"gemini-2.0-flash", 0.819, srcEstimate + " (Google's Dec 2024 table puts it at Gemini 1.5 Pro level on MMLU-Pro)"},
	{"gemini-1.5-pro", 0.819, srcSimpleEvals + " (reported row, Gemini 1.5 Pro)"},
	{"gemini-1.5-flash", 0.779, srcSimpleEvals + " (reported row, Gemini 1.5 Flash)"},
	{"gemma-2-27b-it", 0.752, srcGemma2},
	// Meta
	{"llama-3.1-405b-instruct", 0.886, srcSimpleEvals + " (reported row, Llama 3.1 405b)"},
	{"llama-3.1-70b-instruct", 0.820, srcSimpleEvals + " (reported row, Llama 3.1 70b)"},
	{"llama-3.3-70b-instruct", 0.860, srcMeta31},
	{"llama-3-70b-instruct", 0.820, srcMeta3},
	{"llama3-70b-instruct", 0.820, srcMeta3},
	{"llama-3-8b-instruct", 0.684, srcMeta3},
	{"llama-3.2-3b-instruct", 0.634, srcMeta32},
	{"llama-3.2-1b-instruct", 0.493, srcMeta32},
	// Mistral
	{"mistral-large", 0.840, srcMistral + " (Mistral Large 2, Jul 2024)"},
	{"mistral-small", 0.810, srcMistral + " (Mistral Small 3, Jan 2025)"},
	{"mixtral-8x22b-instruct-v0.1", 0.778, srcMistral + " (Mixtral 8x22B, Apr 2024)"},
	{"mixtral-8x7b-instruct-v0.1", 0.706, srcMixtral},
	{"mistral-nemo-12b-instruct", 0.680, srcMistral + " (Mistral NeMo, Jul 2024)"},
	{"mistral-7b-instruct", 0.601, "Jiang et al. 2023, 'Mistral 7B', MMLU 5-shot"},
	// DeepSeek, Qwen, Moonshot
	{"kimi-k2", 0.895, srcKimiK2},
	{"deepseek-v3", 0.885, srcDeepSeekV3},
	{"deepseek-r1", 0.908, srcDeepSeekR1},
	{"qwen2.5-72b-instruct", 0.861, srcQwen25},
	{"qwen2.5-32b-instruct", 0.833, srcQwen25},
	{"qwen2.5-14b-instruct", 0.797, srcQwen25},
}

// canonical normalises a model id for the fallback lookup: lower case, no
// "provider/" prefix, no date or "-latest" suffix.
func canonical(name string) string {
	n := strings.ToLower(strings.TrimSpace(name))
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:]
	}
	n = strings.TrimSuffix(n, "-latest")
	// -YYYY-MM-DD or -YYYYMMDD
	if len(n) > 11 && n[len(n)-11] == '-' && n[len(n)-6] == '-' && n[len(n)-3] == '-' && allDigits(n[len(n)-10:len(n)-6]+n[len(n)-5:len(n)-3]+n[len(n)-2:]) {
		n = n[:len(n)-11]
	} else if len(n) > 9 && n[len(n)-9] == '-' && allDigits(n[len(n)-8:]) {
		n = n[:len(n)-9]
	}
	n = strings.ReplaceAll(n, "claude-3.5-", "claude-3-5-")
	n = strings.ReplaceAll(n, "claude-3.7-", "claude-3-7-")
	return n
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
