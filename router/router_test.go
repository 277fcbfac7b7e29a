package router

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers"
)

// scripted is a provider whose answers follow a script: each call takes
// the next error (nil = success); past the end it repeats the last.
type scripted struct {
	mu     sync.Mutex
	script []error
	calls  int
}

func (s *scripted) Name() string { return "scripted" }

func (s *scripted) next() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(s.calls, len(s.script)-1)
	s.calls++
	return s.script[i]
}

func (s *scripted) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *scripted) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	return &providers.Response{Body: []byte(`{}`)}, nil
}

func (s *scripted) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	return nil, s.next()
}

func upstream(status int, retryAfter time.Duration) error {
	return &providers.UpstreamError{Status: status, Message: "scripted", Retryable: providers.RetryableStatus(status), RetryAfter: retryAfter}
}

var unreachable = &providers.UpstreamError{Message: "unreachable", Retryable: true, Err: errors.New("connection refused")}

// testRouter builds a router whose deployments are scripted providers
// named by their upstream model, with a fixed clock and recorded sleeps.
func testRouter(t *testing.T, yaml string, scripts map[string]*scripted) (*Router, *[]time.Duration, *time.Time) {
	t.Helper()
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, func(pc providers.Config) (providers.Provider, error) { return scripts[pc.Model], nil })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sleeps []time.Duration
	seed(r, 7)
	r.now = func() time.Time { return now }
	r.sleep = func(ctx context.Context, d time.Duration) error { sleeps = append(sleeps, d); return ctx.Err() }
	return r, &sleeps, &now
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		script    []error
		retries   string
		wantErr   bool
		attempts  int
		minSleeps []time.Duration // each recorded sleep must be at least this
	}{
		{"503 then success", []error{upstream(503, 0), upstream(503, 0), nil}, "2", false, 3, []time.Duration{0, 0}},
		{"unreachable then success", []error{unreachable, nil}, "2", false, 2, []time.Duration{0}},
		{"429 Retry-After is waited", []error{upstream(429, 2*time.Second), nil}, "2", false, 2, []time.Duration{2 * time.Second}},
		{"Retry-After beyond 30s is not waited", []error{upstream(429, time.Hour), nil}, "2", true, 1, nil},
		{"400 is not retried", []error{upstream(400, 0), nil}, "2", true, 1, nil},
		{"401 is not retried", []error{upstream(401, 0), nil}, "2", true, 1, nil},
		{"404 is not retried", []error{upstream(404, 0), nil}, "2", true, 1, nil},
		{"retries run out", []error{upstream(500, 0)}, "2", true, 3, []time.Duration{0, 0}},
		{"num_retries 0", []error{upstream(500, 0), nil}, "0", true, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{script: tt.script}
			r, sleeps, _ := testRouter(t, `
model_list: [{model_name: g, params: {model: openai/a, api_base: "http://x"}}]
router_settings: {num_retries: `+tt.retries+`, allowed_fails: 100}
`, map[string]*scripted{"a": s})
			res, err := r.Do(context.Background(), &Call{Group: "g", Body: []byte(`{}`)})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if res.Attempts != tt.attempts || s.Calls() != tt.attempts {
				t.Fatalf("attempts %d, upstream calls %d, want %d", res.Attempts, s.Calls(), tt.attempts)
			}
			if len(*sleeps) != len(tt.minSleeps) {
				t.Fatalf("sleeps %v, want %d", *sleeps, len(tt.minSleeps))
			}
			for i, min := range tt.minSleeps {
				if (*sleeps)[i] < min || (*sleeps)[i] > maxRetryAfter {
					t.Fatalf("sleep %d = %v, want >= %v", i, (*sleeps)[i], min)
				}
			}
		})
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	r := &Router{jitter: func(n int64) int64 { return n - 1 }} // always the ceiling
	for try, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		if got := r.backoff(try); got != want {
			t.Fatalf("backoff(%d) = %v, want %v", try, got, want)
		}
	}
	if got := r.backoff(20); got != maxBackoff {
		t.Fatalf("backoff cap = %v", got)
	}
	r.minWait = time.Second
	if got := r.backoff(0); got != time.Second {
		t.Fatalf("retry_after floor: %v", got)
	}
}

const twoDeployments = `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"}}
  - {model_name: g, params: {model: openai/b, api_base: "http://b"}}
router_settings: {num_retries: 2, allowed_fails: 3, cooldown_time: 60}
`

