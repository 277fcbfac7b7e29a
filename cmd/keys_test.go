package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/ledger"
)

// ledgerEnv is a config whose ledger, audit log and signing key live in a
// test's temporary directory.
type ledgerEnv struct {
	dir, config, db, auditDB, signingKey string
}

// newLedgerEnv writes the config, with the audit log on or off.
func newLedgerEnv(t *testing.T, auditOn bool) *ledgerEnv {
	t.Helper()
	dir := t.TempDir()
	e := &ledgerEnv{dir: dir, config: filepath.Join(dir, "lumen.yaml"), db: filepath.Join(dir, "ledger.db"),
		auditDB: filepath.Join(dir, "audit.db"), signingKey: filepath.Join(dir, "audit.key")}
	yaml := "model_list: [{model_name: m, params: {model: mock/m}}]\n" +
		"ledger: {path: " + e.db + "}\n"
	yaml += "audit: {path: " + e.auditDB + ", signing_key: " + e.signingKey
	if !auditOn {
		yaml += ", enabled: false"
	}
	if err := os.WriteFile(e.config, []byte(yaml+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs lumen with args and --config, through the Factory.
func (e *ledgerEnv) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewCmdRoot(&Factory{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	root.SetArgs(append(args, "--config", e.config))
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func (e *ledgerEnv) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := e.run(t, args...)
	if err != nil {
		t.Fatalf("lumen %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// keyring opens the ledger as a server would and loads its keys.
func (e *ledgerEnv) keyring(t *testing.T) *ledger.Keyring {
	t.Helper()
	db, err := ledger.Open(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := ledger.NewKeyring(context.Background(), db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

var secretRE = regexp.MustCompile(ledger.KeyPrefix + `[0-9A-Za-z]{43}`)

// secretIn returns the one key printed in out.
func secretIn(t *testing.T, out string) string {
	t.Helper()
	keys := secretRE.FindAllString(out, -1)
	if len(keys) != 1 {
		t.Fatalf("want exactly one key in the output, found %d:\n%s", len(keys), out)
	}
	return keys[0]
}

// refuteSecret fails if raw, or its random part, is in s.
func refuteSecret(t *testing.T, what, s, raw string) {
	t.Helper()
	if strings.Contains(s, raw) || strings.Contains(s, strings.TrimPrefix(raw, ledger.KeyPrefix)) {
		t.Fatalf("%s contains the key", what)
	}
}

func TestKeysCreatePrintsAKeyThatAuthenticates(t *testing.T) {
	e := newLedgerEnv(t, true)
	before := time.Now()
	out := e.mustRun(t, "keys", "create", "--name", "search", "--budget", "12.5", "--budget-period", "monthly",
		"--rpm", "60", "--tpm", "10000", "--models", "gpt-4o, gpt-4o-mini,gpt-4o", "--expires", "30d",
		"--tags", "team=search,env=prod")
	raw := secretIn(t, out)
	k, err := e.keyring(t).Authenticate(raw)
	if err != nil {
		t.Fatalf("the printed key does not authenticate: %v", err)
	}
	if !strings.Contains(out, k.ID) {
		t.Errorf("output does not name the id %s:\n%s", k.ID, out)
	}
	if k.Name != "search" || k.BudgetUSD != 12.5 || k.BudgetPeriod != "monthly" || k.RPM != 60 || k.TPM != 10000 {
		t.Errorf("key settings = %+v", k)
	}
	if !slices.Equal(k.Models, []string{"gpt-4o", "gpt-4o-mini"}) {
		t.Errorf("models = %q, want [gpt-4o gpt-4o-mini]", k.Models)
	}
	if k.Tags["team"] != "search" || k.Tags["env"] != "prod" || len(k.Tags) != 2 {
		t.Errorf("tags = %v", k.Tags)
	}
	if want := before.Add(30 * 24 * time.Hour).Truncate(time.Millisecond); k.ExpiresAt.Before(want) || k.ExpiresAt.After(want.Add(time.Hour)) {
		t.Errorf("expires = %v, want about %v", k.ExpiresAt, want)
	}

	// --format json carries the key and the record.
	var js struct {
		Key, ID, Name string
	}
	if err := json.Unmarshal([]byte(e.mustRun(t, "keys", "create", "--name", "ci", "--format", "json")), &js); err != nil {
		t.Fatal(err)
	}
	if k2, err := e.keyring(t).Authenticate(js.Key); err != nil || k2.ID != js.ID || js.Name != "ci" {
		t.Fatalf("json create: %+v, %v", js, err)
	}

	// Neither list, info nor any file Lumen wrote holds a secret.
	for _, args := range [][]string{
		{"keys", "list"}, {"keys", "list", "--all", "--format", "json"},
		{"keys", "info", "search"}, {"keys", "info", k.ID, "--format", "json"},
	} {
		got := e.mustRun(t, args...)
		if !strings.Contains(got, k.ID) || !strings.Contains(got, k.Prefix) {
			t.Errorf("%v does not show the key's id and prefix:\n%s", args, got)
		}
		refuteSecret(t, strings.Join(args, " "), got, raw)
		refuteSecret(t, strings.Join(args, " "), got, js.Key)
	}
	files, _ := filepath.Glob(filepath.Join(e.dir, "*"))
	if len(files) < 4 { // config, ledger (+ WAL), audit db, signing key
		t.Fatalf("expected the ledger and audit files in %s, found %v", e.dir, files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		refuteSecret(t, f, string(b), raw)
		refuteSecret(t, f, string(b), js.Key)
	}
}

func TestKeysListShowsLiveKeysAndStatus(t *testing.T) {
	e := newLedgerEnv(t, true)
	e.mustRun(t, "keys", "create", "--name", "a", "--budget", "5")
	e.mustRun(t, "keys", "create", "--name", "b")
	e.mustRun(t, "keys", "revoke", "b")

	table := e.mustRun(t, "keys", "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[1], " a ") ||
		!strings.Contains(lines[1], "$5 total") || !strings.HasSuffix(lines[1], "active") {
		t.Fatalf("list without --all:\n%s", table)
	}
	var keys []struct{ Name, Status string }
	if err := json.Unmarshal([]byte(e.mustRun(t, "keys", "list", "--all", "--format", "json")), &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Name != "a" || keys[0].Status != "active" || keys[1].Name != "b" || keys[1].Status != "revoked" {
		t.Fatalf("list --all = %+v", keys)
	}
}

func TestKeysUpdateRevokeRotate(t *testing.T) {
	e := newLedgerEnv(t, true)
	raw := secretIn(t, e.mustRun(t, "keys", "create", "--name", "svc", "--budget", "10", "--models", "a,b",
		"--tags", "team=x", "--expires", "2w", "--rpm", "5"))

	out := e.mustRun(t, "keys", "update", "svc", "--budget", "20", "--budget-period", "daily", "--tpm", "900",
		"--models", "c", "--tags", "team=y,env=dev")
	if !strings.Contains(out, "budget $10 total -> $20 daily") || !strings.Contains(out, "models a,b -> c") {
		t.Errorf("update output = %q", out)
	}
	k, err := e.keyring(t).Authenticate(raw)
	if err != nil {
		t.Fatal(err)
	}
	if k.BudgetUSD != 20 || k.BudgetPeriod != "daily" || k.TPM != 900 || k.RPM != 5 ||
		!slices.Equal(k.Models, []string{"c"}) || k.Tags["team"] != "y" || k.Tags["env"] != "dev" || k.ExpiresAt.IsZero() {
		t.Fatalf("after update: %+v", k)
	}

	// Empty values clear; the name can change.
	e.mustRun(t, "keys", "update", k.ID, "--models", "", "--tags", "", "--expires", "never", "--budget", "0", "--rpm", "0", "--name", "svc2")
	k, err = e.keyring(t).Authenticate(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Models) != 0 || !k.Allows("anything") || len(k.Tags) != 0 || !k.ExpiresAt.IsZero() || k.BudgetUSD != 0 || k.RPM != 0 || k.Name != "svc2" {
		t.Fatalf("after clearing: %+v", k)
	}

	// Rotate: same id, new secret; the old one stops working.
	out = e.mustRun(t, "keys", "rotate", "svc2")
	fresh := secretIn(t, out)
	kr := e.keyring(t)
	if _, err := kr.Authenticate(raw); !errors.Is(err, ledger.ErrUnknownKey) {
		t.Fatalf("old secret after rotate: %v", err)
	}
	if k2, err := kr.Authenticate(fresh); err != nil || k2.ID != k.ID {
		t.Fatalf("new secret after rotate: %v, %v", k2, err)
	}

	// Revoke: refused from then on, and not again.
	if out := e.mustRun(t, "keys", "revoke", "svc2"); !strings.Contains(out, k.ID) {
		t.Errorf("revoke output = %q", out)
	}
	if _, err := e.keyring(t).Authenticate(fresh); !errors.Is(err, ledger.ErrRevokedKey) {
		t.Fatalf("after revoke: %v", err)
	}
	for _, args := range [][]string{{"keys", "revoke", "svc2"}, {"keys", "rotate", "svc2"}, {"keys", "update", "svc2", "--rpm", "1"}} {
		if _, _, err := e.run(t, args...); !errors.Is(err, ledger.ErrRevokedKey) {
			t.Errorf("%v on a revoked key: %v", args, err)
		}
	}
	// The name is free again.
	e.mustRun(t, "keys", "create", "--name", "svc2")
}

func TestKeysBadInputNamesTheFlag(t *testing.T) {
	e := newLedgerEnv(t, true)
	e.mustRun(t, "keys", "create", "--name", "taken")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"keys", "create", "--name", "x", "--budget-period", "hourly"}, `--budget-period: unknown budget period "hourly" (want daily, weekly, monthly or total)`},
		{[]string{"keys", "create", "--name", "x", "--budget", "-1"}, "--budget must be a non-negative amount of USD, got -1"},
		{[]string{"keys", "create", "--name", "x", "--budget", "ten"}, `invalid argument "ten" for "--budget" flag`},
		{[]string{"keys", "create", "--name", "x", "--rpm", "-5"}, "--rpm must not be negative, got -5"},
		{[]string{"keys", "create", "--name", "x", "--tpm", "-1"}, "--tpm must not be negative, got -1"},
		{[]string{"keys", "create", "--name", "x", "--expires", "soon"}, `--expires: cannot read "soon"`},
		{[]string{"keys", "create", "--name", "x", "--expires", "2001-01-01"}, "--expires: 2001-01-01T00:00:00Z is not in the future"},
		{[]string{"keys", "create", "--name", "x", "--tags", "team"}, `--tags: "team" is not name=value`},
		{[]string{"keys", "create", "--name", "x", "--format", "yaml"}, `--format: unknown format "yaml" (want text or json)`},
		{[]string{"keys", "create"}, "--name is required"},
		{[]string{"keys", "create", "--name", "taken"}, "a live key already has this name"},
		{[]string{"keys", "update", "taken"}, "nothing to change: give at least one of --name"},
		{[]string{"keys", "update", "taken", "--name", " "}, "--name must not be empty"},
		{[]string{"keys", "create", "--name", "key_0123456789abcdef"}, `--name: "key_0123456789abcdef" has the form of a key id`},
		{[]string{"keys", "update", "taken", "--name", "key_0123456789abcdef"}, `--name: "key_0123456789abcdef" has the form of a key id`},
		{[]string{"keys", "update", "nosuch", "--rpm", "1"}, `"nosuch": no such key`},
		{[]string{"keys", "info", "nosuch"}, `"nosuch": no such key`},
		{[]string{"keys", "list", "--format", "csv"}, `--format: unknown format "csv" (want table or json)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := e.run(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if got := e.keyring(t).List(); len(got) != 1 {
		t.Fatalf("bad input created keys: %d keys", len(got))
	}
}

func TestKeysInfoShowsPeriodSpend(t *testing.T) {
	e := newLedgerEnv(t, true)
	e.mustRun(t, "keys", "create", "--name", "k", "--budget", "10", "--budget-period", "daily")
	k, _ := e.keyring(t).Get("k")
	db, err := ledger.Open(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = db.Insert(context.Background(), []ledger.Record{
		{Time: now, RequestID: "r1", KeyID: k.ID, ModelGroup: "m", Status: 200, CostUSD: 0.25},
		{Time: now, RequestID: "r2", KeyID: k.ID, ModelGroup: "m", Status: 200, CostUSD: 0.5},
		{Time: now.Add(-50 * time.Hour), RequestID: "r3", KeyID: k.ID, ModelGroup: "m", Status: 200, CostUSD: 4}, // an earlier day
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Status         string    `json:"status"`
		PeriodSpendUSD float64   `json:"period_spend_usd"`
		PeriodStart    time.Time `json:"period_start"`
		ResetsAt       time.Time `json:"resets_at"`
	}
	if err := json.Unmarshal([]byte(e.mustRun(t, "keys", "info", "k", "--format", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.PeriodSpendUSD != 0.75 || v.Status != "active" || v.ResetsAt.Sub(v.PeriodStart) != 24*time.Hour {
		t.Fatalf("info = %+v", v)
	}
	if out := e.mustRun(t, "keys", "info", "k"); !strings.Contains(out, "spent:    $0.75 since") {
		t.Fatalf("info table:\n%s", out)
	}
}

// TestKeysInfoRoundsSpend: the table shows a sum of costs to 6 decimals,
// as lumen spend does, not the float sum's noise.
func TestKeysInfoRoundsSpend(t *testing.T) {
	e := newLedgerEnv(t, true)
	e.mustRun(t, "keys", "create", "--name", "k", "--budget", "1")
	k, _ := e.keyring(t).Get("k")
	db, err := ledger.Open(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = db.Insert(context.Background(), []ledger.Record{
		{Time: now, RequestID: "r1", KeyID: k.ID, ModelGroup: "m", Status: 200, CostUSD: 0.1},
		{Time: now, RequestID: "r2", KeyID: k.ID, ModelGroup: "m", Status: 200, CostUSD: 0.2},
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out := e.mustRun(t, "keys", "info", "k"); !strings.Contains(out, "spent:    $0.3 in total\n") {
		t.Fatalf("info table:\n%s", out)
	}
}

// exportEntries exports the audit log through the command and parses it.
func exportEntries(t *testing.T, e *ledgerEnv, args ...string) []audit.ExportedEntry {
	t.Helper()
	out := e.mustRun(t, append([]string{"audit", "export"}, args...)...)
	var entries []audit.ExportedEntry
	for line := range strings.Lines(out) {
		var x audit.ExportedEntry
		if err := json.Unmarshal([]byte(line), &x); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		entries = append(entries, x)
	}
	return entries
}

func TestKeysChangesAreAudited(t *testing.T) {
	e := newLedgerEnv(t, true)
	raw := secretIn(t, e.mustRun(t, "keys", "create", "--name", "a", "--budget", "1"))
	k, _ := e.keyring(t).Get("a")
	e.mustRun(t, "keys", "update", "a", "--rpm", "7")
	e.mustRun(t, "keys", "update", "a", "--budget", "2")
	rotated := secretIn(t, e.mustRun(t, "keys", "rotate", "a"))
	e.mustRun(t, "keys", "revoke", "a")

	entries := exportEntries(t, e)
	var actions []string
	for _, x := range entries {
		actions = append(actions, x.Action)
		if x.Actor != actorCLI || x.Target != k.ID {
			t.Errorf("entry %d: actor %q target %q, want %q %q", x.Seq, x.Actor, x.Target, actorCLI, k.ID)
		}
		b, _ := json.Marshal(x)
		refuteSecret(t, "audit entry", string(b), raw)
		refuteSecret(t, "audit entry", string(b), rotated)
	}
	want := []string{"key.created", "key.updated", "key.updated", "budget.changed", "key.rotated", "key.revoked"}
	if !slices.Equal(actions, want) {
		t.Fatalf("audited actions = %q, want %q", actions, want)
	}
	if d := entries[1].Detail; d != "rpm - -> 7" {
		t.Errorf("update detail = %q", d)
	}
	if out := e.mustRun(t, "audit", "verify"); !strings.HasPrefix(out, "ok: entries 1..6 verified (6)") {
		t.Fatalf("verify: %q", out)
	}
}

func TestKeysWithoutAudit(t *testing.T) {
	e := newLedgerEnv(t, false)
	e.mustRun(t, "keys", "create", "--name", "a")
	e.mustRun(t, "keys", "revoke", "a")
	if _, err := os.Stat(e.signingKey); !os.IsNotExist(err) {
		t.Fatalf("audit is off, but a signing key was made: %v", err)
	}
	if _, err := os.Stat(e.auditDB); !os.IsNotExist(err) {
		t.Fatalf("audit is off, but an audit database was made: %v", err)
	}
	if _, _, err := e.run(t, "audit", "verify"); err == nil || !strings.Contains(err.Error(), "(audit.enabled is false in this config)") {
		t.Fatalf("verify with audit off: %v", err)
	}
}

// TestKeysWhileServerRuns changes keys with the CLI while a "server" holds
// the same ledger and audit log open: the server's Keyring picks the
// changes up through Run, and both processes' audit entries form one chain.
func TestKeysWhileServerRuns(t *testing.T) {
	e := newLedgerEnv(t, true)
	e.mustRun(t, "keys", "create", "--name", "first") // the audit log and its key exist, as after a start

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kr := e.keyring(t)
	done := make(chan error, 1)
	go func() { done <- kr.Run(ctx, 5*time.Millisecond) }()
	srvAudit, err := audit.Open(ctx, audit.Options{Path: e.auditDB, SigningKeyPath: e.signingKey, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}

	raw := secretIn(t, e.mustRun(t, "keys", "create", "--name", "live"))
	waitFor(t, func() bool { _, err := kr.Authenticate(raw); return err == nil })
	e.mustRun(t, "keys", "revoke", "live")
	waitFor(t, func() bool { _, err := kr.Authenticate(raw); return errors.Is(err, ledger.ErrRevokedKey) })

	srvAudit.Append(audit.Entry{Actor: "key_x", Action: audit.ActionRequest, Summary: audit.Summary{ModelGroup: "m", Status: 200}})
	if err := srvAudit.Close(); err != nil || srvAudit.Written() != 1 {
		t.Fatalf("server audit: %v, written %d", err, srvAudit.Written())
	}
	cancel()
	<-done
	if out := e.mustRun(t, "audit", "verify"); !strings.HasPrefix(out, "ok: entries 1..4 verified (4)") {
		t.Fatalf("verify after two writers: %q", out)
	}
	entries := exportEntries(t, e)
	if last := entries[len(entries)-1]; last.Seq != 4 || last.Action != "request" || last.PrevHash != entries[2].Hash {
		t.Fatalf("the server's entry does not continue the chain: %+v", last)
	}
}

// TestKeysReachARunningServer changes keys with the CLI while lumen serve
// runs on the same ledger: each change takes effect there, and the CLI's
// and the server's audit entries form one chain that verifies.
func TestKeysReachARunningServer(t *testing.T) {
	e := newLedgerEnv(t, true)
	yaml := "general_settings: {master_key: sk-master-keys-test-0000}\n" +
		"model_list: [{model_name: m, params: {model: mock/m}}, {model_name: n, params: {model: mock/n}}]\n" +
		"ledger: {path: " + e.db + "}\naudit: {path: " + e.auditDB + ", signing_key: " + e.signingKey + "}\n"
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	l := startLumen(t, yaml, nil)
	chat := func(key, model string) func() int {
		return func() int {
			return rawPost(t, l, "/v1/chat/completions", key, `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`).status
		}
	}
	is := func(f func() int, want int) func() bool { return func() bool { return f() == want } }

	raw := secretIn(t, e.mustRun(t, "keys", "create", "--name", "live", "--models", "m"))
	waitFor(t, is(chat(raw, "m"), 200))
	if got := chat(raw, "n")(); got != 403 {
		t.Fatalf("a model the key may not call: %d, want 403", got)
	}
	e.mustRun(t, "keys", "update", "live", "--models", "n")
	waitFor(t, is(chat(raw, "n"), 200))
	fresh := secretIn(t, e.mustRun(t, "keys", "rotate", "live"))
	waitFor(t, is(chat(fresh, "n"), 200))
	if got := chat(raw, "n")(); got != 401 {
		t.Fatalf("the rotated-out key: %d, want 401", got)
	}
	e.mustRun(t, "keys", "revoke", "live")
	waitFor(t, is(chat(fresh, "n"), 401))

	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	out := e.mustRun(t, "audit", "verify")
	if !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("verify: %q", out)
	}
	var cli, requests int
	for _, x := range exportEntries(t, e) {
		switch {
		case x.Actor == actorCLI:
			cli++
		case x.Action == string(audit.ActionRequest):
			requests++
		}
	}
	if cli != 4 || requests < 5 {
		t.Fatalf("audit chain holds %d cli entries and %d requests, want 4 and at least 5", cli, requests)
	}
}

func TestReadingCommandsNeedAnExistingLedger(t *testing.T) {
	e := newLedgerEnv(t, true)
	for _, args := range [][]string{{"keys", "list"}, {"keys", "info", "a"}, {"keys", "revoke", "a"}, {"spend"}} {
		if _, _, err := e.run(t, args...); err == nil || !strings.Contains(err.Error(), "opening the ledger (ledger.path)") {
			t.Errorf("%v without a ledger: %v", args, err)
		}
	}
	if _, err := os.Stat(e.db); !os.IsNotExist(err) {
		t.Fatalf("a reading command created the ledger: %v", err)
	}
	e.mustRun(t, "keys", "create", "--name", "a") // create makes it
	e.mustRun(t, "keys", "list")
}
