// Package pgtest gives tests a real PostgreSQL: the one scripts/test.sh
// started (LUMEN_TEST_POSTGRES_URL), else one it starts itself with
// scripts/postgres.sh when PostgreSQL is installed (or this is root, which
// may install it). A package whose tests use it calls Stop from TestMain,
// after m.Run.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/lumengw/lumen/internal/scripts"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
)

var started struct {
	once sync.Once
	url  string
	pid  int
	err  error
}

var schemas atomic.Int64

// URL returns the connection string of a Postgres database for tests,
// starting a server on first use when LUMEN_TEST_POSTGRES_URL is not set.
// It skips the test when PostgreSQL is not installed and cannot be, and
// fails it when the server would not start.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("LUMEN_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	if matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(matches) == 0 && os.Geteuid() != 0 {
		t.Skip("PostgreSQL is not installed: run scripts/postgres.sh (it installs postgresql with apt-get and starts a server) or set LUMEN_TEST_POSTGRES_URL")
	}
	started.once.Do(start)
	if started.err != nil {
		t.Fatalf("starting postgres: %v", started.err)
	}
	return started.url
}

// Schema returns the connection string of a fresh, empty schema in the
// test database (its search_path set to it), dropped when t ends, so that
// tests do not see each other's tables.
func Schema(t testing.TB) string {
	t.Helper()
	u, drop, err := NewSchema(URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	return u
}

// NewSchema creates a fresh, empty schema in the database at base and
// returns its connection string (search_path set to it) and a func that
// drops it, for what outlives one test (a benchmark's shared ledger).
func NewSchema(base string) (string, func(), error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), schemas.Add(1))
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("LUMEN_TEST_POSTGRES_URL: %w", err)
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), `CREATE SCHEMA `+name); err != nil {
		return "", nil, fmt.Errorf("creating schema %s: %w", name, err)
	}
	drop := func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.ExecContext(context.Background(), `DROP SCHEMA `+name+` CASCADE`)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}

func start() {
	dir, err := os.MkdirTemp("", "lumen-test-postgres")
	if err != nil {
		started.err = err
		return
	}
	vars, err := scripts.Exports("postgres.sh", "LUMEN_POSTGRES_DIR="+dir)
	if err != nil {
		started.err = err
		return
	}
	started.url = vars["LUMEN_TEST_POSTGRES_URL"]
	started.pid, _ = strconv.Atoi(vars["LUMEN_TEST_POSTGRES_PID"])
	if started.url == "" {
		started.err = fmt.Errorf("scripts/postgres.sh printed no URL: %v", vars)
	}
}

// Stop stops the server URL started, if it started one (fast shutdown).
func Stop() {
	if started.pid > 0 {
		_ = syscall.Kill(started.pid, syscall.SIGINT)
	}
}
