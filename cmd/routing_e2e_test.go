package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"
)

// bodiesTo returns the request bodies the fake received for an upstream
// model, in order.
func (f *fakeOpenAI) bodiesTo(model string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, b := range f.bodies {
		var m map[string]any
		if json.Unmarshal(b, &m) == nil && m["model"] == model {
			out = append(out, m)
		}
	}
	return out
}

// gpt-4o is dead; router_settings.fallbacks sends the call down the chain
// (second is dead too) to backup, and a request's own "models" list
// replaces the chain.
func TestE2EFallbackChain(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/always-500, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: second
    litellm_params: {model: openai/fail-500, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: backup
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
router_settings:
  num_retries: 1
  allowed_fails: 100
  fallbacks: [{gpt-4o: [second, backup]}]
`, fake)
	c := client(l, "x")

	var raw *http.Response
	resp, err := c.Chat.Completions.New(context.Background(), userMsg("hi"), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	h := raw.Header
	if resp.Choices[0].Message.Content != "Hello from fake" || h.Get("x-lumen-fallback-from") != "gpt-4o" ||
		h.Get("x-lumen-model-group") != "backup" || h.Get("x-lumen-attempts") != "5" {
		t.Fatalf("content %q, headers fallback-from %q group %q attempts %q", resp.Choices[0].Message.Content,
			h.Get("x-lumen-fallback-from"), h.Get("x-lumen-model-group"), h.Get("x-lumen-attempts"))
	}
	if a, s := fake.callsTo("always-500"), fake.callsTo("fail-500"); a != 2 || s != 2 {
		t.Fatalf("upstream calls: gpt-4o %d, second %d; want 2 each (a try and a retry)", a, s)
	}
	if !strings.Contains(l.Logs.String(), `"message":"falling back to another model group"`) {
		t.Fatal("the fallback was not logged")
	}

	// Per request: "models" skips second; the list never goes upstream.
	resp, err = c.Chat.Completions.New(context.Background(), userMsg("hi"),
		option.WithJSONSet("models", []string{"gpt-4o", "backup"}), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("x-lumen-model-group") != "backup" || raw.Header.Get("x-lumen-attempts") != "3" || fake.callsTo("fail-500") != 2 {
		t.Fatalf("per-request models: group %q attempts %q, second called %d times",
			raw.Header.Get("x-lumen-model-group"), raw.Header.Get("x-lumen-attempts"), fake.callsTo("fail-500"))
	}
	for _, b := range fake.bodiesTo("gpt-4o") {
		if _, ok := b["models"]; ok {
			t.Fatalf("the per-request list reached the upstream: %v", b)
		}
	}
}

// Deployment cut-3 (cheaper, so cost-based-routing picks it) drops the
// connection after three chunks; continue is asked to go on from there.
// The client, openai-go, sees one stream: one id, A's three chunks then
// B's continuation, one finish, no error.
func TestE2EMidStreamFailover(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/cut-3, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {id: a, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: gpt-4o
    litellm_params: {model: openai/continue, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {id: b, input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}
router_settings: {routing_strategy: cost-based-routing, num_retries: 1}
`, fake)
	c := client(l, "x")
	s := c.Chat.Completions.NewStreaming(context.Background(), userMsg("say hello"))
	var text strings.Builder
	ids := map[string]bool{}
	finishes := 0
	for s.Next() {
		ch := s.Current()
		ids[ch.ID] = true
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
			if ch.Choices[0].FinishReason != "" {
				finishes++
			}
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("the client saw an error after %q: %v", text.String(), err)
	}
	if text.String() != "Hello from fake stream!" || len(ids) != 1 || !ids["chatcmpl-s"] || finishes != 1 {
		t.Fatalf("client text %q, ids %v, %d finishes; want A's 3 chunks + B's continuation under A's id, one finish",
			text.String(), ids, finishes)
	}
	// B was asked to continue the partial answer, not to start again.
	bodies := fake.bodiesTo("continue")
	if len(bodies) != 1 {
		t.Fatalf("continue got %d requests", len(bodies))
	}
	msgs, _ := bodies[0]["messages"].([]any)
	if len(msgs) != 3 {
		t.Fatalf("continuation messages %v", msgs)
	}
	partial, _ := msgs[1].(map[string]any)
	if partial["role"] != "assistant" || partial["content"] != "Hello from fake" {
		t.Fatalf("continuation carries %v, want the partial answer as an assistant message", partial)
	}
	if !strings.Contains(l.Logs.String(), "continuing on another deployment") {
		t.Fatal("the failover was not logged")
	}
	// The request's record names the deployment that finished the answer
	// and both upstream calls.
	waitFor(t, func() bool { return strings.Contains(l.Logs.String(), `"message":"request"`) })
	for line := range strings.SplitSeq(l.Logs.String(), "\n") {
		if gjson.Get(line, "message").Str == "request" &&
			(gjson.Get(line, "deployment").Str != "b" || gjson.Get(line, "attempts").Int() != 2) {
			t.Errorf("the failed-over stream's record: %s", line)
		}
	}
}

