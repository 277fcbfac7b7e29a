package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/internal/syncbuf"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/metrics"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tokens"
)

// budgetServer is an open gateway serving yaml, with in-memory budgets.
func budgetServer(t *testing.T, yaml string) *httptest.Server {
	t.Helper()
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(cfg, router.Build)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Budgets: limits.NewMemoryBudgets(limits.BudgetOptions{})})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// A budget holds the output the request can really get: its max_tokens
// lowered to the cap each deployment of the group would lower it to, the
// largest over the deployments (one without a cap lowers nothing).
func TestAdmitHoldsTheCappedWorstCase(t *testing.T) {
	const prompt = "how much may this cost"
	tests := []struct {
		name      string
		caps      []int // each deployment's max_output_tokens; 0: none declared
		maxTokens int   // 0: the request sets none
		wantOut   int
	}{
		{name: "max_tokens over the cap", caps: []int{10}, maxTokens: 100, wantOut: 10},
		{name: "max_tokens under the cap", caps: []int{200}, maxTokens: 100, wantOut: 100},
		{name: "largest cap of the group", caps: []int{10, 50}, maxTokens: 100, wantOut: 50},
		{name: "a deployment without a cap", caps: []int{10, 0}, maxTokens: 100, wantOut: 100},
		{name: "no max_tokens, capped", caps: []int{10}, wantOut: 10},
		{name: "no max_tokens, largest cap", caps: []int{10, 50}, wantOut: 50},
		{name: "no max_tokens, no cap", caps: []int{0}, wantOut: defaultMaxOutput},
		{name: "no max_tokens, a deployment without a cap", caps: []int{10, 0}, wantOut: defaultMaxOutput},
		{name: "no max_tokens, a cap over the default", caps: []int{0, 8192}, wantOut: 8192},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A budget nothing fits in: the refusal says what was held.
			yaml := "limits: {global: {budget_usd: 0.000001}}\nmodel_list:\n"
			for i, c := range tt.caps {
				yaml += fmt.Sprintf("  - {model_name: capped, params: {model: mock/m%d}, model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0.002, max_output_tokens: %d}}\n", i, c)
			}
			extra := ""
			if tt.maxTokens > 0 {
				extra = fmt.Sprintf(`,"max_tokens":%d`, tt.maxTokens)
			}
			body := `{"model":"capped","messages":[{"role":"user","content":"` + prompt + `"}]` + extra + `}`
			srv := budgetServer(t, yaml)
			status, text := postJSON(t, srv.URL+"/v1/chat/completions", body)
			worst := float64(tokens.Prompt([]byte(body)))*0.001 + float64(tt.wantOut)*0.002
			if want := fmt.Sprintf("may cost up to $%.4f ", worst); status != http.StatusTooManyRequests || !strings.Contains(text, want) {
				t.Fatalf("got %d %s\nwant 429 saying %q", status, text, want)
			}
		})
	}
}

// A client asking for more than the model can write is served within a
// budget that holds what the capped request can cost.
func TestAdmitServesMaxTokensOverTheCap(t *testing.T) {
	srv := budgetServer(t, `
limits: {global: {budget_usd: 0.05}}
model_list:
  - {model_name: capped, params: {model: mock/capped}, model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0.002, max_output_tokens: 10}}
`)
	status, text := postJSON(t, srv.URL+"/v1/chat/completions", `{"model":"capped","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`)
	if status != http.StatusOK {
		t.Fatalf("got %d %s, want 200", status, text)
	}
}

