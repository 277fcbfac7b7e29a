package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tokens"
)

// slow is cheaper, so cost-based-routing always tries it first.
const hedgeConfig = `
model_list:
  - {model_name: g, params: {model: openai/slow, api_base: "http://a"}, model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}
  - {model_name: g, params: {model: openai/fast, api_base: "http://b"}, model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}}
router_settings: {routing_strategy: cost-based-routing, num_retries: 0, hedge_after: 0.02`

// hangGuard bounds a test that would otherwise wait forever for a missing
// feature; it asserts nothing about time.
const hangGuard = 10 * time.Second

func doAsync(r *Router, call *Call) <-chan *Result {
	done := make(chan *Result, 1)
	go func() {
		res, err := r.Do(context.Background(), call)
		if err != nil {
			res = &Result{Group: "error: " + err.Error()}
		}
		done <- res
	}()
	return done
}

// The first deployment never answers: after hedge_after the second gets
// the same request, wins, and the first is cancelled at once.
func TestHedgeBeatsSlowDeployment(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "call", true: "stream"}[stream], func(t *testing.T) {
			cancelled := make(chan struct{}, 1)
			slow := hangs(cancelled)
			fast := streams("fast", io.EOF, "<role>", "Hi", "<stop>")
			fast.do = func(context.Context, int, *providers.Request) (*providers.Response, error) {
				return &providers.Response{Body: []byte(`{"id":"fast"}`)}, nil
			}
			r, _ := newTestRouter(t, hedgeConfig+"}\n", map[string]providers.Provider{"slow": slow, "fast": fast})
			var res *Result
			select {
			case res = <-doAsync(r, chat("g", stream, "")):
			case <-time.After(hangGuard):
				t.Fatal("no hedge: the call waits for the slow deployment")
			}
			if res.Deployment == nil || res.Deployment.Model != "fast" || res.Attempts != 2 {
				t.Fatalf("answered by %+v after %d attempts, want fast after 2", res.Deployment, res.Attempts)
			}
			if stream {
				text, _, _, err := drainText(t, res.Stream)
				if err != nil || text != "Hi" {
					t.Fatalf("stream %q %v", text, err)
				}
			}
			select {
			case <-cancelled:
			case <-time.After(hangGuard):
				t.Fatal("the losing attempt was not cancelled")
			}
			if st := r.Stats(); st.Hedges != 1 || st.HedgeWins != 1 {
				t.Fatalf("stats %+v", st)
			}
			// The loser saw the prompt: its estimate at slow's input price.
			prompt := tokens.Prompt([]byte(`{"model":"g","messages":[{"role":"user","content":"hi"}]}`))
			if want := float64(prompt) * 0.000001; prompt == 0 || math.Abs(res.Abandoned-want) > 1e-12 {
				t.Fatalf("abandoned %g USD, want %g (%d prompt tokens at slow's price)", res.Abandoned, want, prompt)
			}
			g, _ := r.Group("g")
			if d := g.Deployments[0]; d.State(r.now()) != StateClosed || d.health.openUntil(r.now()) != (time.Time{}) {
				t.Fatal("a cancelled hedge loser must not count as a failure")
			}
			waitInflightZero(t, g)
		})
	}
}

// An answer before hedge_after starts no second attempt.
func TestHedgeNotNeeded(t *testing.T) {
	slow, fast := answers(`{}`), answers(`{}`)
	r, _ := newTestRouter(t, hedgeConfig+"}\n", map[string]providers.Provider{"slow": slow, "fast": fast})
	res, err := r.Do(context.Background(), chat("g", false, ""))
	if err != nil || res.Attempts != 1 || fast.Calls() != 0 || r.Stats().Hedges != 0 {
		t.Fatalf("err %v attempts %d fast calls %d", err, res.Attempts, fast.Calls())
	}
}

// model_group_hedge_after overrides hedge_after: 0 turns it off.
func TestHedgePerGroup(t *testing.T) {
	r, _ := newTestRouter(t, hedgeConfig+", model_group_hedge_after: {g: 0}}\n", nil)
	if g, _ := r.Group("g"); g.hedgeAfter() != 0 {
		t.Fatalf("hedge_after %v", g.hedgeAfter())
	}
	r, _ = newTestRouter(t, hedgeConfig+", model_group_hedge_after: {g: 5}}\n", nil)
	if g, _ := r.Group("g"); g.hedgeAfter() != 5*time.Second {
		t.Fatalf("hedge_after %v", g.hedgeAfter())
	}
	r, _ = newTestRouter(t, hedgeConfig+", hedge_after_ms: 250}\n", nil)
	if g, _ := r.Group("g"); g.hedgeAfter() != 250*time.Millisecond {
		t.Fatalf("hedge_after_ms: %v", g.hedgeAfter())
	}
}

