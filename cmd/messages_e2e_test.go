package cmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/tidwall/gjson"
)

// anthropicUpstream is a Messages API upstream on loopback, in the
// documented wire format: a text block then a tool_use block, as JSON or
// as the event stream. It records the bodies it was sent. The model
// claude-stall streams message_start and a text delta, then stalls until
// the request is cancelled.
type anthropicUpstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	hdr    http.Header
}

func newAnthropicUpstream(t *testing.T) *anthropicUpstream {
	u := &anthropicUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, body)
		u.hdr = r.Header.Clone()
		u.mu.Unlock()
		if r.URL.Path != "/v1/messages" || r.Header.Get("x-api-key") != "sk-ant-upstream-0000000000" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
			return
		}
		usage := `{"input_tokens":21,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":30}`
		if !gjson.GetBytes(body, "stream").Bool() {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":%q,`+
				`"content":[{"type":"text","text":"Let me check the weather."},{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"city":"Paris"}}],`+
				`"stop_reason":"tool_use","stop_sequence":null,"usage":%s}`, gjson.GetBytes(body, "model").Str, usage)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		ev := func(typ, data string) {
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
			fl.Flush()
		}
		if gjson.GetBytes(body, "model").Str == "claude-stall" {
			ev("message_start", `{"type":"message_start","message":{"id":"msg_stall","type":"message","role":"assistant","model":"claude-stall","stop_sequence":null,"usage":{"input_tokens":21,"output_tokens":1},"content":[],"stop_reason":null}}`)
			ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me"}}`)
			<-r.Context().Done()
			return
		}
		ev("message_start", `{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":21,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":1},"content":[],"stop_reason":null}}`)
		ev("ping", `{"type": "ping"}`)
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check"}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the weather."}}`)
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
		ev("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}`)
		ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}`)
		ev("content_block_stop", `{"type":"content_block_stop","index":1}`)
		ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}}`)
		ev("message_stop", `{"type":"message_stop"}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *anthropicUpstream) last() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bodies[len(u.bodies)-1]
}

const messagesConfig = `
model_list:
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_base: "{{ANTHROPIC}}", api_key: sk-ant-upstream-0000000000}
  - model_name: gpt
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
router_settings:
  num_retries: 0
  model_group_alias: {claude-sonnet-4-5-20250929: claude}
