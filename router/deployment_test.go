package router

import (
	"context"
	"strings"
	"testing"
	"time"
)

// keepStateBase has a dead deployment (id "dead"), one at its rpm cap with
// a failure in the window and latencies (default id "g/1"), and a healthy one.
const keepStateBase = `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a", api_key: sk-a}, model_info: {id: dead}}
  - {model_name: g, params: {model: openai/b, api_base: "http://b", rpm: 2}}
  - {model_name: g, params: {model: openai/c, api_base: "http://c"}}
router_settings: {num_retries: 0, allowed_fails: 2, cooldown_time: 300}
`

// A reload's router takes over the circuit, minute usage, latencies and
// last health check of each deployment that keeps its id and upstream, and
// starts afresh those whose upstream changed (or whose default id now
// names another entry). In-flight counts are never carried.
func TestKeepState(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(yaml string) string
		carried map[string]bool // by id; the other ids start fresh
		open    time.Duration   // how long "dead" stays open when carried
	}{
		{"unchanged", func(y string) string { return y }, map[string]bool{"dead": true, "g/1": true}, 300 * time.Second},
		{"rpm and timeout changes keep the upstream", func(y string) string {
			y = strings.Replace(y, "rpm: 2", "rpm: 3", 1)
			return strings.Replace(y, `api_key: sk-a}`, `api_key: sk-a, timeout: 30}`, 1)
		}, map[string]bool{"dead": true, "g/1": true}, 300 * time.Second},
		{"shorter cooldown_time applies at once", func(y string) string {
			return strings.Replace(y, "cooldown_time: 300", "cooldown_time: 60", 1)
		}, map[string]bool{"dead": true, "g/1": true}, 60 * time.Second},
		{"api_base changed", func(y string) string {
			return strings.Replace(y, `"http://a"`, `"http://a2"`, 1)
		}, map[string]bool{"g/1": true}, 0},
		{"model changed", func(y string) string {
			return strings.Replace(y, "openai/a,", "openai/a2,", 1)
		}, map[string]bool{"g/1": true}, 0},
		{"provider changed", func(y string) string {
			return strings.Replace(y, "openai/a,", "anthropic/a,", 1)
		}, map[string]bool{"g/1": true}, 0},
		{"api_key changed", func(y string) string {
			return strings.Replace(y, "sk-a", "sk-a2", 1)
		}, map[string]bool{"g/1": true}, 0},
		{"an entry inserted above shifts the default ids", func(y string) string {
			return strings.Replace(y, "model_list:\n", "model_list:\n  - {model_name: g, params: {model: openai/x, api_base: \"http://x\"}}\n", 1)
		}, map[string]bool{"dead": true}, 300 * time.Second}, // g/1 is now x, g/2 is b
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dead, ok := &scripted{script: []error{upstream(500, 0)}}, &scripted{script: []error{nil}}
			scripts := map[string]*scripted{"a": dead, "b": ok, "c": ok, "x": ok, "a2": ok}
			old, _, now := testRouter(t, keepStateBase, scripts)
			og, _ := old.Group("g")
			a, b := og.Deployments[0], og.Deployments[1]
			a.health.failure(*now)
			a.health.failure(*now)
			a.check.Store(&checkResult{at: now.Add(-time.Second), err: "connection refused"})
			b.health.failure(*now)
			b.usage.addRequest(*now)
			b.usage.addRequest(*now)
			b.usage.addTokens(*now, 100)
			b.latency.observe(200 * time.Millisecond)
			b.ttft.observe(50 * time.Millisecond)
			b.check.Store(&checkResult{at: now.Add(-2 * time.Second)})
			b.inflight.Add(1) // a stream still open on the old router
			if st := a.State(*now); st != StateOpen {
				t.Fatalf("old dead deployment is %s", st)
			}
			before := map[string]DeploymentState{}
			for _, s := range old.Snapshot() {
				before[s.ID] = s
			}

			r, _, _ := testRouter(t, tt.edit(keepStateBase), scripts)
			r.KeepState(old)

			for _, got := range r.Snapshot() {
				want := DeploymentState{Group: got.Group, ID: got.ID, Provider: got.Provider, Model: got.Model, State: StateClosed}
				if tt.carried[got.ID] {
					want = before[got.ID]
					want.InFlight = 0
					if got.ID == "dead" {
						want.CooldownUntil = now.Add(tt.open)
					}
				}
				if got != want {
					t.Errorf("%s after reload:\n got %+v\nwant %+v", got.ID, got, want)
				}
			}
			if !tt.carried["dead"] {
				return
			}
			// The dead upstream gets no traffic from the new router.
			for i := range 10 {
				res, err := r.Do(context.Background(), &Call{Group: "g", Body: []byte(`{}`)})
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if res.Deployment.ID == "dead" {
					t.Fatalf("request %d went to the dead deployment", i)
				}
			}
			if dead.Calls() != 0 {
				t.Fatalf("the dead upstream got %d calls", dead.Calls())
			}
		})
	}
}

// A half-open probe in flight on the old router is not handed on: its
// verdict lands there, and the new router admits a probe of its own.
func TestKeepStateHalfOpenProbe(t *testing.T) {
	old := &health{allowed: 1, cooldown: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old.failure(t0)
	later := t0.Add(time.Minute)
	if !old.acquire(later) {
		t.Fatal("half-open refused the probe")
	}
	h := &health{allowed: 1, cooldown: time.Minute}
	h.takeOver(old)
	if st := h.state(later); st != StateHalfOpen {
		t.Fatalf("state %s, want half-open", st)
	}
	if !h.acquire(later) {
		t.Fatal("the new circuit waits for the old router's probe")
	}
	if h.acquire(later) {
		t.Fatal("the new circuit admitted a second probe")
	}
}
