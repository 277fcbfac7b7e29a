package cmd

import (
	"context"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/internal/redistest"
	"github.com/lumengw/lumen/limits"
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
// Redis (limits.redis_url): together they admit what one would, a
// fallback to a rate-limited group included.
func TestE2ERedisLimitsSharedByTwoInstances(t *testing.T) {
	addr := redistest.Addr(t)
	body := func(group string) string { return chatBody(group, "how much is this", `,"max_tokens":5`) }
	// A model group of its own: the Redis may outlive this test run.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	priced, limited, broken := "priced-"+run, "limited-"+run, "broken-"+run
	models := fmt.Sprintf(`
model_list:
  - model_name: %s
    litellm_params: {model: mock/priced}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}
  - model_name: %s
    litellm_params: {model: mock/limited}
  - model_name: %s
    litellm_params: {model: mock/broken, mock_failure_rate: 1}
router_settings: {num_retries: 0, fallbacks: [{%s: [%s]}]}
`, priced, limited, broken, broken, limited)
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
	// The second request asks for broken, which falls back to limited:
	// it counts in limited's window too.
	for i, l := range []*lumen{a, b, a} {
		group := limited
		if i == 1 {
			group = broken
		}
		if r := rawPost(t, l, "/v1/chat/completions", master, body(group)); r.status != 200 || r.header.Get("x-lumen-model-group") != limited {
			t.Fatalf("limited request %d: %d %s", i, r.status, r.text)
		}
	}
	r = rawPost(t, b, "/v1/chat/completions", master, body(limited))
	if r.status != 429 || !strings.Contains(r.text, "3 requests per minute") || r.header.Get("Retry-After") == "" {
		t.Fatalf("fourth limited request, on the other instance: %d %s", r.status, r.text)
	}
	if r := rawPost(t, a, "/v1/chat/completions", master, body(broken)); r.status == 200 {
		t.Fatalf("a fallback to limited was served past its rpm: %s", r.header)
	}
}

// TestE2ERedisLimitsDownFailOpen points limits.redis_url at a closed port:
// Lumen starts, says so once per store (the spend it could not load at
// start is the budget store's one line), answers every request unchecked,
// as it does when any shared store fails, and a key's budget period
// change, whose spend reload cannot reach Redis either, is answered and
// logs nothing more.
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
general_settings: {master_key: `+master+`}
limits:
  redis_url: "redis://`+dead+`/0"
  model_groups: {a: {rpm: 1, budget_usd: 0.000001}}
ledger: {path: `+t.TempDir()+`/lumen.db}
audit: {enabled: false}
`, nil)
	for i := range 2 {
		if r := rawPost(t, l, "/v1/chat/completions", master, chatBody("a", "hi", "")); r.status != 200 {
			t.Fatalf("request %d with Redis down: %d %s", i, r.status, r.text)
		}
	}
	if r := rawPost(t, l, "/admin/keys", master, `{"name":"k","budget_usd":1,"budget_period":"daily"}`); r.status != 201 {
		t.Fatalf("create a key with Redis down: %d %s", r.status, r.text)
	}
	if r := patchKey(t, l, "k", `{"budget_period":"monthly"}`); r.status != 200 {
		t.Fatalf("change its budget period with Redis down: %d %s", r.status, r.text)
	}
	logs := l.Logs.String()
	for _, want := range []string{"Redis unavailable; rate limits unchecked", "Redis unavailable; budgets unchecked"} {
		if n := strings.Count(logs, want); n != 1 {
			t.Errorf("the log says %q %d times, want once:\n%s", want, n, logs)
		}
	}
	if !strings.Contains(logs, `"op":"load"`) {
		t.Errorf("the budget store's line is not the failed load at start:\n%s", logs)
	}
	for _, unwanted := range []string{"loading spend into Redis failed", "reloading the spend of keys"} {
		if strings.Contains(logs, unwanted) {
			t.Errorf("the log repeats what the store said, %q:\n%s", unwanted, logs)
		}
	}
}

// TestE2ERedisCacheHoldsMaskedAnswers: with a post_call guardrail, the
// shared cache holds the answer as the client got it (masked), for a
// plain and a streamed miss; a blocked answer is not stored at all; and a
// request without that guardrail does not share its entries.
func TestE2ERedisCacheHoldsMaskedAnswers(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := strings.ReplaceAll(t.Name(), "/", "_") + strconv.FormatInt(time.Now().UnixNano(), 36)
	l := startLumen(t, `
model_list:
  - model_name: echo
    litellm_params: {model: mock/demo}
cache: {type: redis, redis_url: "redis://`+addr+`/0", ttl: 1m}
guardrails:
  - guardrail_name: cards-out
    litellm_params:
      guardrail: litellm_content_filter
      mode: post_call
      patterns: [{pattern_type: prebuilt, pattern_name: credit_card, action: MASK}]
  - guardrail_name: no-falcon
    litellm_params:
      guardrail: litellm_content_filter
      mode: post_call
      blocked_words: [{keyword: falcon, action: BLOCK}]
`, nil)
	card := "4111 1111 1111 1111"
	ask := func(stream bool, guards, text string) rawResponse {
		t.Helper()
		return rawPost(t, l, "/v1/chat/completions", "", fmt.Sprintf(
			`{"model":"echo","stream":%t,"guardrails":[%s],"messages":[{"role":"user","content":%q}]}`, stream, guards, text))
	}
	plain, streamed := prefix+" plain pays with "+card, prefix+" streamed pays with "+card
	for _, c := range []struct {
		stream bool
		text   string
	}{{false, plain}, {true, streamed}} {
		r := ask(c.stream, `"cards-out"`, c.text)
		if r.status != 200 || r.header.Get("x-lumen-cache") != "miss" || strings.Contains(r.text, "4111") {
			t.Fatalf("guarded miss (stream %t): %d %s %s", c.stream, r.status, r.header.Get("x-lumen-cache"), r.text)
		}
		// A stream is stored once it has ended, just after the client's.
		waitFor(t, func() bool { return ask(c.stream, `"cards-out"`, c.text).header.Get("x-lumen-cache") == "hit" })
		r = ask(c.stream, `"cards-out"`, c.text)
		if r.status != 200 || r.header.Get("x-lumen-cache") != "hit" || strings.Contains(r.text, "4111") || !strings.Contains(r.text, "[CREDIT_CARD_REDACTED]") {
			t.Fatalf("guarded hit (stream %t): %d %s %s", c.stream, r.status, r.header.Get("x-lumen-cache"), r.text)
		}
	}
	// Without the guardrail: another entry, the echo whole.
	if r := ask(false, "", plain); r.status != 200 || r.header.Get("x-lumen-cache") != "miss" || !strings.Contains(r.text, card) {
		t.Fatalf("unguarded request: %d %s %s", r.status, r.header.Get("x-lumen-cache"), r.text)
	}
	// A blocked answer is not stored: the repeat is blocked again, a miss.
	for i := 0; i < 2; i++ {
		r := ask(false, `"no-falcon"`, prefix+" the falcon")
		if r.status != 400 || r.header.Get("x-lumen-cache") != "miss" {
			t.Fatalf("blocked answer, try %d: %d %s %s", i, r.status, r.header.Get("x-lumen-cache"), r.text)
		}
	}

	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	var masked, whole, blocked int
	iter := rdb.Scan(ctx, 0, "lumen:cache:*", 1000).Iterator()
	for iter.Next(ctx) {
		v, err := rdb.Get(ctx, iter.Val()).Result()
		if err != nil || !strings.Contains(v, prefix) {
			continue
		}
		switch {
		case strings.Contains(v, "falcon"):
			blocked++
		case strings.Contains(v, card):
			whole++
		case strings.Contains(v, "[CREDIT_CARD_REDACTED]"):
			masked++
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	// Two guarded entries (plain, streamed) masked; one unguarded whole.
	if masked != 2 || whole != 1 || blocked != 0 {
		t.Errorf("Redis holds %d masked, %d unmasked, %d blocked entries of this test; want 2, 1, 0", masked, whole, blocked)
	}
}

// TestE2ERedisBudgetPeriodChange: two instances share a ledger and the
// budgets in Redis; a key's budget period changed on one keeps its spend
// on both (the new window's spend is raised to the ledger's in Redis at
// once), and the key stays refused.
func TestE2ERedisBudgetPeriodChange(t *testing.T) {
	addr := redistest.Addr(t)
	dir := t.TempDir()
	cfg := ledgerConfig + `limits: {redis_url: "redis://` + addr + `/0"}` + "\n"
	cfg = strings.ReplaceAll(strings.Replace(cfg, "audit: {signing_key: {{DIR}}/audit.key}", "audit: {enabled: false}", 1), "{{DIR}}", dir)
	a := startLumen(t, cfg, nil)
	b := startLumen(t, cfg, nil)
	// The Redis may outlive this test run: budgets there are kept by key
	// id, new for each run.
	body := chatBody("priced", "spend a little", `,"max_tokens":5`)
	probe := rawPost(t, a, "/v1/chat/completions", master, body)
	one, err := strconv.ParseFloat(probe.header.Get("x-lumen-cost-usd"), 64)
	if probe.status != 200 || err != nil || one <= 0 {
		t.Fatalf("probe: %d %v", probe.status, probe.header)
	}
	created := rawPost(t, a, "/admin/keys", master, fmt.Sprintf(`{"name":"pc","budget_usd":%g,"budget_period":"daily"}`, 2*one+one/2))
	raw := gjson.Get(created.text, "key").Str
	if created.status != 201 || raw == "" {
		t.Fatalf("create: %d %s", created.status, created.text)
	}
	waitFor(t, func() bool { return rawPost(t, b, "/v1/chat/completions", raw, body).status == 200 })
	if r := rawPost(t, a, "/v1/chat/completions", raw, body); r.status != 200 {
		t.Fatalf("second request: %d %s", r.status, r.text)
	}
	if r := rawPost(t, b, "/v1/chat/completions", raw, body); r.status != 429 {
		t.Fatalf("third request: %d %s", r.status, r.text)
	}
	near := func(got float64) bool { return math.Abs(got-2*one) < 1e-9 }
	r := patchKey(t, a, "pc", `{"budget_period":"monthly"}`)
	if r.status != 200 || !near(gjson.Get(r.text, "usage.spent_usd").Float()) {
		t.Fatalf("PATCH on A: %d %s, want spent_usd %v", r.status, r.text, 2*one)
	}
	waitFor(t, func() bool {
		return gjson.GetBytes(rawGet(t, b.URL, "/admin/keys/pc", master), "usage.period").Str == "monthly"
	})
	for i, l := range []*lumen{b, a, b} {
		if r := rawPost(t, l, "/v1/chat/completions", raw, body); r.status != 429 {
			t.Fatalf("request %d after the change: %d %s", i, r.status, r.text)
		}
	}
	if got := gjsonFloat(rawGet(t, b.URL, "/admin/keys/pc", master), "usage.spent_usd"); !near(got) {
		t.Fatalf("instance B says spent %v, want %v", got, 2*one)
	}
}

// spentBudgetLumen starts Lumen with a daily model-group budget of 10.5
// requests on group, kept in the Redis at addr, and spends it: 10
// requests served, the 11th refused.
func spentBudgetLumen(t *testing.T, group, addr, body string) *lumen {
	t.Helper()
	probe := startLumen(t, fmt.Sprintf(`
model_list:
  - model_name: %s
    litellm_params: {model: mock/priced}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}