`

func weatherParams(model string) sdk.MessageNewParams {
	return sdk.MessageNewParams{
		Model:     sdk.Model(model),
		MaxTokens: 1024,
		System: []sdk.TextBlockParam{{Text: "You are terse. " + strings.Repeat("Long shared context. ", 50),
			CacheControl: sdk.NewCacheControlEphemeralParam()}},
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("What is the weather in Paris?"))},
		Tools: []sdk.ToolUnionParam{{OfTool: &sdk.ToolParam{Name: "get_weather", Description: sdk.String("Weather of a city"),
			InputSchema: sdk.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}}}}},
	}
}

func TestE2EMessagesNativeToAnthropic(t *testing.T) {
	up := newAnthropicUpstream(t)
	l := startLumen(t, strings.ReplaceAll(messagesConfig, "{{ANTHROPIC}}", up.URL), newFakeOpenAI(t))
	c := sdk.NewClient(option.WithBaseURL(l.URL), option.WithAPIKey("anything"), option.WithMaxRetries(0))

	msg, err := c.Messages.New(context.Background(), weatherParams("claude"))
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != "tool_use" || len(msg.Content) != 2 || msg.Content[1].Name != "get_weather" ||
		msg.Usage.CacheReadInputTokens != 1800 {
		t.Fatalf("message: %+v", msg)
	}
	// Passed through natively: cache_control kept, model replaced.
	sent := up.last()
	if gjson.GetBytes(sent, "system.0.cache_control.type").Str != "ephemeral" || gjson.GetBytes(sent, "model").Str != "claude-sonnet-4-5" {
		t.Fatalf("upstream body: %s", sent)
	}

	// Claude Code's beta and version headers go upstream as it sent them.
	if _, err := c.Messages.New(context.Background(), weatherParams("claude"),
		option.WithHeader("anthropic-version", "2023-01-01"), option.WithHeader("anthropic-beta", "context-1m-2025-08-07,interleaved-thinking-2025-05-14")); err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	beta, version := up.hdr.Values("Anthropic-Beta"), up.hdr.Get("Anthropic-Version")
	up.mu.Unlock()
	if strings.Join(beta, ";") != "context-1m-2025-08-07,interleaved-thinking-2025-05-14" || version != "2023-01-01" {
		t.Errorf("upstream got anthropic-beta %q, anthropic-version %q", beta, version)
	}

	// A duplicate key in the client's own body (which goes upstream
	// natively) is refused, in Anthropic's error shape.
	before := string(up.last())
	r := rawPost(t, l, "/v1/messages", "", `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi","content":"ho"}]}`)
	if r.status != 400 || gjson.Get(r.text, "type").Str != "error" || !strings.Contains(gjson.Get(r.text, "error.message").Str, `the key "content" twice`) || string(up.last()) != before {
		t.Fatalf("duplicate key: %d %s", r.status, r.text)
	}

	// The gateway's own fields work as on chat completions and never
	// reach the native upstream.
	r = rawPost(t, l, "/v1/messages", "", `{"model":"claude","models":["nope"],"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)
	if r.status != 404 || gjson.Get(r.text, "type").Str != "error" || !strings.Contains(r.text, `nope`) {
		t.Errorf("an unknown model in models: %d %s", r.status, r.text)
	}
	r = rawPost(t, l, "/v1/messages", "", `{"model":"claude","fallbacks":[],"lumen":{"quality_floor":0.5},"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)
	if sent := up.last(); r.status != 200 || gjson.GetBytes(sent, "fallbacks").Exists() || gjson.GetBytes(sent, "lumen").Exists() {
		t.Errorf("gateway fields: %d %s; upstream got %s", r.status, r.text, sent)
	}

	// Claude Code sends the provider's exact model id: an alias reaches the group.
	if m, err := c.Messages.New(context.Background(), weatherParams("claude-sonnet-4-5-20250929")); err != nil || m.StopReason != "tool_use" {
		t.Fatalf("through the alias: %v %+v", err, m)
	}
	if ids := modelIDs(t, l); !strings.Contains(ids, `"claude-sonnet-4-5-20250929"`) {
		t.Fatalf("/v1/models does not list the alias: %s", ids)
	}

	st := c.Messages.NewStreaming(context.Background(), weatherParams("claude"))
	var acc sdk.Message
	var types []string
	for st.Next() {
		ev := st.Current()
		types = append(types, ev.Type)
		if err := acc.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.StopReason != "tool_use" || len(acc.Content) != 2 || string(acc.Content[1].Input) != `{"city": "Paris"}` {
		t.Fatalf("streamed message %+v (events %v)", acc, types)
	}
	if types[0] != "message_start" || types[len(types)-1] != "message_stop" {
		t.Fatalf("events %v", types)
	}
	// Logged with the upstream's usage, cached tokens included.
	waitFor(t, func() bool { return strings.Contains(l.Logs.String(), `"prompt_tokens":1821`) })
}

func TestE2EMessagesTranslatedToOpenAI(t *testing.T) {
	up := newAnthropicUpstream(t)
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, strings.ReplaceAll(messagesConfig, "{{ANTHROPIC}}", up.URL), fake)
	c := sdk.NewClient(option.WithBaseURL(l.URL+"/anthropic"), option.WithAPIKey("anything"), option.WithMaxRetries(0))

	p := weatherParams("gpt")
	p.Tools = nil
	msg, err := c.Messages.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Type != "message" || len(msg.Content) == 0 || msg.Content[0].Text != "Hello from fake" || msg.StopReason != "end_turn" {
		t.Fatalf("translated message: %+v", msg)
	}
	st := c.Messages.NewStreaming(context.Background(), p)
	var acc sdk.Message
	for st.Next() {
		if err := acc.Accumulate(st.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil || acc.Content[0].Text != "Hello from fake stream!" {
		t.Fatalf("translated stream: %+v %v", acc, err)
	}

	// Bad input answers in Anthropic's error shape: no max_tokens.
	r := rawPost(t, l, "/v1/messages", "", `{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`)
	if r.status != 400 || gjson.Get(r.text, "type").Str != "error" || gjson.Get(r.text, "error.type").Str != "invalid_request_error" ||
		!strings.Contains(r.text, "max_tokens") {
		t.Fatalf("no max_tokens: %d %s", r.status, r.text)
	}
	// A PDF document (Claude Code reading a PDF) reaches the OpenAI model
	// as a file part; a document by URL, which chat completions cannot
	// fetch, is refused naming the field.
	r = rawPost(t, l, "/v1/messages", "", `{"model":"gpt","max_tokens":64,"messages":[{"role":"user","content":[`+
		`{"type":"document","title":"Q3 report","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0xLjQKJSVFT0YK"}},{"type":"text","text":"Summarise."}]}]}`)
	sent, _ := json.Marshal(fake.lastBody())
	if r.status != 200 || gjson.GetBytes(sent, "messages.0.content.0.file.file_data").Str != "data:application/pdf;base64,JVBERi0xLjQKJSVFT0YK" ||
		gjson.GetBytes(sent, "messages.0.content.0.file.filename").Str != "Q3 report.pdf" {
		t.Fatalf("PDF document: %d %s; upstream got %s", r.status, r.text, sent)
	}
	r = rawPost(t, l, "/v1/messages", "", `{"model":"gpt","max_tokens":64,"messages":[{"role":"user","content":[`+
		`{"type":"document","source":{"type":"url","url":"https://example.com/a.pdf"}}]}]}`)
	if r.status != 400 || !strings.Contains(r.text, "messages[0].content[0].source") {
		t.Fatalf("document by URL: %d %s", r.status, r.text)
	}
	// count_tokens estimates.
	r = rawPost(t, l, "/v1/messages/count_tokens", "", `{"model":"gpt","messages":[{"role":"user","content":"how many tokens is this"}]}`)
	if r.status != 200 || gjson.Get(r.text, "input_tokens").Int() <= 0 {
		t.Fatalf("count_tokens: %d %s", r.status, r.text)
	}
}

// Tools through the translation: the tool_use comes back as a content
// block (streamed as input_json_delta), the tool_result goes upstream as an
// OpenAI tool message, and the final answer comes back as text.
func TestE2EMessagesToolsTranslated(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, `
model_list:
  - model_name: gpt-tools
    litellm_params: {model: openai/weather-tool, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
`, fake)
	c := sdk.NewClient(option.WithBaseURL(l.URL), option.WithAPIKey("anything"), option.WithMaxRetries(0))
	p := weatherParams("gpt-tools")
	msg, err := c.Messages.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != "tool_use" || len(msg.Content) != 1 || msg.Content[0].Type != "tool_use" ||
		msg.Content[0].Name != "get_weather" || string(msg.Content[0].Input) != `{"city":"Paris"}` {
		t.Fatalf("tool call: %+v", msg)
	}
	st := c.Messages.NewStreaming(context.Background(), p)
	var acc sdk.Message
	for st.Next() {
		if err := acc.Accumulate(st.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil || acc.StopReason != "tool_use" || len(acc.Content) != 1 ||
		string(acc.Content[0].Input) != `{"city":"Paris"}` {
		t.Fatalf("streamed tool call: %+v %v", acc, err)
	}
	// The round trip: the tool's result goes back, the answer comes out.
	p.Messages = append(p.Messages, msg.ToParam(),
		sdk.NewUserMessage(sdk.NewToolResultBlock(msg.Content[0].ID, "sunny, 21C", false)))
	final, err := c.Messages.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if final.StopReason != "end_turn" || final.Content[0].Text != "Sunny, 21C" {
		t.Fatalf("final: %+v", final)
	}
	fake.mu.Lock()
	last := fake.bodies[len(fake.bodies)-1]
	fake.mu.Unlock()
	if gjson.GetBytes(last, `messages.#(role=="tool").tool_call_id`).Str != msg.Content[0].ID {
		t.Fatalf("tool result upstream: %s", last)
	}

	// The same tool call streamed on chat completions: every event whole
	// (tool-call chunks are held back for failover and must survive the
	// upstream reader reusing its buffer).
	resp, err := http.Post(l.URL+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"model":"gpt-tools","stream":true,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var args strings.Builder
	for line := range strings.SplitSeq(string(raw), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		if !gjson.Valid(data) {
			t.Fatalf("corrupt event %q in\n%s", data, raw)
		}
		args.WriteString(gjson.Get(data, "choices.0.delta.tool_calls.0.function.arguments").Str)
	}
	if args.String() != `{"city":"Paris"}` {
		t.Fatalf("streamed arguments %q", args.String())
	}

	// Bad input answers 400 in Anthropic's shape.
	for name, body := range map[string]string{
		"unknown content type": `{"model":"gpt-tools","max_tokens":10,"messages":[{"role":"user","content":[{"type":"hologram","data":"x"}]}]}`,
		"server tool":          `{"model":"gpt-tools","max_tokens":10,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"hi"}]}`,
	} {
		r := rawPost(t, l, "/v1/messages", "", body)
		if r.status != 400 || gjson.Get(r.text, "error.type").Str != "invalid_request_error" {
			t.Errorf("%s: %d %s", name, r.status, r.text)
		}
	}
}

// Bad input to a translating provider answers 400 in the OpenAI shape,
// naming the field, and nothing reaches the upstream. (Anthropic takes
// image URLs itself; Gemini needs the bytes, which Lumen fetches.)
func TestE2ETranslatingProviderBadInput(t *testing.T) {
	up := newAnthropicUpstream(t)
	var geminiHits atomic.Int64
	gem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		geminiHits.Add(1)
		w.WriteHeader(500)
	}))
	t.Cleanup(gem.Close)
	cfg := strings.Replace(strings.ReplaceAll(messagesConfig, "{{ANTHROPIC}}", up.URL), "router_settings:", `  - model_name: gem
    litellm_params: {model: gemini/gemini-2.5-flash, api_base: "`+gem.URL+`", api_key: gemini-test-key}
router_settings:`, 1)
	l := startLumen(t, cfg, newFakeOpenAI(t))
	for _, tc := range []struct{ name, model, messages string }{
		{"tool arguments not JSON", "claude", `[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{not json"}}]},{"role":"tool","tool_call_id":"call_1","content":"x"}]`},
		{"unknown content part", "claude", `[{"role":"user","content":[{"type":"hologram","data":"x"}]}]`},
		{"unfetchable image URL", "gem", `[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"http://127.0.0.1:1/cat.png"}}]}]`},
	} {
		r := rawPost(t, l, "/v1/chat/completions", "", `{"model":"`+tc.model+`","messages":`+tc.messages+`}`)
		e := gjson.Get(r.text, "error")
		if r.status != 400 || e.Get("type").Str != "invalid_request_error" || !strings.HasPrefix(e.Get("param").Str, "messages") {
			t.Errorf("%s: %d %s", tc.name, r.status, r.text)
		}
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.bodies) != 0 || geminiHits.Load() != 0 {
		t.Fatalf("bad requests reached the upstreams: anthropic %d, gemini %d", len(up.bodies), geminiHits.Load())
	}
}

// An image URL at an address that is not public is refused before Lumen
// connects to it, in whatever form the address comes: the shared
// (carrier-grade NAT) block where Alibaba Cloud keeps its metadata
// service, or the NAT64 form of 169.254.169.254 that a NAT64 gateway
// would turn into the cloud metadata service.
func TestE2EImageFetchRefusesNonPublicAddresses(t *testing.T) {
	var geminiHits atomic.Int64
	gem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		geminiHits.Add(1)
		w.WriteHeader(500)
	}))
	t.Cleanup(gem.Close)
	l := startLumen(t, `
model_list:
  - model_name: gem
    litellm_params: {model: gemini/gemini-2.5-flash, api_base: "`+gem.URL+`", api_key: gemini-test-key}
router_settings:
  num_retries: 0
`, nil)
	for _, u := range []string{
		"http://100.100.100.200/latest/meta-data/",
		"http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
	} {
		r := rawPost(t, l, "/v1/chat/completions", "", `{"model":"gem","messages":[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"`+u+`"}}]}]}`)
		e := gjson.Get(r.text, "error")
		if r.status != 400 || e.Get("type").Str != "invalid_request_error" || e.Get("param").Str != "messages[0].content[1].image_url.url" ||
			!strings.Contains(e.Get("message").Str, "is not a public address") {
			t.Errorf("%s: %d %s", u, r.status, r.text)
		}
	}
	if n := geminiHits.Load(); n != 0 {
		t.Fatalf("refused requests reached the upstream %d times", n)
	}
}

