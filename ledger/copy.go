package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrNotEmpty is Copy's refusal of a destination that already holds keys
// or requests: copying into it would mix two ledgers.
var ErrNotEmpty = errors.New("the destination ledger already holds keys or requests")

// CopyStats is what Copy copied.
type CopyStats struct {
	Keys, Requests, Payloads, Arms int
	// Rollups are the rows of spend_rollup: the spend of the requests
	// retention deleted.
	Rollups int
}

// copyChunk is how many requests Copy reads from src at a time.
const copyChunk = 5000

// Copy copies every virtual key (revoked ones too, with their hashes and
// saved spend), every request row with its payload, the spend of the
// requests retention deleted (spend_rollup) and what auto:smart learned
// (its arms) from src into dst,
// which must be empty (ErrNotEmpty): how a ledger moves from its SQLite
// file to the Postgres database several instances share. Everything goes
// in one transaction on dst, so a failed copy leaves dst empty. Request
// ids are dst's own; nothing else changes. progress, if set, is called
// after each chunk with the requests copied so far.
func Copy(ctx context.Context, dst, src *DB, progress func(requests int)) (CopyStats, error) {
	var st CopyStats
	tx, err := dst.db.BeginTx(ctx, nil)
	if err != nil {
		return st, fmt.Errorf("copying the ledger: %w", err)
	}
	defer tx.Rollback()
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM requests) +
		(SELECT count(*) FROM spend_rollup)`).Scan(&n); err != nil {
		return st, fmt.Errorf("copying the ledger: %w", err)
	}
	if n > 0 {
		return st, ErrNotEmpty
	}

	keys, err := src.ListKeys(ctx)
	if err != nil {
		return st, err
	}
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, dst.q(`INSERT INTO api_keys (id, name, hash, prefix, budget_usd, budget_period,
			rpm, tpm, models, tags, expires_at, created_at, updated_at, revoked_at, spend_usd, spend_period_start)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			k.ID, k.Name, k.Hash, k.Prefix, k.BudgetUSD, k.BudgetPeriod, k.RPM, k.TPM,
			jsonOrNull(k.Models), tagsOrNull(k.Tags), msOrNull(k.ExpiresAt), k.CreatedAt.UnixMilli(), k.UpdatedAt.UnixMilli(),
			msOrNull(k.RevokedAt), k.SpendUSD, startMS(k.SpendPeriodStart)); err != nil {
			return st, fmt.Errorf("copying key %s: %w", k.ID, err)
		}
		st.Keys++
	}

	arms, err := readArms(ctx, src.db)
	if err != nil {
		return st, err
	}
	for _, a := range arms {
		if _, err := tx.ExecContext(ctx, dst.q(`INSERT INTO bandit_arms (domain, model, alpha, beta, updated_at) VALUES (?, ?, ?, ?, ?)`),
			a.Domain, a.Model, a.Alpha, a.Beta, time.Now().UnixMilli()); err != nil {
			return st, fmt.Errorf("copying bandit arm %s/%s: %w", a.Domain, a.Model, err)
		}
		st.Arms++
	}

	if st.Rollups, err = copyRollups(ctx, tx, dst, src); err != nil {
		return st, err
	}

	var after int64
	recs := make([]Record, 0, copyChunk)
	for {
		recs, after, err = src.chunk(ctx, recs[:0], after)
		if err != nil {
			return st, err
		}
		if len(recs) == 0 {
			break
		}
		if err := dst.insert(ctx, tx, recs); err != nil {
			return st, fmt.Errorf("copying requests: %w", err)
		}
		for i := range recs {
			if recs[i].Request != nil || recs[i].Response != nil {
				st.Payloads++
			}
		}
		st.Requests += len(recs)
		if progress != nil {
			progress(st.Requests)
		}
	}
	if err := tx.Commit(); err != nil {
		return st, fmt.Errorf("copying the ledger: %w", err)
	}
	return st, nil
}

// chunk appends to recs up to copyChunk requests with ids after after, in
// id order, with their payloads, and returns the last id read.
func (s *DB) chunk(ctx context.Context, recs []Record, after int64) ([]Record, int64, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+entryColumns+`, payloads.request_body, payloads.response_body
		FROM requests LEFT JOIN payloads ON payloads.request = requests.id
		WHERE requests.id > ? ORDER BY requests.id LIMIT ?`), after, copyChunk)
	if err != nil {
		return nil, after, fmt.Errorf("reading requests: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var req, resp []byte
		if err := scanEntry(rows, &e, &req, &resp); err != nil {
			return nil, after, fmt.Errorf("reading requests: %w", err)
		}
		e.Request, e.Response = req, resp
		recs = append(recs, e.Record)
		after = e.ID
	}
	if err := rows.Err(); err != nil {
		return nil, after, fmt.Errorf("reading requests: %w", err)
	}
	return recs, after, nil
}

// copyRollups copies src's spend_rollup into dst in tx, and returns how
// many rows it copied.
func copyRollups(ctx context.Context, tx *sql.Tx, dst, src *DB) (int, error) {
	rows, err := src.db.QueryContext(ctx, `SELECT kind, name, quarter, cost FROM spend_rollup`)
	if err != nil {
		return 0, fmt.Errorf("reading spend rollups: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var kind, name string
		var quarter int64
		var cost float64
		if err := rows.Scan(&kind, &name, &quarter, &cost); err != nil {
			return n, fmt.Errorf("reading spend rollups: %w", err)
		}
		if _, err := tx.ExecContext(ctx, dst.q(`INSERT INTO spend_rollup (kind, name, quarter, cost) VALUES (?, ?, ?, ?)`),
			kind, name, quarter, cost); err != nil {
			return n, fmt.Errorf("copying spend rollup %s %s: %w", kind, name, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("reading spend rollups: %w", err)
	}
	return n, nil
}
