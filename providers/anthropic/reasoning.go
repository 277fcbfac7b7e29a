package anthropic

import (
	"fmt"

	"github.com/lumengw/lumen/providers"
)

// Claude models take reasoning in one of two ways (platform.claude.com
// "Extended thinking" and "Effort"): from Claude 4.6 on, and for Fable and
// Mythos, adaptive thinking ({"type":"adaptive"}) sized by
// output_config.effort; Claude 3.7 to 4.5 a fixed budget ({"type":
// "enabled","budget_tokens":n}, at least 1,024 and under max_tokens).
// Older models do not think.
const (
	thinkingNone = iota
	thinkingBudget
	thinkingAdaptive
)

// thinkingStyle says how model takes reasoning.
func thinkingStyle(model string) int {
	switch _, v := providers.ClaudeVersion(model); {
	case v >= 46:
		return thinkingAdaptive
	case v >= 37:
		return thinkingBudget
	}
	return thinkingNone
}

// budgets are the thinking budgets of OpenAI's reasoning efforts on the
// models that take a budget.
var budgets = map[string]int{"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32000}

// efforts map OpenAI's reasoning efforts to Anthropic's.
var efforts = map[string]string{"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}

// reasoning maps the request's reasoning_effort onto model's thinking.
// Thinking is left off where Anthropic would refuse it: when a tool call
// is forced (tool_choice, or the JSON-output tool), and when the request
// continues a tool loop (the OpenAI form does not carry the signed
// thinking blocks Anthropic wants back before a tool result). Thinking
// takes no temperature, top_k, or top_p under 0.95, so those are dropped
// when it is on.
func (tr *translation) reasoning(req *providers.ChatRequest, model string) error {
	if providers.FixedSampling(model) {
		// As LiteLLM's drop_params: OpenAI clients send temperature by
		// default, and these models answer it with a 400.
		tr.body.Temperature, tr.body.TopP, tr.body.TopK = nil, nil, nil
	}
	effort := req.ReasoningEffort
	if err := providers.CheckReasoningEffort(effort); err != nil || effort == "" || effort == "none" {
		return err
	}
	out := &tr.body
	style := thinkingStyle(model)
	if style == thinkingNone {
		return nil // the model does not think; as OpenAI's non-reasoning models, nothing to set
	}
	think := true
	if tc := out.ToolChoice; tc != nil && (tc.Type == "any" || tc.Type == "tool") {
		think = false
	}
	if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == "tool" {
		think = false
	}
	switch style {
	case thinkingAdaptive:
		if out.OutputConfig == nil {
			out.OutputConfig = &outputConfig{}
		}
		out.OutputConfig.Effort = efforts[effort]
		if think {
			out.Thinking = []byte(`{"type":"adaptive"}`)
		}
	case thinkingBudget:
		budget := budgets[effort]
		if limit := *out.MaxTokens; budget >= limit {
			budget = limit / 2
		}
		if budget < 1024 {
			think = false // max_tokens leaves no room for the minimum budget
		}
		if think {
			out.Thinking = fmt.Appendf(nil, `{"type":"enabled","budget_tokens":%d}`, budget)
		}
	}
	if out.Thinking != nil {
		out.Temperature, out.TopK = nil, nil
		if out.TopP != nil && *out.TopP < 0.95 {
			out.TopP = nil
		}
	}
	return nil
}
