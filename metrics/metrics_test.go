package metrics

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs the handler like Prometheus would and parses the text format.
func scrape(t testing.TB, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing scrape: %v", err)
	}
	return fams
}

// sample finds the series of family name whose labels include want
// ("k=v,k=v"). For histograms it returns the sample count and sum.
func sample(fams map[string]*dto.MetricFamily, name, want string) (value, sum float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, 0, false
	}
	wantLabels := map[string]string{}
	if want != "" {
		for _, kv := range strings.Split(want, ",") {
			k, v, _ := strings.Cut(kv, "=")
			wantLabels[k] = v
		}
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(wantLabels) {
			continue
		}
		for k, v := range wantLabels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), 0, true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), 0, true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), m.Histogram.GetSampleSum(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), 0, true
		}
	}
	return 0, 0, false
}

// labelValues returns the sorted distinct values of label in family name.
func labelValues(fams map[string]*dto.MetricFamily, name, label string) []string {
	seen := map[string]bool{}
	if f := fams[name]; f != nil {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == label {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

const route = "model_group=gpt-4o,deployment=azure-eu,provider=azure"

// traffic drives every metric once; calling it again moves them all again.
func traffic(m *Metrics) {
	r := m.Route("gpt-4o", "azure-eu", "azure")
	r.Observe(Outcome{Status: 200, Duration: 1500 * time.Millisecond, TTFT: 300 * time.Millisecond,
		PromptTokens: 100, CompletionTokens: 40, CachedTokens: 30, CostUSD: 0.002})
	r.Observe(Outcome{Status: 429, Duration: 20 * time.Millisecond})
	m.SetCircuits([]Circuit{{Route: r, State: CircuitHalfOpen}})
	g := r.Group()
	g.Retry()
	g.Fallback()
	g.MidstreamFailover()
	g.Hedge()
	g.CacheHit(0.01)
	g.CacheMiss()
	m.GuardrailMatched("pii", "email", "mask")
	g.CacheCoalesced(0.01)
	m.RequestStarted()
	m.StreamStarted()
	m.BudgetRejected("key")
	m.RateLimited("rpm")
	m.LimitsUnavailable("rate")
	m.LimitsUnavailable("budget")
	m.LimitsUnavailable("budget")
	m.ObserveKeyTags([]string{"team-a", "not-allowed"}, 0.5)
	m.ObserveKeyTags(nil, 0.25)
}

func TestMetricsAppearAndMove(t *testing.T) {
	m := New(Options{KeyTags: []string{"team-a"}})
	depth, dropped, failed := 0, uint64(0), uint64(0)
	var mu sync.Mutex
	m.SetLedger(func() int { mu.Lock(); defer mu.Unlock(); return depth }, func() uint64 { mu.Lock(); defer mu.Unlock(); return dropped },
		func() uint64 { mu.Lock(); defer mu.Unlock(); return failed })
	m.SetAudit(func() int { return 2 }, nil, func() uint64 { return 3 })
	m.SetCache(func() uint64 { return 4 })

	before := scrape(t, m)
	if _, _, ok := sample(before, "lumen_requests_total", route+",status=200"); ok {
		t.Fatal("a request series exists before any traffic")
	}
	if v, _, ok := sample(before, "lumen_ledger_queue_depth", ""); !ok || v != 0 {
		t.Fatalf("ledger depth before = %v %v, want 0", v, ok)
	}
	for _, store := range []string{"rate", "budget"} {
		if v, _, ok := sample(before, "lumen_limits_unavailable_total", "store="+store); !ok || v != 0 {
			t.Errorf("lumen_limits_unavailable_total{store=%s} before = %v %v, want 0 (a series to alert on from the start)", store, v, ok)
		}
	}

	tests := []struct {
		name, labels string
		once, twice  float64 // value after one and two rounds of traffic
		sum          float64 // histogram sum after one round (0: not checked)
	}{
		{"lumen_requests_total", route + ",status=200", 1, 2, 0},
		{"lumen_requests_total", route + ",status=429", 1, 2, 0},
		{"lumen_request_duration_seconds", route, 2, 4, 1.52},
		{"lumen_time_to_first_token_seconds", route, 1, 2, 0.3},
		{"lumen_tokens_total", route + ",direction=prompt", 100, 200, 0},
		{"lumen_tokens_total", route + ",direction=completion", 40, 80, 0},
		{"lumen_tokens_total", route + ",direction=cached", 30, 60, 0},
		{"lumen_cost_usd_total", route, 0.002, 0.004, 0},
		{"lumen_deployment_circuit_state", route, 2, 2, 0},
		{"lumen_retries_total", "model_group=gpt-4o", 1, 2, 0},
		{"lumen_fallbacks_total", "model_group=gpt-4o", 1, 2, 0},
		{"lumen_midstream_failovers_total", "model_group=gpt-4o", 1, 2, 0},
		{"lumen_hedges_total", "model_group=gpt-4o", 1, 2, 0},
		{"lumen_cache_hits_total", "model_group=gpt-4o", 1, 2, 0},
		{"lumen_cache_misses_total", "model_group=gpt-4o", 1, 2, 0},
		{"lumen_cache_coalesced_total", "model_group=gpt-4o", 1, 2, 0},
		{"lumen_cache_saved_usd_total", "model_group=gpt-4o", 0.02, 0.04, 0},
		{"lumen_inflight_requests", "", 1, 2, 0},
		{"lumen_inflight_streams", "", 1, 2, 0},
		{"lumen_budget_rejections_total", "scope=key", 1, 2, 0},
		{"lumen_rate_limit_rejections_total", "kind=rpm", 1, 2, 0},
		{"lumen_key_tag_requests_total", "key_tag=team-a", 1, 2, 0},
		{"lumen_key_tag_requests_total", "key_tag=other", 1, 2, 0},
		{"lumen_key_tag_requests_total", "key_tag=none", 1, 2, 0},
		{"lumen_key_tag_cost_usd_total", "key_tag=team-a", 0.5, 1, 0},
		{"lumen_key_tag_cost_usd_total", "key_tag=none", 0.25, 0.5, 0},
		{"lumen_ledger_queue_depth", "", 5, 9, 0},
		{"lumen_ledger_dropped_total", "", 1, 4, 0},
		{"lumen_ledger_failed_total", "", 2, 3, 0},
		{"lumen_audit_queue_depth", "", 2, 2, 0},
		{"lumen_audit_dropped_total", "", 0, 0, 0},
		{"lumen_audit_failed_total", "", 3, 3, 0},
		{"lumen_cache_errors_total", "", 4, 4, 0},
		{"lumen_limits_unavailable_total", "store=rate", 1, 2, 0},
		{"lumen_limits_unavailable_total", "store=budget", 2, 4, 0},
		{"lumen_metrics_label_overflow_total", "label=key_tag", 1, 2, 0},
	}
	traffic(m)
	mu.Lock()
	depth, dropped, failed = 5, 1, 2
	mu.Unlock()
	once := scrape(t, m)
	traffic(m)
	mu.Lock()
	depth, dropped, failed = 9, 4, 3
	mu.Unlock()
	twice := scrape(t, m)
	for _, tt := range tests {
		t.Run(tt.name+"{"+tt.labels+"}", func(t *testing.T) {
			for _, c := range []struct {
				fams map[string]*dto.MetricFamily
				want float64
			}{{once, tt.once}, {twice, tt.twice}} {
				got, sum, ok := sample(c.fams, tt.name, tt.labels)
				if !ok {
					t.Fatalf("series missing from scrape")
				}
				if !near(got, c.want) {
					t.Errorf("value = %v, want %v", got, c.want)
				}
				if tt.sum != 0 && c.want == tt.once && !near(sum, tt.sum) {
					t.Errorf("histogram sum = %v, want %v", sum, tt.sum)
				}
			}
		})
	}
	if _, ok := once["go_goroutines"]; !ok {
		t.Error("Go runtime metrics are missing")
	}
	m.RequestFinished()
	m.StreamFinished()
	after := scrape(t, m)
	if v, _, _ := sample(after, "lumen_inflight_requests", ""); v != 1 {
		t.Errorf("in-flight requests after one finished = %v, want 1", v)
	}
}

func near(a, b float64) bool {
	d := a - b
	return d < 1e-9 && d > -1e-9
}

func TestHistogramBuckets(t *testing.T) {
	m := New(Options{NoProcessMetrics: true})
	m.Route("g", "d", "p").Observe(Outcome{Status: 200, Duration: 3 * time.Millisecond})
	f := scrape(t, m)["lumen_request_duration_seconds"]
	if f == nil {
		t.Fatal("histogram missing")
	}
	var bounds []float64
	for _, b := range f.Metric[0].Histogram.Bucket {
		bounds = append(bounds, b.GetUpperBound())
	}
	if len(bounds) != len(LatencyBuckets)+1 || bounds[0] != 0.005 || bounds[len(bounds)-2] != 120 {
		t.Errorf("buckets %v, want 0.005 … 120, +Inf", bounds)
	}
	if _, ok := scrape(t, m)["go_goroutines"]; ok {
		t.Error("NoProcessMetrics still registers the Go collector")
	}
}

func TestStatusLabel(t *testing.T) {
	tests := []struct {
		code int
		want string
	}{
		{200, "200"}, {201, "201"}, {206, "2xx"}, {301, "3xx"}, {101, "1xx"},
		{400, "400"}, {402, "402"}, {418, "4xx"}, {429, "429"}, {499, "499"},
		{500, "500"}, {502, "502"}, {504, "504"}, {507, "5xx"}, {599, "5xx"},
		{0, "error"}, {-1, "error"}, {99, "error"}, {600, "error"}, {1 << 20, "error"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			if got := StatusLabel(tt.code); got != tt.want {
				t.Errorf("StatusLabel(%d) = %q, want %q", tt.code, got, tt.want)
			}
		})
	}
}

func TestLabelCardinalityIsCapped(t *testing.T) {
	tests := []struct {
		name      string
		observe   func(t *testing.T, m *Metrics)
		family    string
		label     string
		want      []string
		overflows float64
	}{
		{
			name: "model groups past the cap become other",
			observe: func(t *testing.T, m *Metrics) {
				for i := range 10 {
					m.Route(fmt.Sprintf("group-%d", i), "d", "p").Observe(Outcome{Status: 200})
				}
			},
			family: "lumen_requests_total", label: "model_group",
			want:      []string{"group-0", "group-1", "group-2", "other"},
			overflows: 7,
		},
		{
			name: "a request id used as deployment is folded after the cap",
			observe: func(t *testing.T, m *Metrics) {
				for i := range 50 {
					m.Route("g", fmt.Sprintf("req-%08d", i), "p").Observe(Outcome{Status: 200})
				}
			},
			family: "lumen_requests_total", label: "deployment",
			want:      []string{"other", "req-00000000", "req-00000001", "req-00000002"},
			overflows: 47,
		},
		{
			name: "invalid UTF-8 and overlong values are other, empty is none",
			observe: func(t *testing.T, m *Metrics) {
				m.Route("bad\xff", "d", "p").Observe(Outcome{Status: 200})
				m.Route(strings.Repeat("x", 200), "d", "p").Observe(Outcome{Status: 200})
				m.Route("", "d", "p").Observe(Outcome{Status: 200})
			},
			family: "lumen_requests_total", label: "model_group",
			want:      []string{"none", "other"},
			overflows: 2,
		},
		{
			name: "key tags off the allow-list are other, even below the cap",
			observe: func(t *testing.T, m *Metrics) {
				m.ObserveKeyTags([]string{"team-a", "user-typed"}, 0)
				m.ObserveKeyTags([]string{"team-b"}, 0)
			},
			family: "lumen_key_tag_requests_total", label: "key_tag",
			want:      []string{"other", "team-a"},
			overflows: 2,
		},
		{
			name: "AllowKeyTags admits a tag up to the cap",
			observe: func(t *testing.T, m *Metrics) {
				if rej := m.AllowKeyTags("team-b", "team-c", "team-d"); len(rej) != 1 || rej[0] != "team-d" {
					t.Errorf("rejected %v, want [team-d]", rej)
				}
				m.ObserveKeyTags([]string{"team-b", "team-d"}, 0)
			},
			family: "lumen_key_tag_requests_total", label: "key_tag",
			want:      []string{"other", "team-b"},
			overflows: 1,
		},
		{
			name: "statuses are a fixed set",
			observe: func(t *testing.T, m *Metrics) {
				for code := range 1000 {
					m.Route("g", "d", "p").Observe(Outcome{Status: code})
				}
			},
			family: "lumen_requests_total", label: "status",
			want: []string{"1xx", "200", "201", "204", "2xx", "3xx", "400", "401", "402", "403", "404",
				"408", "409", "413", "422", "429", "499", "4xx", "500", "501", "502", "503", "504", "5xx", "error"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{MaxLabelValues: 3, KeyTags: []string{"team-a"}, NoProcessMetrics: true})
			tt.observe(t, m)
			fams := scrape(t, m)
			got := labelValues(fams, tt.family, tt.label)
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("%s values = %v, want %v", tt.label, got, tt.want)
			}
			if v, _, _ := sample(fams, "lumen_metrics_label_overflow_total", "label="+tt.label); v != tt.overflows {
				t.Errorf("overflow count = %v, want %v", v, tt.overflows)
			}
		})
	}
}

