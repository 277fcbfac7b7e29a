package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/ledger"
)

// The mock model is priced per input token only, so a request's worst
// case (what a budget reserves) equals its real cost: a budget of ten
// requests' cost admits exactly ten.
const ledgerConfig = `
general_settings: {master_key: sk-master-test-000000}
model_list:
  - model_name: priced
    litellm_params: {model: mock/priced, mock_latency: 30ms}
    model_info: {id: priced-1, input_cost_per_token: 0.001, output_cost_per_token: 0}
  - model_name: other
    litellm_params: {model: mock/other}
  - model_name: broken
    litellm_params: {model: mock/broken, mock_failure_rate: 1}
router_settings:
  num_retries: 0
  fallbacks: [{broken: [other]}]
ledger: {path: {{DIR}}/lumen.db}
audit: {signing_key: {{DIR}}/audit.key}
`

const master = "sk-master-test-000000"

// ledgerLumen starts Lumen on ledgerConfig plus extra, on a ledger in dir,
// after creating keys there.
func ledgerLumen(t *testing.T, extra string, specs ...ledger.KeySpec) (*lumen, string, []string) {
	t.Helper()
	return ledgerLumenConfig(t, ledgerConfig+extra, specs...)
}

// ledgerLumenModels is ledgerLumen with more model_list entries.
func ledgerLumenModels(t *testing.T, models string, specs ...ledger.KeySpec) (*lumen, string, []string) {
	t.Helper()
	return ledgerLumenConfig(t, strings.Replace(ledgerConfig, "router_settings:", models+"router_settings:", 1), specs...)
}