// A model group's rpm/tpm window counts the requests the group answers,
// whichever name the client sent: one request and, once settled, the
// answer's real tokens. A group that was tried and did not answer keeps
// the request but no tokens.
func TestGroupWindowsCountTheGroupThatAnswers(t *testing.T) {
	const yaml = `
model_list:
  - {model_name: a, params: {model: mock/a, mock_failure_rate: 1}}
  - {model_name: b, params: {model: mock/b}, model_info: {quality: 0.9}}
  - {model_name: auto-b, auto: {candidates: [b]}}
router_settings: {num_retries: 0, fallbacks: [{a: [b]}]}
limits: {model_groups: {a: {rpm: 100, tpm: 100000}, b: {rpm: 100, tpm: 100000}}}
`
	tests := []struct {
		model string
		a     [2]int // requests, tokens; -1 tokens: the answer's
		b     [2]int
	}{
		{model: "b", a: [2]int{0, 0}, b: [2]int{1, -1}},
		{model: "a", a: [2]int{1, 0}, b: [2]int{1, -1}},
		{model: "auto-b", a: [2]int{0, 0}, b: [2]int{1, -1}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			cfg, _, err := config.Parse([]byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			r, err := router.New(cfg, router.Build)
			if err != nil {
				t.Fatal(err)
			}
			lim := limits.NewMemoryLimiter(limits.LimiterOptions{})
			srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Limiter: lim}))
			defer srv.Close()
			status, text := postJSON(t, srv.URL+"/v1/chat/completions", `{"model":"`+tt.model+`","max_tokens":50,"messages":[{"role":"user","content":"count me"}]}`)
			answered := int(gjson.Get(text, "usage.total_tokens").Int())
			if status != http.StatusOK || answered == 0 {
				t.Fatalf("%d %s", status, text)
			}
			for group, want := range map[string][2]int{"a": tt.a, "b": tt.b} {
				if want[1] < 0 {
					want[1] = answered
				}
				// A probe of zero tokens reads the window (and is given back).
				id := limits.GroupAccount(group)
				d, _ := lim.Allow(context.Background(), id, limits.Limit{RPM: 1000, TPM: 1 << 20}, 0)
				_ = lim.Adjust(context.Background(), id, -1, 0)
				if got := [2]int{1000 - d.Requests.Remaining - 1, 1<<20 - d.Tokens.Remaining}; got != want {
					t.Errorf("group %s window: %v (requests, tokens), want %v", group, got, want)
				}
			}
		})
	}
}

// settledBudgets is a MemoryBudgets that keeps the reservations settled.
type settledBudgets struct {
	*limits.MemoryBudgets
	mu      sync.Mutex
	settled []limits.Reservation
}

func (b *settledBudgets) Settle(ctx context.Context, r limits.Reservation, usd float64) error {
	b.mu.Lock()
	b.settled = append(b.settled, r)
	b.mu.Unlock()
	return b.MemoryBudgets.Settle(ctx, r, usd)
}

// A request is charged to the budget period its ledger row is in: the
// reservation settles at the time the row carries (the request's
// arrival), so live spend and a reload from the ledger agree on a request
// that straddles a period's end.
func TestSettleChargesAtTheLedgerTime(t *testing.T) {
	budgets := &settledBudgets{MemoryBudgets: limits.NewMemoryBudgets(limits.BudgetOptions{})}
	rec := &memRecorder{}
	_, url, stop := runServer(t, `
model_list:
  - {model_name: priced, params: {model: mock/p}, model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}}
  - {model_name: other, params: {model: mock/o}}
router_settings: {fallbacks: [{priced: [other]}]}
limits: {global: {budget_usd: 100, budget_period: daily}, model_groups: {priced: {budget_usd: 100}, other: {budget_usd: 100}}}
`, Options{Logger: zerolog.Nop(), Budgets: budgets, Ledger: rec}, nil)
	if status, body := postJSON(t, url+"/v1/chat/completions", `{"model":"priced","messages":[{"role":"user","content":"hi"}]}`); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := rec.records()
	budgets.mu.Lock()
	defer budgets.mu.Unlock()
	// The global budget's, the group's, and its fallback's (held too).
	if len(recs) != 1 || len(budgets.settled) != 3 {
		t.Fatalf("%d records, %d reservations settled; want 1 and 3", len(recs), len(budgets.settled))
	}
	for _, r := range budgets.settled {
		if !r.At.Equal(recs[0].Time) {
			t.Errorf("%s settled at %v, the ledger row's time is %v", r.KeyID, r.At, recs[0].Time)
		}
	}
}