func TestRouteCacheStaysBounded(t *testing.T) {
	m := New(Options{MaxLabelValues: 5, NoProcessMetrics: true})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				m.Route(fmt.Sprintf("g%d-%d", w, i), fmt.Sprintf("d%d", i), "p").Observe(Outcome{Status: 200})
				m.Group(fmt.Sprintf("g%d-%d", w, i)).CacheMiss()
				m.KeyTag(fmt.Sprintf("t%d", i)).Observe(1)
			}
		}()
	}
	wg.Wait()
	m.mu.RLock()
	routes, groups, tags := len(m.routes), len(m.groups), len(m.tags)
	m.mu.RUnlock()
	// At most (5+other) groups × (5+other) deployments × 1 provider.
	if routes > 36 || groups > 7 || tags > 2 {
		t.Errorf("caches grew to %d routes, %d groups, %d tags", routes, groups, tags)
	}
	var total float64
	fams := scrape(t, m)
	for _, s := range fams["lumen_requests_total"].Metric {
		total += s.Counter.GetValue()
	}
	if total != 2000 {
		t.Errorf("requests counted = %v, want 2000 (none lost when folded)", total)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	m := New(Options{KeyTags: []string{"team-a"}, NoProcessMetrics: true})
	o := Outcome{Status: 200, Duration: time.Second, TTFT: time.Millisecond, PromptTokens: 10, CompletionTokens: 5, CachedTokens: 1, CostUSD: 0.001}
	r := m.Route("gpt-4o", "azure-eu", "azure")
	r.Observe(o) // resolve the status counter once
	tags := []string{"team-a"}
	m.ObserveKeyTags(tags, 0.1)
	m.Group("gpt-4o").CacheHit(0)
	m.Route("gpt-4o", "", "azure") // "" -> none, cached
	tests := []struct {
		name string
		fn   func()
	}{
		{"Route.Observe", func() { r.Observe(o) }},
		{"Route lookup and Observe", func() { m.Route("gpt-4o", "azure-eu", "azure").Observe(o) }},
		{"Route lookup with empty deployment", func() { m.Route("gpt-4o", "", "azure") }},
		{"Group lookup and CacheHit", func() { m.Group("gpt-4o").CacheHit(0.1) }},
		{"ObserveKeyTags", func() { m.ObserveKeyTags(tags, 0.1) }},
		{"in-flight", func() { m.RequestStarted(); m.RequestFinished() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a := testing.AllocsPerRun(1000, tt.fn); a != 0 {
				t.Errorf("%v allocations per call, want 0", a)
			}
		})
	}
}