`, group), nil)
	r := rawPost(t, probe, "/v1/chat/completions", "", body)
	one, err := strconv.ParseFloat(r.header.Get("x-lumen-cost-usd"), 64)
	if r.status != 200 || err != nil || one <= 0 {
		t.Fatalf("probe: %d %v", r.status, r.header)
	}
	l := startLumen(t, fmt.Sprintf(`
model_list:
  - model_name: %s
    litellm_params: {model: mock/priced}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}
limits:
  redis_url: "redis://%s/0"
  model_groups: {%s: {budget_usd: %g, budget_period: daily}}
ledger: {path: %s/lumen.db}
audit: {enabled: false}
`, group, addr, group, 10*one+one/2, t.TempDir()), nil)
	for i := range 10 {
		if r := rawPost(t, l, "/v1/chat/completions", "", body); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.text)
		}
	}
	if r := rawPost(t, l, "/v1/chat/completions", "", body); r.status != 429 {
		t.Fatalf("request 11, over the budget: %d %s", r.status, r.text)
	}
	return l
}

// A Redis that loses the budgets' spend while it stays up (restarted
// between two requests, flushed) is noticed by the next reservation, which
// finds the spend key missing and the marker of the last load gone: the
// spend is raised to the ledger's at once, not at the 5-minute refresh.
func TestE2ERedisLostSpendRaisedAtOnce(t *testing.T) {
	addr := redistest.Addr(t)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	group := "forgot-" + run
	body := chatBody(group, "how much is this", `,"max_tokens":5`)
	l := spentBudgetLumen(t, group, addr, body)
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "lumen:limits:budget:{"+limits.GroupAccount(group)+"}:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("the budget's keys in Redis: %v %v", keys, err)
	}
	// All this Lumen keeps there: the budget's keys and the marker of its
	// load (other tests' keys stay, as a restart would not leave them).
	if err := rc.Del(ctx, append(keys, loadedMarker)...).Err(); err != nil {
		t.Fatal(err)
	}
	admitted := 0
	waitFor(t, func() bool {
		time.Sleep(20 * time.Millisecond)
		r := rawPost(t, l, "/v1/chat/completions", "", body)
		if r.status == 200 {
			admitted++
		}
		return r.status == 429 && strings.Contains(r.text, "budget_exceeded")
	})
	if admitted > 2 {
		t.Errorf("%d requests admitted over a spent budget after Redis lost its spend", admitted)
	}
	if logs := l.Logs.String(); !strings.Contains(logs, `"after":"Redis is back, or lost the spend"`) {
		t.Errorf("the log does not say why the spend was raised:\n%s", logs)
	}
}

// loadedMarker is the key whose absence tells the budgets in Redis that
// Redis lost the spend the last load put there (limits.RedisBudgets.LoadAll),
// under the default prefix.
const loadedMarker = "lumen:limits:budget:loaded"

// TestE2ERedisNewUsersCostNoReload: serve marks the spend it loaded into
// Redis, so that the first request of an end user the ledger never saw,
// which finds no spend key for the user, is not taken for a Redis that
// lost its data: a stream of new users reloaded every budget's spend from
// the ledger every 5 s before the marker. The unit test
// TestRedisBudgetsNewAccountsAreNoLoss pins that a marked Redis signals
// nothing for them.
func TestE2ERedisNewUsersCostNoReload(t *testing.T) {
	addr := redistest.Addr(t)
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	if err := rc.Del(ctx, loadedMarker).Err(); err != nil {
		t.Fatal(err)
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	l := startLumen(t, fmt.Sprintf(`
model_list:
  - model_name: priced
    litellm_params: {model: mock/priced}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}
