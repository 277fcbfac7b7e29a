package cmd

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
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

// A 200 that is not a usable answer (no choices, or JSON null) is the
// upstream's fault: 502 api_error naming the deployment, in the
// endpoint's own error shape, never Lumen's 500.
func TestE2EUpstreamAnswerNotUsable(t *testing.T) {
	l, _ := upstreamLumen(t)
	tests := []struct {
		name, path, model string
		errPath           string // where the error object is
	}{
		{"messages, no choices", "/v1/messages", "no-choices", "error"},
		{"messages, null", "/v1/messages", "null-body", "error"},
		{"responses, no choices", "/v1/responses", "no-choices", "error"},
		{"responses, null", "/v1/responses", "null-body", "error"},
		{"chat completions, null", "/v1/chat/completions", "null-body", "error"},
	}
	bodies := map[string]string{
		"/v1/messages":         `{"model":"%s","max_tokens":10,"messages":[{"role":"user","content":"x"}]}`,
		"/v1/responses":        `{"model":"%s","input":"x"}`,
		"/v1/chat/completions": `{"model":"%s","messages":[{"role":"user","content":"x"}]}`,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rawPost(t, l, tt.path, "", strings.Replace(bodies[tt.path], "%s", tt.model, 1))
			e := gjson.Get(got.text, tt.errPath)
			if got.status != 502 || e.Get("type").Str != "api_error" || !strings.Contains(e.Get("message").Str, "deployment openai/"+tt.model+": ") {
				t.Fatalf("%d %s", got.status, got.text)
			}
			if tt.path == "/v1/messages" && gjson.Get(got.text, "type").Str != "error" {
				t.Fatalf("not in the Anthropic error shape: %s", got.text)
			}
		})
	}
	if logs := l.Logs.String(); strings.Contains(logs, "internal error") {
		t.Fatalf("logged as Lumen's own fault:\n%s", logs)
	}
}

// A malformed event mid-stream (data: {not json after a good chunk) ends
// a translated stream (Messages, Responses) with an upstream error naming
// the deployment, not Lumen's internal_error. Chat completions are a
// pass-through: the event reaches the client as it came, and the
// upstream's usage that follows is still what the ledger records.
func TestE2EMalformedStreamEvent(t *testing.T) {
	l, dir := upstreamLumen(t)
	msgs := rawPost(t, l, "/v1/messages", "", `{"model":"bad-chunk","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
	_, data, _ := strings.Cut(msgs.text, "event: error\ndata: ")
	if msgs.status != 200 || gjson.Get(data, "error.type").Str != "api_error" ||
		!strings.HasPrefix(gjson.Get(data, "error.message").Str, "deployment openai/bad-chunk: upstream sent a stream event that is not") {
		t.Fatalf("messages: %d\n%s", msgs.status, msgs.text)
	}
	resp := rawPost(t, l, "/v1/responses", "", `{"model":"bad-chunk","input":"x","stream":true}`)
	_, data, _ = strings.Cut(resp.text, "event: response.failed\ndata: ")
	if resp.status != 200 || gjson.Get(data, "response.error.code").Str != "api_error" ||
		!strings.HasPrefix(gjson.Get(data, "response.error.message").Str, "deployment openai/bad-chunk: upstream sent a stream event that is not") {
		t.Fatalf("responses: %d\n%s", resp.status, resp.text)
	}
	chat := rawPost(t, l, "/v1/chat/completions", "", `{"model":"bad-chunk","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	if chat.status != 200 || !strings.Contains(chat.text, "data: {not json\n\n") || !strings.Contains(chat.text, `" again"`) ||
		strings.Contains(chat.text, `"usage"`) || !strings.HasSuffix(chat.text, "data: [DONE]\n\n") {
		t.Fatalf("chat completions: %d\n%s", chat.status, chat.text)
	}
	if logs := l.Logs.String(); strings.Contains(logs, "internal error") {
		t.Fatalf("logged as Lumen's own fault:\n%s", logs)
	}
	rows := records(t, l, dir)
	if len(rows) != 3 {
		t.Fatalf("ledger: %d rows, want 3", len(rows))
	}
	for _, r := range rows {
		switch {
		case r.Status == 200 && (r.Usage.PromptTokens != 11 || r.Usage.CompletionTokens != 2):
			t.Errorf("the pass-through's usage %d/%d, want the upstream's 11/2", r.Usage.PromptTokens, r.Usage.CompletionTokens)
		case r.Status != 200 && (r.Status != 502 || r.ErrorType != "api_error"):
			t.Errorf("a broken translated stream: status %d, error type %q; want 502 api_error", r.Status, r.ErrorType)
		}
	}
}

// Credentials a deployment sends without naming them, which an upstream
// refusing them may quote back: the basic auth net/http makes of
// api_base's user:password, and the AWS session token of the environment
// a Bedrock deployment signs with. Neither reaches the client or the log.
func TestE2EImplicitCredentialsNotEchoed(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAENVTEST0001")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret-access-key")
	t.Setenv("AWS_SESSION_TOKEN", "env-session-token-77")
	basic := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, _ := r.BasicAuth()
		writeFakeError(w, 401, "invalid_request_error", "invalid_api_key",
			"refused "+r.Header.Get("Authorization")+" (user "+user+", password "+pw+")")
	}))
	defer basic.Close()
	bedrock := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Amzn-Errortype", "InvalidSignatureException")
		w.WriteHeader(403)
		fmt.Fprintf(w, `{"message":"The request signature we calculated does not match the signature you provided. The Canonical String for this request should have been 'POST\n%s\n\nx-amz-security-token:%s'"}`,
			r.URL.Path, r.Header.Get("X-Amz-Security-Token"))
	}))
	defer bedrock.Close()
	cfg := `
model_list:
  - model_name: basic
    litellm_params: {model: openai_compatible/echo, api_base: "` + strings.Replace(basic.URL, "http://", "http://lumen:hunter2-basic@", 1) + `/v1"}
  - model_name: bedrock
    litellm_params: {model: bedrock/anthropic.claude-3-5-haiku-20241022-v1:0, api_base: "` + bedrock.URL + `", aws_region_name: us-east-1}
router_settings: {num_retries: 0}
log: {level: debug}
`
	l := startLumen(t, cfg, nil)
	secrets := []string{"hunter2-basic", base64.StdEncoding.EncodeToString([]byte("lumen:hunter2-basic")), "env-session-token-77", "env-secret-access-key"}
	for _, tt := range []struct {
		model  string
		status int
		says   string
	}{
		{"basic", 401, "refused Basic [redacted] (user lumen, password [redacted])"},
		{"bedrock", 403, "x-amz-security-token:[redacted]"},
	} {
		for _, stream := range []bool{false, true} {
			got := rawPost(t, l, "/v1/chat/completions", "", fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"x"}]}`, tt.model, stream))
			if got.status != tt.status || !strings.Contains(got.text, tt.says) {
				t.Errorf("%s (stream %v): %d %s; want %d saying %q", tt.model, stream, got.status, got.text, tt.status, tt.says)
			}
			for _, s := range secrets {
				if strings.Contains(got.text, s) {
					t.Errorf("%s (stream %v): the client got %q: %s", tt.model, stream, s, got.text)
				}
			}
		}
	}
	logs := l.Logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}
