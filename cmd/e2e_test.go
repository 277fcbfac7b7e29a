package cmd

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"
)

const e2eConfig = `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: slow
    litellm_params: {model: openai/hang, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456, timeout: 0.3}
  - model_name: dead
    litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:1/v1", api_key: sk-upstream-secret-123456}
  - model_name: limited
    litellm_params: {model: openai/fail-429, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: flaky
    litellm_params: {model: openai/fail-500, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: badkey
    litellm_params: {model: openai/bad-key, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: badkey2
    litellm_params: {model: openai/bad-key, api_base: "{{FAKE}}/v1", api_key: mysecretpassword123, extra_headers: {X-Tenant-Token: tenant-secret-42}}
  - model_name: cut
    litellm_params: {model: openai/cut, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: stall
    litellm_params: {model: openai/stall, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: embed
    litellm_params: {model: openai/text-embedding-3-small, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
router_settings: {num_retries: 0}
general_settings:
  master_key: sk-master-test-0000
  max_request_size_mb: 1
log: {level: debug}
`

func client(l *lumen, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(l.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

func userMsg(text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)}}
}

func TestE2EChat(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, e2eConfig, fake)
	c := client(l, "sk-master-test-0000")
	var raw *http.Response
	resp, err := c.Chat.Completions.New(context.Background(), userMsg("hi"),
		option.WithJSONSet("x_vendor_flag", map[string]any{"keep": true}), option.WithJSONSet("seed", 7),
		option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "Hello from fake" || resp.Usage.TotalTokens != 14 {
		t.Fatalf("response %+v", resp)
	}
	sent := fake.lastBody()
	if sent["model"] != "gpt-4o" || sent["seed"] != float64(7) || sent["x_vendor_flag"] == nil {
		t.Fatalf("upstream did not get the unknown fields unchanged: %v", sent)
	}
	hdr := raw.Header
	for _, h := range []string{"x-lumen-request-id", "x-lumen-model-group", "x-lumen-deployment", "x-lumen-provider"} {
		if hdr.Get(h) == "" {
			t.Errorf("response lacks %s", h)
		}
	}
	if hdr.Get("x-lumen-deployment") != "openai/gpt-4o" || hdr.Get("x-lumen-provider") != "openai" {
		t.Errorf("deployment headers %v", hdr)
	}
}

func TestE2EStreamPassThrough(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, e2eConfig, fake)
	c := client(l, "sk-master-test-0000")
	p := userMsg("stream please")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := c.Chat.Completions.NewStreaming(context.Background(), p)
	// The fake holds its last chunks until released: the first chunk must
	// reach the client while the upstream has not sent its last one.
	if !s.Next() {
		t.Fatalf("no first chunk before the upstream finished: %v", s.Err())
	}
	var text strings.Builder
	text.WriteString(s.Current().Choices[0].Delta.Content)
	fake.releaseAll()
	var usage int64
	for s.Next() {
		ch := s.Current()
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
		if ch.Usage.TotalTokens > 0 {
			usage = ch.Usage.TotalTokens
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "Hello from fake stream!" || usage != 16 {
		t.Fatalf("text %q usage %d", text.String(), usage)
	}
}

func TestE2EStreamUsageHiddenUnlessAsked(t *testing.T) {
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, e2eConfig, fake)
	body := rawPost(t, l, "/v1/chat/completions", "sk-master-test-0000", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	if strings.Contains(body.text, `"choices":[]`) || !strings.HasSuffix(body.text, "data: [DONE]\n\n") {
		t.Fatalf("stream:\n%s", body.text)
	}
	if fake.lastBody()["stream_options"] == nil {
		t.Fatal("Lumen did not ask the upstream for usage")
	}
	// The ledger still learns the usage from the chunk it hid.
	waitFor(t, func() bool { return strings.Contains(l.Logs.String(), `"completion_tokens":5`) })
}

func TestE2EEmbeddingsAndModels(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, e2eConfig, fake)
	c := client(l, "sk-master-test-0000")
	emb, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hi")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 1 || len(emb.Data[0].Embedding) != 3 {
		t.Fatalf("embedding %+v", emb)
	}
	// Nothing to embed is the client's mistake, refused before any call.
	before := fake.calls()
	for _, in := range []string{`[]`, `""`, `{"text":"hi"}`} {
		r := rawPost(t, l, "/v1/embeddings", "sk-master-test-0000", `{"model":"embed","input":`+in+`}`)
		if r.status != 400 || gjson.Get(r.text, "error.param").Str != "input" || fake.calls() != before {
			t.Errorf("input %s: %d %s", in, r.status, r.text)
		}
	}
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "badkey,badkey2,cut,dead,embed,flaky,gpt-4o,limited,slow,stall,auto" {
		t.Fatalf("models %v", ids)
	}
}