func ledgerLumenConfig(t *testing.T, cfg string, specs ...ledger.KeySpec) (*lumen, string, []string) {
	t.Helper()
	dir := t.TempDir()
	raws := make([]string, len(specs))
	if len(specs) > 0 {
		db, err := ledger.Open(context.Background(), filepath.Join(dir, "lumen.db"))
		if err != nil {
			t.Fatal(err)
		}
		kr, err := ledger.NewKeyring(context.Background(), db, ledger.KeyringOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range specs {
			if raws[i], _, err = kr.Create(context.Background(), s); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
	}
	return startLumen(t, strings.ReplaceAll(cfg, "{{DIR}}", dir), nil), dir, raws
}

func chatBody(model, text string, extra string) string {
	return `{"model":"` + model + `","messages":[{"role":"user","content":"` + text + `"}]` + extra + `}`
}

// records stops l (draining the ledger writer) and returns the ledger's
// rows, newest first.
func records(t *testing.T, l *lumen, dir string) []ledger.Entry {
	t.Helper()
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	db, err := ledger.Open(context.Background(), filepath.Join(dir, "lumen.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	page, err := db.Requests(context.Background(), ledger.RequestFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

func TestE2EBudgetHoldsUnder200ConcurrentRequests(t *testing.T) {
	body := chatBody("priced", "how much is this", `,"max_tokens":5`)
	// One request's cost: its prompt tokens at $0.001 (the mock counts them
	// the way Lumen estimates them).
	l0, dir0, _ := ledgerLumen(t, "")
	r := rawPost(t, l0, "/v1/chat/completions", master, body)
	if r.status != 200 {
		t.Fatalf("probe: %d %s", r.status, r.text)
	}
	one, err := strconv.ParseFloat(r.header.Get("x-lumen-cost-usd"), 64)
	if err != nil || one <= 0 {
		t.Fatalf("x-lumen-cost-usd = %q", r.header.Get("x-lumen-cost-usd"))
	}
	_ = records(t, l0, dir0)

	budget := 10*one + one/2
	l, dir, raws := ledgerLumen(t, "", ledger.KeySpec{Name: "tight", BudgetUSD: budget})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	types := map[string]int{}
	for range 200 {
		wg.Go(func() {
			r := rawPost(t, l, "/v1/chat/completions", raws[0], body)
			mu.Lock()
			defer mu.Unlock()
			statuses[r.status]++
			if r.status != 200 {
				e, _ := r.json()["error"].(map[string]any)
				typ, _ := e["type"].(string)
				types[typ]++
			}
		})
	}
	wg.Wait()
	if statuses[200] != 10 || statuses[429] != 190 || types["budget_exceeded"] != 190 {
		t.Fatalf("statuses %v, error types %v; want exactly 10 admitted and 190 budget_exceeded", statuses, types)
	}
	// A refused request names the budget and the spend.
	r = rawPost(t, l, "/v1/chat/completions", raws[0], body)
	if r.status != 429 || !strings.Contains(r.text, "budget") || r.header.Get("x-lumen-budget-usd") == "" {
		t.Fatalf("over budget: %d %s %v", r.status, r.text, r.header)
	}
	rows := records(t, l, dir)
	var spent float64
	ok := 0
	for _, e := range rows {
		if e.KeyName != "tight" {
			t.Fatalf("row without the key: %+v", e)
		}
		spent += e.CostUSD
		if e.Status == 200 {
			ok++
		}
	}
	if len(rows) != 201 || ok != 10 || spent > budget {
		t.Fatalf("ledger: %d rows, %d ok, spent $%g of $%g", len(rows), ok, spent, budget)
	}
}

func TestE2EKeyModelsRateLimitsAndCost(t *testing.T) {
	l, dir, raws := ledgerLumen(t, "",
		ledger.KeySpec{Name: "only-other", Models: []string{"other", "broken"}},
		ledger.KeySpec{Name: "slow", RPM: 2},
		ledger.KeySpec{Name: "payer"},
	)
	only, slow, payer := raws[0], raws[1], raws[2]

	// A key restricted to models gets 403 for the others.
	r := rawPost(t, l, "/v1/chat/completions", only, chatBody("priced", "hi", ""))
	if r.status != 403 || r.json()["error"].(map[string]any)["code"] != "model_not_allowed" {
		t.Fatalf("restricted key on another model: %d %s", r.status, r.text)
	}
	// Through a fallback too: broken falls back to other, which it may use…
	r = rawPost(t, l, "/v1/chat/completions", only, chatBody("broken", "hi", ""))
	if r.status != 200 || r.header.Get("x-lumen-fallback-from") != "broken" {
		t.Fatalf("allowed fallback: %d %s", r.status, r.text)
	}
	// …but a per-request fallback list may name only models it may use.
	for _, list := range []string{`,"fallbacks":["priced"]`, `,"models":["other","priced"]`} {
		r = rawPost(t, l, "/v1/chat/completions", only, chatBody("broken", "hi", list))
		if r.status != 403 || !strings.Contains(r.text, `\"priced\"`) {
			t.Fatalf("per-request list %s: %d %s", list, r.status, r.text)
		}
	}

	// rpm: the third request in a minute is refused with OpenAI's headers.
	for i := range 2 {
		r = rawPost(t, l, "/v1/chat/completions", slow, chatBody("other", "hi", ""))
		if r.status != 200 || r.header.Get("x-ratelimit-limit-requests") != "2" {
			t.Fatalf("request %d under rpm: %d %v", i, r.status, r.header)
		}
	}
	r = rawPost(t, l, "/v1/chat/completions", slow, chatBody("other", "hi", ""))
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.header.Get("x-ratelimit-remaining-requests") != "0" ||
		r.json()["error"].(map[string]any)["type"] != "rate_limit_error" {
		t.Fatalf("over rpm: %d %s %v", r.status, r.text, r.header)
	}

	// Cost: a header, and usage.cost when asked for OpenRouter-style.
	r = rawPost(t, l, "/v1/chat/completions", payer, chatBody("priced", "what does it cost", `,"usage":{"include":true}`))
	usage := r.json()["usage"].(map[string]any)
	hdr, _ := strconv.ParseFloat(r.header.Get("x-lumen-cost-usd"), 64)
	if r.status != 200 || hdr <= 0 || usage["cost"] != hdr {
		t.Fatalf("cost: %d header %q usage %v", r.status, r.header.Get("x-lumen-cost-usd"), usage)
	}
	// A stream carries it as a trailer and in the usage chunk.
	req, _ := http.NewRequest("POST", l.URL+"/v1/chat/completions",
		strings.NewReader(chatBody("priced", "stream the cost", `,"stream":true,"usage":{"include":true}`)))
	req.Header.Set("Authorization", "Bearer "+payer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	trailer, _ := strconv.ParseFloat(resp.Trailer.Get("x-lumen-cost-usd"), 64)
	if trailer <= 0 || !bytes.Contains(events, []byte(`"cost":`+strconv.FormatFloat(trailer, 'f', -1, 64))) {
		t.Fatalf("stream cost: trailer %v\n%s", resp.Trailer, events)
	}

	rows := records(t, l, dir)
	byKey := map[string]int{}
	for _, e := range rows {
		byKey[e.KeyName]++
		if e.KeyName == "payer" && e.CostUSD <= 0 {
			t.Fatalf("payer row without cost: %+v", e)
		}
	}
	if byKey["only-other"] != 4 || byKey["slow"] != 3 || byKey["payer"] != 2 {
		t.Fatalf("ledger rows by key: %v", byKey)
	}
	// Keys never reach the database or the log.
	assertNoSecret(t, dir, l.Logs.String(), only, slow, payer, master)
}

// assertNoSecret fails if any secret appears in a file under dir or in logs.
func assertNoSecret(t *testing.T, dir, logs string, secrets ...string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret (%s…)", path, s[:12])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a secret (%s…)", s[:12])
		}
	}
}

func TestE2ECacheHitIsRecordedFree(t *testing.T) {
	l, dir, raws := ledgerLumen(t, "cache: {type: local}\n", ledger.KeySpec{Name: "cached", TPM: 100000})
	body := chatBody("priced", "cache this answer", "")
	first := rawPost(t, l, "/v1/chat/completions", raws[0], body)
	second := rawPost(t, l, "/v1/chat/completions", raws[0], body)
	if first.status != 200 || second.header.Get("x-lumen-cache") != "hit" || second.header.Get("x-lumen-cost-usd") != "0" {
		t.Fatalf("cache: %d %v / %v", first.status, first.header, second.header)
	}
	// The hit used no tokens of the key's tpm: only the miss's remain counted.
	third := rawPost(t, l, "/v1/chat/completions", raws[0], chatBody("priced", "another question", ""))
	used := 100000 - atoi(third.header.Get("x-ratelimit-remaining-tokens"))
	if used <= 0 || used > 2*4096+100 {
		t.Fatalf("tokens counted after a miss and a hit: %d", used)
	}
	rows := records(t, l, dir)
	var hit *ledger.Entry
	for i := range rows {
		if rows[i].CacheHit {
			hit = &rows[i]
		}
	}
	if hit == nil || hit.CostUSD != 0 || hit.SavedUSD <= 0 || hit.Attempts != 0 {
		t.Fatalf("cache hit row: %+v", hit)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func TestE2EMetricsMoveWithTraffic(t *testing.T) {
	l, _, raws := ledgerLumen(t, "", ledger.KeySpec{Name: "tagged", Tags: map[string]string{"team": "search"}})
	scrape := func() map[string]float64 {
		req, _ := http.NewRequest("GET", l.URL+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, "lumen_") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			out[line[:i]] = v
		}
		return out
	}
	before := scrape()
	for range 3 {
		if r := rawPost(t, l, "/v1/chat/completions", master, chatBody("priced", "count me", "")); r.status != 200 {
			t.Fatal(r.text)
		}
	}
	_ = rawPost(t, l, "/v1/chat/completions", master, chatBody("broken", "fall back", ""))
	_ = rawPost(t, l, "/v1/chat/completions", raws[0], chatBody("priced", "tagged", ""))
	after := scrape()
	if after[`lumen_key_tag_requests_total{key_tag="team=search"}`] != 1 || after[`lumen_key_tag_cost_usd_total{key_tag="team=search"}`] <= 0 {
		t.Fatalf("key tag not counted: %v", after)
	}
	key := `lumen_requests_total{deployment="priced-1",model_group="priced",provider="mock",status="200"}`
	if after[key]-before[key] != 4 { // 3 by the master key, 1 by the tagged key
		t.Fatalf("%s: %v -> %v\n%v", key, before[key], after[key], after)
	}
	if after[`lumen_fallbacks_total{model_group="broken"}`] < 1 && after[`lumen_fallbacks_total{model_group="other"}`] < 1 {
		t.Fatalf("no fallback counted: %v", after)
	}
	var cost, circuit bool
	for k, v := range after {
		cost = cost || strings.HasPrefix(k, "lumen_cost_usd_total") && v > 0
		circuit = circuit || strings.HasPrefix(k, "lumen_deployment_circuit_state{")
	}
	if !cost || !circuit {
		t.Fatalf("cost counted %v, circuit gauges %v: %v", cost, circuit, after)
	}
}

func TestE2EAuditChainRecordsRequests(t *testing.T) {
	l, dir, raws := ledgerLumen(t, "", ledger.KeySpec{Name: "audited"})
	for range 3 {
		rawPost(t, l, "/v1/chat/completions", raws[0], chatBody("other", "audit me", ""))
	}
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(context.Background(), audit.Options{Path: filepath.Join(dir, "lumen.db"), SigningKeyPath: filepath.Join(dir, "audit.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var buf bytes.Buffer
	if err := log.Export(context.Background(), &buf, time.Time{}, "jsonl"); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte(`"action":"request"`)); n != 3 {
		t.Fatalf("%d request entries exported:\n%s", n, buf.String())
	}
	if bytes.Contains(buf.Bytes(), []byte("audit me")) {
		t.Fatal("the audit log holds prompt text")
	}
	if _, err := log.Verify(context.Background(), 0); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestE2EZeroRetentionWritesNoText(t *testing.T) {
	const marker = "ZEBRA-MARKER-7731"
	dir := t.TempDir()
	yaml := strings.ReplaceAll(`
general_settings: {master_key: sk-master-test-000000}
model_list:
  - model_name: other
    litellm_params: {model: mock/other}
ledger: {path: {{DIR}}/lumen.db, store_payloads: true}
audit: {signing_key: {{DIR}}/audit.key}
cache: {type: local}
privacy: {zero_retention: true}
`, "{{DIR}}", dir)
	l := startLumen(t, yaml, nil, "--log-level", "debug")
	for _, extra := range []string{"", `,"stream":true`} {
		r := rawPost(t, l, "/v1/chat/completions", master, chatBody("other", "secret plan "+marker, extra))
		if r.status != 200 || !strings.Contains(r.text, marker) {
			t.Fatalf("%d %s", r.status, r.text) // the mock echoes: the answer holds the marker too
		}
		if c := r.header.Get("x-lumen-cache"); c != "" {
			t.Fatalf("zero retention left the cache on: x-lumen-cache %q", c)
		}
	}
	rows := records(t, l, dir)
	if len(rows) != 2 {
		t.Fatalf("%d ledger rows", len(rows))
	}
	assertNoSecret(t, dir, l.Logs.String(), marker)
	assertNoSecret(t, filepath.Dir(l.Config), "", marker)
}

func TestE2EHedgesAreCounted(t *testing.T) {
	l := startLumen(t, `
model_list:
  - model_name: hedged
    litellm_params: {model: mock/slow, mock_latency: 2s, weight: 1000}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}
  - model_name: hedged
    litellm_params: {model: mock/fast, weight: 1}
router_settings: {num_retries: 0, model_group_hedge_after: {hedged: 20ms}}
`, nil)
	for range 3 {
		r := rawPost(t, l, "/v1/chat/completions", "", chatBody("hedged", "race", ""))
		if r.status != 200 {
			t.Fatal(r.text)
		}
		// fast (free) answered; slow, cancelled, saw the prompt: its
		// estimate at slow's price is the request's cost.
		if cost, _ := strconv.ParseFloat(r.header.Get("X-Lumen-Cost-Usd"), 64); cost <= 0 {
			t.Fatalf("cost %q: the cancelled hedge's prompt is not counted", r.header.Get("X-Lumen-Cost-Usd"))
		}
	}
	req, _ := http.NewRequest("GET", l.URL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !bytes.Contains(b, []byte(`lumen_hedges_total{model_group="hedged"} 3`)) {
		t.Fatalf("hedges not counted:\n%s", grepLines(b, "lumen_hedges"))
	}
}

func grepLines(b []byte, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// A tag's budget is shared by the keys carrying it, a model group's by
// every request for it; a refused request holds nothing in the budgets that
// admitted it, and the spend survives a restart (reloaded from the ledger).
func TestE2ETagAndModelGroupBudgets(t *testing.T) {
	body := chatBody("priced", "how much is this", `,"max_tokens":5`)
	l0, dir0, _ := ledgerLumen(t, "")
	r := rawPost(t, l0, "/v1/chat/completions", master, body)
	one, err := strconv.ParseFloat(r.header.Get("x-lumen-cost-usd"), 64)
	if r.status != 200 || err != nil || one <= 0 {
		t.Fatalf("probe: %d %v %s", r.status, r.header, r.text)
	}
	_ = records(t, l0, dir0)

	extra := fmt.Sprintf(`limits:
  tags: {"team=search": {budget_usd: %g, budget_period: monthly}}
  model_groups: {priced: {budget_usd: %g}}
`, 3*one+one/2, 6*one+one/2)
	search := map[string]string{"team": "search"}
	l, dir, raws := ledgerLumen(t, extra,
		ledger.KeySpec{Name: "s1", Tags: search}, ledger.KeySpec{Name: "s2", Tags: search},
		ledger.KeySpec{Name: "ads", Tags: map[string]string{"team": "ads"}})
	s1, s2, ads := raws[0], raws[1], raws[2]
	post := func(key string) rawResponse { return rawPost(t, l, "/v1/chat/completions", key, body) }
	for i, key := range []string{s1, s2, s1, ads} {
		if r := post(key); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.text)
		}
	}
	r = post(s2)
	if r.status != 429 || !strings.Contains(r.text, "the tag team=search") || !strings.Contains(r.text, "monthly budget") ||
		r.header.Get("x-lumen-budget-usd") == "" {
		t.Fatalf("fourth team=search request: %d %s", r.status, r.text)
	}
	// The refused request's hold on s2's own budget was released.
	info := rawGet(t, l.URL, "/admin/keys/s2", master)
	if got := gjsonFloat(info, "usage.reserved_usd"); got != 0 || gjsonFloat(info, "usage.spent_usd") != one {
		t.Fatalf("s2 after the refusal: %s", info)
	}
	// The model group's budget counts every caller: 4 spent, 2 more fit.
	for i := range 2 {
		if r := post(master); r.status != 200 {
			t.Fatalf("master request %d: %d %s", i, r.status, r.text)
		}
	}
	if r := post(ads); r.status != 429 || !strings.Contains(r.text, `model \"priced\"`) {
		t.Fatalf("seventh request for priced: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/chat/completions", ads, chatBody("other", "free", "")); r.status != 200 {
		t.Fatalf("another group: %d %s", r.status, r.text)
	}
	// GET /admin/budgets shows both budgets' live spend.
	list := rawGet(t, l.URL, "/admin/budgets", master)
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if gjson.GetBytes(list, "data.#").Int() != 2 ||
		gjson.GetBytes(list, "data.0.scope").Str != "model_group" || !near(gjsonFloat(list, "data.0.spent_usd"), 6*one) ||
		gjson.GetBytes(list, "data.1.name").Str != "team=search" || !near(gjsonFloat(list, "data.1.spent_usd"), 3*one) ||
		!near(gjsonFloat(list, "data.1.remaining_usd"), one/2) || gjson.GetBytes(list, "data.1.period").Str != "monthly" {
		t.Fatalf("GET /admin/budgets: %s", list)
	}
	rows := records(t, l, dir)
	var spent float64
	for _, e := range rows {
		spent += e.CostUSD
	}
	if len(rows) != 9 || math.Abs(spent-6*one) > 1e-9 {
		t.Fatalf("ledger: %d rows, $%g spent, want 9 and $%g", len(rows), spent, 6*one)
	}

	// After a restart the tag and the group remember what they spent.
	l = startLumen(t, strings.ReplaceAll(ledgerConfig+extra, "{{DIR}}", dir), nil)
	if r := post(s1); r.status != 429 || !strings.Contains(r.text, "the tag team=search") {
		t.Fatalf("team=search after a restart: %d %s", r.status, r.text)
	}
	if r := post(master); r.status != 429 || !strings.Contains(r.text, `model \"priced\"`) {
		t.Fatalf("priced after a restart: %d %s", r.status, r.text)
	}
}

// limits.users gives each end user (the body's user) a budget of their
// own, whatever key sends them, remembered across a restart.
func TestE2EUserBudgets(t *testing.T) {
	l0, dir0, _ := ledgerLumen(t, "")
	r := rawPost(t, l0, "/v1/chat/completions", master, chatBody("priced", "how much is this", `,"max_tokens":5`))
	one, err := strconv.ParseFloat(r.header.Get("x-lumen-cost-usd"), 64)
	if r.status != 200 || err != nil || one <= 0 {
		t.Fatalf("probe: %d %v", r.status, r.header)
	}
	_ = records(t, l0, dir0)

	extra := fmt.Sprintf("limits: {users: {budget_usd: %g, budget_period: daily}}\n", 2*one+one/2)
	l, dir, raws := ledgerLumen(t, extra, ledger.KeySpec{Name: "app"})
	post := func(user string) rawResponse {
		field := ""
		if user != "" {
			field = `,"user":"` + user + `"`
		}
		return rawPost(t, l, "/v1/chat/completions", raws[0], chatBody("priced", "how much is this", `,"max_tokens":5`+field))
	}
	for i, u := range []string{"alice", "alice", "bob", ""} {
		if r := post(u); r.status != 200 {
			t.Fatalf("request %d (%q): %d %s", i, u, r.status, r.text)
		}
	}
	if r := post("alice"); r.status != 429 || !strings.Contains(r.text, `the user \"alice\"`) || !strings.Contains(r.text, "daily budget") {
		t.Fatalf("alice's third request: %d %s", r.status, r.text)
	}
	if r := post("bob"); r.status != 200 {
		t.Fatalf("bob's second request: %d %s", r.status, r.text)
	}
	_ = records(t, l, dir)
	l = startLumen(t, strings.ReplaceAll(ledgerConfig+extra, "{{DIR}}", dir), nil)
	if r := post("alice"); r.status != 429 {
		t.Fatalf("alice after a restart: %d %s", r.status, r.text)
	}
	if r := post("carol"); r.status != 200 {
		t.Fatalf("carol after a restart: %d %s", r.status, r.text)
	}
}

// A tag's rpm is one window for every key carrying the tag.
func TestE2ETagRateLimit(t *testing.T) {
	team := map[string]string{"team": "a"}
	l, _, raws := ledgerLumen(t, "limits: {tags: {\"team=a\": {rpm: 2}}}\n",
		ledger.KeySpec{Name: "a1", Tags: team}, ledger.KeySpec{Name: "a2", Tags: team}, ledger.KeySpec{Name: "b"})
	for i, key := range []string{raws[0], raws[1]} {
		if r := rawPost(t, l, "/v1/chat/completions", key, chatBody("other", "hi", "")); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.text)
		}
	}
	r := rawPost(t, l, "/v1/chat/completions", raws[0], chatBody("other", "hi", ""))
	if r.status != 429 || !strings.Contains(r.text, "rate limit reached for the tag team=a: 2 requests per minute") {
		t.Fatalf("third team=a request: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/chat/completions", raws[2], chatBody("other", "hi", "")); r.status != 200 {
		t.Fatalf("untagged key: %d %s", r.status, r.text)
	}
}

func TestE2EGlobalAndModelGroupLimits(t *testing.T) {
	l := startLumen(t, `
model_list:
  - model_name: a
    litellm_params: {model: mock/a}
  - model_name: b
    litellm_params: {model: mock/b}
limits:
  global: {rpm: 3}
  model_groups: {a: {rpm: 1}}
`, nil)
	post := func(model string) rawResponse {
		return rawPost(t, l, "/v1/chat/completions", "", chatBody(model, "hi", ""))
	}
	if r := post("a"); r.status != 200 {
		t.Fatal(r.text)
	}
	// a's own limit refuses the second a, and the refusal is not counted
	// against the global window.
	r := post("a")
	if r.status != 429 || !strings.Contains(r.text, `model \"a\"`) || r.header.Get("Retry-After") == "" {
		t.Fatalf("second a: %d %s", r.status, r.text)
	}
	for i := range 2 {
		if r := post("b"); r.status != 200 {
			t.Fatalf("b %d: %d %s", i, r.status, r.text)
		}
	}
	r = post("b")
	if r.status != 429 || !strings.Contains(r.text, "this gateway") {
		t.Fatalf("fourth request: %d %s", r.status, r.text)
	}
}

// Headers reach model "auto", and what auto:smart learns survives a
// restart (in the ledger, where an older Lumen's state file beside it is
// merged once).
func TestE2EAutoHeadersAndBanditRestart(t *testing.T) {
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	dir := t.TempDir()
	yaml := strings.ReplaceAll(autoE2EConfig, "general_settings:", "ledger: {path: "+dir+"/lumen.db}\ngeneral_settings:")
	l := startLumen(t, yaml, fake)
	post := func(body string, h map[string]string) rawResponse {
		req, _ := http.NewRequest("POST", l.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-master-test-0000")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return rawResponse{status: resp.StatusCode, header: resp.Header, text: string(b)}
	}
	easy := chatBody("auto", "What is the capital of France?", "")
	if r := post(easy, nil); r.header.Get("x-lumen-selected-model") != "cheap" {
		t.Fatalf("easy prompt: %d %v", r.status, r.header)
	}
	if r := post(easy, map[string]string{"x-lumen-quality-floor": "0.9"}); r.header.Get("x-lumen-selected-model") != "strong" {
		t.Fatalf("x-lumen-quality-floor ignored: %d %v %s", r.status, r.header, r.text)
	}
	r := post(chatBody("auto:smart", "What is the capital of France?", ""), nil)
	if r.status != 200 {
		t.Fatal(r.text)
	}
	id := r.header.Get("x-lumen-request-id")
	fb := rawPost(t, l, "/v1/feedback", "sk-master-test-0000", `{"request_id":"`+id+`","score":0}`)
	if fb.status != 200 {
		t.Fatalf("feedback: %d %s", fb.status, fb.text)
	}
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	arms := func() []ledger.Arm {
		t.Helper()
		db, err := ledger.Open(context.Background(), dir+"/lumen.db")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		arms, err := db.MergeArms(context.Background(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		return arms
	}
	chosen := r.header.Get("x-lumen-selected-model")
	got := arms()
	if len(got) != 1 || got[0].Model != chosen || got[0].Beta != 1 {
		t.Fatalf("bandit state in the ledger after shutdown: %+v (feedback 0 on %s)", got, chosen)
	}

	file := dir + "/lumen.db.bandit.json"
	if err := os.WriteFile(file, []byte(`[{"domain":"`+got[0].Domain+`","model":"`+chosen+`","alpha":7,"beta":0}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := startLumen(t, yaml, fake).stop(); err != nil {
		t.Fatal(err)
	}
	if got := arms(); len(got) != 1 || got[0].Alpha != 7 || got[0].Beta != 1 {
		t.Fatalf("after merging the old file: %+v", got)
	}
	if _, err := os.Stat(file + ".imported"); err != nil {
		t.Errorf("the old file was not set aside: %v", err)
	}
}

// TestE2ERetentionKeepsTotalBudgetsSpend: ledger.retention_days deletes
// old rows even with total budgets (it kept every row while one was set),
// and the budgets still count their spend after a restart: a key's and
// an end user's total budgets spent by rows 60 days old refuse, from the
// spend the prune rolled up.
func TestE2ERetentionKeepsTotalBudgetsSpend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "lumen.db")
	db, err := ledger.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := ledger.NewKeyring(ctx, db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, app, err := kr.Create(ctx, ledger.KeySpec{Name: "app", BudgetUSD: 1, BudgetPeriod: "total"})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().AddDate(0, 0, -60)
	if err := db.Insert(ctx, []ledger.Record{
		{Time: old, RequestID: "old-1", KeyID: app.ID, User: "u1", ModelGroup: "priced", Status: 200, CostUSD: 0.9999},
		{Time: old, RequestID: "old-2", User: "u2", ModelGroup: "priced", Status: 200, CostUSD: 0.5},
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := strings.ReplaceAll(strings.Replace(ledgerConfig, "ledger: {path: {{DIR}}/lumen.db}",
		"ledger: {path: {{DIR}}/lumen.db, retention_days: 30}", 1), "{{DIR}}", dir) +
		"limits: {users: {budget_usd: 1, budget_period: total}, global: {budget_usd: 100, budget_period: total}}\n"

	// The first instance prunes at start.
	a := startLumen(t, cfg, nil)
	db, err = ledger.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitFor(t, func() bool {
		page, err := db.Requests(ctx, ledger.RequestFilter{Limit: 10})
		return err == nil && len(page.Entries) == 0
	})
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	b := startLumen(t, cfg, nil)
	post := func(key, user string) rawResponse {
		return rawPost(t, b, "/v1/chat/completions", key, chatBody("priced", "how much is this", `,"max_tokens":5,"user":"`+user+`"`))
	}
	if r := post(raw, "u3"); r.status != 429 || !strings.Contains(r.text, "this key has $0.0001 left of its $1.00 total budget") {
		t.Errorf("the key after its rows were pruned: %d %s", r.status, r.text)
	}
	if r := post(master, "u1"); r.status != 429 || !strings.Contains(r.text, `the user \"u1\"`) {
		t.Errorf("user u1 after its rows were pruned: %d %s", r.status, r.text)
	}
	if r := post(master, "u2"); r.status != 200 {
		t.Errorf("user u2, half spent: %d %s", r.status, r.text)
	}
}

// Changing a key's budget period keeps what it spent in the new period
// (reloaded from the ledger) rather than starting it at zero.
func TestE2EBudgetPeriodChangeKeepsSpend(t *testing.T) {
	l, _, raws := ledgerLumen(t, "", ledger.KeySpec{Name: "periodic", BudgetUSD: 100})
	for range 3 {
		if r := rawPost(t, l, "/v1/chat/completions", raws[0], chatBody("priced", "spend a little", `,"max_tokens":5`)); r.status != 200 {
			t.Fatal(r.text)
		}
	}
	spent := func() float64 { return gjsonFloat(rawGet(t, l.URL, "/admin/keys/periodic", master), "usage.spent_usd") }
	before := spent()
	if before <= 0 {
		t.Fatalf("spent before: %v", before)
	}
	req, _ := http.NewRequest("PATCH", l.URL+"/admin/keys/periodic", strings.NewReader(`{"budget_period":"monthly"}`))
	req.Header.Set("Authorization", "Bearer "+master)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("patch: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	waitFor(t, func() bool { return spent() == before })
}

func gjsonFloat(b []byte, path string) float64 { return gjson.GetBytes(b, path).Float() }

// /v1/models lists the auto routes, and only the models a restricted key
// may use.
func TestE2EModelsListForKey(t *testing.T) {
	l, _, raws := ledgerLumen(t, "", ledger.KeySpec{Name: "narrow", Models: []string{"other"}})
	list := func(key string) string {
		b := rawGet(t, l.URL, "/v1/models", key)
		var ids []string
		for _, m := range gjson.GetBytes(b, "data.#.id").Array() {
			ids = append(ids, m.Str)
		}
		return strings.Join(ids, ",")
	}
	if got := list(master); got != "broken,other,priced,auto" {
		t.Fatalf("master sees %s", got)
	}
	if got := list(raws[0]); got != "other,auto" {
		t.Fatalf("restricted key sees %s", got)
	}
	// An unknown model's 404 names only the models the key may use.
	want := `The model "gpt-9" does not exist. Available models: "other".`
	if r := rawPost(t, l, "/v1/chat/completions", raws[0], chatBody("gpt-9", "hi", "")); r.status != 404 || gjson.Get(r.text, "error.message").Str != want {
		t.Fatalf("chat with an unknown model: %d %s", r.status, r.text)
	}
	if got := gjson.GetBytes(rawGet(t, l.URL, "/v1/models/gpt-9", raws[0]), "error.message").Str; got != want {
		t.Fatalf("GET /v1/models/gpt-9: %s", got)
	}
	// A group the key may not use does not exist for it; those it lists do.
	if got := gjson.GetBytes(rawGet(t, l.URL, "/v1/models/priced", raws[0]), "error.message").Str; got != strings.ReplaceAll(want, "gpt-9", "priced") {
		t.Fatalf("GET /v1/models/priced with the narrow key: %s", got)
	}
	for _, id := range []string{"other", "auto"} {
		if got := gjson.GetBytes(rawGet(t, l.URL, "/v1/models/"+id, raws[0]), "id").Str; got != id {
			t.Fatalf("GET /v1/models/%s with the narrow key: %q", id, got)
		}
	}
	if got := gjson.GetBytes(rawGet(t, l.URL, "/v1/models/priced", master), "id").Str; got != "priced" {
		t.Fatalf("GET /v1/models/priced with the master key: %q", got)
	}
}

// model "auto" chooses only among the models the key may use; a separate
// metrics.listen address serves /metrics.
func TestE2EAutoHonoursKeyModelsAndMetricsListen(t *testing.T) {
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	dir := t.TempDir()
	db, err := ledger.Open(context.Background(), filepath.Join(dir, "lumen.db"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := ledger.NewKeyring(context.Background(), db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := kr.Create(context.Background(), ledger.KeySpec{Name: "cheap-only", Models: []string{"cheap"}})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	yaml := strings.ReplaceAll(autoE2EConfig, "general_settings:",
		"ledger: {path: "+dir+"/lumen.db}\nmetrics: {listen: \""+metricsAddr+"\"}\ngeneral_settings:")
	l := startLumen(t, yaml, fake)
	r := rawPost(t, l, "/v1/chat/completions", raw, chatBody("auto:best", "Prove the Riemann hypothesis rigorously.", ""))
	if r.status != 200 || r.header.Get("x-lumen-selected-model") != "cheap" {
		t.Fatalf("auto:best for a cheap-only key: %d %v %s", r.status, r.header, r.text)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(b, []byte(`lumen_requests_total{deployment="cheap/0",model_group="auto:best"`)) {
		t.Fatalf("metrics.listen:\n%s", b)
	}
	// Through a name pointed at 127.0.0.1 (DNS rebinding), a web page could
	// read them: a loopback metrics listener answers loopback names only.
	req, _ := http.NewRequest(http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	req.Host = "rebound.example:" + strings.TrimPrefix(metricsAddr, "127.0.0.1:")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || gjson.GetBytes(b, "error.code").Str != "host_not_allowed" {
		t.Fatalf("metrics.listen through a rebound name: %d %s", resp.StatusCode, b)
	}
	if r := rawPost(t, l, "/metrics", "", ""); r.status != 404 && r.status != 405 {
		t.Fatalf("/metrics still on the API port: %d", r.status)
	}
}

// /v1/images/generations: the OpenAI SDK against the mock, priced per image
// (model_info.output_cost_per_image); a key's budget holds n images' worth
// before the call; a streamed request is refused.
func TestE2EImages(t *testing.T) {
	l, _, raws := ledgerLumenModels(t, `  - model_name: painter
    litellm_params: {model: mock/painter}
    model_info: {mode: image_generation, output_cost_per_image: 0.04}
`, ledger.KeySpec{Name: "artist", BudgetUSD: 0.1})
	raw := raws[0]

	c := client(l, raw)
	var resp *http.Response
	img, err := c.Images.Generate(context.Background(), openai.ImageGenerateParams{Model: "painter", Prompt: "a red apple", N: openai.Int(2)},
		option.WithResponseInto(&resp))
	if err != nil || len(img.Data) != 2 || img.Data[0].B64JSON == "" || img.Data[0].RevisedPrompt != "a red apple" {
		t.Fatalf("images: %v %+v", err, img)
	}
	if cost := resp.Header.Get("x-lumen-cost-usd"); cost != "0.08" {
		t.Errorf("cost of 2 images at $0.04: %q", cost)
	}
	// $0.02 left: one more image does not fit.
	r := rawPost(t, l, "/v1/images/generations", raw, `{"model":"painter","prompt":"a pear"}`)
	if r.status != 429 || !strings.Contains(r.text, "budget_exceeded") {
		t.Fatalf("over budget: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/images/generations", master, `{"model":"painter","prompt":"a pear","stream":true}`); r.status != 400 || !strings.Contains(r.text, `"param":"stream"`) {
		t.Fatalf("stream: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/images/generations", master, `{"model":"painter"}`); r.status != 400 || !strings.Contains(r.text, `"param":"prompt"`) {
		t.Fatalf("no prompt: %d %s", r.status, r.text)
	}
}

// /v1/images/edits: the OpenAI SDK's multipart upload against the mock,
// priced per image and held by a key's budget (n images' worth, read from
// the form); relayed to an OpenAI-shaped upstream with the model field set
// to the upstream id and every image intact; bad bodies are 400s.
func TestE2EImageEdits(t *testing.T) {
	type seen struct {
		model, prompt string
		images        [][]byte
	}
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/images/edits" || r.ParseMultipartForm(1<<20) != nil {
			http.Error(w, `{"error":{"message":"bad request"}}`, 400)
			return
		}
		var sn seen
		sn.model, sn.prompt = r.FormValue("model"), r.FormValue("prompt")
		for _, fh := range r.MultipartForm.File["image[]"] {
			f, _ := fh.Open()
			b, _ := io.ReadAll(f)
			f.Close()
			sn.images = append(sn.images, b)
		}
		got <- sn
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"created":1,"data":[{"b64_json":"aGk="}],"usage":{"input_tokens":50,"output_tokens":272,"total_tokens":322}}`)
	}))
	defer up.Close()
	l, _, raws := ledgerLumenModels(t, `  - model_name: painter
    litellm_params: {model: mock/painter}
    model_info: {mode: image_generation, output_cost_per_image: 0.04}
  - model_name: editor
    litellm_params: {model: openai/gpt-image-1, api_base: "`+up.URL+`/v1", api_key: sk-x}
    model_info: {mode: image_generation, output_cost_per_image: 0.05}
`, ledger.KeySpec{Name: "artist", BudgetUSD: 0.1})
	raw := raws[0]
	png := bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 500)

	c := client(l, raw)
	var resp *http.Response
	img, err := c.Images.Edit(context.Background(), openai.ImageEditParams{Model: "painter", Prompt: "make it blue", N: openai.Int(2),
		Image: openai.ImageEditParamsImageUnion{OfFile: openai.File(bytes.NewReader(png), "apple.png", "image/png")}},
		option.WithResponseInto(&resp))
	if err != nil || len(img.Data) != 2 || img.Data[0].B64JSON == "" || img.Data[0].RevisedPrompt != "make it blue" {
		t.Fatalf("edit: %v %+v", err, img)
	}
	if cost := resp.Header.Get("x-lumen-cost-usd"); cost != "0.08" {
		t.Errorf("cost of 2 edited images at $0.04: %q", cost)
	}
	// $0.02 left: the relay's one image ($0.05) does not fit.
	_, err = c.Images.Edit(context.Background(), openai.ImageEditParams{Model: "editor", Prompt: "x",
		Image: openai.ImageEditParamsImageUnion{OfFile: openai.File(bytes.NewReader(png), "apple.png", "image/png")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "budget_exceeded" {
		t.Fatalf("over budget: %v", err)
	}

	c = client(l, master)
	second := append([]byte("GIF8"), png...)
	_, err = c.Images.Edit(context.Background(), openai.ImageEditParams{Model: "editor", Prompt: "put them together",
		Image: openai.ImageEditParamsImageUnion{OfFileArray: []io.Reader{
			openai.File(bytes.NewReader(png), "a.png", "image/png"), openai.File(bytes.NewReader(second), "b.png", "image/png")}}},
		option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	sn := <-got
	if sn.model != "gpt-image-1" || sn.prompt != "put them together" || len(sn.images) != 2 || !bytes.Equal(sn.images[0], png) || !bytes.Equal(sn.images[1], second) {
		t.Fatalf("relay: model %q prompt %q, %d images", sn.model, sn.prompt, len(sn.images))
	}
	if cost := resp.Header.Get("x-lumen-cost-usd"); cost != "0.05" {
		t.Errorf("one relayed image at $0.05: %q", cost)
	}

	form := func(fields map[string]string, image []byte) rawResponse {
		return rawForm(t, l, "/v1/images/edits", master, fields, "image", image)
	}
	for param, r := range map[string]rawResponse{
		"image":  form(map[string]string{"model": "painter", "prompt": "p"}, nil),
		"prompt": form(map[string]string{"model": "painter"}, png),
		"stream": form(map[string]string{"model": "painter", "prompt": "p", "stream": "true"}, png),
		"model":  form(map[string]string{"prompt": "p"}, png),
	} {
		if r.status != 400 || !strings.Contains(r.text, `"param":"`+param+`"`) {
			t.Errorf("no %s: %d %s", param, r.status, r.text)
		}
	}
	if r := rawPost(t, l, "/v1/images/edits", master, `{"model":"painter","prompt":"p"}`); r.status != 400 || !strings.Contains(r.text, "multipart/form-data") {
		t.Errorf("JSON body: %d %s", r.status, r.text)
	}
}

// /v1/audio/speech: the OpenAI SDK against the mock gets audio (a WAV) with
// its media type, priced per character read out; a key's budget holds the
// input's characters before the call.
func TestE2ESpeech(t *testing.T) {
	l, _, raws := ledgerLumenModels(t, `  - model_name: voice
    litellm_params: {model: mock/voice}
    model_info: {mode: audio_speech, input_cost_per_character: 0.00001}
`, ledger.KeySpec{Name: "reader", BudgetUSD: 0.001})
	raw := raws[0]

	c := client(l, raw)
	resp, err := c.Audio.Speech.New(context.Background(), openai.AudioSpeechNewParams{Model: "voice", Input: "Hello from Lumen.",
		Voice: openai.AudioSpeechNewParamsVoiceUnion{OfString: openai.String("alloy")}})
	if err != nil {
		t.Fatal(err)
	}
	audio, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "audio/wav" || !bytes.HasPrefix(audio, []byte("RIFF")) || len(audio) != 844 {
		t.Fatalf("speech: %s, %d bytes", resp.Header.Get("Content-Type"), len(audio))
	}
	if cost := resp.Header.Get("x-lumen-cost-usd"); cost != "0.00017" {
		t.Errorf("17 characters at $0.00001: %q", cost)
	}
	// $0.00083 left: 100 characters ($0.001) do not fit.
	r := rawPost(t, l, "/v1/audio/speech", raw, `{"model":"voice","voice":"alloy","input":"`+strings.Repeat("a", 100)+`"}`)
	if r.status != 429 || !strings.Contains(r.text, "budget_exceeded") {
		t.Fatalf("over budget: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/audio/speech", master, `{"model":"voice","voice":"alloy"}`); r.status != 400 || !strings.Contains(r.text, `"param":"input"`) {
		t.Fatalf("no input: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/audio/speech", master, `{"model":"voice","voice":"alloy","input":"hi","stream_format":"sse"}`); r.status != 400 || !strings.Contains(r.text, `"param":"stream_format"`) {
		t.Fatalf("sse: %d %s", r.status, r.text)
	}
}

// TestE2EShutdownRecordsCutOffRequests: requests still waiting on a hanging
// upstream when the grace period ends, and streams stalled halfway, are cut
// off by the gateway: the waiting clients get a 503 gateway_shutting_down,
// the streams an error event, and every one of them still gets its ledger
// row (503, not a client's 499) and audit entry before serve returns. A logging_only guardrail masks each request's copy
// for the ledger once it is cut off, which on a long prompt takes a while:
// a shutdown that closed the ledger without waiting for the handlers loses
// some of their records on every run, not only when it loses a race.
func TestE2EShutdownRecordsCutOffRequests(t *testing.T) {
	fake := newFakeOpenAI(t)
	dir := t.TempDir()
	cfg := strings.ReplaceAll(`
model_list:
  - model_name: slow
    litellm_params: {model: openai/hang, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456, timeout: 600}
  - model_name: paused
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
router_settings: {num_retries: 0}
server: {grace_period: 300ms}
ledger: {path: {{DIR}}/lumen.db}
audit: {signing_key: {{DIR}}/audit.key}
guardrails:
  - guardrail_name: quiet-logs
    litellm_params:
      guardrail: litellm_content_filter
      mode: logging_only
      default_on: true
      patterns: [{pattern_type: prebuilt, pattern_name: pii, action: MASK}]
`, "{{DIR}}", dir)
	l := startLumen(t, cfg, fake)
	c := client(l, "unused")
	const waiting, streaming = 5, 3
	prompt := strings.Repeat("write to jane@corp.example.com or call 555-867-5309. ", 300)
	errs := make(chan error, waiting+streaming)
	for range waiting {
		go func() {
			_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "slow", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
			errs <- err
		}()
	}
	var streamed sync.WaitGroup
	for range streaming {
		streamed.Add(1)
		go func() {
			s := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
				Model: "paused", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
			s.Next() // the stream has started; the fake pauses after 3 chunks
			streamed.Done()
			for s.Next() {
			}
			errs <- s.Err()
		}()
	}
	waitFor(t, func() bool { return fake.callsTo("hang") == waiting })
	streamed.Wait()
	rows := records(t, l, dir) // stops Lumen: the grace period ends with all of them running
	for range waiting + streaming {
		err := <-errs
		var apiErr *openai.Error
		switch {
		case err == nil:
			t.Error("a request cut off by shutdown ended as if complete")
		case errors.As(err, &apiErr):
			if apiErr.StatusCode != 503 || apiErr.Type != "gateway_shutting_down" {
				t.Errorf("a waiting request cut off by shutdown: %d %s", apiErr.StatusCode, apiErr.RawJSON())
			}
		case !strings.Contains(err.Error(), "gateway_shutting_down"):
			t.Errorf("a stream cut off by shutdown ended with %v, not the gateway's error event", err)
		}
	}
	statuses := map[string]int{}
	for _, e := range rows {
		statuses[fmt.Sprint(e.Status, " ", e.ErrorType)]++
	}
	if n := waiting + streaming; len(rows) != n || statuses["503 gateway_shutting_down"] != n {
		t.Fatalf("%d requests cut off by shutdown, %d ledger rows (statuses %v)\n%s", n, len(rows), statuses, l.Logs)
	}
	if logs := l.Logs.String(); strings.Contains(logs, "dropped") || strings.Contains(logs, "abandoned") {
		t.Fatalf("records lost at shutdown:\n%s", logs)
	}
	log, err := audit.Open(context.Background(), audit.Options{Path: filepath.Join(dir, "lumen.db"), SigningKeyPath: filepath.Join(dir, "audit.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var buf bytes.Buffer
	if err := log.Export(context.Background(), &buf, time.Time{}, "jsonl"); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(buf.Bytes(), []byte(`"action":"request"`)); got != waiting+streaming {
		t.Fatalf("%d requests cut off by shutdown, %d audit entries:\n%s", waiting+streaming, got, buf.String())
	}
	if got := bytes.Count(buf.Bytes(), []byte(`"status":503`)); got != waiting+streaming {
		t.Fatalf("%d requests cut off by shutdown, %d audit entries with status 503:\n%s", waiting+streaming, got, buf.String())
	}
	rep, err := log.Verify(context.Background(), 0)
	if err != nil || rep.Entries != waiting+streaming || rep.Unsigned != 0 {
		t.Fatalf("verify: %+v, %v; want %d entries, all signed", rep, err, waiting+streaming)
	}
}

// TestE2EBudgetHoldCoversFallbacks: a request whose group may fall back to
// a dearer one holds the dearer worst case in the key's budget, so
// concurrent requests that all fall back cannot spend past it: each
// request to "cheap" (which fails) is answered by "dear" at ten times
// the price.
func TestE2EBudgetHoldCoversFallbacks(t *testing.T) {
	cfg := `
general_settings: {master_key: sk-master-test-000000}
model_list:
  - model_name: cheap
    litellm_params: {model: mock/cheap, mock_failure_rate: 1}
    model_info: {input_cost_per_token: 0.0001, output_cost_per_token: 0}
  - model_name: dear
    litellm_params: {model: mock/dear, mock_latency: 50ms}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0}
router_settings:
  num_retries: 0
  fallbacks: [{cheap: [dear]}]
ledger: {path: {{DIR}}/lumen.db}
audit: {enabled: false}
`
	const budget = 0.05
	l, dir, raws := ledgerLumenConfig(t, cfg, ledger.KeySpec{Name: "fb", BudgetUSD: budget, BudgetPeriod: "total"})
	body := chatBody("cheap", "how much is this", `,"max_tokens":5`)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 20 {
		wg.Go(func() {
			r := rawPost(t, l, "/v1/chat/completions", raws[0], body)
			mu.Lock()
			defer mu.Unlock()
			statuses[r.status]++
			if r.status != 200 && (r.status != 429 || !strings.Contains(r.text, "budget_exceeded")) {
				t.Errorf("%d %s", r.status, r.text)
			}
		})
	}
	wg.Wait()
	var spent float64
	for _, e := range records(t, l, dir) {
		spent += e.CostUSD
	}
	// Each holds and costs $0.011 at dear's price (11 prompt tokens, as
	// the mock counts them): 4 fit in $0.05. Holding cheap's $0.0011
	// admitted all 20, which spent $0.22.
	if spent > budget || statuses[200] != 4 || statuses[429] != 16 {
		t.Errorf("20 concurrent requests falling back to a group 10 times dearer: statuses %v, spent $%.4f of a $%.2f budget; want 4 admitted and at most the budget spent",
			statuses, spent, budget)
	}
}

// A model group's budget counts the requests it answers as a fallback or
// as an auto route's choice, not only those that name it: once spent, the
// router passes it over, and an auto route left without a group is
// refused with its budget's error.
func TestE2EModelGroupBudgetCoversFallbacksAndAuto(t *testing.T) {
	body := func(model string) string { return chatBody(model, "how much is this", `,"max_tokens":5`) }
	l0, dir0, _ := ledgerLumen(t, "")
	r := rawPost(t, l0, "/v1/chat/completions", master, body("priced"))
	one, err := strconv.ParseFloat(r.header.Get("x-lumen-cost-usd"), 64)
	if r.status != 200 || err != nil || one <= 0 {
		t.Fatalf("probe: %d %v %s", r.status, r.header, r.text)
	}
	_ = records(t, l0, dir0)

	cfg := strings.Replace(ledgerConfig, "  fallbacks: [{broken: [other]}]", "  fallbacks: [{broken: [other]}, {broken2: [priced]}]", 1) +
		fmt.Sprintf("limits:\n  model_groups: {priced: {budget_usd: %g}}\n", 2*one+one/2)
	cfg = strings.Replace(cfg, "router_settings:", `  - model_name: broken2
    litellm_params: {model: mock/broken2, mock_failure_rate: 1}
  - model_name: auto-priced
    auto: {candidates: [priced]}
router_settings:`, 1)
	cfg = strings.Replace(cfg, "input_cost_per_token: 0.001, output_cost_per_token: 0}", "input_cost_per_token: 0.001, output_cost_per_token: 0, quality: 0.9}", 1)
	l, dir, _ := ledgerLumenConfig(t, cfg)
	for i := range 2 {
		r := rawPost(t, l, "/v1/chat/completions", master, body("broken2"))
		if r.status != 200 || r.header.Get("x-lumen-fallback-from") != "broken2" {
			t.Fatalf("fallback %d: %d %s %s", i, r.status, r.header, r.text)
		}
	}
	// priced has half a request left: the fallback is passed over.
	if r := rawPost(t, l, "/v1/chat/completions", master, body("broken2")); r.status == 200 {
		t.Fatalf("a third fallback to priced was served past its budget: %s", r.header)
	}
	// An auto route whose only candidate is out of budget.
	if r := rawPost(t, l, "/v1/chat/completions", master, body("auto-priced")); r.status != 429 || !strings.Contains(r.text, `model \"priced\"`) {
		t.Fatalf("auto over a spent group: %d %s", r.status, r.text)
	}
	list := rawGet(t, l.URL, "/admin/budgets", master)
	if got := gjsonFloat(list, "data.0.spent_usd"); math.Abs(got-2*one) > 1e-9 || gjson.GetBytes(list, "data.0.name").Str != "priced" {
		t.Fatalf("GET /admin/budgets: %s", list)
	}
	var spent float64
	for _, e := range records(t, l, dir) {
		if e.Deployment == "priced-1" {
			spent += e.CostUSD
			if e.ModelGroup != "priced" {
				t.Errorf("a request answered by priced is recorded under %q", e.ModelGroup)
			}
		}
	}
	if math.Abs(spent-2*one) > 1e-9 {
		t.Fatalf("the ledger has $%g answered by priced, want $%g (its budget is $%g)", spent, 2*one, 2*one+one/2)
	}
	// After a restart the budget is reloaded from the ledger with what the
	// fallbacks spent: the next one is passed over too.
	l = startLumen(t, strings.ReplaceAll(cfg, "{{DIR}}", dir), nil)
	if got := gjsonFloat(rawGet(t, l.URL, "/admin/budgets", master), "data.0.spent_usd"); math.Abs(got-2*one) > 1e-9 {
		t.Fatalf("priced's spend after a restart: $%g, want $%g", got, 2*one)
	}
	if r := rawPost(t, l, "/v1/chat/completions", master, body("broken2")); r.status == 200 {
		t.Fatalf("after a restart a fallback to priced was served past its budget: %s", r.header)
	}
}

// patchKey sends PATCH /admin/keys/{ref} with body and returns the answer.
func patchKey(t *testing.T, l *lumen, ref, body string) rawResponse {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, l.URL+"/admin/keys/"+ref, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return rawDo(t, req, master)
}

// A key made and spent at runtime whose budget period then changes, by
// the admin API or by lumen keys update: the live spend is at once what
// the ledger holds for the key in the new window, not zero (so the key
// cannot spend its budget again) and not the old window's.
func TestE2EBudgetPeriodChangeReloadsSpendAtOnce(t *testing.T) {
	l, dir, _ := ledgerLumen(t, "")
	body := chatBody("priced", "spend a little", `,"max_tokens":5`)
	probe := rawPost(t, l, "/v1/chat/completions", master, body)
	one, err := strconv.ParseFloat(probe.header.Get("x-lumen-cost-usd"), 64)
	if probe.status != 200 || err != nil || one <= 0 {
		t.Fatalf("probe: %d %v", probe.status, probe.header)
	}
	created := rawPost(t, l, "/admin/keys", master, fmt.Sprintf(`{"name":"pc","budget_usd":%g,"budget_period":"daily"}`, 2*one+one/2))
	raw, id := gjson.Get(created.text, "key").Str, gjson.Get(created.text, "id").Str
	if created.status != 201 || raw == "" {
		t.Fatalf("create: %d %s", created.status, created.text)
	}
	statuses := func() string {
		var got []string
		for range 4 {
			got = append(got, strconv.Itoa(rawPost(t, l, "/v1/chat/completions", raw, body).status))
		}
		return strings.Join(got, " ")
	}
	if got := statuses(); got != "200 200 429 429" {
		t.Fatalf("the daily budget: %s", got)
	}
	// Spend of the key in no day, week or month but this one's total.
	db, err := ledger.Open(context.Background(), filepath.Join(dir, "lumen.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := ledger.Record{Time: time.Now().AddDate(-1, 0, -1), RequestID: "old", KeyID: id, ModelGroup: "priced", Status: 200, CostUSD: one / 4}
	if err := db.Insert(context.Background(), []ledger.Record{old}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	spent := func(r []byte) float64 { return gjson.GetBytes(r, "usage.spent_usd").Float() }
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }

	r := patchKey(t, l, "pc", `{"budget_period":"monthly"}`)
	if r.status != 200 || gjson.Get(r.text, "usage.period").Str != "monthly" || !near(spent([]byte(r.text)), 2*one) {
		t.Fatalf("PATCH budget_period monthly: %d %s, want spent_usd %v", r.status, r.text, 2*one)
	}
	if got := statuses(); got != "429 429 429 429" {
		t.Fatalf("after the change to monthly: %s", got)
	}

	// The same change made by the CLI reaches the running server.
	e := &ledgerEnv{config: l.Config}
	e.mustRun(t, "keys", "update", "pc", "--budget-period", "total")
	waitFor(t, func() bool { return near(spent(rawGet(t, l.URL, "/admin/keys/pc", master)), 2*one+one/4) })
	if got := statuses(); got != "429 429 429 429" {
		t.Fatalf("after lumen keys update --budget-period total: %s", got)
	}

	r = patchKey(t, l, "pc", `{"budget_period":"daily"}`)
	if r.status != 200 || !near(spent([]byte(r.text)), 2*one) {
		t.Fatalf("PATCH budget_period daily: %d %s, want spent_usd %v", r.status, r.text, 2*one)
	}
}

// lumen spend and GET /admin/spend give the same rows on the same ledger:
// both cut days and read dates in ledger.budget_timezone. At 04:50 UTC on
// 2026-11-28 it is still the 27th in Lima.
func TestE2ESpendAndAdminSpendAgreeOnDays(t *testing.T) {
	cfg := strings.Replace(ledgerConfig, "ledger: {path: {{DIR}}/lumen.db}", "ledger: {path: {{DIR}}/lumen.db, budget_timezone: America/Lima}", 1)
	l, dir, _ := ledgerLumenConfig(t, cfg)
	db, err := ledger.Open(context.Background(), filepath.Join(dir, "lumen.db"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 28, 4, 50, 0, 0, time.UTC)
	var recs []ledger.Record
	for i := range 25 {
		recs = append(recs, ledger.Record{Time: at.Add(time.Duration(i) * time.Second), RequestID: strconv.Itoa(i), ModelGroup: "priced", Status: 200, CostUSD: 0.5})
	}
	if err := db.Insert(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	db.Close()
	e := &ledgerEnv{config: l.Config}
	for _, q := range []struct{ cli, api string }{
		{"--by day", "by=day"},
		{"--by day --since 2026-11-28", "by=day&since=2026-11-28"},
		{"--by day --since 2026-11-27 --until 2026-11-28", "by=day&since=2026-11-27&until=2026-11-28"},
		{"--by model --until 2026-11-28", "by=model&until=2026-11-28"},
	} {
		cli := spendRows(t, e, strings.Fields(q.cli)...).Rows
		api := gjson.GetBytes(rawGet(t, l.URL, "/admin/spend?"+q.api, master), "data").Raw
		var got []ledger.Row
		if err := json.Unmarshal([]byte(api), &got); err != nil {
			t.Fatalf("%s: %v", api, err)
		}
		if !slices.Equal(cli, got) {
			t.Errorf("lumen spend %s: %+v\nGET /admin/spend?%s: %+v", q.cli, cli, q.api, got)
		}
	}
	if rows := spendRows(t, e, "--by", "day").Rows; len(rows) != 1 || rows[0].Group != "2026-11-27" || rows[0].Requests != 25 {
		t.Errorf("lumen spend --by day: %+v, want 25 requests on 2026-11-27", rows)
	}
}
