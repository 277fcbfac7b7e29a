package anthropic

import (
	"github.com/lumengw/lumen/providers"
)

// reasoning maps the request's reasoning_effort onto model's thinking
// (providers.ClaudeReasoning). Thinking takes no temperature, top_k, or
// top_p under 0.95, so those are dropped when it is on.
func (tr *translation) reasoning(req *providers.ChatRequest, model string) error {
	out := &tr.body
	if providers.FixedSampling(model) {
		// As LiteLLM's drop_params: OpenAI clients send temperature by
		// default, and these models answer it with a 400.
		out.Temperature, out.TopP, out.TopK = nil, nil, nil
	}
	forced := out.ToolChoice != nil && (out.ToolChoice.Type == "any" || out.ToolChoice.Type == "tool")
	th, err := providers.ClaudeReasoning(req, model, *out.MaxTokens, forced)
	if err != nil {
		return err
	}
	if th.Effort != "" {
		if out.OutputConfig == nil {
			out.OutputConfig = &outputConfig{}
		}
		out.OutputConfig.Effort = th.Effort
	}
	if th.Thinking != nil {
		out.Thinking = th.Thinking
		out.Temperature, out.TopK = nil, nil
		if out.TopP != nil && *out.TopP < 0.95 {
			out.TopP = nil
		}
	}
	return nil
}