// downLimits are a limiter and a budget store whose every call fails
// with err.
type downLimits struct{ err error }

func (d downLimits) Allow(context.Context, string, limits.Limit, int) (limits.Decision, error) {
	return limits.Decision{}, d.err
}
func (d downLimits) Adjust(context.Context, string, int, int) error { return d.err }
func (d downLimits) Reserve(context.Context, string, limits.Budget, float64) (limits.Reservation, error) {
	return limits.Reservation{}, d.err
}
func (d downLimits) Settle(context.Context, limits.Reservation, float64) error { return d.err }

// Shared limits that are down admit requests unchecked and count each
// check in lumen_limits_unavailable_total; a Redis store's ErrUnavailable
// is not logged per request (the store logs it once a minute), any other
// error is.
func TestLimitsUnavailableAreCountedNotLoggedPerRequest(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantLines int // per request
	}{
		{"redis unavailable", fmt.Errorf("rate limit global in redis: %w: i/o timeout", limits.ErrUnavailable), 0},
		{"other error", errors.New("some store failed"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := config.Parse([]byte(`
limits: {global: {rpm: 100, budget_usd: 10}}
model_list:
  - {model_name: m, params: {model: mock/m}}
`))
			if err != nil {
				t.Fatal(err)
			}
			r, err := router.New(cfg, router.Build)
			if err != nil {
				t.Fatal(err)
			}
			var logs syncbuf.Buffer
			m := metrics.New(metrics.Options{NoProcessMetrics: true})
			down := downLimits{tt.err}
			srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.New(&logs), Metrics: m, Limiter: down, Budgets: down}))
			defer srv.Close()
			const n = 3
			for range n {
				if status, text := postJSON(t, srv.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`); status != http.StatusOK {
					t.Fatalf("got %d %s, want 200: a store that is down admits", status, text)
				}
			}
			if got := strings.Count(logs.String(), "unavailable: request admitted unchecked"); got != n*tt.wantLines {
				t.Errorf("%d log lines, want %d:\n%s", got, n*tt.wantLines, logs.String())
			}
			fams, err := m.Registry().Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, f := range fams {
				if f.GetName() == "lumen_limits_unavailable_total" {
					for _, s := range f.GetMetric() {
						got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
					}
				}
			}
			if got["rate"] != n || got["budget"] != n {
				t.Errorf("lumen_limits_unavailable_total = %v, want %d of each store", got, n)
			}
		})
	}
}

// erringStore is a cache store that reports backend errors.
type erringStore struct{ cache.Store }

func (erringStore) Stats() cache.Stats { return cache.Stats{Errors: 7} }

// skippingStore is a cache store that also skipped calls (a Redis store
// backing off).
type skippingStore struct{ erringStore }

func (skippingStore) Skipped() int64 { return 5 }

// lumen_cache_errors_total reports the cache store's Stats.Errors, and the
// calls it skipped (each served uncached as well).
func TestCacheErrorsMetric(t *testing.T) {
	for _, tt := range []struct {
		name  string
		store cache.Store
		want  float64
	}{
		{"errors", erringStore{cache.NewLocal(0, 0)}, 7},
		{"errors and skipped", skippingStore{erringStore{cache.NewLocal(0, 0)}}, 12},
	} {
		t.Run(tt.name, func(t *testing.T) { testCacheErrorsMetric(t, tt.store, tt.want) })
	}
}

func testCacheErrorsMetric(t *testing.T, store cache.Store, want float64) {
	cfg, _, err := config.Parse([]byte("model_list:\n  - {model_name: m, params: {model: mock/m}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(cfg, router.Build)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{NoProcessMetrics: true})
	c := cache.New(store, cache.Options{})
	New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Metrics: m, Cache: c})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "lumen_cache_errors_total" {
			if v := f.GetMetric()[0].GetCounter().GetValue(); v != want {
				t.Errorf("lumen_cache_errors_total = %v, want %v", v, want)
			}
			return
		}
	}
	t.Error("lumen_cache_errors_total missing")
}
