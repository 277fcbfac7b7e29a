package cmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/ledger"
)

const guardrailConfig = `
model_list:
  - model_name: gpt
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: echo
    litellm_params: {model: mock/demo}
  - model_name: fixed
    litellm_params: {model: mock/demo, mock_response: "The launch of Falcon is on Monday"}
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_base: "{{ANTHROPIC}}", api_key: sk-ant-upstream-0000000000}
router_settings: {num_retries: 0}
guardrails:
  - guardrail_name: pii-in
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      default_on: true
      patterns:
        - {pattern_type: prebuilt, pattern_name: email, action: MASK}
        - {pattern_type: prebuilt, pattern_name: us_ssn, action: BLOCK}
  - guardrail_name: cards-out
    litellm_params:
      guardrail: litellm_content_filter
      mode: post_call
      patterns: [{pattern_type: prebuilt, pattern_name: credit_card, action: MASK}]
    guardrail_info: {owner: payments}
  - guardrail_name: no-falcon
    litellm_params:
      guardrail: litellm_content_filter
      mode: [during_call, post_call]
      blocked_words: [{keyword: falcon, action: BLOCK, description: unreleased product}]
  - guardrail_name: hush
    litellm_params:
      guardrail: litellm_content_filter
      mode: post_call
      blocked_words: [{keyword: the weather, action: MASK}]
`

// sseText joins the delta text of a chat completions event stream.
func sseText(t *testing.T, body string) string {
	t.Helper()
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		b.WriteString(gjson.Get(line, "choices.0.delta.content").Str)
	}
	return b.String()
}

