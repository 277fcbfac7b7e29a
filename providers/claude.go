package providers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// What Claude models accept differs by version; the Anthropic and Bedrock
// translators both need to know.

var (
	claudeFamily = regexp.MustCompile(`claude-(opus|sonnet|haiku)-(\d{1,2})(?:-(\d{1,2}))?(?:[-@.:]|$)`)
	claudeOld    = regexp.MustCompile(`claude-(\d)-(\d)-(opus|sonnet|haiku)`)
)

// ClaudeVersion returns model's family (opus, sonnet, haiku, fable,
// mythos) and version times ten (4.5 is 45, 5 is 50); "" and 0 for an id
// that is not a Claude model's.
func ClaudeVersion(model string) (string, int) {
	m := strings.ToLower(model)
	for _, f := range [...]string{"fable", "mythos"} {
		if strings.Contains(m, "claude-"+f) {
			return f, 50
		}
	}
	if g := claudeFamily.FindStringSubmatch(m); g != nil {
		major, _ := strconv.Atoi(g[2])
		minor, _ := strconv.Atoi(g[3])
		return g[1], major*10 + minor
	}
	if g := claudeOld.FindStringSubmatch(m); g != nil {
		major, _ := strconv.Atoi(g[1])
		minor, _ := strconv.Atoi(g[2])
		return g[3], major*10 + minor
	}
	return "", 0
}

// FixedSampling reports whether model refuses temperature, top_p and
// top_k set to anything but their defaults (a 400): Claude Opus 4.7 and
// later, Sonnet and Haiku 5 and later, Fable and Mythos.
func FixedSampling(model string) bool {
	f, v := ClaudeVersion(model)
	switch f {
	case "fable", "mythos":
		return true
	case "opus":
		return v >= 47
	case "sonnet", "haiku":
		return v >= 50
	}
	return false
}

// Claude models take reasoning in one of two ways (platform.claude.com
// "Extended thinking" and "Effort"; Bedrock takes the same objects in
// additionalModelRequestFields): from Claude 4.6 on, and for Fable and
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
	switch _, v := ClaudeVersion(model); {
	case v >= 46:
		return thinkingAdaptive
	case v >= 37:
		return thinkingBudget
	}
	return thinkingNone
}

// ThinkingBudget reports whether model's thinking takes a budget under
// max_tokens (Claude 3.7 to 4.5), so the request needs a max_tokens.
func ThinkingBudget(model string) bool { return thinkingStyle(model) == thinkingBudget }

// thinkingBudgets are the thinking budgets of OpenAI's reasoning efforts
// on the models that take a budget.
var thinkingBudgets = map[string]int{"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32000}

// claudeEfforts map OpenAI's reasoning efforts to Anthropic's.
var claudeEfforts = map[string]string{"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}

// ClaudeThinking is what a Claude request carries for a reasoning_effort.
type ClaudeThinking struct {
	Thinking []byte // the thinking object; nil for none
	Effort   string // output_config.effort; "" for none
}

// ClaudeReasoning maps req's reasoning_effort onto model's thinking, for a
// request of maxTokens. Thinking is left off where Anthropic would refuse
// it: when a tool call is forced (forced: tool_choice, or the JSON-output
// tool), and when the request continues a tool loop (the OpenAI form does
// not carry the signed thinking blocks Anthropic wants back before a tool
// result), and when maxTokens leaves no room for the minimum budget. An
// unknown effort is an error naming reasoning_effort.
func ClaudeReasoning(req *ChatRequest, model string, maxTokens int, forced bool) (ClaudeThinking, error) {
	var out ClaudeThinking
	effort := req.ReasoningEffort
	if err := CheckReasoningEffort(effort); err != nil || effort == "" || effort == "none" {
		return out, err
	}
	think := !forced
	if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == "tool" {
		think = false
	}
	switch thinkingStyle(model) {
	case thinkingAdaptive:
		out.Effort = claudeEfforts[effort]
		if think {
			out.Thinking = []byte(`{"type":"adaptive"}`)
		}
	case thinkingBudget:
		budget := thinkingBudgets[effort]
		if budget >= maxTokens {
			budget = maxTokens / 2
		}
		if think && budget >= 1024 {
			out.Thinking = fmt.Appendf(nil, `{"type":"enabled","budget_tokens":%d}`, budget)
		}
	}
	return out, nil
}

// claudeToolPrefix starts the tool ids ClaudeToolID makes up.
const claudeToolPrefix = "toolu_lumen_"

// ClaudeToolID returns id as the Messages API and Bedrock Converse accept
// a tool_use id, tool_use_id or toolUseId: one matching
// ^[a-zA-Z0-9_-]{1,64}$ (anything else is a 400). A conversation that
// failed over from another provider can carry ids that do not, such as
// Gemini's, which hold a base64 thought signature. A matching id is
// returned unchanged; any other becomes "toolu_lumen_" and the first 40
// hex digits of its SHA-256, so the tool call and its result, mapped
// separately, still name the same call.
func ClaudeToolID(id string) string {
	if claudeToolIDOK(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return claudeToolPrefix + hex.EncodeToString(sum[:])[:40]
}

// claudeToolIDOK reports whether id matches ^[a-zA-Z0-9_-]{1,64}$.
func claudeToolIDOK(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
