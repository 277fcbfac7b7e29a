package router

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/syncbuf"
	"github.com/lumengw/lumen/providers"
)

// A deployment timing out (the provider's own watchdog, or a bare
// deadline from a provider without one) is a retryable failure: the call
// moves to the other deployment and the timeout counts against the slow
// one.
func TestTimeoutIsRetried(t *testing.T) {
	// The handler reads the body first: only then does net/http watch the
	// connection and cancel r.Context() when the client hangs up. stop
	// frees it in any case, so Close never waits on it.
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer hang.Close()
	defer close(stop)
	for _, tt := range []struct {
		name, params string
		slow         providers.Provider
	}{
		{"openai provider timeout", `{model: openai/slow, api_base: "` + hang.URL + `/v1", api_key: x, timeout: 0.05}`, nil},
		{"bare deadline", `{model: openai/slow, api_base: "http://a"}`, failing(context.DeadlineExceeded)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := `
model_list:
  - {model_name: g, params: ` + tt.params + `, model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}
  - {model_name: g, params: {model: openai/ok, api_base: "http://b"}, model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}}
router_settings: {routing_strategy: cost-based-routing, num_retries: 1}
`
			ok := answers(`{}`)
			r, _ := newRouterWith(t, cfg, func(pc providers.Config) (providers.Provider, error) {
				switch {
				case pc.Model == "ok":
					return ok, nil
				case tt.slow != nil:
					return tt.slow, nil
				default:
					return Build(pc) // the real OpenAI-format client, against the hanging server
				}
			})
			res, err := r.Do(context.Background(), chat("g", false, ""))
			if err != nil || res.Attempts != 2 || res.Deployment.Model != "ok" {
				t.Fatalf("err %v, attempts %d", err, res.Attempts)
			}
			st := r.Snapshot()
			if st[0].Model != "slow" || st[0].RecentFailures != 1 {
				t.Fatalf("the timeout was not counted against the slow deployment: %+v", st[0])
			}
		})
	}
}

// Active health checks: a passing check closes an open circuit at once; a
// failing one counts like a failed request; Run stops with its context.
func TestHealthChecks(t *testing.T) {
	var fail atomic.Bool
	var checks atomic.Int64
	p := &fake{do: func(_ context.Context, _ int, req *providers.Request) (*providers.Response, error) {
		checks.Add(1)
		if !strings.Contains(string(req.Body), `"max_tokens":1`) {
			return nil, errors.New("a health check must ask for one token")
		}
		if fail.Load() {
			return nil, upstream(503, 0)
		}
		return &providers.Response{Body: []byte(`{}`)}, nil
	}}
	r, _ := newTestRouter(t, `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"}}
router_settings: {allowed_fails: 2, cooldown_time: 600, health_check_interval: 0.01}
`, map[string]providers.Provider{"a": p})
	g, _ := r.Group("g")
	d := g.Deployments[0]
	fail.Store(true)
	r.CheckAll(context.Background())
	r.CheckAll(context.Background())
	if st := r.Snapshot()[0]; st.State != StateOpen || st.LastCheckError == "" || st.LastCheck.IsZero() {
		t.Fatalf("after two failed checks: %+v", st)
	}
	fail.Store(false)
	r.CheckAll(context.Background())
	if st := r.Snapshot()[0]; st.State != StateClosed || st.LastCheckError != "" || d.latency.value() == 0 {
		t.Fatalf("a passing check must close the circuit: %+v", st)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := checks.Load()
	go func() { done <- r.Run(ctx) }()
	for checks.Load() < before+3 { // Run keeps checking
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Run did not stop with its context")
	}
}

// Off by default: Run returns at once and sends nothing.
func TestHealthChecksOffByDefault(t *testing.T) {
	p := answers(`{}`)
	r, _ := newTestRouter(t, `model_list: [{model_name: g, params: {model: openai/a, api_base: "http://a"}}]`, map[string]providers.Provider{"a": p})
	if err := r.Run(context.Background()); err != nil || p.Calls() != 0 {
		t.Fatalf("Run: %v, %d calls", err, p.Calls())
	}
}

// Snapshot reports what /health and metrics show.
func TestSnapshot(t *testing.T) {
	a := streams("a", io.EOF, "<role>", "Hi", "<usage>")
	r, _ := newTestRouter(t, `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a", rpm: 10}, model_info: {id: dep-a, input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}}
  - {model_name: g, params: {model: openai/dead, api_base: "http://b"}, model_info: {id: dep-dead, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}
router_settings: {routing_strategy: cost-based-routing, allowed_fails: 1, cooldown_time: 60}
`, map[string]providers.Provider{"a": a, "dead": failing(upstream(500, 0))})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	res, err := r.Do(context.Background(), chat("g", true, "")) // dead first (cheaper), then a
	if err != nil || res.Attempts != 2 {
		t.Fatalf("err %v attempts %d", err, res.Attempts)
	}
	st := r.Snapshot()
	if st[0].ID != "dep-a" || st[0].InFlight != 1 || st[0].RequestsThisMinute != 1 || st[0].TTFT == 0 {
		t.Fatalf("open stream: %+v", st[0])
	}
	if d := st[1]; d.State != StateOpen || !d.CooldownUntil.Equal(now.Add(time.Minute)) || d.InFlight != 0 {
		t.Fatalf("dead deployment: %+v", d)
	}
	if _, _, _, err := drainText(t, res.Stream); err != nil {
		t.Fatal(err)
	}
	if st = r.Snapshot(); st[0].InFlight != 0 || st[0].TokensThisMinute != 14 {
		t.Fatalf("closed stream: %+v", st[0])
	}
}

// A health check that panics is logged with its deployment and stack, and
// the other checks and the next round go on.
func TestHealthCheckPanicLogged(t *testing.T) {
	bad := &fake{do: func(context.Context, int, *providers.Request) (*providers.Response, error) { panic("injected") }}
	good := answers(`{}`)
	r, _ := newTestRouter(t, `
model_list:
  - {model_name: g, params: {model: openai/bad, api_base: "http://a"}}
  - {model_name: g, params: {model: openai/good, api_base: "http://b"}}
router_settings: {health_check_interval: 60}
`, map[string]providers.Provider{"bad": bad, "good": good})
	var logs syncbuf.Buffer
	r.SetLogger(zerolog.New(&logs))
	r.CheckAll(context.Background())
	r.CheckAll(context.Background())
	line := logs.String()
	if good.Calls() != 2 || strings.Count(line, `"panic":"injected"`) != 2 || !strings.Contains(line, `"deployment":"g/0","loop":"health check"`) ||
		!strings.Contains(line, "TestHealthCheckPanicLogged") {
		t.Fatalf("good checked %d times; log %s", good.Calls(), line)
	}
}