limits:
  redis_url: "redis://%s/0"
  users: {budget_usd: 1, budget_period: daily}
ledger: {path: %s/lumen.db}
audit: {enabled: false}
`, addr, t.TempDir()), nil)
	if n, err := rc.Exists(ctx, loadedMarker).Result(); err != nil || n != 1 {
		t.Fatalf("after start, the marker of the loaded spend: exists %d, %v; want 1", n, err)
	}
	for i := range 3 {
		user := fmt.Sprintf("new-%s-%d", run, i)
		if r := rawPost(t, l, "/v1/chat/completions", "", chatBody("priced", "hi", `,"max_tokens":5,"user":"`+user+`"`)); r.status != 200 {
			t.Fatalf("new user %d: %d %s", i, r.status, r.text)
		}
	}
}

// TestE2ERedisBackEmptyRaisesSpendAtOnce: a Redis that comes back after an
// outage without its data (a restart without persistence) gets the
// budgets' spend from the ledger at once, not at the next 5-minute raise,
// so a spent budget is a wall again within a request or two; the log says
// Redis was unavailable and that it is available again.
func TestE2ERedisBackEmptyRaisesSpendAtOnce(t *testing.T) {
	addr := redistest.Addr(t)
	proxy := newCutProxy(t, addr) // Redis goes away and comes back without touching the shared one
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	group := "walled-" + run
	body := chatBody(group, "how much is this", `,"max_tokens":5`)
	l := spentBudgetLumen(t, group, proxy.addr, body)

	// Redis goes away, and comes back without the budget's spend.
	proxy.cut()
	if r := rawPost(t, l, "/v1/chat/completions", "", body); r.status != 200 {
		t.Fatalf("request with Redis down (admitted unchecked): %d %s", r.status, r.text)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "lumen:limits:budget:{"+limits.GroupAccount(group)+"}:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("the budget's keys in Redis: %v %v", keys, err)
	}
	if err := rc.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	proxy.restore()

	// Requests are admitted unchecked while the store backs off; the first
	// after the backoff probes Redis, finds it empty, and logs that Redis
	// is back. The spend is raised then, and the budget refuses again: not
	// after another budget's worth of requests (or 5 minutes).
	admitted := 0
	waitFor(t, func() bool {
		time.Sleep(50 * time.Millisecond)
		back := strings.Contains(l.Logs.String(), "Redis available again; budgets checked")
		r := rawPost(t, l, "/v1/chat/completions", "", body)
		if back && r.status == 200 {
			admitted++
		}
		return r.status == 429 && strings.Contains(r.text, "budget_exceeded")
	})
	if admitted > 2 {
		t.Errorf("%d requests admitted over a spent budget after Redis came back", admitted)
	}
	logs := l.Logs.String()
	for _, want := range []string{"limits: Redis unavailable; budgets unchecked", "limits: Redis available again; budgets checked",
		"the shared budgets' spend in Redis was raised to the ledger's"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %q:\n%s", want, logs)
		}
	}
}

// TestE2ERedisDownAtStartLoadsSpendWhenUp: a Lumen that starts while its
// Redis is out of reach loads the budgets' spend from the ledger as soon
// as Redis answers, not at the next 5-minute raise: a budget the ledger
// shows spent refuses at once, though no request met Redis down.
func TestE2ERedisDownAtStartLoadsSpendWhenUp(t *testing.T) {
	addr := redistest.Addr(t)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	group := "restarted-" + run
	body := chatBody(group, "how much is this", `,"max_tokens":5`)
	dir := t.TempDir()
	cfg := func(redisAddr string) string {
		return fmt.Sprintf(`
