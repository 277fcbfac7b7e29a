package cmd

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lumengw/lumen/internal/redistest"
)

// TestE2ERedisCacheSharedByTwoInstances runs two lumen serve instances on
// one real Redis: an answer cached by the first is a hit on the second.
// scripts/test.sh starts the Redis (scripts/redis.sh) and exports its
// address; without it the test starts one (internal/redistest).
func TestE2ERedisCacheSharedByTwoInstances(t *testing.T) {
	addr := redistest.Addr(t)
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	// A prompt of its own: the Redis outlives this test run.
	prefix := strings.ReplaceAll(t.Name(), "/", "_") + strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
cache: {type: redis, redis_url: "redis://` + addr + `/0", ttl: 1m}
`
	a := startLumen(t, cfg, fake)
	b := startLumen(t, cfg, fake)
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"shared across instances ` + prefix + `"}]}`
	if got := rawPost(t, a, "/v1/chat/completions", "", body); got.status != 200 || got.header.Get("x-lumen-cache") != "miss" {
		t.Fatalf("instance A: %d %s %s", got.status, got.header.Get("x-lumen-cache"), got.text)
	}
	waitFor(t, func() bool {
		got := rawPost(t, b, "/v1/chat/completions", "", body)
		return got.status == 200 && got.header.Get("x-lumen-cache") == "hit"
	})
	if n := fake.calls(); n != 1 {
		t.Fatalf("upstream calls %d, want 1", n)
	}
}

// TestE2ERedisDownServesUncached points the cache at a closed port: every
// request is still answered, as a miss.
func TestE2ERedisDownServesUncached(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
cache: {type: redis, redis_url: "redis://`+dead+`/0"}
`, fake)
	for i := 0; i < 3; i++ {
		got := rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt-4o","messages":[{"role":"user","content":"redis is down"}]}`)
		if got.status != 200 || got.header.Get("x-lumen-cache") != "miss" {
			t.Fatalf("request %d with Redis down: %d %q %s", i, got.status, got.header.Get("x-lumen-cache"), got.text)
		}
	}
	if fake.calls() != 3 {
		t.Fatalf("upstream calls %d, want 3 (nothing can be cached)", fake.calls())
	}
}

// TestE2ERedisLimitsSharedByTwoInstances runs two lumen serve instances,
// each on its own ledger, sharing budgets and rate limits through one
// Redis (limits.redis_url): together they admit what one would.
func TestE2ERedisLimitsSharedByTwoInstances(t *testing.T) {
	addr := redistest.Addr(t)
	body := func(group string) string { return chatBody(group, "how much is this", `,"max_tokens":5`) }
	// A model group of its own: the Redis may outlive this test run.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	priced, limited := "priced-"+run, "limited-"+run
	models := fmt.Sprintf(`
model_list:
  - model_name: %s
    litellm_params: {model: mock/priced}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}
  - model_name: %s
    litellm_params: {model: mock/limited}
`, priced, limited)
	probe := startLumen(t, models, nil)
	r := rawPost(t, probe, "/v1/chat/completions", "", body(priced))
	one, err := strconv.ParseFloat(r.header.Get("x-lumen-cost-usd"), 64)
	if r.status != 200 || err != nil || one <= 0 {
		t.Fatalf("probe: %d %v", r.status, r.header)
	}
	cfg := models + fmt.Sprintf(`limits:
  redis_url: "redis://%s/0"
  model_groups:
    %s: {budget_usd: %g, budget_period: daily}
    %s: {rpm: 3}
general_settings: {master_key: sk-master-test-000000}
ledger: {path: {{DIR}}/lumen.db}
audit: {enabled: false}
`, addr, priced, 3*one+one/2, limited)
	a := startLumen(t, strings.ReplaceAll(cfg, "{{DIR}}", t.TempDir()), nil)
	b := startLumen(t, strings.ReplaceAll(cfg, "{{DIR}}", t.TempDir()), nil)
	for i, l := range []*lumen{a, b, a} {
		if r := rawPost(t, l, "/v1/chat/completions", master, body(priced)); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.text)
		}
	}
	r = rawPost(t, b, "/v1/chat/completions", master, body(priced))
	if r.status != 429 || !strings.Contains(r.text, "budget_exceeded") || !strings.Contains(r.text, "daily budget") {
		t.Fatalf("fourth request, on the other instance: %d %s", r.status, r.text)
	}
	// Each instance reads the shared spend.
	if got := gjsonFloat(rawGet(t, b.URL, "/admin/budgets", master), "data.0.spent_usd"); math.Abs(got-3*one) > 1e-9 {
		t.Errorf("instance B's /admin/budgets spent %v, want %v", got, 3*one)
	}
	for i, l := range []*lumen{a, b, a} {
		if r := rawPost(t, l, "/v1/chat/completions", master, body(limited)); r.status != 200 {
			t.Fatalf("limited request %d: %d %s", i, r.status, r.text)
		}
	}
	r = rawPost(t, b, "/v1/chat/completions", master, body(limited))
	if r.status != 429 || !strings.Contains(r.text, "3 requests per minute") || r.header.Get("Retry-After") == "" {
		t.Fatalf("fourth limited request, on the other instance: %d %s", r.status, r.text)
	}
}

// TestE2ERedisLimitsDownFailOpen points limits.redis_url at a closed port:
// Lumen starts, says so, and answers every request unchecked, as it does
// when any shared store fails.
func TestE2ERedisLimitsDownFailOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	l := startLumen(t, `
model_list:
  - model_name: a
    litellm_params: {model: mock/a}
limits:
  redis_url: "redis://`+dead+`/0"
  model_groups: {a: {rpm: 1, budget_usd: 0.000001}}
ledger: {path: `+t.TempDir()+`/lumen.db}
audit: {enabled: false}
`, nil)
	for i := range 2 {
		if r := rawPost(t, l, "/v1/chat/completions", "", chatBody("a", "hi", "")); r.status != 200 {
			t.Fatalf("request %d with Redis down: %d %s", i, r.status, r.text)
		}
	}
	logs := l.Logs.String()
	for _, want := range []string{"loading spend into Redis failed", "rate limiter unavailable", "budget store unavailable"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %q:\n%s", want, logs)
		}
	}
}