// hedge_after: p95 hedges after the group's observed 95th percentile time
// to first byte; until 20 answers were seen it does not hedge.
func TestHedgePercentile(t *testing.T) {
	r, _ := newTestRouter(t, hedgeConfig+", model_group_hedge_after: {g: p95}}\n", nil)
	g, _ := r.Group("g")
	if g.hedgeAfter() != 0 {
		t.Fatalf("hedging before any observation: %v", g.hedgeAfter())
	}
	for i := range 19 {
		g.firstByte.observe(time.Duration(i+1) * time.Millisecond)
	}
	if g.hedgeAfter() != 0 {
		t.Fatalf("hedging after 19 observations: %v", g.hedgeAfter())
	}
	// 1..100 ms: the 95th percentile is 95 ms.
	for i := 19; i < 100; i++ {
		g.firstByte.observe(time.Duration(i+1) * time.Millisecond)
	}
	if got := g.hedgeAfter(); got != 95*time.Millisecond && got != 96*time.Millisecond {
		// recomputed every 16 observations: at 96 (p95 of 1..96 = 92 ms) or 100
		if got < 90*time.Millisecond || got > 96*time.Millisecond {
			t.Fatalf("p95 of 1..100 ms: %v", got)
		}
	}
	// Only the last 256 count: a faster regime takes over.
	for range 256 {
		g.firstByte.observe(2 * time.Millisecond)
	}
	if got := g.hedgeAfter(); got != 2*time.Millisecond {
		t.Fatalf("p95 after 256 fast answers: %v", got)
	}
}

// A percentile hedge fires for real: observed answers of the fast
// deployment set the delay, then a hanging first attempt is hedged.
func TestHedgePercentileHedges(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	fast := streams("fast", io.EOF, "<role>", "Hi", "<stop>")
	fast.do = func(context.Context, int, *providers.Request) (*providers.Response, error) {
		return &providers.Response{Body: []byte(`{"id":"fast"}`)}, nil
	}
	r, _ := newTestRouter(t, hedgeConfig+", model_group_hedge_after: {g: p95}}\n",
		map[string]providers.Provider{"slow": hangs(cancelled), "fast": fast})
	g, _ := r.Group("g")
	for range quantileMin {
		g.firstByte.observe(5 * time.Millisecond)
	}
	var res *Result
	select {
	case res = <-doAsync(r, chat("g", false, "")):
	case <-time.After(hangGuard):
		t.Fatal("no hedge at p95")
	}
	if res.Deployment == nil || res.Deployment.Model != "fast" || res.Attempts != 2 {
		t.Fatalf("answered by %+v after %d attempts", res.Deployment, res.Attempts)
	}
}

// waitInflightZero waits for hedge losers to be drained in the background.
func waitInflightZero(t *testing.T, g *Group) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		busy := int64(0)
		for _, d := range g.Deployments {
			busy += d.inflight.Load()
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still in flight", busy)
		}
		time.Sleep(time.Millisecond)
	}
}

// latency-based-routing learns from hedging: a deployment that loses every
// race is cancelled before it answers, and the time it ran counts as a
// lower bound of its latency, so after one hedge the fast deployment is
// picked first. Without that the loser stays "never measured", ranks first
// and every request pays hedge_after.
func TestHedgeLoserTeachesLatencyRouting(t *testing.T) {
	const yaml = `
model_list:
  - {model_name: g, params: {model: openai/slow, api_base: "http://a"}}
  - {model_name: g, params: {model: openai/fast, api_base: "http://b"}}
router_settings: {routing_strategy: latency-based-routing, num_retries: 0, hedge_after: 0.05}
`
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "call", true: "stream"}[stream], func(t *testing.T) {
			cancelled := make(chan struct{}, 10)
			fast := streams("fast", io.EOF, "<role>", "Hi", "<stop>")
			fast.do = func(context.Context, int, *providers.Request) (*providers.Response, error) {
				return &providers.Response{Body: []byte(`{"id":"fast"}`)}, nil
			}
			r, _ := newTestRouter(t, yaml, map[string]providers.Provider{"slow": hangs(cancelled), "fast": fast})
			r.float = func() float64 { return 1 } // never explore
			g, _ := r.Group("g")
			const n = 6
			for i := range n {
				var res *Result
				select {
				case res = <-doAsync(r, chat("g", stream, "")):
				case <-time.After(hangGuard):
					t.Fatal("no hedge: the call waits for the slow deployment")
				}
				if res.Deployment == nil || res.Deployment.Model != "fast" {
					t.Fatalf("request %d answered by %+v", i, res.Deployment)
				}
				if stream {
					if _, _, _, err := drainText(t, res.Stream); err != nil {
						t.Fatal(err)
					}
				}
				waitInflightZero(t, g)
			}
			// Both unmeasured at first: whichever goes first, slow is hedged
			// away once and then avoided.
			if h := r.Stats().Hedges; h != 1 {
				t.Fatalf("%d of %d requests hedged, want 1: the loser was not learnt from", h, n)
			}
			slow := g.Deployments[0]
			if got := expectedLatency(slow, stream); got < 50*time.Millisecond {
				t.Fatalf("slow's latency estimate %v, want at least hedge_after", got)
			}
			if d, _ := r.pick(&groupTry{g: g}, &reqState{call: chat("g", stream, "")}, nil); d.Model != "fast" {
				t.Fatalf("picked %s first, want fast", d.Model)
			}
			if slow.State(r.now()) != StateClosed {
				t.Fatal("a hedge loser must not count as a failure")
			}
		})
	}
}

