package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// routed parses yaml as a config and builds its router: the two every
// test server starts from.
func routed(t *testing.T, yaml string) (*config.Config, *router.Router) {
	t.Helper()
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(cfg, router.Build)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, r
}

// budgetServer is an open gateway serving yaml, with in-memory budgets.
func budgetServer(t *testing.T, yaml string) *httptest.Server {
	t.Helper()
	cfg, r := routed(t, yaml)
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
			cfg, r := routed(t, yaml)
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
			cfg, r := routed(t, `
limits: {global: {rpm: 100, budget_usd: 10}}
model_list:
  - {model_name: m, params: {model: mock/m}}
`)
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
	cfg, r := routed(t, "model_list:\n  - {model_name: m, params: {model: mock/m}}\n")
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

// perModelUpstream is an OpenAI-compatible fake that counts the calls per
// upstream model and answers "from <model>", as JSON or as a stream.
type perModelUpstream struct {
	mu    sync.Mutex
	calls map[string]int
}

func newPerModelUpstream(t *testing.T) (*perModelUpstream, *httptest.Server) {
	u := &perModelUpstream{calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		model := gjson.GetBytes(body, "model").Str
		u.mu.Lock()
		u.calls[model]++
		u.mu.Unlock()
		if !gjson.GetBytes(body, "stream").Bool() {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"chatcmpl-f","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"from %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`, model, model)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, delta := range []string{"from ", model} {
			fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-f\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", model, delta)
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-f\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\ndata: [DONE]\n\n", model)
	}))
	t.Cleanup(srv.Close)
	return u, srv
}

func (u *perModelUpstream) count() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return maps.Clone(u.calls)
}

// A request whose model group's own rpm/tpm window is full goes to the
// group's fallbacks, each admitted by its own window, rather than being
// refused: the fallback answers and says so in x-lumen-model-group and
// x-lumen-fallback-from, and the cache does not answer for the full group.
// With every fallback full too, and for a group without fallbacks, the
// answer is the 429 rate_limit_exceeded, its Retry-After when the soonest
// of the windows has room, and the other windows give the request back.
func TestFullGroupWindowFallsBack(t *testing.T) {
	type step struct {
		at        int    // seconds on the limiter's clock
		model     string // the model the client asks for
		prompt    string
		status    int
		group     string         // x-lumen-model-group of an answer
		retry     string         // Retry-After of a 429
		upstream  map[string]int // upstream calls so far
		mentioned []string       // a 429's message names these windows
	}
	steps := []step{
		{at: 0, model: "a", prompt: "hi", status: 200, group: "a", upstream: map[string]int{"a-model": 1}},
		// a's window is full: b answers.
		{at: 10, model: "a", prompt: "hi", status: 200, group: "b", upstream: map[string]int{"a-model": 1, "b-model": 1}},
		// Both full: the soonest is a's (free at 60 s).
		{at: 20, model: "a", prompt: "hi", status: 429, retry: "40", upstream: map[string]int{"a-model": 1, "b-model": 1},
			mentioned: []string{`model "a": 1 requests per minute`, `model "b": 1 requests per minute`}},
		{at: 61, model: "a", prompt: "again", status: 200, group: "a", upstream: map[string]int{"a-model": 2, "b-model": 1}},
		// Both full: the soonest is b's (free at 70 s), not a's own.
		{at: 62, model: "a", prompt: "again", status: 429, retry: "8", upstream: map[string]int{"a-model": 2, "b-model": 1}},
		// c has no fallbacks: its full window is a 429 at once.
		{at: 62, model: "c", prompt: "hi", status: 200, group: "c", upstream: map[string]int{"a-model": 2, "b-model": 1, "c-model": 1}},
		{at: 63, model: "c", prompt: "hi", status: 429, retry: "59", upstream: map[string]int{"a-model": 2, "b-model": 1, "c-model": 1},
			mentioned: []string{`model "c": 1 requests per minute`}},
	}
	tests := []struct {
		name   string
		stream bool
		cache  bool
	}{
		{name: "json"},
		{name: "stream", stream: true},
		{name: "json, cache on", cache: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, upSrv := newPerModelUpstream(t)
			yaml := "model_list:\n"
			for _, g := range []string{"a", "b", "c"} {
				yaml += fmt.Sprintf("  - {model_name: %s, params: {model: openai/%s-model, api_base: %q, api_key: sk-x}}\n", g, g, upSrv.URL+"/v1")
			}
			yaml += "router_settings: {num_retries: 0, fallbacks: [{a: [b]}]}\n" +
				"limits: {global: {rpm: 100}, model_groups: {a: {rpm: 1}, b: {rpm: 1}, c: {rpm: 1}}}\n"
			if tt.cache {
				yaml += "cache: {type: local}\n"
			}
			cfg, r := routed(t, yaml)
			start := time.Unix(1_800_000_000, 0)
			var clock atomic.Int64
			lim := limits.NewMemoryLimiter(limits.LimiterOptions{Now: func() time.Time { return start.Add(time.Duration(clock.Load()) * time.Second) }})
			o := Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Limiter: lim}
			if tt.cache {
				o.Cache = cache.New(cache.NewLocal(1<<20, time.Hour), cache.Options{})
			}
			srv := httptest.NewServer(New(o))
			defer srv.Close()
			for i, st := range steps {
				clock.Store(int64(st.at))
				body := fmt.Sprintf(`{"model":%q,"stream":%t,"messages":[{"role":"user","content":%q}]}`, st.model, tt.stream, st.prompt)
				resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				text := string(raw)
				if resp.StatusCode != st.status {
					t.Fatalf("step %d (%s at %ds): %d %s, want %d", i, st.model, st.at, resp.StatusCode, text, st.status)
				}
				if got := up.count(); !maps.Equal(got, st.upstream) {
					t.Errorf("step %d: upstream calls %v, want %v", i, got, st.upstream)
				}
				if st.status != http.StatusOK {
					e := errorOf(t, text)
					if e.Type != "rate_limit_error" || e.Code == nil || *e.Code != "rate_limit_exceeded" || resp.Header.Get("Retry-After") != st.retry {
						t.Errorf("step %d: %s %v, Retry-After %q; want rate_limit_exceeded, Retry-After %s",
							i, e.Type, e.Code, resp.Header.Get("Retry-After"), st.retry)
					}
					for _, m := range st.mentioned {
						if !strings.Contains(e.Message, m) {
							t.Errorf("step %d: message %q does not say %q", i, e.Message, m)
						}
					}
					continue
				}
				from := ""
				if st.group != st.model {
					from = st.model
				}
				if g, f := resp.Header.Get("x-lumen-model-group"), resp.Header.Get("x-lumen-fallback-from"); g != st.group || f != from {
					t.Errorf("step %d: x-lumen-model-group %q, x-lumen-fallback-from %q; want %q, %q", i, g, f, st.group, from)
				}
				want := "from " + st.group + "-model"
				if tt.stream && (!strings.Contains(text, `"content":"from "`) || !strings.Contains(text, `"content":"`+st.group+`-model"`) || !strings.HasSuffix(text, "data: [DONE]\n\n")) ||
					!tt.stream && gjson.Get(text, "choices.0.message.content").Str != want {
					t.Errorf("step %d: answer %s, want %q", i, text, want)
				}
			}
			// The gateway's window keeps the requests answered in the last
			// minute; the ones refused, by admit or by the router, were
			// given back.
			served := 0
			for _, st := range steps {
				if st.status == http.StatusOK && int64(st.at) > clock.Load()-60 {
					served++
				}
			}
			d, _ := lim.Allow(context.Background(), limits.GlobalAccount, limits.Limit{RPM: 1000}, 0)
			if got := 1000 - d.Requests.Remaining - 1; got != served {
				t.Errorf("the gateway's window counts %d requests, want %d (those answered)", got, served)
			}
		})
	}
}

// An auto route whose every candidate's window is full answers 429 with
// nothing sent upstream, and gives the request back to the windows that
// counted it, as admit gives back a request it refuses.
func TestAutoRouteRefusedGivesWindowsBack(t *testing.T) {
	cfg, r := routed(t, `
model_list:
  - {model_name: b, params: {model: mock/b}, model_info: {quality: 0.9}}
  - {model_name: auto-b, auto: {candidates: [b]}}
limits: {global: {rpm: 100}, model_groups: {b: {rpm: 1}}}
`)
	lim := limits.NewMemoryLimiter(limits.LimiterOptions{})
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Limiter: lim}))
	defer srv.Close()
	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests} {
		if status, text := postJSON(t, srv.URL+"/v1/chat/completions", `{"model":"auto-b","messages":[{"role":"user","content":"hi"}]}`); status != want {
			t.Fatalf("request %d: %d %s, want %d", i, status, text, want)
		}
	}
	d, _ := lim.Allow(context.Background(), limits.GlobalAccount, limits.Limit{RPM: 1000}, 0)
	if got := 1000 - d.Requests.Remaining - 1; got != 1 {
		t.Errorf("the gateway's window counts %d requests, want 1 (the one answered)", got)
	}
}

// A request a full group sends to its fallback is held in the fallback's
// budget and charged there, as any fallback is (the group asked for gets
// its hold back); a fallback whose budget cannot take the request is
// passed over, and the request gets the full group's 429.
func TestFullGroupWindowFallbackHoldsBudgets(t *testing.T) {
	for _, tt := range []struct {
		name    string
		bBudget string
		status  int // of the second request
	}{
		{name: "fallback within its budget", bBudget: "100", status: http.StatusOK},
		{name: "fallback out of budget", bBudget: "0.0000001", status: http.StatusTooManyRequests},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, r := routed(t, `
model_list:
  - {model_name: a, params: {model: mock/a}, model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0.001}}
  - {model_name: b, params: {model: mock/b}, model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0.001}}
router_settings: {num_retries: 0, fallbacks: [{a: [b]}]}
limits: {model_groups: {a: {rpm: 1, budget_usd: 100}, b: {budget_usd: `+tt.bBudget+`}}}
`)
			budgets := limits.NewMemoryBudgets(limits.BudgetOptions{})
			srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(),
				Limiter: limits.NewMemoryLimiter(limits.LimiterOptions{}), Budgets: budgets}))
			defer srv.Close()
			spent := func(group string) limits.Status { return budgets.Status(limits.GroupAccount(group), "") }
			const body = `{"model":"a","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
			if status, text := postJSON(t, srv.URL+"/v1/chat/completions", body); status != http.StatusOK {
				t.Fatalf("first request: %d %s", status, text)
			}
			aSpent := spent("a").SpentUSD
			if aSpent <= 0 {
				t.Fatalf("a spent %v after answering", aSpent)
			}
			status, text := postJSON(t, srv.URL+"/v1/chat/completions", body)
			if status != tt.status {
				t.Fatalf("second request: %d %s, want %d", status, text, tt.status)
			}
			a, b := spent("a"), spent("b")
			if a.SpentUSD != aSpent || a.ReservedUSD != 0 || b.ReservedUSD != 0 {
				t.Errorf("a spent %v (was %v), holds %v; b holds %v: want a unchanged and no holds left", a.SpentUSD, aSpent, a.ReservedUSD, b.ReservedUSD)
			}
			if status == http.StatusOK && b.SpentUSD <= 0 {
				t.Errorf("b answered but spent %v", b.SpentUSD)
			}
			if status != http.StatusOK && (b.SpentUSD != 0 || gjson.Get(text, "error.code").Str != "rate_limit_exceeded" ||
				!strings.Contains(gjson.Get(text, "error.message").Str, `model "a"`)) {
				t.Errorf("b out of budget: %s, b spent %v; want a's rate_limit_exceeded and nothing spent", text, b.SpentUSD)
			}
		})
	}
}

