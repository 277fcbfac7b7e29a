package cmd

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2ERedisCacheSharedByTwoInstances runs two lumen serve instances on
// one real Redis: an answer cached by the first is a hit on the second.
// scripts/test.sh starts the Redis (scripts/redis.sh) and exports its address.
func TestE2ERedisCacheSharedByTwoInstances(t *testing.T) {
	addr := os.Getenv("LUMEN_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("LUMEN_TEST_REDIS_ADDR is not set: run the tests with scripts/test.sh, which starts redis-server (scripts/redis.sh)")
	}
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
