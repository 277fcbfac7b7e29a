package server

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/internal/syncbuf"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/router"
)

// A request whose guardrails match many times logs each guardrail, rule
// and action that matched once, with the number of matches: a prompt of
// 500 e-mail addresses is one entry, not 500.
func TestGuardrailMatchesLoggedOnce(t *testing.T) {
	const yaml = `
model_list: [{model_name: echo, params: {model: mock/echo}}]
guardrails:
  - guardrail_name: pii
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      default_on: true
      patterns:
        - {pattern_type: prebuilt, pattern_name: email, action: MASK}
`
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	guards, err := guardrail.NewSet(cfg.Guardrails)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	_, url, stop := runServer(t, yaml, Options{Logger: zerolog.New(&logs), Guardrails: guards}, nil)
	prompt := strings.Repeat("mail jane@corp.example.com ", 500)
	status, text := postJSON(t, url+"/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"`+prompt+`"}]}`)
	if status != http.StatusOK || strings.Contains(text, "jane@corp") {
		t.Fatalf("%d %s", status, text)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if gjson.Get(l, "message").Str == "request" {
			line = l
		}
	}
	got := gjson.Get(line, "guardrails").Array()
	if len(got) != 1 || got[0].Str != "pii/email/mask" || gjson.Get(line, "guardrail_matches").Int() != 500 {
		t.Fatalf("request log line %.400s, want guardrails [pii/email/mask] and 500 matches", line)
	}
}

// A moderation guardrail whose model group's window is full asks the
// group's fallback, admitted by its own window, as a client's request
// would; with that full too the request gets the 429 with the soonest
// Retry-After.
func TestModerationFullGroupFallsBack(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	mod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls[gjson.GetBytes(body, "model").Str]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":false,"categories":{"violence":false},"category_scores":{"violence":0}}]}`)
	}))
	defer mod.Close()
	yaml := `
model_list:
  - {model_name: echo, params: {model: mock/echo}}
  - {model_name: mod, params: {model: openai/mod-a, api_base: "` + mod.URL + `/v1", api_key: sk-x}, model_info: {mode: moderation}}
  - {model_name: mod2, params: {model: openai/mod-b, api_base: "` + mod.URL + `/v1", api_key: sk-x}, model_info: {mode: moderation}}
router_settings: {num_retries: 0, fallbacks: [{mod: [mod2]}]}
guardrails:
  - guardrail_name: safety
    litellm_params: {guardrail: openai_moderation, mode: pre_call, default_on: true, model: mod}
limits: {model_groups: {mod: {rpm: 1}, mod2: {rpm: 1}}}
`
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	guards, err := guardrail.NewSet(cfg.Guardrails)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(cfg, router.Build)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Guardrails: guards,
		Limiter: limits.NewMemoryLimiter(limits.LimiterOptions{})}))
	defer srv.Close()
	const chat = `{"model":"echo","messages":[{"role":"user","content":"hello"}]}`
	for i, want := range []map[string]int{{"mod-a": 1}, {"mod-a": 1, "mod-b": 1}} {
		if status, text := postJSON(t, srv.URL+"/v1/chat/completions", chat); status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, status, text)
		}
		mu.Lock()
		got := maps.Clone(calls)
		mu.Unlock()
		if !maps.Equal(got, want) {
			t.Fatalf("request %d: moderation calls %v, want %v", i, got, want)
		}
	}
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(chat))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	e := errorOf(t, string(raw))
	if resp.StatusCode != http.StatusTooManyRequests || e.Code == nil || *e.Code != "rate_limit_exceeded" || resp.Header.Get("Retry-After") == "" ||
		!strings.HasPrefix(e.Message, `guardrail "safety" could not check the request: rate limit reached for model "mod"`) ||
		!strings.Contains(e.Message, `model "mod2"`) {
		t.Fatalf("both windows full: %d %s, Retry-After %q", resp.StatusCode, raw, resp.Header.Get("Retry-After"))
	}
}

// A virtual key pasted into a prompt never reaches the upstream: the
// lumen_key detector masks it whole ("lumen-" included), or blocks the
// request without an upstream call and without repeating it, as the
// guardrail says. The key is a fresh one the Keyring made, and the
// request is authenticated with it.
func TestGuardrailVirtualKeyInPrompt(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)
	}))
	defer up.Close()
	yaml := `
model_list: [{model_name: m, params: {model: openai/m, api_base: "` + up.URL + `/v1", api_key: sk-x}}]
general_settings: {master_key: ` + testMaster + `}
guardrails:
  - guardrail_name: secrets
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      patterns: [{pattern_type: prebuilt, pattern_name: credentials, action: BLOCK}]
  - guardrail_name: keys
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      patterns: [{pattern_type: prebuilt, pattern_name: lumen_key, action: MASK}]
`
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	guards, err := guardrail.NewSet(cfg.Guardrails)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := ledger.Open(ctx, t.TempDir()+"/lumen.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := ledger.NewKeyring(ctx, db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := keys.Create(ctx, ledger.KeySpec{Name: "pasted"})
	if err != nil {
		t.Fatal(err)
	}
	_, url, _ := runServer(t, yaml, Options{Logger: zerolog.Nop(), Keys: keys, Guardrails: guards}, nil)
	post := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+raw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	status, text := post(`{"model":"m","guardrails":["keys"],"messages":[{"role":"user","content":"why does ` + raw + ` not work?"}]}`)
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	if status != http.StatusOK || len(got) != 1 {
		t.Fatalf("masked: %d %s, upstream calls %d", status, text, len(got))
	}
	if c := gjson.Get(got[0], "messages.0.content").Str; c != "why does [LUMEN_KEY_REDACTED] not work?" {
		t.Errorf("the upstream got %q", c)
	}

	status, text = post(`{"model":"m","guardrails":["secrets"],"messages":[{"role":"user","content":"key: ` + raw + `"}]}`)
	mu.Lock()
	calls := len(seen)
	mu.Unlock()
	if status != http.StatusBadRequest || gjson.Get(text, "error.code").Str != "content_policy_violation" ||
		gjson.Get(text, "error.message").Str != `guardrail "secrets" blocked the request: pattern "lumen_key" detected in messages[0].content` || calls != 1 {
		t.Fatalf("blocked: %d %s, upstream calls %d", status, text, calls)
	}
	if strings.Contains(text, raw[len(ledger.KeyPrefix):]) {
		t.Errorf("the error repeats the key: %s", text)
	}
}