// A request whose group fails, its fallback passed over because the
// fallback's model-group budget is spent, gets the group's failure (the
// upstream's 500 stays a 500) with a message that names the fallback and
// its budget, so the client learns a fallback exists and why it did not
// answer; the budget's reset, weeks away, sets no Retry-After on it. The
// fallback's upstream is never called.
func TestFailureNamesFallbackOutOfBudget(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		model := gjson.GetBytes(body, "model").Str
		mu.Lock()
		calls[model]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if model == "a-model" {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}`)
			return
		}
		fmt.Fprintf(w, `{"id":"chatcmpl-f","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"from %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`, model, model)
	}))
	defer up.Close()
	cfg, r := routed(t, fmt.Sprintf(`
model_list:
  - {model_name: a, params: {model: openai/a-model, api_base: %[1]q, api_key: sk-x}}
  - {model_name: b, params: {model: openai/b-model, api_base: %[1]q, api_key: sk-x}, model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0.001}}
router_settings: {num_retries: 1, fallbacks: [{a: [b]}]}
limits: {model_groups: {b: {budget_usd: 0.5, budget_period: monthly}}}
`, up.URL+"/v1"))
	budgets := limits.NewMemoryBudgets(limits.BudgetOptions{})
	// b's budget is spent.
	ctx := context.Background()
	res, err := budgets.Reserve(ctx, limits.GroupAccount("b"), cfg.Limits.ModelGroups["b"].Budget(), 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if err := budgets.Settle(ctx, res, 0.5); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Budgets: budgets}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"a","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("%d %s, want a's 500", resp.StatusCode, raw)
	}
	e := errorOf(t, string(raw))
	for _, want := range []string{"The server had an error", `fallbacks passed over: budget exceeded: model "b" spent $0.5000 of its $0.50 monthly budget`} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not say %q", e.Message, want)
		}
	}
	if e.Type == "budget_exceeded" || resp.Header.Get("Retry-After") != "" {
		t.Errorf("type %q, Retry-After %q: want a's failure, with no Retry-After from b's budget", e.Type, resp.Header.Get("Retry-After"))
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["a-model"] != 2 || calls["b-model"] != 0 {
		t.Errorf("upstream calls %v, want a-model 2 (one retry) and b-model none", calls)
	}
}

// A fallback group's budget holds the worst case of that group's own
// deployments: its price and the most output they write, not the output
// cap of the group the client asked for. Here a writes at most 16 tokens
// and b up to 1,000 at $0.001 each; a request without max_tokens that a
// fails and b answers in full costs b $1.00. Held at a's cap ($0.016),
// 10 concurrent requests all fit in b's $2.50 and spent $10; held at
// b's own, two answer and the others get a's failure naming b's budget.
func TestFallbackHoldUsesItsOwnOutputCap(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		model := gjson.GetBytes(body, "model").Str
		mu.Lock()
		calls[model]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if model == "a-model" {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}`)
			return
		}
		time.Sleep(20 * time.Millisecond) // the requests' holds overlap
		// b writes all it may: 1,000 tokens.
		fmt.Fprintf(w, `{"id":"chatcmpl-f","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"long"},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":1000,"total_tokens":1005}}`, model)
	}))
	defer up.Close()
	cfg, r := routed(t, fmt.Sprintf(`
model_list:
  - {model_name: a, params: {model: openai/a-model, api_base: %[1]q, api_key: sk-x}, model_info: {max_output_tokens: 16, input_cost_per_token: 0, output_cost_per_token: 0.0001}}
  - {model_name: b, params: {model: openai/b-model, api_base: %[1]q, api_key: sk-x}, model_info: {max_output_tokens: 1000, input_cost_per_token: 0, output_cost_per_token: 0.001}}
router_settings: {num_retries: 0, fallbacks: [{a: [b]}]}
limits: {model_groups: {b: {budget_usd: 2.5}}}
`, up.URL+"/v1"))
	budgets := limits.NewMemoryBudgets(limits.BudgetOptions{})
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Budgets: budgets}))
	defer srv.Close()
	tenFallBackWithinBudget(t, srv.URL+"/v1/chat/completions", `{"model":"a","messages":[{"role":"user","content":"write at length"}]}`, &mu, calls, budgets)
}

