package router

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers"
)

// TestBuildTranslatingProviders builds each translating provider from a
// config model_list entry, as `lumen serve` does, and checks that a chat
// request reaches the provider's own endpoint with its own auth header and
// comes back as an OpenAI chat.completion.
func TestBuildTranslatingProviders(t *testing.T) {
	tests := []struct {
		name, model, key string
		path, header     string
		answer           string
		extra            string // more litellm_params
	}{
		{"anthropic", "anthropic/claude-sonnet-4-5", "sk-ant-k", "/v1/messages", "X-Api-Key",
			`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}`, ""},
		{"gemini", "gemini/gemini-2.5-flash", "AIza-k", "/v1beta/models/gemini-2.5-flash:generateContent", "X-Goog-Api-Key",
			`{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}}`, ""},
		{"bedrock", "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0", "", "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse", "X-Amz-Date",
			`{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4}}`,
			"      aws_region_name: us-east-1\n      aws_access_key_id: AKIDTEST\n      aws_secret_access_key: secret\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var gotPath, gotKey string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				gotPath, gotKey = r.URL.Path, r.Header.Get(tt.header)
				mu.Unlock()
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tt.answer)
			}))
			defer srv.Close()
			cfg, _, err := config.Parse([]byte("model_list:\n  - model_name: m\n    litellm_params:\n      model: " + tt.model +
				"\n      api_base: " + srv.URL + "\n      api_key: " + tt.key + "\n" + tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			pc := ProviderConfig(cfg, &cfg.ModelList[0])
			if pc.Provider != tt.name {
				t.Fatalf("provider = %q, want %q", pc.Provider, tt.name)
			}
			p, err := Build(pc)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if p.Name() != tt.name {
				t.Errorf("Name() = %q", p.Name())
			}
			resp, err := p.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: pc.Model,
				Body: []byte(`{"model":"m","messages":[{"role":"user","content":"hello"}]}`)})
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if gotPath != tt.path || gotKey != tt.key && tt.key != "" || gotKey == "" {
				t.Errorf("upstream got path %q key %q, want %q %q", gotPath, gotKey, tt.path, tt.key)
			}
			if !strings.Contains(string(resp.Body), `"object":"chat.completion"`) || resp.Usage.PromptTokens != 3 {
				t.Errorf("answer %s usage %+v", resp.Body, resp.Usage)
			}
		})
	}
}

func TestBuildUnknownProvider(t *testing.T) {
	_, err := Build(providers.Config{Provider: "vertex_ai", Model: "x"})
	if err == nil || !strings.Contains(err.Error(), "anthropic") {
		t.Fatalf("err = %v, want one listing the built-in providers", err)
	}
}

// A translating provider that refuses its api_base names it without the
// password it carries.
func TestBuildBadAPIBaseHidesPassword(t *testing.T) {
	for _, provider := range []string{"anthropic", "gemini", "bedrock"} {
		_, err := Build(providers.Config{Provider: provider, Model: "m", APIBase: "ftp://u:s3cret@upstream/v1",
			APIKey: "k", AWSRegion: "us-east-1"})
		if err == nil || !strings.Contains(err.Error(), `"ftp://u:xxxxx@upstream/v1"`) {
			t.Errorf("%s: %v", provider, err)
		}
	}
}

// cache_control_injection_points in litellm_params reach the Anthropic
// provider: the request it sends marks the system prompt and the last
// message.
func TestCacheInjectionReachesTheProvider(t *testing.T) {
	var mu sync.Mutex
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = b
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}`)
	}))
	defer srv.Close()
	cfg, _, err := config.Parse([]byte(`model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: ` + srv.URL + `
      api_key: sk-ant-test
      cache_control_injection_points: [{location: message, role: system}, {location: message, index: -1}]
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(ProviderConfig(cfg, &cfg.ModelList[0]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "claude-sonnet-4-5",
		Body: []byte(`{"model":"claude","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"hello"}]}`)}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(string(got), `"system":[{"type":"text","text":"Be terse.","cache_control":{"type":"ephemeral"}}]`) ||
		!strings.Contains(string(got), `{"type":"text","text":"hello","cache_control":{"type":"ephemeral"}}`) {
		t.Fatalf("upstream body %s", got)
	}
}
