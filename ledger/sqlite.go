package ledger

import (
	"context"
	"fmt"
	"strings"

	_ "github.com/mattn/go-sqlite3" // the database/sql driver "sqlite3"
)

// Open opens (creating if needed) the ledger at path and migrates its
// schema to the current version. Several processes may open the same file;
// migrations run in a write transaction, once.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("opening ledger: invalid path %q", path)
	}
	// _txlock=immediate takes the write lock at BEGIN, so two writers wait
	// on the busy timeout instead of one failing to upgrade its lock.
	dsn := path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=1&_cache_size=-32000"
	s, err := open(ctx, "sqlite3", dsn, &DB{})
	if err != nil {
		return nil, fmt.Errorf("opening ledger %s: %w", path, err)
	}
	return s, nil
}

// sqliteMigrations are the SQLite schema, one step per version; a step is
// never edited once released, only followed by another.
var sqliteMigrations = []string{
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
	// 2: what auto:smart learned (Arm), shared by the instances.
	`
CREATE TABLE bandit_arms (
	domain     TEXT    NOT NULL,
	model      TEXT    NOT NULL,
	alpha      REAL    NOT NULL,
	beta       REAL    NOT NULL,
	updated_at INTEGER NOT NULL, -- Unix milliseconds
	PRIMARY KEY (domain, model)
);
`,
	// 3: the cost of the requests retention deleted, per budget account
	// (rollup.go), so that budgets reload the same spend after a prune.
	`
CREATE TABLE spend_rollup (
	kind    TEXT    NOT NULL, -- 'key', 'group' or 'user'
	name    TEXT    NOT NULL, -- key id, model group ('' too) or user
	quarter INTEGER NOT NULL, -- Unix milliseconds of the quarter hour the requests began in; 0: long before
	cost    REAL    NOT NULL,
	PRIMARY KEY (kind, name, quarter)
);
CREATE INDEX spend_rollup_quarter ON spend_rollup (quarter);
`,
}
