package router

import (
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Output caps. A client's max_tokens is chosen for the model it thinks it
// calls: Claude Code asks for 32,000 to 128,000 output tokens, which an
// OpenAI or local model served under that name refuses with a 400
// ("max_tokens is too large"). A deployment that declares its cap
// (model_info.max_output_tokens) gets the request's limit lowered to it:
// the answer can never be longer than the cap anyway, so nothing the
// client could have had is lost, and a group whose deployments differ in
// cap keeps serving and failing over. Requests at or under the cap, and
// deployments without one, are sent unchanged.

// capOutput returns body with max_tokens, max_completion_tokens and (a
// Responses API body's) max_output_tokens lowered to limit where they
// exceed it; body itself when nothing is over (or
// limit is zero). An Anthropic body's thinking.budget_tokens, which must
// stay under max_tokens, is lowered with it.
func capOutput(body []byte, limit int) []byte {
	if limit <= 0 || len(body) == 0 {
		return body
	}
	out, lowered := body, false
	for _, f := range [...]string{"max_tokens", "max_completion_tokens", "max_output_tokens"} {
		if v := gjson.GetBytes(out, f); v.Type == gjson.Number && v.Int() > int64(limit) {
			b, err := sjson.SetBytes(out, f, limit)
			if err != nil {
				return body
			}
			out, lowered = b, true
		}
	}
	if !lowered {
		return body
	}
	if b := gjson.GetBytes(out, "thinking.budget_tokens"); b.Type == gjson.Number && b.Int() >= int64(limit) {
		if nb, err := sjson.SetBytes(out, "thinking.budget_tokens", max(limit-1, 1)); err == nil {
			out = nb
		}
	}
	return out
}

// outputCap is the deployment's declared output cap, zero when unknown.
func (d *Deployment) outputCap() int {
	return max(d.Info.MaxOutputTokens, d.Info.MaxTokens)
}

// MaxOutput is the most output tokens a request asking for requested
// (zero: it sets no limit) can get from any of g's deployments once each
// has lowered it to its cap, as attempt does: what budgets and tpm windows
// must hold for it. With requested, that is requested bounded by the
// largest cap, and not bounded at all by a deployment without one. Without
// requested, it is the largest cap, a deployment without one counting as
// unknown. Zero when g has no deployments.
func (g *Group) MaxOutput(requested, unknown int) int {
	n := 0
	for _, d := range g.Deployments {
		limit := d.outputCap()
		switch {
		case requested > 0 && (limit == 0 || limit > requested):
			limit = requested
		case limit == 0:
			limit = unknown
		}
		n = max(n, limit)
	}
	return n
}
