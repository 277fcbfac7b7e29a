package cmd

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/internal/syncbuf"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/server"
)

func modelIDs(t *testing.T, l *lumen) string {
	t.Helper()
	resp, err := http.Get(l.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestE2EReloadOnSIGHUP(t *testing.T) {
	l := startLumen(t, "model_list: [{model_name: alpha, params: {model: mock/alpha}}]\n", nil)
	if !strings.Contains(modelIDs(t, l), `"alpha"`) {
		t.Fatal("alpha not served")
	}
	circuit := func(group string) bool {
		return strings.Contains(string(rawGet(t, l.URL, "/metrics", "")), `lumen_deployment_circuit_state{deployment="`+group+`/0",model_group="`+group+`"`)
	}
	if !circuit("alpha") {
		t.Fatal("no circuit state for alpha in /metrics")
	}
	// A valid new file is swapped in, its guardrails too.
	if err := os.WriteFile(l.Config, []byte("model_list: [{model_name: beta, params: {model: mock/beta}}]\n"+
		"guardrails: [{guardrail_name: pii, litellm_params: {guardrail: litellm_content_filter, mode: pre_call, default_on: true, patterns: [{pattern_name: email, action: MASK}]}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(modelIDs(t, l), `"beta"`) })
	if strings.Contains(modelIDs(t, l), `"alpha"`) {
		t.Fatal("alpha still served after reload")
	}
	// /metrics follows: beta's circuit, and none left for alpha (an open
	// one would alert for ever).
	if !circuit("beta") || circuit("alpha") {
		t.Fatalf("circuit states after the reload: beta %v, alpha %v; want beta only", circuit("beta"), circuit("alpha"))
	}
	got := rawPost(t, l, "/v1/chat/completions", "", `{"model":"beta","messages":[{"role":"user","content":"hi a@b.io"}]}`)
	if got.status != 200 || !strings.Contains(got.text, "Echo: hi [EMAIL_REDACTED]") {
		t.Fatalf("beta after reload: %d %s", got.status, got.text)
	}
	// A bad file is refused and beta keeps serving.
	if err := os.WriteFile(l.Config, []byte("model_list: [{model_name: gamma, params: {model: nosuch/x}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(l.Logs.String(), "config reload failed") })
	if ids := modelIDs(t, l); !strings.Contains(ids, `"beta"`) || strings.Contains(ids, "gamma") {
		t.Fatalf("bad reload changed the models: %s", ids)
	}
	if !strings.Contains(l.Logs.String(), `unknown provider \"nosuch\"`) {
		t.Fatalf("the reload error does not name the field:\n%s", l.Logs.String())
	}
	// The reload that took effect is in the audit log; the refused one is not.
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(l.Config)
	al, err := audit.Open(context.Background(), audit.Options{Path: filepath.Join(dir, "lumen.db"), SigningKeyPath: filepath.Join(dir, "lumen-audit.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	var buf bytes.Buffer
	if err := al.Export(context.Background(), &buf, time.Time{}, "jsonl"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), `"action":"config.reloaded"`); n != 1 || !strings.Contains(buf.String(), "model groups: beta") {
		t.Fatalf("%d config.reloaded entries:\n%s", n, buf.String())
	}
}

// Changing limits (budgets included) is reported as needing a restart,
// as the other sections read only at start are; model_list is not.
func TestRestartNeeded(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{ModelList: []config.Model{{ModelName: "a"}}}
	}
	limited := base()
	limited.Limits.Tags = map[string]config.Limit{"team=search": {BudgetUSD: 5}}
	models := base()
	models.ModelList = append(models.ModelList, config.Model{ModelName: "b"})
	if !restartNeeded(base(), limited) {
		t.Error("a new tag budget does not ask for a restart")
	}
	if restartNeeded(base(), models) {
		t.Error("a model_list change asks for a restart")
	}
	// Secrets marshal redacted; a change of one is still a change.
	secrets := func() *config.Config {
		c := base()
		c.GeneralSettings.MasterKey, c.Ledger.PostgresURL, c.Limits.RedisURL = "sk-old", "postgres://lumen:pw@db1/lumen", "redis://r1:6379/0"
		return c
	}
	if restartNeeded(secrets(), secrets()) {
		t.Error("the same secrets ask for a restart")
	}
	for name, change := range map[string]func(*config.Config){
		"master key":   func(c *config.Config) { c.GeneralSettings.MasterKey = "sk-new" },
		"postgres URL": func(c *config.Config) { c.Ledger.PostgresURL = "postgres://lumen:pw@db2/lumen" },
		"redis URL":    func(c *config.Config) { c.Limits.RedisURL = "redis://r2:6379/0" },
	} {
		cur := secrets()
		change(cur)
		if !restartNeeded(secrets(), cur) {
			t.Errorf("a changed %s does not ask for a restart", name)
		}
	}
}

// A model group's reloaded spend counts the requests that asked for it by
// an alias: the ledger names the group as the client sent it.
func TestAliasedSpend(t *testing.T) {
	src := spendMap{"group:claude-sonnet": 1, "group:sonnet-latest": 2, "group:other": 4, "global": 7}
	got, err := aliasedSpend{src, map[string]string{"sonnet-latest": "claude-sonnet"}}.SpendSince(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got["group:claude-sonnet"] != 3 || got["group:other"] != 4 || got["global"] != 7 {
		t.Fatalf("spend %v", got)
	}
}

type spendMap map[string]float64

func (s spendMap) SpendSince(context.Context, time.Time) (map[string]float64, error) { return s, nil }

// A reload keeps what the router knows of each deployment that kept its id
// and upstream: an open circuit stays open (the dead upstream gets no
// traffic back) and this minute's usage still counts. A deployment whose
// upstream changed under the same id starts afresh.
func TestReloadKeepsDeploymentState(t *testing.T) {
	const cfg = `
model_list:
  - {model_name: g, params: {model: mock/bad, mock_failure_rate: 1}}
  - {model_name: g, params: {model: mock/good}}
router_settings: {num_retries: 2, allowed_fails: 2, cooldown_time: 300, retry_after: 0}
`
	l := startLumen(t, cfg, nil)
	minute := time.Now().Unix() / 60
	for i := range 20 {
		if got := rawPost(t, l, "/v1/chat/completions", "", `{"model":"g","messages":[{"role":"user","content":"hi"}]}`); got.status != 200 {
			t.Fatalf("request %d: %d %s", i, got.status, got.text)
		}
	}
	before := rawGet(t, l.URL, "/health", "")
	bad := func(body []byte) gjson.Result { return gjson.GetBytes(body, `model_groups.g.#(id=="g/0")`) }
	good := func(body []byte) gjson.Result { return gjson.GetBytes(body, `model_groups.g.#(id=="g/1")`) }
	if bad(before).Get("state").Str != "open" || good(before).Get("requests_this_minute").Int() == 0 {
		t.Fatalf("/health before the reload: %s", before)
	}
	reload := func(n int) {
		t.Helper()
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		waitFor(t, func() bool { return strings.Count(l.Logs.String(), `"message":"config reloaded"`) == n })
	}

	// The file unchanged.
	reload(1)
	after := rawGet(t, l.URL, "/health", "")
	if bad(after).Get("state").Str != "open" || bad(after).Get("cooldown_until").Str != bad(before).Get("cooldown_until").Str {
		t.Fatalf("the open circuit did not survive the reload:\nbefore %s\nafter  %s", before, after)
	}
	if time.Now().Unix()/60 == minute && good(after).Get("requests_this_minute").Int() != good(before).Get("requests_this_minute").Int() {
		t.Fatalf("this minute's usage was reset by the reload:\nbefore %s\nafter  %s", before, after)
	}
	for i := range 10 {
		if got := rawPost(t, l, "/v1/chat/completions", "", `{"model":"g","messages":[{"role":"user","content":"hi"}]}`); got.status != 200 ||
			got.header.Get("x-lumen-attempts") != "1" {
			t.Fatalf("request %d after the reload: %d, %s attempts", i, got.status, got.header.Get("x-lumen-attempts"))
		}
	}

	// The same id (g/0) now calls another upstream.
	if err := os.WriteFile(l.Config, []byte(strings.Replace(cfg, "mock/bad,", "mock/other,", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	reload(2)
	changed := rawGet(t, l.URL, "/health", "")
	if bad(changed).Get("model").Str != "other" || bad(changed).Get("state").Str != "closed" || bad(changed).Get("recent_failures").Int() != 0 {
		t.Fatalf("a new upstream inherited the old one's circuit: %s", changed)
	}
}

// A reload that panics (here: building a deployment's provider) is logged
// with its stack and keeps the running config, and the next SIGHUP
// reloads: the panic does not end lumen serve.
func TestReloadRecoversPanics(t *testing.T) {
	// SIGHUP's default action ends the process: caught here too, in case
	// one arrives before watchReload listens or after it stopped (left
	// registered; the channel drops what it has no room for).
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGHUP)
	path := t.TempDir() + "/config.yaml"
	if err := os.WriteFile(path, []byte("model_list: [{model_name: alpha, params: {model: mock/alpha}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &Factory{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}
	var opts *ServeOptions
	cmd := NewCmdServe(f, func(_ context.Context, o *ServeOptions) error { opts = o; return nil })
	cmd.SetArgs([]string{"--config", path})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	cfg, _, _, err := loadConfig(opts.v, f)
	if err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	build := func(pc providers.Config) (providers.Provider, error) {
		if broken.Load() {
			panic("injected")
		}
		return router.Build(pc)
	}
	r, err := router.New(cfg, build)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	log := zerolog.New(&logs)
	srv := server.New(server.Options{Config: cfg, Router: r, Logger: log})
	checks := &healthChecks{}
	defer checks.stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchReload(ctx, opts.v, f, srv, cfg, build, nil, checks, log)
	}()
	defer func() { cancel(); <-done }()

	broken.Store(true)
	if err := os.WriteFile(path, []byte("model_list: [{model_name: beta, params: {model: mock/beta}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup := func(logged string) {
		t.Helper()
		waitFor(t, func() bool {
			if strings.Contains(logs.String(), logged) {
				return true
			}
			syscall.Kill(os.Getpid(), syscall.SIGHUP)
			return false
		})
	}
	hup(`"loop":"config reload","panic":"injected"`)
	if names := srv.Router().Names(); len(names) != 1 || names[0] != "alpha" {
		t.Fatalf("after a reload that panicked: %v, want the running alpha", names)
	}
	broken.Store(false)
	hup(`"message":"config reloaded"`)
	if names := srv.Router().Names(); len(names) != 1 || names[0] != "beta" {
		t.Fatalf("after the next reload: %v, want beta", names)
	}
}