// What Claude Code 2.1 sends (providers/anthropic/testdata/inbound/
// claude_code_2026.json, trimmed from a captured request): a system turn
// inside messages, adaptive thinking, effort, context management, a
// deferred tool and a tool_reference, model "claude-opus-5-5" and
// max_tokens 128000. Served by an OpenAI-form model with a 16,384-token
// output cap, through an alias: the upstream gets the system turn in
// place and max_tokens lowered to its cap, and the stream opens with the
// prompt's input tokens, as Anthropic's does.
func TestE2EMessagesClaudeCode(t *testing.T) {
	fixture, err := os.ReadFile("../providers/anthropic/testdata/inbound/claude_code_2026.json")
	if err != nil {
		t.Fatal(err)
	}
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, `
model_list:
  - model_name: coder
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {max_output_tokens: 16384}
router_settings:
  model_group_alias: {claude-opus-5-5: coder}
`, fake)
	req, _ := http.NewRequest(http.MethodPost, l.URL+"/v1/messages?beta=true", bytes.NewReader(fixture))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,effort-2025-11-24")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	var types []string
	var text strings.Builder
	for line := range strings.SplitSeq(string(raw), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		ev := gjson.Parse(data)
		types = append(types, ev.Get("type").Str)
		switch ev.Get("type").Str {
		case "message_start":
			if n := ev.Get("message.usage.input_tokens").Int(); n < 500 {
				t.Errorf("message_start input_tokens = %d, want the prompt's estimate", n)
			}
			if m := ev.Get("message.model").Str; m != "claude-opus-5-5" {
				t.Errorf("message_start model %q, want the client's", m)
			}
		case "content_block_delta":
			text.WriteString(ev.Get("delta.text").Str)
		}
	}
	if len(types) == 0 || types[0] != "message_start" || types[len(types)-1] != "message_stop" || text.String() != "Hello from fake stream!" {
		t.Fatalf("stream %v %q:\n%s", types, text.String(), raw)
	}
	up := fake.lastBody()
	if up["max_tokens"] != float64(16384) {
		t.Errorf("upstream max_tokens = %v, want the deployment's cap 16384", up["max_tokens"])
	}
	msgs, _ := up["messages"].([]any)
	var roles []string
	for _, m := range msgs {
		roles = append(roles, m.(map[string]any)["role"].(string))
	}
	if want := "system user system assistant tool user assistant tool"; strings.Join(roles, " ") != want {
		t.Errorf("upstream roles %v, want %s", roles, want)
	}
	for _, k := range []string{"thinking", "output_config", "context_management"} {
		if _, ok := up[k]; ok {
			t.Errorf("upstream body carries %s", k)
		}
	}
}