var metricName = regexp.MustCompile(`\blumen_[a-z_]+`)

// TestDashboardQueriesExistingMetrics keeps deploy/grafana/lumen.json in
// step with the metrics: every lumen_* name a panel queries must be one this
// package exports.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/lumen.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	m := New(Options{KeyTags: []string{"team-a"}})
	m.SetLedger(func() int { return 1 }, func() uint64 { return 1 }, nil)
	traffic(m)
	fams := scrape(t, m)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range metricName.FindAllString(tg.Expr, -1) {
				base := name
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if strings.HasSuffix(name, suf) && fams[strings.TrimSuffix(name, suf)] != nil {
						base = strings.TrimSuffix(name, suf)
					}
				}
				if fams[base] == nil {
					t.Errorf("panel %q queries %s, which Lumen does not export", p.Title, name)
				}
				used[base] = true
			}
		}
	}
	for _, want := range []string{"lumen_requests_total", "lumen_request_duration_seconds", "lumen_time_to_first_token_seconds",
		"lumen_tokens_total", "lumen_cost_usd_total", "lumen_cache_hits_total", "lumen_deployment_circuit_state", "lumen_ledger_queue_depth"} {
		if !used[want] {
			t.Errorf("dashboard does not chart %s", want)
		}
	}
}

// BenchmarkObserve is the per-request cost with a Route held by the caller.
func BenchmarkObserve(b *testing.B) {
	m := New(Options{NoProcessMetrics: true})
	r := m.Route("gpt-4o", "azure-eu", "azure")
	o := Outcome{Status: 200, Duration: time.Second, TTFT: 200 * time.Millisecond, PromptTokens: 500, CompletionTokens: 200, CachedTokens: 100, CostUSD: 0.003}
	b.ReportAllocs()
	for b.Loop() {
		r.Observe(o)
	}
}

