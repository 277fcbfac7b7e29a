package ledger

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lumengw/lumen/internal/pgtest"
)

// TestPostgres runs the store's tests on Postgres (scripts/postgres.sh
// starts one; scripts/test.sh always does): the same queries, keys and
// reports must give the same answers as on SQLite.
func TestPostgres(t *testing.T) {
	pgtest.URL(t) // skips when PostgreSQL cannot be had
	onPostgres = true
	defer func() { onPostgres = false }()
	for _, tt := range []struct {
		name string
		test func(*testing.T)
	}{
		{"InsertRoundTrip", TestInsertRoundTrip},
		{"Prune", TestPrune},
		{"Spend", TestSpend},
		{"RequestsPages", TestRequestsPages},
		{"Totals", TestTotals},
		{"SpendByKeyTag", TestSpendByKeyTag},
		{"SpendSinceScopes", TestSpendSinceScopes},
		{"SpendSinceLoadsBudgets", TestSpendSinceLoadsBudgets},
		{"PruneKeepsBudgetSpend", TestPruneKeepsBudgetSpend},
		{"KeyLifecycle", TestKeyLifecycle},
		{"KeySpecValidation", TestKeySpecValidation},
		{"RevokeIsImmediate", TestRevokeIsImmediate},
		{"KeyringRunSeesOtherProcess", TestKeyringRunSeesOtherProcess},
		{"ChangeDoesNotUndoAnotherProcess", TestChangeDoesNotUndoAnotherProcess},
		{"WriterRetention", TestWriterRetention},
		{"Copy", TestCopy},
		{"MergeArms", TestMergeArms},
	} {
		t.Run(tt.name, tt.test)
	}
}

// Instances starting together migrate once; a schema newer than this
// build is refused; errors do not show the connection string.
func TestPostgresMigrates(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := OpenPostgres(ctx, url)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	s, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var version, rows int
	if err := s.db.QueryRow(`SELECT max(version), count(*) FROM ledger_migrations`).Scan(&version, &rows); err != nil {
		t.Fatal(err)
	}
	if version != SchemaVersion() || rows != SchemaVersion() || len(postgresMigrations) != len(sqliteMigrations) {
		t.Errorf("schema version %d in %d rows, want %d", version, rows, SchemaVersion())
	}
	if _, err := s.db.Exec(`INSERT INTO ledger_migrations VALUES ($1, 0)`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := OpenPostgres(ctx, url); err == nil || !strings.Contains(err.Error(), "newer than this Lumen") {
		t.Errorf("Open of a newer schema = %v, want a refusal", err)
	}

	// A server that accepts and never answers fails the open at the
	// caller's deadline (openTimeout's, by default).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := OpenPostgres(short, "postgres://lumen:s3cret-pw@"+ln.Addr().String()+"/lumen?sslmode=disable"); err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("OpenPostgres(silent server) = %v", err)
	}

	for _, bad := range []string{"postgres://lumen:s3cret-pw@127.0.0.1:1/lumen?sslmode=disable&connect_timeout=1", "postgres://lumen:s3cret-pw@%zz"} {
		_, err := OpenPostgres(ctx, bad)
		if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("OpenPostgres(bad) = %v", err)
		}
	}
}

// TestUnreachable: a Postgres that cannot be reached, or that refuses work
// while it shuts down, is Unreachable; a query's own fault is not.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, refused := OpenPostgres(context.Background(), "postgres://lumen@"+closed+"/lumen?sslmode=disable")
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"shutting down", fmt.Errorf("inserting: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"unique violation", fmt.Errorf("inserting: %w", &pgconn.PgError{Code: "23505"}), false},
		{"anything else", errors.New("no such table"), false},
	} {
		if got := Unreachable(tt.err); got != tt.want {
			t.Errorf("%s: Unreachable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
