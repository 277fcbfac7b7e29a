package cmd

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"
)

// A 429 with Retry-After is waited out and retried: the client sees one
// success, and the headers say two attempts were made.
func TestE2ERetryAfter429(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/429-once, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
router_settings: {num_retries: 2}
`, fake)
	var raw *http.Response
	c := client(l, "x")
	resp, err := c.Chat.Completions.New(context.Background(), userMsg("hi"), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "Hello after retry" || raw.Header.Get("x-lumen-attempts") != "2" || fake.callsTo("429-once") != 2 {
		t.Fatalf("content %q attempts %q upstream calls %d", resp.Choices[0].Message.Content, raw.Header.Get("x-lumen-attempts"), fake.callsTo("429-once"))
	}
	if !strings.Contains(l.Logs.String(), `"message":"upstream attempt failed"`) {
		t.Fatal("the failed attempt was not logged")
	}
}

// One of two deployments is dead: after allowed_fails it is cooled down,
// every request succeeds, and /health shows the open circuit.
func TestE2EDeadDeploymentCooledDown(t *testing.T) {
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, `
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/always-500, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {id: dead}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {id: healthy}
router_settings: {num_retries: 2, allowed_fails: 3, cooldown_time: 600, retry_after: 0}
`, fake)
	for i := 0; i < 60; i++ {
		got := rawPost(t, l, "/v1/chat/completions", "", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
		if got.status != 200 {
			t.Fatalf("request %d: client saw %d %s", i, got.status, got.text)
		}
	}
	if n := fake.callsTo("always-500"); n != 3 {
		t.Fatalf("dead deployment got %d calls, want 3", n)
	}
	resp, err := http.Get(l.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(body.String(), `"id":"dead","provider":"openai","model":"always-500","state":"open","cooldown_until":`) {
		t.Fatalf("/health: %s", body.String())
	}
	// What the README promises besides the state: failures in the window,
	// requests in flight, latency averages and this minute's load.
	dead := gjson.Get(body.String(), `model_groups.gpt-4o.#(id=="dead")`)
	healthy := gjson.Get(body.String(), `model_groups.gpt-4o.#(id=="healthy")`)
	if dead.Get("requests_this_minute").Int() != 3 || !dead.Get("recent_failures").Exists() || !healthy.Get("in_flight").Exists() || healthy.Get("latency_ms").Float() <= 0 ||
		healthy.Get("requests_this_minute").Int() != 60 {
		t.Fatalf("/health details: %s", body.String())
	}
}

// router_settings.health_check_interval sends active checks to every
// deployment, without traffic: /health shows when each was checked and why
// one failed.
func TestE2EActiveHealthChecks(t *testing.T) {
	l := startLumen(t, `
model_list:
  - model_name: g
    litellm_params: {model: mock/bad, mock_failure_rate: 1}
    model_info: {id: bad}
  - model_name: g
    litellm_params: {model: mock/good}
    model_info: {id: good}
router_settings: {health_check_interval: 0.05, allowed_fails: 1, cooldown_time: 600}
`, nil)
	var body []byte
	waitFor(t, func() bool {
		body = rawGet(t, l.URL, "/health", "")
		return gjson.GetBytes(body, `model_groups.g.#(id=="bad").last_check_error`).Str != "" &&
			gjson.GetBytes(body, `model_groups.g.#(id=="good").last_check`).Exists()
	})
	if gjson.GetBytes(body, `model_groups.g.#(id=="good").last_check_error`).Exists() ||
		gjson.GetBytes(body, `model_groups.g.#(id=="bad").state`).Str == "closed" {
		t.Fatalf("/health after the checks: %s", body)
	}
}
