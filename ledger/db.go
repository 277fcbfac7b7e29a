package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lumengw/lumen/internal/placeholder"
)

// DB is the ledger in a SQL database: one SQLite file (Open) or a
// Postgres database that several instances share (OpenPostgres). It
// implements Store, KeyStore and the report queries. It is safe for
// concurrent use: on SQLite, writes serialize on its write lock (waiting up
// to the busy timeout) and reads run concurrently with them (WAL).
type DB struct {
	db *sql.DB
	pg bool // Postgres: $n placeholders and its own JSON functions
}

// open opens s's database with driver and dsn, sizes its pool and
// migrates its schema.
func open(ctx context.Context, driver, dsn string, s *DB) (*DB, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s.db = db
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database. The Writer using s must be closed first.
func (s *DB) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing ledger: %w", err)
	}
	return nil
}

// SchemaVersion returns the schema version this build writes.
func SchemaVersion() int { return len(sqliteMigrations) }

// q returns query with its ? placeholders as the database wants them:
// unchanged on SQLite, $1, $2… on Postgres.
func (s *DB) q(query string) string {
	if !s.pg {
		return query
	}
	return placeholder.Dollar(query)
}

// migrate brings the schema to the current version, in one transaction.
// On Postgres an advisory lock makes instances starting together take
// turns; on SQLite the transaction's write lock does.
func (s *DB) migrate(ctx context.Context) error {
	migrations := sqliteMigrations
	if s.pg {
		migrations = postgresMigrations
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	defer tx.Rollback()
	if s.pg {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(4242011)`); err != nil {
			return fmt.Errorf("migrating schema: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ledger_migrations (
		version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM ledger_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if current > len(migrations) {
		return fmt.Errorf("ledger schema version %d is newer than this Lumen understands (%d): upgrade Lumen", current, len(migrations))
	}
	for v := current + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("migrating schema to version %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO ledger_migrations (version, applied_at) VALUES (?, ?)`),
			v, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migrating schema to version %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	return nil
}

// insertHead and insertRow make the INSERT of request rows: the head, then
// one insertRow per record, comma-separated.
const (
	insertHead = `INSERT INTO requests (ts, request_id, key_id, key_name, "user", tags,
	model_group, deployment, provider, model, status, error_type,
	prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
	cost, saved_cost, latency_us, ttft_us, attempts, cache_hit, stream) VALUES `
	insertRow = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// insertChunk is how many records one INSERT carries. On Postgres every
// statement is a round trip (about 100 µs a row when each row had its own;
// BenchmarkInsert), and 500 rows of 23 parameters stay well under both
// databases' parameter limits.
const insertChunk = 500

// recordArgs appends r's column values, in insertHead's order.
func recordArgs(args []any, r *Record) []any {
	return append(args, r.Time.UnixMilli(), r.RequestID, r.KeyID, r.KeyName, r.User, jsonOrNull(r.Tags),
		r.ModelGroup, r.Deployment, r.Provider, r.Model, r.Status, r.ErrorType,
		r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.CachedTokens, r.Usage.CacheWriteTokens,
		r.CostUSD, r.SavedUSD, r.Latency.Microseconds(), r.TTFT.Microseconds(), r.Attempts, b2i(r.CacheHit), b2i(r.Stream))
}

// Insert implements Store: recs in one transaction.
func (s *DB) Insert(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("inserting %d records: %w", len(recs), err)
	}
	defer tx.Rollback()
	if err := s.insert(ctx, tx, recs); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing %d records: %w", len(recs), err)
	}
	return nil
}

// insert writes recs in tx, in multi-row INSERTs and in order; a record
// with a payload goes alone, since its payload row needs its id.
func (s *DB) insert(ctx context.Context, tx *sql.Tx, recs []Record) error {
	var (
		args    []any
		pending int // records in args
		payload *sql.Stmt
	)
	flush := func() error {
		if pending == 0 {
			return nil
		}
		query := insertHead + strings.Repeat(insertRow+", ", pending-1) + insertRow
		if _, err := tx.ExecContext(ctx, s.q(query), args...); err != nil {
			return fmt.Errorf("inserting %d records: %w", pending, err)
		}
		args, pending = args[:0], 0
		return nil
	}
	for i := range recs {
		r := &recs[i]
		if r.Request == nil && r.Response == nil {
			args = recordArgs(args, r)
			if pending++; pending == insertChunk {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRowContext(ctx, s.q(insertHead+insertRow+` RETURNING id`), recordArgs(nil, r)...).Scan(&id); err != nil {
			return fmt.Errorf("inserting record %s: %w", r.RequestID, err)
		}
		if payload == nil {
			var err error
			if payload, err = tx.PrepareContext(ctx, s.q(`INSERT INTO payloads (request, request_body, response_body) VALUES (?, ?, ?)`)); err != nil {
				return fmt.Errorf("inserting payloads: %w", err)
			}
			defer payload.Close()
		}
		if _, err := payload.ExecContext(ctx, id, r.Request, r.Response); err != nil {
			return fmt.Errorf("inserting payload of %s: %w", r.RequestID, err)
		}
	}
	return flush()
}

// Prune implements Store. The cost of the rows it deletes goes to
// spend_rollup in the same transaction (rollUp), and the rows are those
// its DELETE returns: two instances pruning one Postgres at once count
// each row once.
func (s *DB) Prune(ctx context.Context, before time.Time, limit int) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("pruning records: %w", err)
	}
	defer tx.Rollback()
	const victims = `SELECT id FROM requests WHERE ts < ? ORDER BY ts LIMIT ?`
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM payloads WHERE request IN (`+victims+`)`), before.UnixMilli(), limit); err != nil {
		return 0, fmt.Errorf("pruning payloads: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.q(`DELETE FROM requests WHERE id IN (`+victims+`)
		RETURNING ts, key_id, model_group, "user", cost`), before.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("pruning records: %w", err)
	}
	sums, n, err := sumPruned(rows, before)
	if err != nil {
		return 0, fmt.Errorf("pruning records: %w", err)
	}
	if err := s.rollUp(ctx, tx, sums, before); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("pruning records: %w", err)
	}
	return n, nil
}

// Payload returns the stored request and response bodies of the record
// with row id id; both are nil when none were stored.
func (s *DB) Payload(ctx context.Context, id int64) (request, response []byte, err error) {
	err = s.db.QueryRowContext(ctx, s.q(`SELECT request_body, response_body FROM payloads WHERE request = ?`), id).Scan(&request, &response)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading payload %d: %w", id, err)
	}
	return request, response, nil
}

func jsonOrNull[T any](v []T) any {
	if len(v) == 0 {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return string(b)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func msOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(ms sql.NullInt64) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return time.UnixMilli(ms.Int64).UTC()
}
