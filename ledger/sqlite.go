package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the database/sql driver "sqlite3"
)

// SQLite is the ledger in one SQLite file. It implements Store, KeyStore
// and the report queries. It is safe for concurrent use: writes serialize
// on SQLite's write lock (waiting up to the busy timeout), reads run
// concurrently with them (WAL).
type SQLite struct {
	db     *sql.DB
	path   string
	insert *sql.Stmt // insertRequest, prepared once (per connection, by database/sql)
}

// Open opens (creating if needed) the ledger at path and migrates its
// schema to the current version. Several processes may open the same file;
// migrations run in a write transaction, once.
func Open(ctx context.Context, path string) (*SQLite, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("opening ledger: invalid path %q", path)
	}
	// _txlock=immediate takes the write lock at BEGIN, so two writers wait
	// on the busy timeout instead of one failing to upgrade its lock.
	dsn := path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=1&_cache_size=-32000"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening ledger %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &SQLite{db: db, path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening ledger %s: %w", path, err)
	}
	if s.insert, err = db.PrepareContext(ctx, insertRequest); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening ledger %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database. The Writer using s must be closed first.
func (s *SQLite) Close() error {
	_ = s.insert.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing ledger: %w", err)
	}
	return nil
}

// Path returns the file s was opened from.
func (s *SQLite) Path() string { return s.path }

// migrations are the schema, one step per version; a step is never edited
// once released, only followed by another.
var migrations = []string{
	// 1: requests, payloads, keys.
	`
CREATE TABLE requests (
	id                 INTEGER PRIMARY KEY,
	ts                 INTEGER NOT NULL, -- request start, Unix milliseconds
	request_id         TEXT    NOT NULL,
	key_id             TEXT    NOT NULL DEFAULT '',
	key_name           TEXT    NOT NULL DEFAULT '',
	user               TEXT    NOT NULL DEFAULT '',
	tags               TEXT,             -- JSON array, NULL when none
	model_group        TEXT    NOT NULL DEFAULT '',
	deployment         TEXT    NOT NULL DEFAULT '',
	provider           TEXT    NOT NULL DEFAULT '',
	model              TEXT    NOT NULL DEFAULT '',
	status             INTEGER NOT NULL,
	error_type         TEXT    NOT NULL DEFAULT '',
	prompt_tokens      INTEGER NOT NULL DEFAULT 0,
	completion_tokens  INTEGER NOT NULL DEFAULT 0,
	cached_tokens      INTEGER NOT NULL DEFAULT 0,
	cache_write_tokens INTEGER NOT NULL DEFAULT 0,
	cost               REAL    NOT NULL DEFAULT 0,
	saved_cost         REAL    NOT NULL DEFAULT 0,
	latency_us         INTEGER NOT NULL DEFAULT 0,
	ttft_us            INTEGER NOT NULL DEFAULT 0,
	attempts           INTEGER NOT NULL DEFAULT 0,
	cache_hit          INTEGER NOT NULL DEFAULT 0,
	stream             INTEGER NOT NULL DEFAULT 0
);
-- Time-range reports and retention.
CREATE INDEX requests_ts ON requests (ts);
-- One key's reports and recent requests. It carries every column a key's
-- spend report reads (all groupings but user and tag), so such a report
-- reads only this index: a third of the time of reading the rows.
CREATE INDEX requests_key ON requests (key_id, ts, model_group, deployment, provider, status,
	prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, cost, saved_cost);
-- Dashboard filters by model group.
CREATE INDEX requests_group ON requests (model_group, ts);

CREATE TABLE payloads (
	request  INTEGER PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
	request_body  BLOB,
	response_body BLOB
);

CREATE TABLE api_keys (
	id                 TEXT    PRIMARY KEY,
	name               TEXT    NOT NULL,
	hash               BLOB    NOT NULL UNIQUE, -- SHA-256 of the key; never the key
	prefix             TEXT    NOT NULL,        -- for display only
	budget_usd         REAL    NOT NULL DEFAULT 0,
	budget_period      TEXT    NOT NULL DEFAULT '',
	rpm                INTEGER NOT NULL DEFAULT 0,
	tpm                INTEGER NOT NULL DEFAULT 0,
	models             TEXT,    -- JSON array, NULL means every model
	tags               TEXT,    -- JSON object
	expires_at         INTEGER, -- Unix milliseconds, NULL means never
	created_at         INTEGER NOT NULL,
	updated_at         INTEGER NOT NULL,
	revoked_at         INTEGER,
	spend_usd          REAL    NOT NULL DEFAULT 0,
	spend_period_start INTEGER  -- Unix milliseconds of the period spend_usd is for
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

-- keys_version changes whenever a key's settings change, so that another
-- process can notice cheaply (Keyring.Run).
CREATE TABLE ledger_state (id INTEGER PRIMARY KEY CHECK (id = 1), keys_version INTEGER NOT NULL);
INSERT INTO ledger_state VALUES (1, 0);
CREATE TRIGGER api_keys_insert AFTER INSERT ON api_keys
BEGIN UPDATE ledger_state SET keys_version = keys_version + 1; END;
CREATE TRIGGER api_keys_update AFTER UPDATE OF name, hash, prefix, budget_usd, budget_period,
	rpm, tpm, models, tags, expires_at, revoked_at ON api_keys
BEGIN UPDATE ledger_state SET keys_version = keys_version + 1; END;
CREATE TRIGGER api_keys_delete AFTER DELETE ON api_keys
BEGIN UPDATE ledger_state SET keys_version = keys_version + 1; END;
`,
}