model_list:
  - model_name: %s
    litellm_params: {model: mock/priced}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}
limits:
  redis_url: "redis://%s/0"
  model_groups: {%s: {budget_usd: 0.05, budget_period: daily}}
ledger: {path: %s/lumen.db}
audit: {enabled: false}
`, group, redisAddr, group, dir)
	}
	// One instance spends the budget, as the ledger records.
	a := startLumen(t, cfg(addr), nil)
	for i := 0; ; i++ {
		r := rawPost(t, a, "/v1/chat/completions", "", body)
		if r.status == 429 {
			break
		}
		if r.status != 200 || i > 100 {
			t.Fatalf("spending the budget, request %d: %d %s", i, r.status, r.text)
		}
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	// Redis loses it, and is out of reach when the next instance starts.
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "lumen:limits:budget:{"+limits.GroupAccount(group)+"}:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("the budget's keys in Redis: %v %v", keys, err)
	}
	if err := rc.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, addr)
	proxy.cut()
	b := startLumen(t, cfg(proxy.addr), nil)
	if logs := b.Logs.String(); !strings.Contains(logs, `"op":"load"`) || !strings.Contains(logs, "Redis unavailable; budgets unchecked") {
		t.Fatalf("the start does not say the load failed:\n%s", b.Logs.String())
	}
	proxy.restore()
	waitFor(t, func() bool {
		return strings.Contains(b.Logs.String(), `"after":"a failed load","time"`)
	})
	if r := rawPost(t, b, "/v1/chat/completions", "", body); r.status != 429 || !strings.Contains(r.text, "budget_exceeded") {
		t.Fatalf("request over the spent budget after Redis came up: %d %s", r.status, r.text)
	}
}