// BenchmarkRequestPath is everything one request does: look up its route
// and group, in-flight up and down, observe, key tags.
func BenchmarkRequestPath(b *testing.B) {
	m := New(Options{KeyTags: []string{"team-a", "prod"}, NoProcessMetrics: true})
	o := Outcome{Status: 200, Duration: time.Second, TTFT: 200 * time.Millisecond, PromptTokens: 500, CompletionTokens: 200, CachedTokens: 100, CostUSD: 0.003}
	tags := []string{"team-a", "prod"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.RequestStarted()
			r := m.Route("gpt-4o", "azure-eu", "azure")
			r.Group().CacheMiss()
			r.Observe(o)
			m.ObserveKeyTags(tags, o.CostUSD)
			m.RequestFinished()
		}
	})
}

// TestSetCircuitsRemovesGone: SetCircuits leaves exactly the deployments
// it is given, and one that comes back gets its gauge again.
func TestSetCircuitsRemovesGone(t *testing.T) {
	m := New(Options{NoProcessMetrics: true})
	a, b := m.Route("g", "a", "mock"), m.Route("g", "b", "mock")
	gauges := func() map[string]float64 {
		out := map[string]float64{}
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != "lumen_deployment_circuit_state" {
				continue
			}
			for _, mt := range f.GetMetric() {
				for _, l := range mt.GetLabel() {
					if l.GetName() == "deployment" {
						out[l.GetValue()] = mt.GetGauge().GetValue()
					}
				}
			}
		}
		return out
	}
	for i, step := range []struct {
		set  []Circuit
		want map[string]float64
	}{
		{[]Circuit{{a, CircuitClosed}, {b, CircuitOpen}}, map[string]float64{"a": 0, "b": 1}},
		{[]Circuit{{a, CircuitHalfOpen}}, map[string]float64{"a": 2}}, // b removed by a reload
		{[]Circuit{{a, CircuitClosed}, {b, CircuitClosed}}, map[string]float64{"a": 0, "b": 0}},
	} {
		m.SetCircuits(step.set)
		if got := gauges(); !maps.Equal(got, step.want) {
			t.Errorf("step %d: circuit gauges %v, want %v", i, got, step.want)
		}
	}
}
