package cmd

import (
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