// A native Anthropic stream that stalls past stream_timeout after some
// events ends as a timeout (an error event of type timeout_error, 504 in
// the log), as the same stall does when translated for chat completions,
// and the log counts the bytes relayed before it.
func TestE2EMessagesNativeStreamStall(t *testing.T) {
	up := newAnthropicUpstream(t)
	l := startLumen(t, strings.ReplaceAll(`
model_list:
  - model_name: stall
    litellm_params: {model: anthropic/claude-stall, api_base: "{{ANTHROPIC}}", api_key: sk-ant-upstream-0000000000, stream_timeout: 0.2}
router_settings: {num_retries: 0}
`, "{{ANTHROPIC}}", up.URL), nil)
	got := rawPost(t, l, "/v1/messages", "", `{"model":"stall","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
	_, data, _ := strings.Cut(got.text, "event: error\ndata: ")
	if got.status != 200 || !strings.Contains(got.text, `"Let me"`) || gjson.Get(data, "error.type").Str != "timeout_error" ||
		!strings.Contains(gjson.Get(data, "error.message").Str, "deployment anthropic/claude-stall: timed out") {
		t.Fatalf("%d\n%s", got.status, got.text)
	}
	chat := rawPost(t, l, "/v1/chat/completions", "", `{"model":"stall","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	_, data, _ = strings.Cut(chat.text, "event: error\ndata: ")
	if gjson.Get(data, "error.code").Str != "upstream_timeout" {
		t.Fatalf("chat completions: %d\n%s", chat.status, chat.text)
	}
	waitFor(t, func() bool { return strings.Count(l.Logs.String(), `"status":504`) == 2 })
	for _, line := range strings.Split(l.Logs.String(), "\n") {
		if strings.Contains(line, "stream broke mid-answer") && gjson.Get(line, "relayed_bytes").Int() == 0 {
			t.Errorf("relayed_bytes 0 after events were relayed: %s", line)
		}
	}
}

// A Claude Code metadata.user_id (about 160 characters, longer than
// OpenAI-compatible upstreams take) goes upstream as its SHA-256 digest, on
// /v1/messages and /v1/responses alike; the ledger keeps the id the client
// sent (cut to 128 characters, as every user is).
func TestE2EMessagesLongUserID(t *testing.T) {
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	dir := t.TempDir()
	l := startLumen(t, `
model_list:
  - model_name: gpt
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
ledger: {path: `+dir+`/lumen.db}
`, fake)
	long := "user_" + strings.Repeat("ab12", 16) + "_account_3f0c5a8e-1b2d-4c6e-9f7a-0123456789ab_session_7d9e1f2a-3b4c-4d5e-8f60-abcdef012345"
	sum := sha256.Sum256([]byte(long))
	digest := hex.EncodeToString(sum[:])
	for _, tt := range []struct{ path, body string }{
		{"/v1/messages", `{"model":"gpt","max_tokens":10,"metadata":{"user_id":"` + long + `"},"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/responses", `{"model":"gpt","user":"` + long + `","input":"hi"}`},
		{"/v1/messages", `{"model":"gpt","max_tokens":10,"metadata":{"user_id":"u-42"},"messages":[{"role":"user","content":"hi"}]}`},
	} {
		if r := rawPost(t, l, tt.path, "", tt.body); r.status != 200 {
			t.Fatalf("%s: %d %s", tt.path, r.status, r.text)
		}
	}
	fake.mu.Lock()
	var sent []string
	for _, b := range fake.bodies {
		sent = append(sent, gjson.GetBytes(b, "user").Str)
	}
	fake.mu.Unlock()
	if want := []string{digest, digest, "u-42"}; strings.Join(sent, " ") != strings.Join(want, " ") {
		t.Errorf("upstream users %q, want %q", sent, want)
	}
	var users []string
	for _, e := range records(t, l, dir) { // newest first
		users = append(users, e.User)
	}
	if want := []string{"u-42", long[:128], long[:128]}; strings.Join(users, " ") != strings.Join(want, " ") {
		t.Errorf("ledger users %q, want %q", users, want)
	}
}

// A translated stream whose upstream reports no usage says in
// message_delta the output tokens Lumen counted, as the ledger records.
func TestE2EMessagesStreamWithoutUsage(t *testing.T) {
	fake := newFakeOpenAI(t)
	dir := t.TempDir()
	l := startLumen(t, `
model_list:
  - model_name: gpt
    litellm_params: {model: openai/no-usage, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
ledger: {path: `+dir+`/lumen.db}
`, fake)
	c := sdk.NewClient(option.WithBaseURL(l.URL), option.WithAPIKey("anything"), option.WithMaxRetries(0))
	st := c.Messages.NewStreaming(context.Background(), sdk.MessageNewParams{Model: "gpt", MaxTokens: 100,
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("hi"))}})
	var acc sdk.Message
	for st.Next() {
		if err := acc.Accumulate(st.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil || len(acc.Content) != 1 || acc.Content[0].Text != "Hello from fake stream!" {
		t.Fatalf("stream: %s %v", acc.RawJSON(), err)
	}
	rows := records(t, l, dir)
	if len(rows) != 1 || rows[0].Usage.CompletionTokens == 0 || acc.Usage.OutputTokens != int64(rows[0].Usage.CompletionTokens) {
		t.Errorf("message_delta output_tokens %d; ledger %+v", acc.Usage.OutputTokens, rows)
	}
}
