package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Arm is what auto:smart observed of one model on one domain: Beta
// pseudo-counts of successes (Alpha) and failures (Beta).
type Arm struct {
	Domain, Model string
	Alpha, Beta   float64
}

// MergeArms adds deltas (outcomes an instance observed since its last
// merge) to the stored arms, rescales each arm whose Alpha+Beta exceeds
// maxCount (0: no cap) down to it, as the bandit does in memory, and
// returns every stored arm, in one transaction. Instances that merge into
// one ledger decide on what all of them learned.
func (s *DB) MergeArms(ctx context.Context, deltas []Arm, maxCount float64) ([]Arm, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("merging bandit arms: %w", err)
	}
	defer tx.Rollback()
	if len(deltas) > 0 {
		now := time.Now().UnixMilli()
		stmt, err := tx.PrepareContext(ctx, s.q(`INSERT INTO bandit_arms (domain, model, alpha, beta, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (domain, model) DO UPDATE SET alpha = bandit_arms.alpha + excluded.alpha,
			beta = bandit_arms.beta + excluded.beta, updated_at = excluded.updated_at`))
		if err != nil {
			return nil, fmt.Errorf("merging bandit arms: %w", err)
		}
		defer stmt.Close()
		for _, d := range deltas {
			if _, err := stmt.ExecContext(ctx, d.Domain, d.Model, d.Alpha, d.Beta, now); err != nil {
				return nil, fmt.Errorf("merging bandit arm %s/%s: %w", d.Domain, d.Model, err)
			}
		}
		if maxCount > 0 {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE bandit_arms SET alpha = alpha * ? / (alpha + beta),
				beta = beta * ? / (alpha + beta) WHERE alpha + beta > ?`), maxCount, maxCount, maxCount); err != nil {
				return nil, fmt.Errorf("capping bandit arms: %w", err)
			}
		}
	}
	arms, err := readArms(ctx, tx)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("merging bandit arms: %w", err)
	}
	return arms, nil
}

// queryer is a DB or a Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readArms returns every stored arm, sorted by domain and model.
func readArms(ctx context.Context, q queryer) ([]Arm, error) {
	rows, err := q.QueryContext(ctx, `SELECT domain, model, alpha, beta FROM bandit_arms ORDER BY domain, model`)
	if err != nil {
		return nil, fmt.Errorf("reading bandit arms: %w", err)
	}
	defer rows.Close()
	var out []Arm
	for rows.Next() {
		var a Arm
		if err := rows.Scan(&a.Domain, &a.Model, &a.Alpha, &a.Beta); err != nil {
			return nil, fmt.Errorf("reading bandit arms: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading bandit arms: %w", err)
	}
	return out, nil
}