// A client's x-lumen-tags cannot carry Lumen's own "lumen:" tags, which
// mark the gateway's calls in the ledger; its other tags are kept.
func TestRequestTagsDropReservedPrefix(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r.Header.Set("x-lumen-tags", "team=search, "+PurposeTag(PurposeSemanticCache)+",lumen:anything,feature-x")
	if got, want := requestTags(r), []string{"team=search", "feature-x"}; !slices.Equal(got, want) {
		t.Errorf("requestTags = %q, want %q", got, want)
	}
}

// A fallback group's budget holds the worst case of the request's own
// units, as the requested group's does: for image generation, the images
// at the fallback's price per image. Here a makes images at $0.01 and b
// at $1.00, with $2.50 of budget; a request for one image that a fails
// and b answers costs b $1.00. Held from tokens alone (none priced), 10
// concurrent requests all fit and spent $10; held per image, two answer
// and the others get a's failure naming b's budget.
func TestFallbackHoldPricesItsImages(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		model := gjson.GetBytes(body, "model").Str
		mu.Lock()
		calls[model]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/v1/images/generations" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"message":"Invalid URL","type":"invalid_request_error","param":null,"code":null}}`)
			return
		}
		if model == "a-model" {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}`)
			return
		}
		time.Sleep(20 * time.Millisecond) // the requests' holds overlap
		io.WriteString(w, `{"created":1,"data":[{"b64_json":"iVBORw0KGgo=","revised_prompt":"a pear"}]}`)
	}))
	defer up.Close()
	cfg, r := routed(t, fmt.Sprintf(`