// The strategy in force and the deployment it chose are in the response
// headers.
func TestE2ERoutingStrategyHeaders(t *testing.T) {
	const deployments = `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {id: dear, input_cost_per_token: 0.00001, output_cost_per_token: 0.00003}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {id: cheap, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
`
	tests := []struct {
		settings string
		want     string
		only     string // the deployment id every call must go to; "" any
	}{
		{"", "simple-shuffle", ""},
		{"router_settings: {routing_strategy: least-busy}", "least-busy", ""},
		{"router_settings: {routing_strategy: latency-based-routing}", "latency-based-routing", ""},
		{"router_settings: {routing_strategy: usage-based-routing}", "usage-based-routing", ""},
		{"router_settings: {routing_strategy: cost-based-routing}", "cost-based-routing", "cheap"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			fake := newFakeOpenAI(t)
			l := startLumen(t, deployments+tt.settings+"\n", fake)
			c := client(l, "x")
			for range 5 {
				var raw *http.Response
				if _, err := c.Chat.Completions.New(context.Background(), userMsg("hi"), option.WithResponseInto(&raw)); err != nil {
					t.Fatal(err)
				}
				h := raw.Header
				id := h.Get("x-lumen-deployment-id")
				if h.Get("x-lumen-routing-strategy") != tt.want || h.Get("x-lumen-deployment") != "openai/gpt-4o" ||
					id != "cheap" && id != "dear" || tt.only != "" && id != tt.only {
					t.Fatalf("strategy %q deployment %q id %q", h.Get("x-lumen-routing-strategy"), h.Get("x-lumen-deployment"), id)
				}
			}
		})
	}
}

// groupRateConfig: flaky always fails and falls back to gpt-4o, whose
// model group allows 2 requests a minute; two auto routes prefer gpt-4o,
// one of them with backup beside it.
const groupRateConfig = `
model_list:
  - model_name: flaky
    litellm_params: {model: openai/always-500, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {quality: 0.9}
  - model_name: backup
    litellm_params: {model: openai/backup, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {quality: 0.7}
  - model_name: auto-4o
    auto: {candidates: [gpt-4o], mode: best}
  - model_name: auto-any
    auto: {candidates: [gpt-4o, backup], mode: best}
router_settings:
  num_retries: 0
  fallbacks: [{flaky: [gpt-4o]}]
limits:
  model_groups: {gpt-4o: {rpm: 2}}
`

// A model group's rpm counts every request the group answers, whichever
// name the client sent: a fallback to it or an auto route's choice of it
// counts in its window, and a group whose window is full is not used; an
// auto route left with no group answers with that window's 429.
func TestE2EModelGroupRateCoversFallbacksAndAuto(t *testing.T) {
	ask := func(c openai.Client, model string) (*http.Response, error) {
		var raw *http.Response
		p := userMsg("hi")
		p.Model = model
		_, err := c.Chat.Completions.New(context.Background(), p, option.WithResponseInto(&raw))
		return raw, err
	}
	t.Run("fallback", func(t *testing.T) {
		fake := newFakeOpenAI(t)
		c := client(startLumen(t, groupRateConfig, fake), "x")
		for i := range 2 {
			raw, err := ask(c, "flaky")
			if err != nil || raw.Header.Get("x-lumen-model-group") != "gpt-4o" || raw.Header.Get("x-lumen-fallback-from") != "flaky" {
				t.Fatalf("fallback %d: %v", i, err)
			}
		}
		// gpt-4o's window is full: the fallback is passed over and the
		// client gets flaky's own failure, which says why no fallback
		// answered and, in Retry-After, when gpt-4o's window has room.
		_, err := ask(c, "flaky")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || fake.callsTo("gpt-4o") != 2 {
			t.Fatalf("third request: %v; gpt-4o called %d times, want 2", err, fake.callsTo("gpt-4o"))
		}
		retry, _ := strconv.Atoi(apiErr.Response.Header.Get("Retry-After"))
		if !strings.Contains(apiErr.Message, `fallbacks passed over: rate limit reached for model "gpt-4o": 2 requests per minute`) ||
			retry < 1 || retry > 60 {
			t.Fatalf("third request: %q, Retry-After %q; want gpt-4o's window named and its Retry-After",
				apiErr.Message, apiErr.Response.Header.Get("Retry-After"))
		}
		// The fallbacks counted in the window a direct request checks.
		if _, err := ask(c, "gpt-4o"); !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" {
			t.Fatalf("direct request after two fallbacks: %v", err)
		}
	})
	t.Run("auto", func(t *testing.T) {
		fake := newFakeOpenAI(t)
		c := client(startLumen(t, groupRateConfig, fake), "x")
		for i := range 2 {
			if raw, err := ask(c, "auto-any"); err != nil || raw.Header.Get("x-lumen-model-group") != "gpt-4o" {
				t.Fatalf("auto %d: %v", i, err)
			}
		}
		// gpt-4o is full: auto-any chooses again without it.
		if raw, err := ask(c, "auto-any"); err != nil || raw.Header.Get("x-lumen-model-group") != "backup" {
			t.Fatalf("third auto request: %v, want backup", err)
		}
		// auto-4o has no other group: gpt-4o's 429, as a direct request's.
		_, err := ask(c, "auto-4o")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" ||
			!strings.Contains(apiErr.Message, `model "gpt-4o": 2 requests per minute`) || apiErr.Response.Header.Get("Retry-After") == "" {
			t.Fatalf("auto with its only candidate full: %v", err)
		}
		if n := fake.callsTo("gpt-4o"); n != 2 {
			t.Fatalf("gpt-4o called %d times, want 2 (its rpm)", n)
		}
	})
}
