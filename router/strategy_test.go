package router

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
)

// three deployments a, b, c of group g; params and model_info per deployment
// are spliced in, and the strategy set.
func threeDeployments(strategy, a, b, c string) string {
	return `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"` + a + `}}
  - {model_name: g, params: {model: openai/b, api_base: "http://b"` + b + `}}
  - {model_name: g, params: {model: openai/c, api_base: "http://c"` + c + `}}
router_settings: {routing_strategy: ` + strategy + `, num_retries: 0}
`
}

func threeFakes() map[string]providers.Provider {
	return map[string]providers.Provider{"a": answers(`{}`), "b": answers(`{}`), "c": answers(`{}`)}
}

// picks routes n calls and counts which upstream model answered each.
func picks(t *testing.T, r *Router, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		res, err := r.Do(context.Background(), chat("g", false, ""))
		if err != nil {
			t.Fatal(err)
		}
		got[res.Deployment.Model]++
	}
	return got
}

// Statistical checks with seeded randomness: shares within a few points of
// what the strategy specifies (4,000 picks: one standard deviation of a
// 25% share is 0.7 points).
func TestSimpleShuffleWeights(t *testing.T) {
	tests := []struct {
		name    string
		a, b, c string
		want    map[string]float64 // expected share
	}{
		{"uniform without weights", "", "", "", map[string]float64{"a": 1. / 3, "b": 1. / 3, "c": 1. / 3}},
		{"weight", ", weight: 1", ", weight: 3", "", map[string]float64{"a": .2, "b": .6, "c": .2}},
		{"rpm when no weight", ", rpm: 100", ", rpm: 300", ", rpm: 600", map[string]float64{"a": .1, "b": .3, "c": .6}},
		{"tpm when no rpm", ", tpm: 1000", ", tpm: 1000", ", tpm: 2000", map[string]float64{"a": .25, "b": .25, "c": .5}},
		{"unset rpm counts as the mean", ", rpm: 100", ", rpm: 300", "", map[string]float64{"a": 1. / 6, "b": .5, "c": 1. / 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestRouter(t, threeDeployments("simple-shuffle", tt.a, tt.b, tt.c), threeFakes())
			const n = 4000
			got := picks(t, r, n)
			for m, share := range tt.want {
				if s := float64(got[m]) / n; s < share-0.03 || s > share+0.03 {
					t.Fatalf("%s got %.3f of picks, want %.3f (all: %v)", m, s, share, got)
				}
			}
		})
	}
}

func TestLeastBusy(t *testing.T) {
	r, _ := newTestRouter(t, threeDeployments("least-busy", "", "", ""), threeFakes())
	g, _ := r.Group("g")
	g.Deployments[0].inflight.Store(5)
	g.Deployments[1].inflight.Store(1)
	g.Deployments[2].inflight.Store(3)
	got := picks(t, r, 200)
	if got["b"] != 200 {
		t.Fatalf("picks %v, want every one on b (fewest in flight)", got)
	}
	// Ties are shared at random.
	g.Deployments[0].inflight.Store(1)
	got = picks(t, r, 400)
	if got["a"] < 150 || got["b"] < 150 || got["c"] != 0 {
		t.Fatalf("tied a and b: picks %v", got)
	}
}

