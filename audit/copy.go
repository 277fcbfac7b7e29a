package audit

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotEmpty is Copy's refusal of a destination that already holds audit
// entries: two chains cannot be joined.
var ErrNotEmpty = errors.New("the destination audit log already holds entries")

// Copy copies every entry and checkpoint of the audit log in the SQLite
// file src, as stored (so the chain and its signatures still verify with
// the same key), into the audit log at dst (a SQLite file or a Postgres
// URL), which must hold no entries (ErrNotEmpty): the audit half of moving
// a ledger to the database several instances share. It is one transaction
// on dst. It returns how many entries and checkpoints it copied; a src
// without an audit log copies nothing.
func Copy(ctx context.Context, dst, src string) (entries, checkpoints int, err error) {
	from, err := openDB(src, true)
	if err != nil {
		return 0, 0, err
	}
	defer from.Close()
	var tables int
	if err := from.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_entries'`).Scan(&tables); err != nil {
		return 0, 0, fmt.Errorf("copying the audit log: %w", err)
	}
	if tables == 0 {
		return 0, 0, nil
	}
	to, err := openDB(dst, false)
	if err != nil {
		return 0, 0, err
	}
	defer to.Close()
	ddl := schema
	if to.pg {
		ddl = postgresSchema
	}
	if _, err := to.ExecContext(ctx, ddl); err != nil {
		return 0, 0, fmt.Errorf("creating audit tables: %w", err)
	}
	tx, err := to.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("copying the audit log: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM audit_entries`).Scan(&n); err != nil {
		return 0, 0, fmt.Errorf("copying the audit log: %w", err)
	}
	if n > 0 {
		return 0, 0, ErrNotEmpty
	}

	rows, err := from.QueryContext(ctx, `SELECT `+entryColumns+` FROM audit_entries ORDER BY seq, rowid`)
	if err != nil {
		return 0, 0, fmt.Errorf("reading audit entries: %w", err)
	}
	defer rows.Close()
	insert := to.q(insertEntry)
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return 0, 0, err
		}
		// The stored columns as they are: a digest or hash of the wrong
		// length stays wrong, for Verify to report.
		if _, err := tx.ExecContext(ctx, insert, e.seq, e.Time.UnixNano(), e.Actor, string(e.Action), e.Target,
			e.Summary.RequestID, e.Summary.ModelGroup, e.Summary.Deployment, e.Summary.Provider, e.Summary.Status,
			e.Summary.PromptTokens, e.Summary.CompletionTokens, e.Summary.CachedTokens, e.Summary.CostUSD, e.Detail,
			e.reqDigest, e.respDig, e.RequestPayload, e.ResponsePayload, e.prevHash, e.hash); err != nil {
			return 0, 0, fmt.Errorf("copying audit entry %d: %w", e.seq, err)
		}
		entries++
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading audit entries: %w", err)
	}
	cps, err := from.QueryContext(ctx, `SELECT seq, hash, time_ns, key_id, signature FROM audit_checkpoints ORDER BY seq, rowid`)
	if err != nil {
		return 0, 0, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	defer cps.Close()
	insertCP := to.q(insertCheckpoint)
	for cps.Next() {
		var (
			seq, timeNS int64
			hash, sig   []byte
			keyID       string
		)
		if err := cps.Scan(&seq, &hash, &timeNS, &keyID, &sig); err != nil {
			return 0, 0, fmt.Errorf("reading audit checkpoints: %w", err)
		}
		if _, err := tx.ExecContext(ctx, insertCP, seq, hash, timeNS, keyID, sig); err != nil {
			return 0, 0, fmt.Errorf("copying audit checkpoint %d: %w", seq, err)
		}
		checkpoints++
	}
	if err := cps.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("copying the audit log: %w", err)
	}
	return entries, checkpoints, nil
}
