package cmd

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// upstreamConfig serves fakeOpenAI's odd upstreams, each under its own
// name, with a ledger in {{DIR}}. Stream failover is off: the router then
// relays the provider's stream as it is, and the provider alone decides
// whether a stream without [DONE] was whole.
const upstreamConfig = `
model_list:
  - model_name: spaced
    litellm_params: {model: openai/spaced, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: no-choices
    litellm_params: {model: openai/no-choices, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: null-body
    litellm_params: {model: openai/null-body, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: bad-chunk
    litellm_params: {model: openai/bad-chunk, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
router_settings: {num_retries: 0, stream_failover: false}
ledger: {path: {{DIR}}/lumen.db}
`

func upstreamLumen(t *testing.T) (*lumen, string) {
	t.Helper()
	dir := t.TempDir()
	return startLumen(t, strings.ReplaceAll(upstreamConfig, "{{DIR}}", dir), newFakeOpenAI(t)), dir
}

// An upstream that writes JSON as Python's json.dumps does ("usage": {…},
// "choices": []) is billed its own usage, streamed or not, and its usage
// chunk reaches only a client that asked for it.
func TestE2ESpacedUpstreamJSON(t *testing.T) {
	l, dir := upstreamLumen(t)
	hidden := rawPost(t, l, "/v1/chat/completions", "", `{"model":"spaced","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	if hidden.status != 200 || !strings.Contains(hidden.text, `" spaced"`) || !strings.HasSuffix(hidden.text, "data: [DONE]\n\n") {
		t.Fatalf("stream: %d\n%s", hidden.status, hidden.text)
	}
	if strings.Contains(hidden.text, `"usage"`) {
		t.Fatalf("the usage chunk reached a client that did not ask for it:\n%s", hidden.text)
	}
	asked := rawPost(t, l, "/v1/chat/completions", "", `{"model":"spaced","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`)
	if !strings.Contains(asked.text, `"usage": {"prompt_tokens": 1000`) || !strings.HasSuffix(asked.text, "data: [DONE]\n\n") {
		t.Fatalf("the usage chunk did not reach a client that asked for it:\n%s", asked.text)
	}
	whole := rawPost(t, l, "/v1/chat/completions", "", `{"model":"spaced","messages":[{"role":"user","content":"x"}]}`)
	if whole.status != 200 || gjson.Get(whole.text, "usage.prompt_tokens").Int() != 1000 {
		t.Fatalf("answer: %d %s", whole.status, whole.text)
	}
	rows := records(t, l, dir)
	if len(rows) != 3 {
		t.Fatalf("ledger: %d rows, want 3", len(rows))
	}
	for _, r := range rows {
		if r.Status != 200 || r.Usage.PromptTokens != 1000 || r.Usage.CompletionTokens != 500 {
			t.Errorf("ledger row (stream %v): status %d, usage %d/%d, want 1000/500", r.Stream, r.Status, r.Usage.PromptTokens, r.Usage.CompletionTokens)
		}
	}
}
