package cmd

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

const cacheConfig = `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
cache: {type: local, ttl: 10m, max_bytes: 16MiB}
router_settings: {num_retries: 0}
`

func (f *fakeOpenAI) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

func TestE2ECacheHitMissAndReplay(t *testing.T) {
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, cacheConfig, fake)
	c := client(l, "x")
	ask := func(opts ...option.RequestOption) (*openai.ChatCompletion, string) {
		var raw *http.Response
		resp, err := c.Chat.Completions.New(context.Background(), userMsg("cache me"), append(opts, option.WithResponseInto(&raw))...)
		if err != nil {
			t.Fatal(err)
		}
		return resp, raw.Header.Get("x-lumen-cache")
	}
	first, h1 := ask()
	second, h2 := ask()
	if h1 != "miss" || h2 != "hit" || fake.calls() != 1 {
		t.Fatalf("headers %q %q, upstream calls %d", h1, h2, fake.calls())
	}
	if second.Choices[0].Message.Content != first.Choices[0].Message.Content || second.ID == first.ID {
		t.Fatalf("hit must carry the same answer under a fresh id: %q/%q ids %s %s", first.Choices[0].Message.Content, second.Choices[0].Message.Content, first.ID, second.ID)
	}
	// The same request as a stream is answered from the cached non-stream entry.
	s := c.Chat.Completions.NewStreaming(context.Background(), userMsg("cache me"))
	var text strings.Builder
	for s.Next() {
		if len(s.Current().Choices) > 0 {
			text.WriteString(s.Current().Choices[0].Delta.Content)
		}
	}
	if s.Err() != nil || text.String() != "Hello from fake" || fake.calls() != 1 {
		t.Fatalf("stream replay %q err %v calls %d", text.String(), s.Err(), fake.calls())
	}
	// Cache-Control: no-cache skips the lookup.
	_, h3 := ask(option.WithHeader("Cache-Control", "no-cache"))
	if h3 != "bypass" || fake.calls() != 2 {
		t.Fatalf("no-cache: header %q calls %d", h3, fake.calls())
	}
	// A different sampling parameter is a different key.
	_, h4 := ask(option.WithJSONSet("temperature", 0.3))
	if h4 != "miss" || fake.calls() != 3 {
		t.Fatalf("temperature change: header %q calls %d", h4, fake.calls())
	}
	// LiteLLM's body field does the same, and is Lumen's: it never goes
	// upstream (OpenAI refuses unknown parameters).
	_, h5 := ask(option.WithJSONSet("cache", map[string]any{"no-cache": true, "ttl": 600}))
	if _, sent := fake.lastBody()["cache"]; h5 != "bypass" || fake.calls() != 4 || sent {
		t.Fatalf("cache field: header %q calls %d, upstream got it: %t", h5, fake.calls(), sent)
	}
}

func TestE2ECacheCoalescesConcurrentRequests(t *testing.T) {
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, cacheConfig, fake)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt-4o","messages":[{"role":"user","content":"fifty at once"}]}`)
			if got.status != 200 || !strings.Contains(got.text, "Hello from fake") {
				errs <- &statusError{got.status, got.text}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := fake.calls(); n != 1 {
		t.Fatalf("50 identical requests made %d upstream calls, want 1", n)
	}
}

type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return e.body }

// The semantic cache's prompt embeddings count in the embedding group's
// limits.model_groups window. With rpm 1, the first chat's embedding takes
// the minute's one request; the second chat (another question) is not
// embedded, is answered upstream (a miss, where the fake's constant
// embedding would have made a semantic hit), and a repeat of it is still
// an exact hit. A client's own /v1/embeddings then finds the window full.
func TestE2ESemanticCacheEmbeddingsCountInGroupWindow(t *testing.T) {
	cfg := `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: embedder
    litellm_params: {model: openai/text-embedding-3-small, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
cache: {type: semantic, embedding_model: embedder, similarity_threshold: 0.95}
limits: {model_groups: {embedder: {rpm: 1}}}
`
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, cfg, fake)
	ask := func(q string) string {
		t.Helper()
		got := rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt-4o","messages":[{"role":"user","content":"`+q+`"}]}`)
		if got.status != 200 {
			t.Fatalf("%s: %d %s", q, got.status, got.text)
		}
		return got.header.Get("x-lumen-cache")
	}
	const embed = "text-embedding-3-small"
	if h := ask("What is the capital of France?"); h != "miss" || fake.callsTo(embed) != 1 || fake.callsTo("gpt-4o") != 1 {
		t.Fatalf("first: %s, embedding calls %d, chat calls %d", h, fake.callsTo(embed), fake.callsTo("gpt-4o"))
	}
	if h := ask("How do volcanoes form under the ocean?"); h != "miss" || fake.callsTo(embed) != 1 || fake.callsTo("gpt-4o") != 2 {
		t.Fatalf("second, the window full: %s, embedding calls %d (want 1), chat calls %d (want 2)", h, fake.callsTo(embed), fake.callsTo("gpt-4o"))
	}
	waitFor(t, func() bool { return ask("How do volcanoes form under the ocean?") == "hit" })
	if fake.callsTo(embed) != 1 || fake.callsTo("gpt-4o") != 2 {
		t.Fatalf("exact hit: embedding calls %d, chat calls %d", fake.callsTo(embed), fake.callsTo("gpt-4o"))
	}
	r := rawPost(t, l, "/v1/embeddings", "", `{"model":"embedder","input":"hello"}`)
	if r.status != 429 || !strings.Contains(r.text, `rate limit reached for model \"embedder\"`) || fake.callsTo(embed) != 1 {
		t.Fatalf("a client's embedding after the cache's: %d %s, embedding calls %d", r.status, r.text, fake.callsTo(embed))
	}
	if strings.Contains(l.Logs.String(), "embedding the prompt failed") {
		t.Errorf("a full window was logged as an embedder failure:\n%s", l.Logs)
	}
}

func TestE2ESemanticCache(t *testing.T) {
	cfg := `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: embedder
    litellm_params: {model: mock/embedder}
cache: {type: semantic, embedding_model: embedder, similarity_threshold: 0.95}
`
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, cfg, fake)
	ask := func(q string) string {
		got := rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt-4o","messages":[{"role":"user","content":"`+q+`"}]}`)
		if got.status != 200 {
			t.Fatalf("%s: %d %s", q, got.status, got.text)
		}
		return got.header.Get("x-lumen-cache")
	}
	if h := ask("What is the capital of France?"); h != "miss" {
		t.Fatalf("first: %s", h)
	}
	// Same words, other case and punctuation: the mock embeddings are
	// identical (similarity 1 >= 0.95), so the semantic index serves it.
	waitFor(t, func() bool { return ask("what is the capital of france") == "hit" })
	if n := fake.calls(); n != 1 {
		t.Fatalf("upstream calls %d, want 1", n)
	}
	// A different question is below the threshold: a miss.
	if h := ask("How do volcanoes form under the ocean?"); h != "miss" || fake.calls() != 2 {
		t.Fatalf("different question: %s, calls %d", h, fake.calls())
	}
}