// A hedged request whose client goes away cancels both attempts; neither
// lost a race, so neither is taken to be slow.
func TestHedgeClientGoneIsNotSlow(t *testing.T) {
	const yaml = `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"}}
  - {model_name: g, params: {model: openai/b, api_base: "http://b"}}
router_settings: {routing_strategy: latency-based-routing, num_retries: 0, hedge_after: 0.01}
`
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "call", true: "stream"}[stream], func(t *testing.T) {
			cancelled := make(chan struct{}, 2)
			r, _ := newTestRouter(t, yaml, map[string]providers.Provider{"a": hangs(cancelled), "b": hangs(cancelled)})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := r.Do(ctx, chat("g", stream, ""))
				done <- err
			}()
			deadline := time.Now().Add(hangGuard)
			for r.Stats().Hedges == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no hedge")
				}
				time.Sleep(time.Millisecond)
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err %v, want context.Canceled", err)
				}
			case <-time.After(hangGuard):
				t.Fatal("the request outlived its client")
			}
			g, _ := r.Group("g")
			waitInflightZero(t, g)
			for _, d := range g.Deployments {
				if d.latency.value() != 0 || d.ttft.value() != 0 {
					t.Fatalf("%s: latency %v ttft %v after the client went away, want unmeasured", d.Model, d.latency.value(), d.ttft.value())
				}
			}
		})
	}
}

func TestEWMAAtLeast(t *testing.T) {
	var e ewma
	e.atLeast(100 * time.Millisecond)
	if e.value() != 100*time.Millisecond {
		t.Fatalf("first censored sample: %v", e.value())
	}
	e.atLeast(50 * time.Millisecond) // agrees with 100 ms: no change
	if e.value() != 100*time.Millisecond {
		t.Fatalf("a lower bound below the average moved it: %v", e.value())
	}
	e.atLeast(200 * time.Millisecond) // as observe: 100 + 0.3*100
	if e.value() != 130*time.Millisecond {
		t.Fatalf("a lower bound above the average: %v, want 130ms", e.value())
	}
}

// A timed-out attempt proves only that the deployment takes at least its
// timeout: it raises a shorter average and leaves a longer one alone.
func TestTimeoutIsALatencyFloor(t *testing.T) {
	const yaml = `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"}}
router_settings: {num_retries: 0}
`
	// The provider's own timeout (a deployment's timeout: 0.02).
	wait := func(ctx context.Context) error {
		select {
		case <-time.After(20 * time.Millisecond):
			return fmt.Errorf("upstream: %w", context.DeadlineExceeded)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	slow := &fake{
		do: func(ctx context.Context, _ int, _ *providers.Request) (*providers.Response, error) {
			return nil, wait(ctx)
		},
		stream: func(ctx context.Context, _ int, _ *providers.Request) (providers.Stream, error) {
			return nil, wait(ctx)
		},
	}
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "call", true: "stream"}[stream], func(t *testing.T) {
			r, _ := newTestRouter(t, yaml, map[string]providers.Provider{"a": slow})
			g, _ := r.Group("g")
			d := g.Deployments[0]
			avg := &d.latency
			if stream {
				avg = &d.ttft
			}
			avg.observe(time.Second) // slow before
			if _, err := r.Do(context.Background(), chat("g", stream, "")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v, want a timeout", err)
			}
			if v := avg.value(); v < time.Second {
				t.Fatalf("a 20 ms timeout pulled a 1 s average down to %v", v)
			}
			avg.bits.Store(0)
			avg.observe(time.Millisecond) // fast before
			if _, err := r.Do(context.Background(), chat("g", stream, "")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v, want a timeout", err)
			}
			if v := avg.value(); v < 5*time.Millisecond {
				t.Fatalf("a 20 ms timeout left a 1 ms average at %v", v)
			}
		})
	}
}