// Guardrails mask and block on every API before an upstream sees the
// text, and on answers, streamed ones included, before the client does.
func TestE2EGuardrails(t *testing.T) {
	fake := newFakeOpenAI(t)
	up := newAnthropicUpstream(t)
	l := startLumen(t, strings.ReplaceAll(guardrailConfig, "{{ANTHROPIC}}", up.URL), fake)

	// pre_call, default_on: the e-mail never reaches the upstream.
	r := rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt","messages":[{"role":"user","content":"mail jane@corp.example.com the plan"}]}`)
	if r.status != 200 {
		t.Fatalf("masked request: %d %s", r.status, r.text)
	}
	got, _ := fake.lastBody()["messages"].([]any)[0].(map[string]any)["content"].(string)
	if got != "mail [EMAIL_REDACTED] the plan" {
		t.Errorf("upstream saw %q", got)
	}

	// A blocking match: 400 in the OpenAI shape, naming the guardrail and
	// the field, not the number; no upstream call.
	before := fake.callsTo("gpt-4o")
	r = rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt","messages":[{"role":"user","content":"hi"},{"role":"user","content":[{"type":"text","text":"my SSN is 123-45-6789"}]}]}`)
	if r.status != 400 || gjson.Get(r.text, "error.code").Str != "content_policy_violation" ||
		gjson.Get(r.text, "error.message").Str != `guardrail "pii-in" blocked the request: pattern "us_ssn" detected in messages[1].content[0].text` {
		t.Errorf("blocked: %d %s", r.status, r.text)
	}
	if strings.Contains(r.text, "6789") || fake.callsTo("gpt-4o") != before {
		t.Errorf("the block leaked the match or called upstream: %s", r.text)
	}

	// A guardrail that is not default_on runs when the request names it;
	// the field does not go upstream.
	r = rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt","guardrails":["no-falcon"],"messages":[{"role":"user","content":"hello"}]}`)
	if r.status != 200 || fake.lastBody()["guardrails"] != nil {
		t.Errorf("named guardrail: %d %s / upstream got guardrails %v", r.status, r.text, fake.lastBody()["guardrails"])
	}
	r = rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt","guardrails":["no-falcon"],"messages":[{"role":"user","content":"Tell me about Falcon"}]}`)
	if r.status != 400 || !strings.Contains(gjson.Get(r.text, "error.message").Str, `blocked word "falcon" (unreleased product)`) {
		t.Errorf("named block: %d %s", r.status, r.text)
	}
	req, _ := http.NewRequest("POST", l.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt","messages":[{"role":"user","content":"Falcon"}]}`))
	req.Header.Set("x-lumen-guardrails", "cards-out, no-falcon")
	if r := rawDo(t, req, ""); r.status != 400 || !strings.Contains(r.text, `blocked word \"falcon\"`) {
		t.Errorf("named in the header: %d %s", r.status, r.text)
	}
	r = rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt","guardrails":["nope"],"messages":[{"role":"user","content":"x"}]}`)
	if r.status != 400 || gjson.Get(r.text, "error.code").Str != "guardrail_not_found" || gjson.Get(r.text, "error.param").Str != "guardrails" {
		t.Errorf("unknown guardrail: %d %s", r.status, r.text)
	}

	// post_call: the mock echoes the card; the answer is masked, as it is,
	// and streamed, where the number arrives one word per event.
	card := "pay with 4111 1111 1111 1111 today"
	r = rawPost(t, l, "/v1/chat/completions", "", `{"model":"echo","messages":[{"role":"user","content":"`+card+`"}]}`)
	if r.status != 200 || !strings.Contains(r.text, "Echo: pay with 4111") {
		t.Errorf("without the guardrail the answer is the echo: %d %s", r.status, r.text)
	}
	r = rawPost(t, l, "/v1/chat/completions", "", `{"model":"echo","guardrails":["cards-out"],"messages":[{"role":"user","content":"`+card+`"}]}`)
	if c := gjson.Get(r.text, "choices.0.message.content").Str; r.status != 200 || c != "Echo: pay with [CREDIT_CARD_REDACTED] today" {
		t.Errorf("masked answer: %d %s", r.status, r.text)
	}
	r = rawPost(t, l, "/v1/chat/completions", "", `{"model":"echo","stream":true,"guardrails":["cards-out"],"messages":[{"role":"user","content":"`+card+`"}]}`)
	if txt := sseText(t, r.text); r.status != 200 || txt != "Echo: pay with [CREDIT_CARD_REDACTED] today" || strings.Contains(r.text, "4111") {
		t.Errorf("masked stream: %d %q\n%s", r.status, txt, r.text)
	}
	// A blocking post_call match in a stream ends it with an error event
	// before the word is sent (the request itself is clean).
	r = rawPost(t, l, "/v1/chat/completions", "", `{"model":"fixed","stream":true,"guardrails":["no-falcon"],"messages":[{"role":"user","content":"news?"}]}`)
	if r.status != 200 || !strings.Contains(r.text, "event: error") || !strings.Contains(r.text, `guardrail \"no-falcon\" blocked the answer`) ||
		strings.Contains(strings.ToLower(sseText(t, r.text)), "falcon") || strings.Contains(r.text, "[DONE]") {
		t.Errorf("blocked stream: %d\n%s", r.status, r.text)
	}

	// The Responses API (translated to the mock) and the Messages API
	// (native to Anthropic): the same guardrails.
	r = rawPost(t, l, "/v1/responses", "", `{"model":"echo","guardrails":["cards-out"],"input":"`+card+`"}`)
	if r.status != 200 || !strings.Contains(r.text, "[CREDIT_CARD_REDACTED]") || strings.Contains(r.text, "4111 1111") {
		t.Errorf("responses: %d %s", r.status, r.text)
	}
	client := sdk.NewClient(option.WithBaseURL(l.URL), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	_, err := client.Messages.New(context.Background(), sdk.MessageNewParams{Model: "claude", MaxTokens: 100,
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("write to bob@example.org"))}})
	if err != nil {
		t.Fatal(err)
	}
	if txt := gjson.GetBytes(up.last(), "messages.0.content.0.text").Str; txt != "write to [EMAIL_REDACTED]" {
		t.Errorf("anthropic upstream saw %q", txt)
	}
	_, err = client.Messages.New(context.Background(), sdk.MessageNewParams{Model: "claude", MaxTokens: 100,
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("SSN 123-45-6789"))}})
	var apiErr *sdk.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Error(), `guardrail \"pii-in\" blocked the request`) {
		t.Errorf("anthropic block: %v", err)
	}

	// A native Anthropic stream: the phrase arrives split over two
	// text_delta events and is masked; the events keep their form.
	r = rawPost(t, l, "/v1/messages", "", `{"model":"claude","max_tokens":100,"stream":true,"guardrails":["hush"],"messages":[{"role":"user","content":"weather?"}]}`)
	var text strings.Builder
	sc := bufio.NewScanner(strings.NewReader(r.text))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok && gjson.Get(line, "delta.type").Str == "text_delta" {
			text.WriteString(gjson.Get(line, "delta.text").Str)
		}
	}
	if r.status != 200 || text.String() != "Let me check [KEYWORD_REDACTED]." || !strings.Contains(r.text, `"partial_json":"\"Paris\"}"`) ||
		!strings.Contains(r.text, "event: message_stop") {
		t.Errorf("anthropic stream: %d %q\n%s", r.status, text.String(), r.text)
	}

	// Discoverable, counted, logged by rule, never by text.
	list := rawGet(t, l.URL, "/guardrails/list", "")
	if gjson.GetBytes(list, "guardrails.#").Int() != 4 || gjson.GetBytes(list, "guardrails.1.guardrail_info.owner").Str != "payments" ||
		!gjson.GetBytes(list, "guardrails.0.default_on").Bool() {
		t.Errorf("list: %s", list)
	}
	req, _ = http.NewRequest("GET", l.URL+"/metrics", nil)
	m := rawDo(t, req, "").text
	for _, want := range []string{
		`lumen_guardrail_matches_total{action="mask",guardrail="pii-in",rule="email"} 2`,
		`lumen_guardrail_matches_total{action="block",guardrail="pii-in",rule="us_ssn"} 2`,
		`lumen_guardrail_matches_total{action="mask",guardrail="cards-out",rule="credit_card"} 3`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	waitFor(t, func() bool { return strings.Contains(l.Logs.String(), `"guardrails":["cards-out/credit_card/mask"]`) })
	for _, secret := range []string{"jane@corp", "123-45-6789", "4111 1111"} {
		if strings.Contains(l.Logs.String(), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// A virtual key's "guardrails" tag runs those guardrails on every request
// the key sends; the request cannot opt out, and a name that is not
// configured fails closed.
func TestE2EGuardrailsByKeyTag(t *testing.T) {
	cfg := `
general_settings: {master_key: sk-master-test-000000}
model_list:
  - model_name: echo
    litellm_params: {model: mock/demo}
ledger: {path: {{DIR}}/lumen.db}
audit: {enabled: false}
guardrails:
  - guardrail_name: pii
    litellm_params:
      guardrail: litellm_content_filter
      mode: [pre_call, post_call]
      patterns: [{pattern_type: prebuilt, pattern_name: pii, action: MASK}]
`
	l := startLumen(t, strings.ReplaceAll(cfg, "{{DIR}}", t.TempDir()), nil)
	body := `{"model":"echo","messages":[{"role":"user","content":"reach me at a@b.io"}]}`
	create := func(tags string) string {
		r := rawPost(t, l, "/admin/keys", master, `{"name":"k`+tags+`","tags":{"guardrails":"`+tags+`"}}`)
		if r.status != 201 {
			t.Fatalf("create: %d %s", r.status, r.text)
		}
		return gjson.Get(r.text, "key").Str
	}
	support, broken := create("pii"), create("pii gone")
	if r := rawPost(t, l, "/v1/chat/completions", master, body); !strings.Contains(r.text, "Echo: reach me at a@b.io") {
		t.Errorf("the master key has no guardrail: %s", r.text)
	}
	if r := rawPost(t, l, "/v1/chat/completions", support, body); r.status != 200 || !strings.Contains(r.text, "Echo: reach me at [EMAIL_REDACTED]") {
		t.Errorf("tagged key: %d %s", r.status, r.text)
	}
	r := rawPost(t, l, "/v1/chat/completions", broken, body)
	if r.status != 400 || !strings.Contains(r.text, `this API key's guardrails tag names \"gone\", which is not configured`) {
		t.Errorf("unconfigured tag: %d %s", r.status, r.text)
	}
}

// An openai_moderation guardrail asks a moderation model group about each
// request's text, in OpenAI's wire format, and blocks the categories it
// is told to; a moderation model that cannot answer fails closed.
func TestE2EGuardrailModeration(t *testing.T) {
	var asked []string
	var mu sync.Mutex
	mod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/moderations" || gjson.GetBytes(body, "model").Str != "omni-moderation-latest" {
			writeFakeError(w, 404, "invalid_request_error", "", "unexpected "+r.URL.Path)
			return
		}
		var results []string
		for _, in := range gjson.GetBytes(body, "input").Array() {
			mu.Lock()
			asked = append(asked, in.Str)
			mu.Unlock()
			violence, harassment := strings.Contains(in.Str, "hurt"), strings.Contains(in.Str, "idiot")
			results = append(results, fmt.Sprintf(`{"flagged":%t,"categories":{"harassment":%t,"violence":%t,"self-harm":false},"category_scores":{"harassment":0.1,"violence":0.9,"self-harm":0}}`,
				violence || harassment, harassment, violence))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"modr-1","model":"omni-moderation-latest","results":[%s]}`, strings.Join(results, ","))
	}))
	t.Cleanup(mod.Close)
	cfg := `
model_list:
  - model_name: echo
    litellm_params: {model: mock/demo}
  - model_name: mod
    litellm_params: {model: openai/omni-moderation-latest, api_base: "` + mod.URL + `/v1", api_key: sk-x}
    model_info: {mode: moderation}
  - model_name: mod-down
    litellm_params: {model: openai/omni-moderation-latest, api_base: "http://127.0.0.1:1/v1", api_key: sk-x}
    model_info: {mode: moderation}
router_settings: {num_retries: 0}
guardrails:
  - guardrail_name: safety
    litellm_params: {guardrail: openai_moderation, mode: pre_call, default_on: true, model: mod, categories: [violence, self-harm]}
  - guardrail_name: down
    litellm_params: {guardrail: openai_moderation, mode: during_call, model: mod-down}
`
	l := startLumen(t, cfg, nil)
	chat := func(extra, text string) rawResponse {
		return rawPost(t, l, "/v1/chat/completions", "", `{"model":"echo",`+extra+`"messages":[{"role":"system","content":"be kind"},{"role":"user","content":"`+text+`"}]}`)
	}
	if r := chat("", "how do I hurt someone"); r.status != 400 || gjson.Get(r.text, "error.code").Str != "content_policy_violation" ||
		gjson.Get(r.text, "error.message").Str != `guardrail "safety" blocked the request: moderation categories violence detected` {
		t.Errorf("violence: %d %s", r.status, r.text)
	}
	mu.Lock()
	if len(asked) != 2 || asked[0] != "be kind" || asked[1] != "how do I hurt someone" {
		t.Errorf("the moderation model was asked %q", asked)
	}
	mu.Unlock()
	// Harassment is flagged but not one of the guardrail's categories.
	if r := chat("", "you idiot"); r.status != 200 || !strings.Contains(r.text, "Echo: you idiot") {
		t.Errorf("harassment: %d %s", r.status, r.text)
	}
	if r := chat(`"guardrails":["down"],`, "hello"); r.status != 503 || gjson.Get(r.text, "error.code").Str != "guardrail_unavailable" ||
		!strings.Contains(gjson.Get(r.text, "error.message").Str, `guardrail "down" could not check the request (model group mod-down)`) {
		t.Errorf("moderation down: %d %s", r.status, r.text)
	}
}

// A moderation guardrail's call counts in its model group's rpm window,
// as a client's /v1/moderations does: the window guards that upstream.
// Once the guardrail has filled it, a request it would check gets the
// window's 429 with Retry-After (not an unchecked pass, not a 503), and a
// direct moderation request is refused too.
func TestE2EGuardrailModerationCountsInGroupWindow(t *testing.T) {
	var calls atomic.Int32
	mod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":false,"categories":{"violence":false},"category_scores":{"violence":0}}]}`)
	}))
	t.Cleanup(mod.Close)
	l := startLumen(t, `
model_list:
  - model_name: echo
    litellm_params: {model: mock/demo}
  - model_name: mod
    litellm_params: {model: openai/omni-moderation-latest, api_base: "`+mod.URL+`/v1", api_key: sk-x}
    model_info: {mode: moderation}
router_settings: {num_retries: 0}
guardrails:
  - guardrail_name: safety
    litellm_params: {guardrail: openai_moderation, mode: pre_call, default_on: true, model: mod}
limits:
  model_groups: {mod: {rpm: 2}}
`, nil)
	c := client(l, "x")
	p := userMsg("hello")
	p.Model = "echo"
	for i := range 2 {
		if _, err := c.Chat.Completions.New(context.Background(), p); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	_, err := c.Chat.Completions.New(context.Background(), p)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" ||
		apiErr.Message != `guardrail "safety" could not check the request: rate limit reached for model "mod": 2 requests per minute; retry after `+apiErr.Response.Header.Get("Retry-After")+"s" ||
		apiErr.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("third request, the moderation window full: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("the moderation model was called %d times, want 2 (its rpm)", n)
	}
	// The same window a client's own moderation request counts in.
	r := rawPost(t, l, "/v1/moderations", "", `{"model":"mod","input":"hello"}`)
	if r.status != 429 || gjson.Get(r.text, "error.code").Str != "rate_limit_exceeded" {
		t.Fatalf("a direct moderation request: %d %s", r.status, r.text)
	}
}

