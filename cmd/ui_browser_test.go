package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lumengw/lumen/internal/syncbuf"
)

// browserYAML is a gateway with a master key, a ledger and an audit log in
// the test's directory, and a mock model priced so that every request
// costs something: $0.01 per input and $0.02 per output token.
const browserYAML = `
model_list:
  - model_name: demo
    params: {model: mock/demo}
    model_info: {id: demo-mock, input_cost_per_token: 0.01, output_cost_per_token: 0.02}
general_settings:
  master_key: sk-master-browser-0000
limits:
  model_groups: {demo: {budget_usd: 1000, budget_period: monthly}}
ledger:
  path: {{DIR}}/lumen.db
audit:
  path: {{DIR}}/audit.db
  signing_key: {{DIR}}/audit.key
`

const browserMaster = "sk-master-browser-0000"

// chromiumFor returns the Chromium to drive: LUMEN_TEST_CHROMIUM
// (scripts/chromium.sh installs Debian's and prints the export). Without it
// the test skips on a developer machine and fails in CI, where skipping
// would hide that the dashboard went untested.
func chromiumFor(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("LUMEN_TEST_CHROMIUM")
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("LUMEN_TEST_CHROMIUM is not set in CI: run eval \"$(scripts/chromium.sh)\" first (scripts/test.sh does)")
		}
		t.Skip("LUMEN_TEST_CHROMIUM is not set: run eval \"$(scripts/chromium.sh)\" to run the dashboard's browser test")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("LUMEN_TEST_CHROMIUM=%s is not an executable: %v", bin, err)
	}
	return bin
}

