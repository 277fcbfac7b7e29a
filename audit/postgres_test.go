package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lumengw/lumen/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// Instances that share a Postgres database write one chain: two Logs on
// one database (one signing key, as the instances share audit.signing_key)
// append at once, and the result verifies as a single chain with
// checkpoints from both; an edit made in the database is caught; export
// reads every entry.
func TestPostgresSharedChain(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	key := filepath.Join(t.TempDir(), "audit.key")
	open := func() *Log {
		l, err := Open(ctx, Options{Path: url, SigningKeyPath: key, CheckpointEvery: 7, CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := open(), open()
	var wg sync.WaitGroup
	for _, l := range []*Log{a, b} {
		wg.Go(func() {
			for i := range 40 {
				l.Append(testEntry(i))
			}
		})
	}
	wg.Wait()
	for _, l := range []*Log{a, b} {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if l.Written() != 40 || l.Failed() != 0 || l.Dropped() != 0 {
			t.Fatalf("written %d failed %d dropped %d", l.Written(), l.Failed(), l.Dropped())
		}
	}
	pub := a.PublicKey()
	rep, err := VerifyFile(ctx, url, pub, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.From != 1 || rep.To != 80 || rep.Entries != 80 || rep.Checkpoints < 2 || rep.Unsigned != 0 {
		t.Fatalf("report %+v, want one signed chain of 80 entries", rep)
	}
	var exported bytes.Buffer
	if err := ExportFile(ctx, url, &exported, baseTime, FormatJSONL); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(exported.String(), "\n"); n != 80 {
		t.Errorf("exported %d entries, want 80", n)
	}

	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_entries SET actor = 'mallory' WHERE seq = 33`); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyFile(ctx, url, pub, 0)
	var ve *VerifyError
	if !errors.Is(err, ErrAltered) || !errors.As(err, &ve) || ve.Seq != 33 {
		t.Fatalf("after editing entry 33: %v", err)
	}
	// Errors name the log without its connection string.
	if _, err := VerifyFile(ctx, "postgres://lumen:s3cret-pw@127.0.0.1:1/lumen?connect_timeout=1", pub, 0); err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("VerifyFile(unreachable) = %v", err)
	}
}

// Copy moves a SQLite audit log into Postgres as stored: it verifies there
// with the same key, a Log opened on it continues the chain, and a second
// copy is refused.
func TestCopyToPostgres(t *testing.T) {
	ctx := context.Background()
	opts, pub := writeLog(t, 25, nil)
	before, err := VerifyFile(ctx, opts.Path, pub, 0)
	if err != nil {
		t.Fatal(err)
	}
	url := pgtest.Schema(t)
	entries, checkpoints, err := Copy(ctx, url, opts.Path)
	if err != nil || entries != 25 || checkpoints != before.Checkpoints {
		t.Fatalf("copied %d entries and %d checkpoints (%v), want 25 and %d", entries, checkpoints, err, before.Checkpoints)
	}
	after, err := VerifyFile(ctx, url, pub, 0)
	if err != nil || after != before {
		t.Fatalf("in Postgres: %+v (%v), in the file: %+v", after, err, before)
	}
	l, err := Open(ctx, Options{Path: url, SigningKeyPath: opts.SigningKeyPath, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	l.Append(testEntry(25))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyFile(ctx, url, pub, 0); err != nil || rep.Entries != 26 || rep.Unsigned != 0 {
		t.Fatalf("after one more entry: %+v (%v)", rep, err)
	}
	if _, _, err := Copy(ctx, url, opts.Path); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("a second copy: %v", err)
	}
}
