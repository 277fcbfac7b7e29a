// Package ledger keeps Lumen's books: one row per request (who, which
// model, what it cost, how long it took), the virtual keys, and the reports
// over both. DB is the store: one SQLite file (Open), or a Postgres
// database that several instances share (OpenPostgres), with the same
// tables and the same queries (placeholders rewritten for Postgres).
//
// # Writing
//
// The request path never waits on disk. It hands a Record to
// Writer.Record, which queues it without blocking (or counts it as dropped
// when the queue is full) and returns. One goroutine owned by the Writer
// inserts queued records in batches, one transaction per batch (a batch
// that fails is retried with backoff for up to two minutes while new
// records queue behind it, so a database restart loses nothing), prunes
// rows older than the retention period in small chunks between batches
// (adding their cost to spend_rollup, so that budgets reload the same
// spend: rollup.go), and drains the queue on Close. Budgets do not depend on this path: they
// are enforced from memory (package limits) and only persisted here.
//
// # Keys
//
// A virtual key is "lumen-sk-" followed by 43 base62 characters (256
// random bits). Only its SHA-256 is stored, with a short display prefix
// ("lumen-sk-Ab12"). A Keyring keeps every key in memory, indexed by hash,
// and authenticates a presented key by hashing it; every change goes
// through the Keyring, which writes the store first and then swaps its
// index, so a revoked key stops working as soon as Revoke returns. Changes
// made by another process on the same database (the lumen keys command)
// reach a running Keyring through Run.
//
// # Reading
//
// DB answers Spend (grouped by key, model group, deployment, provider,
// user, day or tag), Requests (recent request metadata, newest first, for
// the dashboard) and Totals (requests, errors and latency percentiles per
// model group). SpendSince feeds limits.MemoryBudgets.Load on start.
//
// # Files and databases
//
// A SQLite database is in WAL mode with synchronous=NORMAL: a committed batch
// survives the process being killed; a power loss may lose the last
// batches. Tables: requests, payloads (only with store_payloads), api_keys,
// spend_rollup (the cost of the pruned requests, per budget account and
// quarter hour), bandit_arms (what auto:smart learned, MergeArms),
// ledger_migrations (the schema version). The audit log may share the file
// with its own tables. On Postgres the same tables hold times as BIGINT
// milliseconds; instances that start together migrate one at a time
// (an advisory lock), and keys changed by one reach the others through
// the same keys_version (a statement trigger).
package ledger