model_list:
  - {model_name: a, params: {model: openai/a-model, api_base: %[1]q, api_key: sk-x}, model_info: {mode: image_generation, output_cost_per_image: 0.01}}
  - {model_name: b, params: {model: openai/b-model, api_base: %[1]q, api_key: sk-x}, model_info: {mode: image_generation, output_cost_per_image: 1}}
router_settings: {num_retries: 0, fallbacks: [{a: [b]}]}
limits: {model_groups: {b: {budget_usd: 2.5}}}
`, up.URL+"/v1"))
	budgets := limits.NewMemoryBudgets(limits.BudgetOptions{})
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Budgets: budgets}))
	defer srv.Close()
	tenFallBackWithinBudget(t, srv.URL+"/v1/images/generations", `{"model":"a","prompt":"a pear"}`, &mu, calls, budgets)
}

// tenFallBackWithinBudget sends 10 concurrent requests to url whose group
// a fails (500) and falls back to b, whose $2.50 budget holds $1.00 of
// worst case per request: 2 are answered, the rest get a's 500 naming b's
// budget, and b spends no more than its budget. calls (guarded by mu)
// counts the upstream calls per model.
func tenFallBackWithinBudget(t *testing.T, url, body string, mu *sync.Mutex, calls map[string]int, budgets *limits.MemoryBudgets) {
	t.Helper()
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			status, text := postJSON(t, url, body)
			mu.Lock()
			defer mu.Unlock()
			statuses[status]++
			if status != http.StatusOK && (status != http.StatusInternalServerError ||
				!strings.Contains(gjson.Get(text, "error.message").Str, `fallbacks passed over: budget exceeded: this request may cost up to $1.0000 and model "b"`)) {
				t.Errorf("%d %s, want 200 or a's 500 naming b's budget", status, text)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	b := budgets.Status(limits.GroupAccount("b"), "")
	if b.SpentUSD > 2.5 || statuses[http.StatusOK] != 2 || calls["b-model"] != 2 || b.ReservedUSD != 0 {
		t.Errorf("10 requests to %s falling back to b: statuses %v, b called %d times, spent $%.4f of its $2.50 (holds $%.4f left); want 2 answered within the budget",
			url, statuses, calls["b-model"], b.SpentUSD, b.ReservedUSD)
	}
}