func TestE2EErrors(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, e2eConfig, fake)
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("x", 1<<20) + `"}]}`
	tests := []struct {
		name, key, body string
		status          int
		typ, param      string
		msgHas          string
		header          [2]string
	}{
		{"malformed JSON", "sk-master-test-0000", `{"model":`, 400, "invalid_request_error", "", "not a valid JSON object", [2]string{}},
		{"missing model", "sk-master-test-0000", `{"messages":[{"role":"user","content":"x"}]}`, 400, "invalid_request_error", "model", "you must provide a model parameter", [2]string{}},
		{"missing messages", "sk-master-test-0000", `{"model":"gpt-4o"}`, 400, "invalid_request_error", "messages", "'messages'", [2]string{}},
		{"unknown model", "sk-master-test-0000", `{"model":"gpt-5","messages":[{"role":"user","content":"x"}]}`, 404, "invalid_request_error", "model", `Available models: "badkey", "badkey2", "cut"`, [2]string{}},
		{"missing key", "", `{"model":"gpt-4o","messages":[]}`, 401, "authentication_error", "", "missing API key", [2]string{}},
		{"wrong key", "sk-wrong", `{"model":"gpt-4o","messages":[]}`, 401, "authentication_error", "", "invalid API key", [2]string{}},
		{"body too large", "sk-master-test-0000", big, 413, "invalid_request_error", "", "exceeds 1 MiB", [2]string{}},
		{"upstream timeout", "sk-master-test-0000", `{"model":"slow","messages":[{"role":"user","content":"x"}]}`, 504, "api_error", "", "deployment openai/hang: timed out", [2]string{}},
		{"upstream unreachable", "sk-master-test-0000", `{"model":"dead","messages":[{"role":"user","content":"x"}]}`, 502, "api_error", "", "deployment openai/gpt-4o: unreachable", [2]string{}},
		{"upstream 429", "sk-master-test-0000", `{"model":"limited","messages":[{"role":"user","content":"x"}]}`, 429, "requests", "", "deployment openai/fail-429: Rate limit reached", [2]string{"Retry-After", "7"}},
		{"upstream 500", "sk-master-test-0000", `{"model":"flaky","messages":[{"role":"user","content":"x"}]}`, 500, "server_error", "", "deployment openai/fail-500: The server had an error", [2]string{}},
		// JSON parsers disagree on duplicate keys: Lumen must not route on
		// one "model" while the upstream reads the other.
		{"duplicate model key", "sk-master-test-0000", `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"mod\u0065l":"flaky"}`, 400, "invalid_request_error", "", `has the key "model" twice`, [2]string{}},
		{"duplicate nested key", "sk-master-test-0000", `{"model":"gpt-4o","messages":[{"role":"user","content":"x","content":"y"}]}`, 400, "invalid_request_error", "", `has the key "content" twice`, [2]string{}},
		{"upstream echoes key", "sk-master-test-0000", `{"model":"badkey","messages":[{"role":"user","content":"x"}]}`, 401, "invalid_request_error", "", "Incorrect API key provided: [redacted]", [2]string{}},
		// A key of no known shape, and a credential in extra_headers: the
		// deployment's own values are scrubbed, streamed or not.
		{"upstream echoes odd key", "sk-master-test-0000", `{"model":"badkey2","messages":[{"role":"user","content":"x"}]}`, 401, "invalid_request_error", "",
			"Incorrect API key provided: [redacted]. Header was Bearer [redacted]; x-tenant-token was [redacted]", [2]string{}},
		{"upstream echoes odd key, streamed", "sk-master-test-0000", `{"model":"badkey2","stream":true,"messages":[{"role":"user","content":"x"}]}`, 401, "invalid_request_error", "",
			"Incorrect API key provided: [redacted]. Header was Bearer [redacted]; x-tenant-token was [redacted]", [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rawPost(t, l, "/v1/chat/completions", tt.key, tt.body)
			if got.status != tt.status {
				t.Fatalf("status %d, want %d: %s", got.status, tt.status, got.text)
			}
			e := got.json()["error"].(map[string]any)
			if e["type"] != tt.typ || !strings.Contains(e["message"].(string), tt.msgHas) {
				t.Fatalf("error %v", e)
			}
			if tt.param != "" && e["param"] != tt.param {
				t.Fatalf("param %v, want %s", e["param"], tt.param)
			}
			if tt.header[0] != "" && got.header.Get(tt.header[0]) != tt.header[1] {
				t.Fatalf("%s = %q", tt.header[0], got.header.Get(tt.header[0]))
			}
		})
	}
	// /health names deployments and their state: with a master key it
	// wants a key; liveness and readiness (for load balancers) do not.
	for path, want := range map[string]int{"/health": 401, "/health/liveness": 200, "/health/readiness": 200} {
		if resp, err := http.Get(l.URL + path); err != nil || resp.StatusCode != want {
			t.Errorf("GET %s without a key: %v %v, want %d", path, resp.StatusCode, err, want)
		} else {
			resp.Body.Close()
		}
	}

	// The official client surfaces the same errors with their status.
	c := client(l, "sk-master-test-0000")
	p := userMsg("x")
	p.Model = "limited"
	_, err := c.Chat.Completions.New(context.Background(), p)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 {
		t.Fatalf("openai-go error %v", err)
	}
	logs := l.Logs.String()
	for _, secret := range []string{"sk-upstream-secret-123456", "sk-master-test-0000", "sk-wrong", "mysecretpassword123", "tenant-secret-42"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain %q", secret)
		}
	}
}

