package gemini

import (
	"strings"

	"github.com/lumengw/lumen/providers"
)

// Gemini sizes thinking two ways (ai.google.dev/gemini-api/docs/thinking):
// Gemini 2.5 by thinkingBudget (Pro 128 to 32,768 and cannot stop
// thinking; Flash and Flash-Lite 0 to 24,576, 0 turning it off), Gemini 3
// by thinkingLevel ("low" or "high" on every model). Older models do not
// think.

// budgets25 are the thinking budgets of OpenAI's reasoning efforts on
// Gemini 2.5.
var budgets25 = map[string]int{"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}

// levels3 are the thinking levels of OpenAI's reasoning efforts on
// Gemini 3.
var levels3 = map[string]string{"none": "low", "minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high"}

// thinking maps OpenAI's reasoning_effort onto model's thinkingConfig; nil
// when the request sets none or the model does not think. Thought
// summaries are asked for, and come back as reasoning_content.
func thinking(effort, model string) (*thinkingConfig, error) {
	if err := providers.CheckReasoningEffort(effort); err != nil || effort == "" {
		return nil, err
	}
	m := strings.ToLower(model)
	m = m[strings.LastIndexByte(m, '/')+1:]
	switch {
	case strings.HasPrefix(m, "gemini-3"):
		return &thinkingConfig{IncludeThoughts: effort != "none", ThinkingLevel: levels3[effort]}, nil
	case strings.HasPrefix(m, "gemini-2.5"):
		budget := budgets25[effort]
		pro := strings.Contains(m, "-pro")
		switch {
		case pro && budget < 128:
			budget = 128 // Pro always thinks
		case !pro && budget > 24576:
			budget = 24576
		}
		return &thinkingConfig{IncludeThoughts: budget > 0, ThinkingBudget: &budget}, nil
	}
	return nil, nil
}