// A dead deployment is cooled down after allowed_fails failures and
// traffic goes to the healthy one, with no client-visible error.
func TestCooldownSkipsDeadDeployment(t *testing.T) {
	dead, ok := &scripted{script: []error{upstream(500, 0)}}, &scripted{script: []error{nil}}
	r, _, _ := testRouter(t, twoDeployments, map[string]*scripted{"a": dead, "b": ok})
	for i := 0; i < 200; i++ {
		res, err := r.Do(context.Background(), &Call{Group: "g", Body: []byte(`{}`)})
		if err != nil {
			t.Fatalf("request %d: client saw %v", i, err)
		}
		if res.Deployment.Model != "b" {
			t.Fatalf("request %d answered by %s", i, res.Deployment.Model)
		}
	}
	if dead.Calls() != 3 {
		t.Fatalf("the dead deployment got %d calls, want 3 (then cooled down)", dead.Calls())
	}
	g, _ := r.Group("g")
	if st := g.Deployments[0].State(r.now()); st != StateOpen {
		t.Fatalf("state %s", st)
	}
}

// After the cooldown, one probe decides: a failed probe re-opens the
// circuit, a good one closes it and the deployment takes traffic again.
func TestHalfOpenProbe(t *testing.T) {
	flaky, ok := &scripted{script: []error{upstream(500, 0)}}, &scripted{script: []error{nil}}
	r, _, now := testRouter(t, twoDeployments, map[string]*scripted{"a": flaky, "b": ok})
	for flaky.Calls() < 3 {
		if _, err := r.Do(context.Background(), &Call{Group: "g", Body: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	g, _ := r.Group("g")
	a := g.Deployments[0]
	*now = now.Add(61 * time.Second)
	if st := a.State(*now); st != StateHalfOpen {
		t.Fatalf("state after cooldown %s", st)
	}
	if !a.health.acquire(*now) || a.health.acquire(*now) {
		t.Fatal("half-open must admit exactly one probe")
	}
	a.health.failure(*now) // the probe failed
	if st := a.State(*now); st != StateOpen {
		t.Fatalf("after a failed probe: %s", st)
	}
	*now = now.Add(61 * time.Second)
	flaky.mu.Lock()
	flaky.script = []error{nil} // recovered
	flaky.mu.Unlock()
	before := flaky.Calls()
	for i := 0; i < 100; i++ {
		if _, err := r.Do(context.Background(), &Call{Group: "g", Body: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if a.State(*now) != StateClosed || flaky.Calls()-before < 20 {
		t.Fatalf("recovered deployment: state %s, %d of 100 calls", a.State(*now), flaky.Calls()-before)
	}
}

// A retry goes to another healthy deployment when the group has one.
func TestRetryPrefersAnotherDeployment(t *testing.T) {
	a, b := &scripted{script: []error{upstream(503, 0)}}, &scripted{script: []error{upstream(503, 0)}}
	r, sleeps, _ := testRouter(t, twoDeployments, map[string]*scripted{"a": a, "b": b})
	res, err := r.Do(context.Background(), &Call{Group: "g", Body: []byte(`{}`)})
	if err == nil || res.Attempts != 3 {
		t.Fatalf("err %v attempts %d", err, res.Attempts)
	}
	// Attempts alternate: a, b, a or b, a, b.
	if a.Calls() == 0 || b.Calls() == 0 {
		t.Fatalf("calls a=%d b=%d: the retry did not move to the other deployment", a.Calls(), b.Calls())
	}
	if len(*sleeps) != 2 || (*sleeps)[0] != 0 || (*sleeps)[1] != 0 {
		t.Fatalf("a retry on another deployment must not back off: sleeps %v", *sleeps)
	}
}

func TestStreamRetriedBeforeFirstByte(t *testing.T) {
	s := &scripted{script: []error{unreachable, upstream(400, 0)}}
	r, _, _ := testRouter(t, `
model_list: [{model_name: g, params: {model: openai/a, api_base: "http://x"}}]
router_settings: {num_retries: 3}
`, map[string]*scripted{"a": s})
	res, err := r.Do(context.Background(), &Call{Group: "g", Stream: true, Body: []byte(`{}`)})
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 400 || res.Attempts != 2 {
		t.Fatalf("err %v attempts %d", err, res.Attempts)
	}
}

// coin fails a seeded half of its calls.
type coin struct {
	mu    sync.Mutex
	rng   *rand.Rand
	calls int
}

func (c *coin) Name() string { return "coin" }

func (c *coin) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.rng.IntN(2) == 0 {
		return nil, upstream(500, 0)
	}
	return &providers.Response{Body: []byte(`{}`)}, nil
}

func (c *coin) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	return nil, errors.New("unused")
}

// With one of two deployments failing half its calls (and kept in
// rotation: allowed_fails is high), retries leave clients no error.
func TestHalfFailingDeploymentNoClientErrors(t *testing.T) {
	flaky := &coin{rng: rand.New(rand.NewPCG(1, 2))}
	ok := &scripted{script: []error{nil}}
	cfg, _, err := config.Parse([]byte(`
model_list:
  - {model_name: g, params: {model: openai/flaky, api_base: "http://a"}}
  - {model_name: g, params: {model: openai/ok, api_base: "http://b"}}
router_settings: {num_retries: 2, allowed_fails: 1000000}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, func(pc providers.Config) (providers.Provider, error) {
		if pc.Model == "flaky" {
			return flaky, nil
		}
		return ok, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.sleep = func(ctx context.Context, d time.Duration) error { return nil }
	seed(r, 5)
	failures := 0
	for i := 0; i < 2000; i++ {
		if _, err := r.Do(context.Background(), &Call{Group: "g", Body: []byte(`{}`)}); err != nil {
			failures++
		}
	}
	if failures != 0 || flaky.calls < 500 {
		t.Fatalf("%d client-visible failures of 2000 (flaky deployment got %d calls)", failures, flaky.calls)
	}
	t.Logf("2000 requests, 0 client-visible errors; the flaky deployment took %d calls", flaky.calls)
}

// BenchmarkDo measures selection and the retry machinery on the no-fault
// path: a group of three deployments, the provider answering at once.
func BenchmarkDo(b *testing.B) {
	ok := &scripted{script: []error{nil}}
	cfg, _, err := config.Parse([]byte(`
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"}}
  - {model_name: g, params: {model: openai/b, api_base: "http://b"}}
  - {model_name: g, params: {model: openai/c, api_base: "http://c"}}
`))
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(cfg, func(pc providers.Config) (providers.Provider, error) { return ok, nil })
	if err != nil {
		b.Fatal(err)
	}
	call := &Call{Group: "g", Body: []byte(`{}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Do(context.Background(), call); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once: the atomics and
// the circuit's fast path under contention.
func BenchmarkDoParallel(b *testing.B) {
	ok := &fake{do: func(context.Context, int, *providers.Request) (*providers.Response, error) {
		return &providers.Response{Body: []byte(`{}`)}, nil
	}}
	for _, strategy := range []string{SimpleShuffle, LeastBusy, LatencyBased, UsageBased, CostBased} {
		b.Run(strategy, func(b *testing.B) {
			r, _ := newRouterWith(b, `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a", rpm: 1000000000}}
  - {model_name: g, params: {model: openai/b, api_base: "http://b", rpm: 1000000000}}
  - {model_name: g, params: {model: openai/c, api_base: "http://c", rpm: 1000000000}}
router_settings: {routing_strategy: `+strategy+`}
`, func(providers.Config) (providers.Provider, error) { return noRecord{ok}, nil })
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				call := &Call{Group: "g", Body: []byte(`{}`)}
				for pb.Next() {
					if _, err := r.Do(context.Background(), call); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// noRecord answers like its fake without recording bodies.
type noRecord struct{ f *fake }

func (n noRecord) Name() string { return "fake" }
func (n noRecord) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	return n.f.do(ctx, 0, req)
}
func (n noRecord) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	return nil, errors.New("unused")
}

// BenchmarkHalfFailing reports the client-visible error rate while one of
// two deployments fails half its requests, with the default
// allowed_fails/cooldown_time (so it is cooled down and probed again) and
// retries at once on the other deployment.
func BenchmarkHalfFailing(b *testing.B) {
	flaky := &coin{rng: rand.New(rand.NewPCG(3, 4))}
	ok := &scripted{script: []error{nil}}
	r, _ := newRouterWith(b, `
model_list:
  - {model_name: g, params: {model: openai/flaky, api_base: "http://a"}}
  - {model_name: g, params: {model: openai/ok, api_base: "http://b"}}
`, func(pc providers.Config) (providers.Provider, error) {
		if pc.Model == "flaky" {
			return flaky, nil
		}
		return ok, nil
	})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	failures := 0
	for b.Loop() {
		now = now.Add(time.Millisecond) // 1,000 requests a second, by the router's clock
		if _, err := r.Do(context.Background(), &Call{Group: "g", Body: []byte(`{}`)}); err != nil {
			failures++
		}
	}
	b.ReportMetric(float64(failures)/float64(b.N), "errors/op")
	b.ReportMetric(float64(flaky.calls)/float64(b.N), "flaky-calls/op")
}