func TestLatencyBased(t *testing.T) {
	r, _ := newTestRouter(t, threeDeployments("latency-based-routing", "", "", ""), threeFakes())
	g, _ := r.Group("g")
	g.Deployments[0].latency.observe(300 * time.Millisecond)
	g.Deployments[1].latency.observe(40 * time.Millisecond)
	g.Deployments[2].latency.observe(90 * time.Millisecond)
	const n = 4000 // picks only: no call moves the averages
	got := map[string]int{}
	for range n {
		d, err := r.pick(&groupTry{g: g}, &reqState{call: chat("g", false, "")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[d.Model]++
	}
	// 95% exploit b; 5% explore uniformly, so a and c get ~1.7% each.
	if s := float64(got["b"]) / n; s < 0.95 || s > 0.985 {
		t.Fatalf("fastest deployment got %.3f of picks (%v)", s, got)
	}
	if got["a"] < 30 || got["c"] < 30 {
		t.Fatalf("no exploration: %v", got)
	}
}

// Streams are ranked by time to first token, calls by whole latency; a
// deployment never measured goes first.
func TestLatencyStreamsUseTTFT(t *testing.T) {
	r, _ := newTestRouter(t, threeDeployments("latency-based-routing", "", "", ""), threeFakes())
	r.float = func() float64 { return 1 } // never explore
	g, _ := r.Group("g")
	a, b, c := g.Deployments[0], g.Deployments[1], g.Deployments[2]
	a.latency.observe(50 * time.Millisecond)
	a.ttft.observe(900 * time.Millisecond)
	b.latency.observe(500 * time.Millisecond)
	b.ttft.observe(20 * time.Millisecond)
	gt := &groupTry{g: g}
	if d, _ := r.pick(gt, &reqState{call: chat("g", false, "")}, nil); d != c {
		t.Fatalf("unmeasured c must be tried first, got %s", d.Model)
	}
	c.latency.observe(time.Second)
	c.ttft.observe(time.Second)
	if d, _ := r.pick(&groupTry{g: g}, &reqState{call: chat("g", false, "")}, nil); d != a {
		t.Fatalf("non-streaming call went to %s, want a (lowest latency)", d.Model)
	}
	if d, _ := r.pick(&groupTry{g: g}, &reqState{call: chat("g", true, "")}, nil); d != b {
		t.Fatalf("stream went to %s, want b (lowest TTFT)", d.Model)
	}
}

func TestUsageBased(t *testing.T) {
	r, _ := newTestRouter(t, threeDeployments("usage-based-routing", ", rpm: 100", ", rpm: 100", ", tpm: 1000"), threeFakes())
	now := time.Date(2026, 1, 1, 12, 0, 10, 0, time.UTC)
	r.now = func() time.Time { return now }
	g, _ := r.Group("g")
	a, b, c := g.Deployments[0], g.Deployments[1], g.Deployments[2]
	for range 90 {
		a.usage.addRequest(now)
	}
	for range 40 {
		b.usage.addRequest(now)
	}
	c.usage.addTokens(now, 500)
	// Headroom: a 10%, b 60%, c 50%.
	res, err := r.Do(context.Background(), chat("g", false, ""))
	if err != nil || res.Deployment != b || res.Strategy != "usage-based-routing" {
		t.Fatalf("picked %v (%v), want b with the most headroom", res.Deployment.Model, err)
	}
	// b and c at their limits are skipped; a has room left.
	for range 59 {
		b.usage.addRequest(now)
	}
	c.usage.addTokens(now, 500)
	for range 5 {
		res, err = r.Do(context.Background(), chat("g", false, ""))
		if err != nil || res.Deployment != a {
			t.Fatalf("picked %v (%v), want a: b and c are at their limits", res.Deployment.Model, err)
		}
	}
	// All at their limits: 429 until the minute turns.
	for range 5 {
		a.usage.addRequest(now)
	}
	_, err = r.Do(context.Background(), chat("g", false, ""))
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 429 || ue.RetryAfter != 50*time.Second {
		t.Fatalf("all at limit: %v", err)
	}
	now = now.Add(time.Minute)
	if _, err := r.Do(context.Background(), chat("g", false, "")); err != nil {
		t.Fatalf("a new minute: %v", err)
	}
}

func TestCostBased(t *testing.T) {
	// a is priced by model_info, b by the embedded table (gpt-4o-mini), c
	// is unknown and ranks last.
	yaml := `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"}, model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0.00003}}
  - {model_name: g, params: {model: openai/gpt-4o-mini}}
  - {model_name: g, params: {model: openai/c, api_base: "http://c"}}
router_settings: {routing_strategy: cost-based-routing, num_retries: 0}
`
	fakes := map[string]providers.Provider{"a": answers(`{}`), "gpt-4o-mini": answers(`{}`), "c": answers(`{}`)}
	r, _ := newTestRouter(t, yaml, fakes)
	got := picks(t, r, 50)
	if got["gpt-4o-mini"] != 50 {
		t.Fatalf("picks %v, want all on the cheapest (gpt-4o-mini)", got)
	}
	// The cheapest cooled down: the next cheapest, never the unpriced one.
	g, _ := r.Group("g")
	g.Deployments[1].health.until = time.Now().Add(time.Hour)
	g.Deployments[1].health.tripped.Store(true)
	got = picks(t, r, 50)
	if got["a"] != 50 {
		t.Fatalf("picks %v, want all on a", got)
	}
}

// A half-open deployment admits one probe: two concurrent picks cannot
// both take it.
func TestPickHalfOpenOneProbe(t *testing.T) {
	r, _ := newTestRouter(t, threeDeployments("simple-shuffle", ", weight: 1000", "", ""), threeFakes())
	g, _ := r.Group("g")
	a := g.Deployments[0]
	a.health.until = r.now().Add(-time.Second) // cooled down, now half-open
	a.health.tripped.Store(true)
	probes := 0
	for range 100 {
		d, err := r.pick(&groupTry{g: g}, &reqState{call: chat("g", false, "")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d == a {
			probes++
		}
	}
	if probes != 1 {
		t.Fatalf("half-open deployment admitted %d probes, want 1", probes)
	}
}