// artifactsDir is where screenshots go: $LUMEN_ARTIFACTS, else the test's
// temporary directory.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LUMEN_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserChat sends one chat completion with key and returns the status.
func browserChat(t *testing.T, base, key, text string) int {
	t.Helper()
	body := fmt.Sprintf(`{"model":"demo","max_tokens":16,"messages":[{"role":"user","content":%q}]}`, text)
	req, err := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// ledgerRequests asks the admin API how many requests the ledger holds for
// the last week. The writer batches in the background, so callers poll.
func ledgerRequests(t *testing.T, base string) (int64, float64) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/admin/spend?by=day&since=7d", nil)
	req.Header.Set("Authorization", "Bearer "+browserMaster)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /admin/spend: %d %s (lumen serve must pass its ledger to server.Options.Reports)", resp.StatusCode, raw)
	}
	var out struct {
		Data []struct {
			Requests int64   `json:"requests"`
			CostUSD  float64 `json:"cost_usd"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	var n int64
	var usd float64
	for _, d := range out.Data {
		n += d.Requests
		usd += d.CostUSD
	}
	return n, usd
}

// TestDashboardInBrowser drives the dashboard in headless Chromium as a
// person would: requests go through a real `lumen serve`, then someone logs
// in with the master key, sees them in the spend chart and tables, creates a
// key, reads its secret off the page, revokes it, and the gateway refuses
// that key from then on. Screenshots are saved to $LUMEN_ARTIFACTS.
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumFor(t)
	artifacts := artifactsDir(t)
	dir := t.TempDir()
	l := startLumen(t, strings.ReplaceAll(browserYAML, "{{DIR}}", dir), nil)

	const sent = 3
	for i := range sent {
		if status := browserChat(t, l.URL, browserMaster, fmt.Sprintf("browser test request %d", i)); status != 200 {
			t.Fatalf("chat %d: status %d\n%s", i, status, l.Logs)
		}
	}
	// Wait for the ledger writer's batch (it flushes within its interval).
	deadline := time.Now().Add(15 * time.Second)
	var recorded int64
	var cost float64
	for {
		if recorded, cost = ledgerRequests(t, l.URL); recorded >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if recorded != sent || cost <= 0 {
		t.Fatalf("the ledger holds %d requests costing $%v, want %d costing more than 0 (is the ledger wired into lumen serve?)", recorded, cost, sent)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in a container has no user namespace for the sandbox
		chromedp.DisableGPU,
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	// The deadline bounds the whole browser session: it stops Chromium.
	timeout, cancelTimeout := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelTimeout()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(timeout, opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf),
		chromedp.WithBrowserOption(chromedp.WithConsolef(t.Logf))) // the page's console errors land in the test log
	defer cancel()

	b := &browser{t: t, ctx: ctx, artifacts: artifacts, logs: l.Logs}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	// Log in.
	b.do("open the dashboard",
		chromedp.Navigate(l.URL+"/ui"),
		chromedp.WaitVisible(css("#master-key")))
	b.do("a wrong key is refused",
		chromedp.SendKeys(css("#master-key"), "sk-not-the-master"),
		chromedp.Click(css("#login-btn")),
		chromedp.WaitVisible(css("#login-error:not(:empty)")))
	b.do("log in with the master key",
		chromedp.SendKeys(css("#master-key"), browserMaster),
		chromedp.Click(css("#login-btn")),
		chromedp.WaitVisible(css(`body[data-loaded="overview"]`)))

	// The spend chart and tables show the requests just made.
	type chartSums struct {
		Requests float64 `json:"requests"`
		Cost     float64 `json:"cost"`
		Tall     int     `json:"tall"`
	}
	chart := browserValue(b, "read the spend chart", chromedp.Evaluate[chartSums](`(() => {
		const bars = [...document.querySelectorAll("#spend-chart rect.bar")];
		return {
			requests: bars.reduce((s, b) => s + Number(b.dataset.requests), 0),
			cost: bars.reduce((s, b) => s + Number(b.dataset.cost), 0),
			tall: bars.filter((b) => Number(b.getAttribute("height")) > 1).length,
		};
	})()`))
	if int64(chart.Requests) != sent || chart.Cost <= 0 || chart.Tall != 1 {
		t.Errorf("spend chart: %+v, want %d requests with a cost on one tall bar", chart, sent)
	}
	requestsStat := browserValue(b, "read the requests figure", chromedp.Text(css("#stat-requests")))
	modelRow := browserValue(b, "read the model table", chromedp.Text(css(`#spend-by-model tr[data-group="demo"]`)))
	if requestsStat != fmt.Sprint(sent) || !strings.Contains(modelRow, "demo") {
		t.Errorf("overview: requests %q, model row %q", requestsStat, modelRow)
	}
	b.screenshot("dashboard-overview.png")

	// The recent requests page lists them (metadata only).
	b.do("open recent requests",
		chromedp.Click(css(`a[data-page="requests"]`)),
		chromedp.WaitVisible(css(`body[data-loaded="requests"]`)))
	rows := browserValue(b, "count requests", chromedp.Evaluate[int](`document.querySelectorAll("#requests-table tr[data-request]").length`))
	if rows != sent {
		t.Errorf("requests page lists %d requests, want %d", rows, sent)
	}

	// The deployments page shows the mock deployment and its circuit.
	b.do("open deployments",
		chromedp.Click(css(`a[data-page="health"]`)),
		chromedp.WaitVisible(css(`body[data-loaded="health"]`)))
	circuit := browserValue(b, "read the circuit", chromedp.Text(css(`#health-table tr[data-deployment="demo-mock"] .pill`)))
	if circuit != "closed" {
		t.Errorf("deployment demo-mock shows circuit %q, want closed", circuit)
	}

	// Create a key and read its secret off the page.
	b.do("create a key",
		chromedp.Click(css(`a[data-page="keys"]`)),
		chromedp.WaitVisible(css(`body[data-loaded="keys"]`)),
		chromedp.SendKeys(css("#key-name"), "browser-test"),
		chromedp.SendKeys(css("#key-budget"), "1"),
		chromedp.Click(css("#create-key")),
		chromedp.WaitVisible(css("#new-secret")),
		chromedp.WaitVisible(css(`#keys-table tr[data-key-name="browser-test"][data-status="live"]`)))
	// The shared budgets card shows the model group's budget and what the
	// requests above spent of it.
	budget := browserValue(b, "read the shared budgets", chromedp.Text(css(`#budgets-table tr[data-budget="model_group:demo"]`)))
	if want := fmt.Sprintf("model group\tdemo\t$1,000.00 monthly\t$%.2f\t", cost); !strings.HasPrefix(budget, want) {
		t.Errorf("shared budget row %q, want it to start %q", budget, want)
	}
	secret := strings.TrimSpace(browserValue(b, "read the secret", chromedp.Text(css("#new-secret"))))
	if !strings.HasPrefix(secret, "lumen-sk-") {
		t.Fatalf("the page shows %q as the new key", secret)
	}
	b.screenshot("dashboard-keys.png")
	if status := browserChat(t, l.URL, secret, "from the new key"); status != 200 {
		t.Fatalf("the new key: status %d, want 200 (are virtual keys wired into lumen serve?)", status)
	}

	// Revoke it (two clicks: the button asks for confirmation).
	sel := `#keys-table tr[data-key-name="browser-test"]`
	b.do("revoke the key",
		chromedp.Click(css(sel+" button.revoke")),
		chromedp.WaitVisible(css(sel+" button.revoke.confirm")),
		chromedp.Click(css(sel+" button.revoke.confirm")),
		chromedp.WaitVisible(css(sel+`[data-status="revoked"]`)))
	b.screenshot("dashboard-revoked.png")
	if status := browserChat(t, l.URL, secret, "from the revoked key"); status != http.StatusUnauthorized {
		t.Errorf("the revoked key: status %d, want 401", status)
	}
	if strings.Contains(l.Logs.String(), secret) {
		t.Error("the server log holds the key's secret")
	}
}

// browser runs the test's steps in one Chromium tab; a failed step saves a
// screenshot and fails the test with Lumen's log.
type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
	logs      *syncbuf.Buffer
	started   bool
}

func (b *browser) fail(step string, err error) {
	b.t.Helper()
	shot := filepath.Join(b.artifacts, "dashboard-failure.png")
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		_ = os.WriteFile(shot, png, 0o644)
	}
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({hash: location.hash, loaded: document.body.dataset.loaded,
		login: document.querySelector("#login-error")?.textContent, error: document.querySelector("#app-error")?.textContent})`))
	b.t.Fatalf("%s: %v (page %s; screenshot: %s)\n%s", step, err, state, shot, b.logs)
}

// stepTimeout bounds one step, so that a missing element fails with a
// screenshot well before the session's deadline.
const stepTimeout = 20 * time.Second

// stepCtx returns the context for a step. The first step runs on the tab's
// own context: it starts Chromium, which lives as long as that context.
func (b *browser) stepCtx() (context.Context, context.CancelFunc) {
	if !b.started {
		b.started = true
		return b.ctx, func() {}
	}
	return context.WithTimeout(b.ctx, stepTimeout)
}

func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(step, err)
	}
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := browserValue(b, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(b.artifacts, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

func browserValue[T any](b *browser, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(step, err)
	}
	return v
}
