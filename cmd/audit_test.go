package cmd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/lumengw/lumen/audit"
)

// auditedEnv makes five audit entries with the CLI, each process signing a
// checkpoint as it closes.
func auditedEnv(t *testing.T) *ledgerEnv {
	t.Helper()
	e := newLedgerEnv(t, true)
	e.mustRun(t, "keys", "create", "--name", "a")
	e.mustRun(t, "keys", "create", "--name", "b")
	e.mustRun(t, "keys", "update", "a", "--rpm", "1")
	e.mustRun(t, "keys", "rotate", "b")
	e.mustRun(t, "keys", "revoke", "b")
	return e
}

func execAudit(t *testing.T, e *ledgerEnv, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite3", e.auditDB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%s changed %d rows, want 1", query, n)
	}
}

func TestAuditVerify(t *testing.T) {
	tests := []struct {
		name   string
		tamper string // SQL run on the audit database
		kind   error
		want   string // in the error
	}{
		{"edited row", `UPDATE audit_entries SET detail = 'rpm - -> 1000' WHERE seq = 3`, audit.ErrAltered, "audit entry 3: altered"},
		{"deleted row", `DELETE FROM audit_entries WHERE seq = 2`, audit.ErrDeleted, "audit entry 2: deleted"},
		{"inserted row", `INSERT INTO audit_entries SELECT * FROM audit_entries WHERE seq = 4`, audit.ErrInserted, "audit entry 4: inserted"},
		{"truncated tail", `DELETE FROM audit_entries WHERE seq = 5`, audit.ErrTruncated, "audit entry 5: truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := auditedEnv(t)
			out := e.mustRun(t, "audit", "verify")
			if !strings.HasPrefix(out, "ok: entries 1..5 verified (5), 5 checkpoints signed by key ") {
				t.Fatalf("verify before tampering: %q", out)
			}
			execAudit(t, e, tt.tamper)
			_, _, err := e.run(t, "audit", "verify")
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("verify after tampering = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestAuditVerifyFromAndPublicKey(t *testing.T) {
	e := auditedEnv(t)
	execAudit(t, e, `UPDATE audit_entries SET actor = 'admin' WHERE seq = 2`)
	if _, _, err := e.run(t, "audit", "verify"); !errors.Is(err, audit.ErrAltered) {
		t.Fatalf("verify: %v", err)
	}
	// From 4 on, entry 3 is read only for its link: the edit at 2 is not walked.
	out := e.mustRun(t, "audit", "verify", "--from", "4")
	if !strings.HasPrefix(out, "ok: entries 4..5 verified (2)") {
		t.Fatalf("verify --from 4: %q", out)
	}
	// The default key is the .pub beside the signing key; any other key
	// fails on the first checkpoint.
	if _, err := os.Stat(e.signingKey + ".pub"); err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	pem, _ := audit.MarshalPublicKey(pub)
	other := filepath.Join(e.dir, "other.pub")
	os.WriteFile(other, pem, 0o600)
	if _, _, err := e.run(t, "audit", "verify", "--from", "4", "--public-key", other); !errors.Is(err, audit.ErrBadSignature) {
		t.Fatalf("verify with another key: %v", err)
	}
	if _, _, err := e.run(t, "audit", "verify", "--public-key", filepath.Join(e.dir, "missing.pub")); err == nil ||
		!strings.Contains(err.Error(), "reading public key") {
		t.Fatalf("verify with a missing key: %v", err)
	}
}

func TestAuditExport(t *testing.T) {
	e := auditedEnv(t)
	all := exportEntries(t, e)
	if len(all) != 5 {
		t.Fatalf("export: %d entries", len(all))
	}
	for i, x := range all {
		if x.Seq != uint64(i+1) || x.Actor != actorCLI || len(x.Hash) != 64 {
			t.Errorf("entry %d: %+v", i, x)
		}
		if i > 0 && x.PrevHash != all[i-1].Hash {
			t.Errorf("entry %d does not link to %d", x.Seq, all[i-1].Seq)
		}
	}
	if got := exportEntries(t, e, "--since", "1h", "--format", "jsonl"); len(got) != 5 {
		t.Errorf("--since 1h: %d entries", len(got))
	}
	if got := exportEntries(t, e, "--since", all[2].Time); len(got) != 3 || got[0].Seq != 3 {
		t.Errorf("--since %s: %+v", all[2].Time, got)
	}
	if got := exportEntries(t, e, "--since", "2099-01-01"); len(got) != 0 {
		t.Errorf("--since 2099-01-01: %d entries", len(got))
	}
	for args, want := range map[string]string{
		"--format csv":     `--format: unknown format "csv" (want jsonl)`,
		"--since tomorrow": `--since: cannot read "tomorrow"`,
	} {
		if _, _, err := e.run(t, append([]string{"audit", "export"}, strings.Fields(args)...)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("export %s: %v, want %q", args, err, want)
		}
	}
}

// withCheckpointFile sets audit.checkpoint_file in e's config and returns
// its path.
func withCheckpointFile(t *testing.T, e *ledgerEnv) string {
	t.Helper()
	path := filepath.Join(e.dir, "anchor", "audit-checkpoint.json")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(string(b), "signing_key: "+e.signingKey, "signing_key: "+e.signingKey+", checkpoint_file: "+path, 1)
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditVerifyMissingCheckpoints(t *testing.T) {
	tests := []struct {
		name    string
		anchor  bool   // audit.checkpoint_file set before the entries are written
		tamper  string // SQL run on the audit database
		args    []string
		kind    error
		want    string // in the error, or the output when kind is nil
		wantOut string
	}{
		{name: "clean with the checkpoint file", anchor: true,
			wantOut: ", matches the last known checkpoint (entry 5)\n"},
		{name: "checkpoints deleted", tamper: `DELETE FROM audit_checkpoints`, args: []string{"--max-unsigned", "1ns"},
			kind: audit.ErrMissingCheckpoint, want: "audit entry 1: checkpoints missing: entries 1..5 are signed by no checkpoint"},
		{name: "tail deleted with its checkpoint", anchor: true,
			tamper: `DELETE FROM audit_entries WHERE seq = 5; DELETE FROM audit_checkpoints WHERE seq = 5`,
			kind:   audit.ErrTruncated, want: "audit entry 5: truncated: the log ends at entry 4 but the last known checkpoint"},
		{name: "log emptied", anchor: true, tamper: `DELETE FROM audit_entries; DELETE FROM audit_checkpoints`,
			kind: audit.ErrTruncated, want: "audit entry 1: truncated: the log ends at entry 0"},
		{name: "log emptied and checked without the file", anchor: true, tamper: `DELETE FROM audit_entries; DELETE FROM audit_checkpoints`,
			args: []string{"--checkpoint", ""}, wantOut: "ok: no entries from 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLedgerEnv(t, true)
			if tt.anchor {
				withCheckpointFile(t, e)
			}
			for _, args := range [][]string{{"create", "--name", "a"}, {"create", "--name", "b"},
				{"update", "a", "--rpm", "1"}, {"rotate", "b"}, {"revoke", "b"}} {
				e.mustRun(t, append([]string{"keys"}, args...)...)
			}
			if tt.tamper != "" {
				db, err := sql.Open("sqlite3", e.auditDB)
				if err != nil {
					t.Fatal(err)
				}
				_, err = db.Exec(tt.tamper)
				db.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			out, _, err := e.run(t, append([]string{"audit", "verify"}, tt.args...)...)
			if tt.kind == nil {
				if err != nil || !strings.Contains(out, tt.wantOut) {
					t.Fatalf("verify = %q, %v; want %q", out, err, tt.wantOut)
				}
				return
			}
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("verify = %v, want %q", err, tt.want)
			}
		})
	}
}

// A configured checkpoint file that is gone fails the check: deleting it
// must not turn it off.
func TestAuditVerifyCheckpointFileMissing(t *testing.T) {
	e := auditedEnv(t)
	path := withCheckpointFile(t, e) // set after the entries: not written yet
	_, _, err := e.run(t, "audit", "verify")
	if err == nil || !strings.Contains(err.Error(), "(audit.checkpoint_file)") {
		t.Fatalf("verify = %v, want it to name audit.checkpoint_file", err)
	}
	e.mustRun(t, "keys", "create", "--name", "c") // the next writer writes it
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if out := e.mustRun(t, "audit", "verify"); !strings.Contains(out, "matches the last known checkpoint (entry 6)") {
		t.Fatalf("verify: %q", out)
	}
}

func TestAuditVerifyAfterKeyChange(t *testing.T) {
	e := auditedEnv(t)
	oldKey, oldPub := filepath.Join(e.dir, "old.key"), filepath.Join(e.dir, "old.key.pub")
	if err := os.Rename(e.signingKey, oldKey); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(e.signingKey+".pub", oldPub); err != nil {
		t.Fatal(err)
	}
	e.mustRun(t, "keys", "create", "--name", "c") // signed with a new key
	newPub := e.signingKey + ".pub"
	tests := []struct {
		keys []string
		seq  uint64 // first checkpoint that fails; 0: verifies
	}{
		{nil, 1}, // the default: the new key
		{[]string{oldPub}, 6},
		{[]string{newPub, oldPub}, 0},
		{[]string{oldKey, newPub}, 0},
	}
	for _, tt := range tests {
		args := []string{"audit", "verify"}
		for _, k := range tt.keys {
			args = append(args, "--public-key", k)
		}
		out, _, err := e.run(t, args...)
		if tt.seq == 0 {
			if err != nil || !strings.HasPrefix(out, "ok: entries 1..6 verified (6), 6 checkpoints signed by keys ") {
				t.Errorf("verify with %v = %q, %v", tt.keys, out, err)
			}
			continue
		}
		var ve *audit.VerifyError
		if !errors.As(err, &ve) || ve.Kind != audit.ErrBadSignature || ve.Seq != tt.seq {
			t.Errorf("verify with %v = %v, want a bad signature at entry %d", tt.keys, err, tt.seq)
		}
	}
}

// TestE2EAuditPayloadsPurgedAtStart: serve with ledger.store_payloads and
// retention_days clears the bodies the audit log kept with entries past
// retention as it starts, not an hour later (auditPurgeEvery), so a
// restarted gateway does not keep old bodies; newer entries keep theirs,
// and the chain still verifies with lumen audit verify.
func TestE2EAuditPayloadsPurgedAtStart(t *testing.T) {
	dir := t.TempDir()
	db, key := filepath.Join(dir, "lumen.db"), filepath.Join(dir, "audit.key")
	ctx := context.Background()
	// Each entry by its own writer, which signs it as it closes: as a
	// server ten days ago and one an hour ago would have.
	for _, age := range []time.Duration{10 * 24 * time.Hour, time.Hour} {
		log, err := audit.Open(ctx, audit.Options{Path: db, SigningKeyPath: key, StorePayloads: true})
		if err != nil {
			t.Fatal(err)
		}
		log.Append(audit.Entry{Time: time.Now().Add(-age), Actor: audit.ActorAdmin, Action: audit.ActionRequest,
			Summary:        audit.Summary{RequestID: age.String(), ModelGroup: "m", Status: 200},
			RequestPayload: []byte(`{"messages":[{"role":"user","content":"sent ` + age.String() + ` ago"}]}`), ResponsePayload: []byte(`{"choices":[]}`)})
		if err := log.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l := startLumen(t, `
model_list: [{model_name: m, params: {model: mock/m}}]
ledger: {path: `+db+`, store_payloads: true, retention_days: 1}
audit: {signing_key: `+key+`}
`, nil)
	waitFor(t, func() bool { return strings.Contains(l.Logs.String(), "stored bodies past retention cleared") })
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.Logs.String(), `"entries":1,`) {
		t.Fatalf("the purge at start does not say it cleared one entry:\n%s", l.Logs)
	}
	e := &ledgerEnv{config: l.Config}
	out := e.mustRun(t, "audit", "export", "--since", "2000-01-01")
	var entries []audit.ExportedEntry
	for line := range strings.Lines(out) {
		var x audit.ExportedEntry
		if err := json.Unmarshal([]byte(line), &x); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		entries = append(entries, x)
	}
	if len(entries) != 2 {
		t.Fatalf("export: %d entries, want 2:\n%s", len(entries), out)
	}
	if old := entries[0]; old.RequestPayload != nil || old.ResponsePayload != nil || old.RequestSHA256 == "" {
		t.Errorf("the entry past retention after the start: payloads %q / %q, request digest %q; want no bodies, the digest kept",
			old.RequestPayload, old.ResponsePayload, old.RequestSHA256)
	}
	if recent := entries[1]; recent.RequestPayload == nil || recent.ResponsePayload == nil {
		t.Errorf("the entry within retention lost its bodies: %+v", recent)
	}
	if out := e.mustRun(t, "audit", "verify"); !strings.HasPrefix(out, "ok: entries 1..2 verified") {
		t.Fatalf("verify after the purge: %q", out)
	}
}