// A provider that panics fails its request as Lumen's own error, whether
// its attempt runs on the caller's goroutine or, hedged, on its own (where
// the panic would otherwise end the process).
func TestProviderPanicFailsTheRequest(t *testing.T) {
	panics := &fake{
		do: func(context.Context, int, *providers.Request) (*providers.Response, error) { panic("bad answer") },
		stream: func(context.Context, int, *providers.Request) (providers.Stream, error) {
			panic("bad answer")
		},
	}
	for _, hedge := range []string{"", ", hedge_after: 0.001"} {
		yaml := `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"}}
  - {model_name: g, params: {model: openai/b, api_base: "http://b"}}
router_settings: {num_retries: 0` + hedge + `}
`
		for _, stream := range []bool{false, true} {
			r, _ := newTestRouter(t, yaml, map[string]providers.Provider{"a": panics, "b": panics})
			_, err := r.Do(context.Background(), chat("g", stream, ""))
			if err == nil || !strings.Contains(err.Error(), "panicked: bad answer") {
				t.Errorf("hedge %q stream %t: err %v", hedge, stream, err)
			}
			g, _ := r.Group("g")
			waitInflightZero(t, g)
		}
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// hedgeWaits moves the clock by the group's hedge delay when a hedge
// starts: the time the first attempt had run by then.
type hedgeWaits struct {
	clock *fakeClock
	g     *Group
}

func (h hedgeWaits) Hedge(string)             { h.clock.advance(h.g.hedgeAfter()) }
func (h hedgeWaits) MidstreamFailover(string) {}

// A percentile hedge delay counts the attempts that never answered, as
// the lower bounds of their time: a hedge race's loser, cancelled when
// the other answered, and an attempt that timed out. Counting only the
// answers would keep the percentile at the winners' (survivor bias): a
// deployment that always loses, or always times out, would never raise it.
func TestHedgePercentileCountsLosersAndTimeouts(t *testing.T) {
	const hedgeYAML = `
model_list:
  - {model_name: g, params: {model: openai/slow, api_base: "http://a"}, model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}
  - {model_name: g, params: {model: openai/fast, api_base: "http://b"}, model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}}
router_settings: {routing_strategy: cost-based-routing, num_retries: 0, hedge_after: p95}
`
	const timeoutYAML = `
model_list:
  - {model_name: g, params: {model: openai/slow, api_base: "http://a"}}
router_settings: {num_retries: 0, hedge_after: p95}
`
	const answer = 10 * time.Millisecond // the time fast takes, and everyone before
	for _, tt := range []struct {
		name     string
		yaml     string
		requests int
		// slow's lower bound each time, and the p95 once 32 observations
		// were in: 20 of 10 ms, then 2 a request (fast's 10 ms and slow's
		// bound) after a hedge, 1 after a timeout.
		want time.Duration
	}{
		{"hedge loser", hedgeYAML, 6, 2 * answer}, // the 10 ms hedge delay, then fast's 10 ms
		{"timeout", timeoutYAML, 12, 5 * answer},  // slow's timeout: 50 ms
	} {
		for _, stream := range []bool{false, true} {
			t.Run(tt.name+"/"+map[bool]string{false: "call", true: "stream"}[stream], func(t *testing.T) {
				clock := &fakeClock{}
				cancelled := make(chan struct{}, tt.requests)
				slow := hangs(cancelled)
				if tt.name == "timeout" {
					timeout := func() error {
						clock.advance(5 * answer)
						return fmt.Errorf("upstream: %w", context.DeadlineExceeded)
					}
					slow.do = func(context.Context, int, *providers.Request) (*providers.Response, error) { return nil, timeout() }
					slow.stream = func(context.Context, int, *providers.Request) (providers.Stream, error) { return nil, timeout() }
				}
				inner := streams("fast", io.EOF, "<role>", "Hi", "<stop>")
				fast := &fake{
					do: func(context.Context, int, *providers.Request) (*providers.Response, error) {
						clock.advance(answer)
						return &providers.Response{Body: []byte(`{"id":"fast"}`)}, nil
					},
					stream: func(ctx context.Context, n int, req *providers.Request) (providers.Stream, error) {
						clock.advance(answer)
						return inner.stream(ctx, n, req)
					},
				}
				r, _ := newTestRouter(t, tt.yaml, map[string]providers.Provider{"slow": slow, "fast": fast})
				r.now = clock.now
				g, _ := r.Group("g")
				r.SetObserver(hedgeWaits{clock, g})
				for range quantileMin {
					g.firstByte.observe(answer)
				}
				if got := g.hedgeAfter(); got != answer {
					t.Fatalf("hedge delay %v before the requests, want %v", got, answer)
				}
				for i := range tt.requests {
					var res *Result
					select {
					case res = <-doAsync(r, chat("g", stream, "")):
					case <-time.After(hangGuard):
						t.Fatal("no hedge")
					}
					if tt.name == "timeout" {
						continue // each request fails: slow timed out
					}
					if res.Deployment == nil || res.Deployment.Model != "fast" || res.Attempts != 2 {
						t.Fatalf("request %d answered by %+v after %d attempts, want fast after 2", i, res.Deployment, res.Attempts)
					}
					if stream {
						if _, _, _, err := drainText(t, res.Stream); err != nil {
							t.Fatal(err)
						}
					}
					waitInflightZero(t, g)
				}
				if calls := slow.Calls(); calls != tt.requests {
					t.Fatalf("slow called %d times, want %d", calls, tt.requests)
				}
				if got := g.hedgeAfter(); got != tt.want {
					t.Fatalf("hedge delay %v after %d requests, want %v: attempts that never answered were left out", got, tt.requests, tt.want)
				}
			})
		}
	}
}

// A lower bound above the percentile counts as a slow observation; one
// below it may be on either side and changes nothing.
func TestQuantileAtLeast(t *testing.T) {
	q := quantile{p: 95}
	for range quantileMin {
		q.atLeast(time.Millisecond) // no percentile yet: each enters
	}
	if q.n != quantileMin || q.value() != time.Millisecond {
		t.Fatalf("%d observations, p95 %v; want %d, 1ms", q.n, q.value(), quantileMin)
	}
	for range 1000 {
		q.atLeast(time.Microsecond)
	}
	if q.n != quantileMin || q.value() != time.Millisecond {
		t.Fatalf("lower bounds below the percentile moved it: %d observations, p95 %v", q.n, q.value())
	}
	for range 12 {
		q.atLeast(time.Second)
	}
	if q.value() != time.Second {
		t.Fatalf("12 of 32 observations at least 1s: p95 %v, want 1s", q.value())
	}
	var off quantile // no percentile hedge: nothing is kept
	off.atLeast(time.Second)
	if off.n != 0 {
		t.Fatalf("a quantile that is off kept %d observations", off.n)
	}
}

// Hedged attempts that both fail after spending upstream: the one the
// round passes over for the other is counted in Result.Abandoned, the
// last one's spend stays in the error the request ends with.
func TestHedgedSpentAttemptsAreCounted(t *testing.T) {
	const cfg = `
model_list:
  - {model_name: g, params: {model: openai/slow, api_base: "http://a"}, model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0}}
  - {model_name: g, params: {model: openai/fast, api_base: "http://b"}, model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0}}
router_settings: {routing_strategy: simple-shuffle, num_retries: 0, hedge_after: 0.02}
`
	spent := &providers.SpentError{Err: upstream(503, 0), Usage: providers.Usage{PromptTokens: 1000}}
	hedging := make(chan struct{})
	// Each fails only once the other has started: after the hedge.
	fail := func() *fake {
		return &fake{do: func(context.Context, int, *providers.Request) (*providers.Response, error) {
			select {
			case hedging <- struct{}{}:
			case <-hedging:
			}
			return nil, spent
		}}
	}
	r, _ := newTestRouter(t, cfg, map[string]providers.Provider{"slow": fail(), "fast": fail()})
	var res *Result
	var err error
	done := make(chan struct{})
	go func() { res, err = r.Do(context.Background(), chat("g", false, "")); close(done) }()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatal("no hedge started")
	}
	if providers.Spent(err).PromptTokens != 1000 || res == nil || res.Attempts != 2 {
		t.Fatalf("res %+v err %v, want both attempts failed with spend", res, err)
	}
	if want := 1000 * 0.000001; math.Abs(res.Abandoned-want) > 1e-12 {
		t.Fatalf("abandoned %g USD, want %g: the attempt passed over spent 1,000 tokens", res.Abandoned, want)
	}
}
