package ledger

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lumengw/lumen/internal/pgtest"
	"github.com/lumengw/lumen/providers"
)

// onPostgres makes openTest and openPair open Postgres (TestPostgres).
var onPostgres bool

// openTest opens an empty ledger, closed when t ends: a SQLite file, or
// under TestPostgres a fresh Postgres schema.
func openTest(t testing.TB) *DB {
	t.Helper()
	return openPair(t)[0]
}

// openPair opens the same empty ledger twice, as two processes would.
func openPair(t testing.TB) [2]*DB {
	t.Helper()
	var pair [2]*DB
	var open func() (*DB, error)
	if onPostgres {
		url := pgtest.Schema(t)
		open = func() (*DB, error) { return OpenPostgres(context.Background(), url) }
	} else {
		path := filepath.Join(t.TempDir(), "lumen.db")
		open = func() (*DB, error) { return Open(context.Background(), path) }
	}
	for i := range pair {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		pair[i] = s
	}
	return pair
}

func TestOpenMigrates(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lumen.db")
	for i := range 2 { // the second open finds the schema current
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		var version, rows int
		if err := s.db.QueryRow(`SELECT max(version), count(*) FROM ledger_migrations`).Scan(&version, &rows); err != nil {
			t.Fatal(err)
		}
		if version != SchemaVersion() || rows != SchemaVersion() {
			t.Errorf("open %d: schema version %d in %d rows, want %d", i, version, rows, SchemaVersion())
		}
		var mode string
		if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("journal_mode = %q, %v; want wal", mode, err)
		}
		var timeout int
		if err := s.db.QueryRow(`PRAGMA busy_timeout`).Scan(&timeout); err != nil || timeout < 1000 {
			t.Errorf("busy_timeout = %d, %v", timeout, err)
		}
		s.Close()
	}

	// A file written by a newer Lumen is refused, not damaged.
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO ledger_migrations VALUES (?, 0)`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer than this Lumen") {
		t.Errorf("Open of a newer schema = %v, want a refusal", err)
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", "a?b.db", filepath.Join(t.TempDir(), "missing", "dir", "x.db")} {
		if s, err := Open(context.Background(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func sampleRecord(id string, at time.Time) Record {
	return Record{
		Time: at, RequestID: id, KeyID: "key_1", KeyName: "search", User: "u-42",
		Tags: []string{"team=search", "feature-x"}, ModelGroup: "gpt-4o", Deployment: "gpt-4o/0",
		Provider: "openai", Model: "gpt-4o-2024-08-06", Status: 200,
		Usage:   providers.Usage{PromptTokens: 1200, CompletionTokens: 300, CachedTokens: 1000, CacheWriteTokens: 0},
		CostUSD: 0.004, SavedUSD: 0, Latency: 1234567 * time.Microsecond, TTFT: 250 * time.Millisecond,
		Attempts: 2, Stream: true,
	}
}

func TestInsertRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	at := time.Date(2025, 3, 15, 12, 0, 0, 123_000_000, time.UTC)
	a := sampleRecord("req-a", at)
	b := Record{Time: at.Add(time.Second), RequestID: "req-b", ModelGroup: "claude", Status: 429,
		ErrorType: "rate_limit_error", CacheHit: true, SavedUSD: 0.5}
	b.Request, b.Response = []byte(`{"messages":[]}`), []byte(`{"id":"x"}`)
	if err := s.Insert(ctx, []Record{a, b}); err != nil {
		t.Fatal(err)
	}
	page, err := s.Requests(ctx, RequestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 2 || page.Next != "" {
		t.Fatalf("got %d entries (next %q), want 2", len(page.Entries), page.Next)
	}
	gotB, gotA := page.Entries[0], page.Entries[1] // newest first
	b.Request, b.Response = nil, nil               // never returned by reports
	for _, c := range []struct {
		got  Record
		want Record
	}{{gotA.Record, a}, {gotB.Record, b}} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", c.got, c.want)
		}
	}
	req, resp, err := s.Payload(ctx, gotB.ID)
	if err != nil || string(req) != `{"messages":[]}` || string(resp) != `{"id":"x"}` {
		t.Errorf("payload = %q, %q, %v", req, resp, err)
	}
	if req, resp, err := s.Payload(ctx, gotA.ID); err != nil || req != nil || resp != nil {
		t.Errorf("payload of a record without one = %q, %q, %v", req, resp, err)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	now := time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)
	var recs []Record
	for i := range 25 {
		r := sampleRecord("old", now.AddDate(0, 0, -40).Add(time.Duration(i)*time.Minute))
		r.Request = []byte("secret prompt")
		recs = append(recs, r)
	}
	recs = append(recs, sampleRecord("new", now.AddDate(0, 0, -1)))
	if err := s.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cutoff := now.AddDate(0, 0, -30)
	var total int64
	for {
		n, err := s.Prune(ctx, cutoff, 10)
		if err != nil {
			t.Fatal(err)
		}
		if n > 10 {
			t.Fatalf("Prune deleted %d rows, limit 10", n)
		}
		total += n
		if n < 10 {
			break
		}
	}
	if total != 25 {
		t.Errorf("pruned %d, want 25", total)
	}
	var left, payloads int
	s.db.QueryRow(`SELECT count(*) FROM requests`).Scan(&left)
	s.db.QueryRow(`SELECT count(*) FROM payloads`).Scan(&payloads)
	if left != 1 || payloads != 0 {
		t.Errorf("%d records and %d payloads left, want 1 and 0", left, payloads)
	}
}