func TestE2EStreamBreaksWithErrorEvent(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, e2eConfig, fake)
	got := rawPost(t, l, "/v1/chat/completions", "sk-master-test-0000", `{"model":"cut","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	if got.status != 200 || strings.Contains(got.text, "[DONE]") || !strings.Contains(got.text, "event: error\ndata: {\"error\":") {
		t.Fatalf("a broken stream must end with an error event, not [DONE]:\n%s", got.text)
	}
	c := client(l, "sk-master-test-0000")
	p := userMsg("x")
	p.Model = "cut"
	s := c.Chat.Completions.NewStreaming(context.Background(), p)
	n := 0
	for s.Next() {
		n++
	}
	if s.Err() == nil || n != 2 {
		t.Fatalf("openai-go saw %d chunks and err %v; want 2 chunks then an error", n, s.Err())
	}
}

func TestE2EClientHangUpCancelsUpstream(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, e2eConfig, fake)
	c := client(l, "sk-master-test-0000")
	ctx, cancel := context.WithCancel(context.Background())
	p := userMsg("x")
	p.Model = "stall"
	s := c.Chat.Completions.NewStreaming(ctx, p)
	if !s.Next() {
		t.Fatalf("no first chunk: %v", s.Err())
	}
	cancel()
	select {
	case <-fake.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not cancelled after the client hung up")
	}
	waitFor(t, func() bool { return strings.Contains(l.Logs.String(), `"status":499`) })
	// The upstream read the prompt: the cut stream's record counts it.
	for line := range strings.SplitSeq(l.Logs.String(), "\n") {
		if strings.Contains(line, `"status":499`) && gjson.Get(line, "prompt_tokens").Int() == 0 {
			t.Errorf("a stream cut by its client is recorded without its prompt: %s", line)
		}
	}
}

func TestE2EGracefulShutdownFinishesStreams(t *testing.T) {
	cfg := `
model_list:
  - model_name: demo
    litellm_params: {model: mock/demo, mock_response: "one two three four five six seven eight", mock_chunk_interval: 0.05}
`
	l := startLumen(t, cfg, nil)
	resp, err := http.Post(l.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"demo","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil { // the stream has started
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- l.stop() }()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || !strings.Contains(string(rest), "eight") {
		t.Fatalf("in-flight stream cut by shutdown: %v\n%s", err, rest)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve returned %v after a clean shutdown", err)
	}
	if _, err := http.Get(l.URL + "/health/liveness"); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestE2ECompletionsOnMock(t *testing.T) {
	cfg := `
model_list:
  - model_name: demo
    litellm_params: {model: mock/demo}
`
	l := startLumen(t, cfg, nil)
	c := client(l, "unused")
	resp, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:  "demo",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text != "Echo: Once upon a time" || resp.Usage.CompletionTokens == 0 {
		t.Fatalf("completion %+v", resp)
	}
	s := c.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{
		Model:  "demo",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("streamed words here")},
	})
	var text strings.Builder
	for s.Next() {
		if len(s.Current().Choices) > 0 {
			text.WriteString(s.Current().Choices[0].Text)
		}
	}
	if s.Err() != nil || text.String() != "Echo: streamed words here" {
		t.Fatalf("stream %q err %v", text.String(), s.Err())
	}
}