// A logging_only guardrail masks what the ledger keeps of a request and
// its answer; the upstream and the client see them whole.
func TestE2EGuardrailLoggingOnly(t *testing.T) {
	dir := t.TempDir()
	cfg := `
model_list:
  - model_name: echo
    litellm_params: {model: mock/demo}
ledger: {path: ` + dir + `/lumen.db, store_payloads: true}
audit: {enabled: false}
guardrails:
  - guardrail_name: quiet-logs
    litellm_params:
      guardrail: litellm_content_filter
      mode: logging_only
      default_on: true
      patterns: [{pattern_name: pii, action: BLOCK}]
`
	l := startLumen(t, cfg, nil)
	r := rawPost(t, l, "/v1/chat/completions", "", `{"model":"echo","messages":[{"role":"user","content":"mail jane@corp.example.com"}]}`)
	if r.status != 200 || !strings.Contains(r.text, "Echo: mail jane@corp.example.com") {
		t.Fatalf("the client's answer: %d %s", r.status, r.text)
	}
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	db, err := ledger.Open(context.Background(), dir+"/lumen.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	req, resp, err := db.Payload(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(req, "messages.0.content").Str != "mail [EMAIL_REDACTED]" ||
		gjson.GetBytes(resp, "choices.0.message.content").Str != "Echo: mail [EMAIL_REDACTED]" {
		t.Errorf("the ledger kept:\n%s\n%s", req, resp)
	}
}

// A multipart body's prompt field (an image edit's) is guarded; the image
// passes as it came.
func TestE2EGuardrailFormPrompt(t *testing.T) {
	prompts := make(chan string, 1)
	var image []byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ParseMultipartForm(1<<20) != nil {
			http.Error(w, `{"error":{"message":"bad request"}}`, 400)
			return
		}
		f, _, _ := r.FormFile("image")
		image, _ = io.ReadAll(f)
		prompts <- r.FormValue("prompt")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"created":1,"data":[{"b64_json":"aGk="}]}`)
	}))
	t.Cleanup(up.Close)
	l := startLumen(t, `
model_list:
  - model_name: editor
    litellm_params: {model: openai/gpt-image-1, api_base: "`+up.URL+`/v1", api_key: sk-x}
    model_info: {mode: image_generation}
guardrails:
  - guardrail_name: pii
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      default_on: true
      patterns: [{pattern_name: email, action: MASK}, {pattern_name: us_ssn, action: BLOCK}]
`, nil)
	png := []byte("\x89PNG\r\n\x1a\n jane@x.org in the pixels")
	r := rawForm(t, l, "/v1/images/edits", "", map[string]string{"model": "editor", "prompt": "a card for jane@x.org"}, "image", png)
	if r.status != 200 {
		t.Fatalf("edit: %d %s", r.status, r.text)
	}
	if p := <-prompts; p != "a card for [EMAIL_REDACTED]" || !bytes.Equal(image, png) {
		t.Errorf("upstream got prompt %q, image %q", p, image)
	}
	r = rawForm(t, l, "/v1/images/edits", "", map[string]string{"model": "editor", "prompt": "SSN 123-45-6789"}, "image", png)
	if r.status != 400 || gjson.Get(r.text, "error.message").Str != `guardrail "pii" blocked the request: pattern "us_ssn" detected in prompt` {
		t.Errorf("blocked prompt: %d %s", r.status, r.text)
	}
}

// A during_call moderation guardrail runs beside the upstream call: the
// moderation model is asked while the upstream is already answering, and
// the answer, streamed or not, waits for its verdict; a flagged request
// gets its 400 and nothing of the answer.
func TestE2EGuardrailModerationDuringCall(t *testing.T) {
	called := make(chan struct{}, 16) // the chat upstream got a request
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		called <- struct{}{}
		if gjson.GetBytes(body, "stream").Bool() {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"the secret answer"},"finish_reason":null}]}`+"\n\n")
			io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"the secret answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`)
	}))
	t.Cleanup(up.Close)
	var mu sync.Mutex
	var overlapped []bool
	mod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// Answer once the chat upstream has its request: with pre_call
		// semantics it never would before this answer, and the wait runs out.
		seen := false
		select {
		case <-called:
			seen = true
		case <-time.After(2 * time.Second):
		}
		mu.Lock()
		overlapped = append(overlapped, seen)
		mu.Unlock()
		flag := strings.Contains(string(body), "hurt")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":%t,"categories":{"violence":%t},"category_scores":{"violence":0.9}}]}`, flag, flag)
	}))
	t.Cleanup(mod.Close)
	l := startLumen(t, `
model_list:
  - model_name: gpt
    litellm_params: {model: openai/gpt-4o, api_base: "`+up.URL+`/v1", api_key: sk-x}
  - model_name: mod
    litellm_params: {model: openai/omni-moderation-latest, api_base: "`+mod.URL+`/v1", api_key: sk-x}
    model_info: {mode: moderation}
router_settings: {num_retries: 0}
guardrails:
  - guardrail_name: safety
    litellm_params: {guardrail: openai_moderation, mode: during_call, default_on: true, model: mod}
`, nil)
	for _, c := range []struct {
		path, body string
	}{
		{"/v1/chat/completions", `{"model":"gpt","messages":[{"role":"user","content":"%s"}]}`},
		{"/v1/chat/completions", `{"model":"gpt","stream":true,"messages":[{"role":"user","content":"%s"}]}`},
		{"/v1/messages", `{"model":"gpt","max_tokens":50,"messages":[{"role":"user","content":"%s"}]}`},
		{"/v1/messages", `{"model":"gpt","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"%s"}]}`},
		{"/v1/responses", `{"model":"gpt","input":"%s"}`},
	} {
		ok := rawPost(t, l, c.path, "", fmt.Sprintf(c.body, "hello there"))
		if ok.status != 200 || !strings.Contains(ok.text, "the secret answer") {
			t.Errorf("%s %s, clean: %d %s", c.path, c.body, ok.status, ok.text)
		}
		bad := rawPost(t, l, c.path, "", fmt.Sprintf(c.body, "how do I hurt someone"))
		if bad.status != 400 || !strings.Contains(bad.text, `guardrail \"safety\" blocked the request: moderation categories violence detected`) ||
			strings.Contains(bad.text, "secret") {
			t.Errorf("%s %s, flagged: %d %s", c.path, c.body, bad.status, bad.text)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(overlapped) != 10 || slices.Contains(overlapped, false) {
		t.Errorf("the moderation call overlapped the upstream call: %v, want 10 × true", overlapped)
	}
}
