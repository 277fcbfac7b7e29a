package ledger

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Budgets reload their spend from the request rows (SpendSince), and
// retention deletes rows. So that a budget's spend does not go with them,
// Prune adds the cost of the rows it deletes to spend_rollup, in the same
// transaction: per budget account the rows name (a key, a model group, an
// end user; a tag's spend and the gateway's are derived from those, as
// from the rows) and per quarter hour the requests began in. A budget
// period starts at midnight in ledger.budget_timezone, which is on a
// quarter hour in every zone in use, so the spend of the rows and of the
// rollup since a period start is what the rows alone gave before the
// prune. Quarters long past (rollupFold) are folded into one sum per
// account, quarter 0, which only all-time spend (a total budget) counts.

// quarterMS is a quarter hour in milliseconds.
const quarterMS = int64(15 * time.Minute / time.Millisecond)

// rollupFold is how long before a prune's cut-off a quarter is folded into
// quarter 0. A current budget period began at most 31 days before now
// (a month), and the cut-off is never after now: no period that SpendSince
// is asked about can begin before a folded quarter.
const rollupFold = 35 * 24 * time.Hour

// rollupChunk is how many rollup rows one upsert carries (four parameters
// each).
const rollupChunk = 250

// Kinds of rollup rows.
const (
	rollupKey   = "key"
	rollupGroup = "group"
	rollupUser  = "user"
)

// rollup is one row of spend_rollup.
type rollup struct {
	kind, name string
	quarter    int64
}

// sumPruned reads the rows a prune deleted (ts, key_id, model_group,
// user, cost) and sums their cost per rollup row, the rows older than
// rollupFold before before in quarter 0; rows that cost nothing add none.
// It returns how many rows it read, and closes rows.
func sumPruned(rows *sql.Rows, before time.Time) (map[rollup]float64, int64, error) {
	defer rows.Close()
	fold := before.Add(-rollupFold).UnixMilli()
	sums := map[rollup]float64{}
	var n int64
	for rows.Next() {
		var (
			ts               int64
			key, group, user string
			cost             float64
		)
		if err := rows.Scan(&ts, &key, &group, &user, &cost); err != nil {
			return nil, 0, err
		}
		n++
		if cost == 0 {
			continue
		}
		q := ts - ts%quarterMS
		if ts < fold {
			q = 0
		}
		sums[rollup{rollupGroup, group, q}] += cost // the gateway's total counts group ''
		if key != "" {
			sums[rollup{rollupKey, key, q}] += cost
		}
		if user != "" {
			sums[rollup{rollupUser, user, q}] += cost
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	return sums, n, nil
}

// rollUp adds sums to spend_rollup in tx, after folding the quarters older
// than rollupFold before before into quarter 0. The folded rows are those
// its DELETE returns, so that two instances folding at once count each
// once; rows are written in one order, so that two upserting at once do
// not deadlock.
func (s *DB) rollUp(ctx context.Context, tx *sql.Tx, sums map[rollup]float64, before time.Time) error {
	folded, err := tx.QueryContext(ctx, s.q(`DELETE FROM spend_rollup WHERE quarter > 0 AND quarter < ?
		RETURNING kind, name, cost`), before.Add(-rollupFold).UnixMilli())
	if err != nil {
		return fmt.Errorf("folding old spend rollups: %w", err)
	}
	defer folded.Close()
	for folded.Next() {
		var r rollup
		var cost float64
		if err := folded.Scan(&r.kind, &r.name, &cost); err != nil {
			return fmt.Errorf("folding old spend rollups: %w", err)
		}
		sums[r] += cost
	}
	if err := folded.Err(); err != nil {
		return fmt.Errorf("folding old spend rollups: %w", err)
	}
	folded.Close()

	keys := make([]rollup, 0, len(sums))
	for r := range sums {
		keys = append(keys, r)
	}
	slices.SortFunc(keys, func(a, b rollup) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name), cmp.Compare(a.quarter, b.quarter))
	})
	for chunk := range slices.Chunk(keys, rollupChunk) {
		args := make([]any, 0, 4*len(chunk))
		for _, r := range chunk {
			args = append(args, r.kind, r.name, r.quarter, sums[r])
		}
		query := `INSERT INTO spend_rollup (kind, name, quarter, cost) VALUES ` +
			strings.Repeat(`(?, ?, ?, ?), `, len(chunk)-1) + `(?, ?, ?, ?)
			ON CONFLICT (kind, name, quarter) DO UPDATE SET cost = spend_rollup.cost + excluded.cost`
		if _, err := tx.ExecContext(ctx, s.q(query), args...); err != nil {
			return fmt.Errorf("rolling up the spend of pruned records: %w", err)
		}
	}
	return nil
}