// SchemaVersion returns the schema version this build writes.
func SchemaVersion() int { return len(migrations) }

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ledger_migrations (
		version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
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
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_migrations (version, applied_at) VALUES (?, ?)`,
			v, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migrating schema to version %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	return nil
}

const insertRequest = `INSERT INTO requests (ts, request_id, key_id, key_name, user, tags,
	model_group, deployment, provider, model, status, error_type,
	prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
	cost, saved_cost, latency_us, ttft_us, attempts, cache_hit, stream)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// Insert implements Store.
func (s *SQLite) Insert(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("inserting %d records: %w", len(recs), err)
	}
	defer tx.Rollback()
	stmt := tx.StmtContext(ctx, s.insert) // reuses the statement prepared on this connection
	defer stmt.Close()
	var payload *sql.Stmt
	for i := range recs {
		r := &recs[i]
		res, err := stmt.ExecContext(ctx, r.Time.UnixMilli(), r.RequestID, r.KeyID, r.KeyName, r.User, jsonOrNull(r.Tags),
			r.ModelGroup, r.Deployment, r.Provider, r.Model, r.Status, r.ErrorType,
			r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.CachedTokens, r.Usage.CacheWriteTokens,
			r.CostUSD, r.SavedUSD, r.Latency.Microseconds(), r.TTFT.Microseconds(), r.Attempts, r.CacheHit, r.Stream)
		if err != nil {
			return fmt.Errorf("inserting record %s: %w", r.RequestID, err)
		}
		if r.Request == nil && r.Response == nil {
			continue
		}
		if payload == nil {
			if payload, err = tx.PrepareContext(ctx, `INSERT INTO payloads (request, request_body, response_body) VALUES (?, ?, ?)`); err != nil {
				return fmt.Errorf("inserting payloads: %w", err)
			}
			defer payload.Close()
		}
		id, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("inserting payload of %s: %w", r.RequestID, err)
		}
		if _, err := payload.ExecContext(ctx, id, r.Request, r.Response); err != nil {
			return fmt.Errorf("inserting payload of %s: %w", r.RequestID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing %d records: %w", len(recs), err)
	}
	return nil
}

// Prune implements Store.
func (s *SQLite) Prune(ctx context.Context, before time.Time, limit int) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("pruning records: %w", err)
	}
	defer tx.Rollback()
	const victims = `SELECT id FROM requests WHERE ts < ? ORDER BY ts LIMIT ?`
	if _, err := tx.ExecContext(ctx, `DELETE FROM payloads WHERE request IN (`+victims+`)`, before.UnixMilli(), limit); err != nil {
		return 0, fmt.Errorf("pruning payloads: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE id IN (`+victims+`)`, before.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("pruning records: %w", err)
	}
	n, _ := res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("pruning records: %w", err)
	}
	return n, nil
}

// Payload returns the stored request and response bodies of the record
// with row id id; both are nil when none were stored.
func (s *SQLite) Payload(ctx context.Context, id int64) (request, response []byte, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT request_body, response_body FROM payloads WHERE request = ?`, id).Scan(&request, &response)
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
