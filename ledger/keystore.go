package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"
)

var _ KeysVersioner = (*DB)(nil)

func tagsOrNull(tags map[string]string) any {
	if len(tags) == 0 {
		return nil
	}
	b, err := json.Marshal(tags)
	if err != nil {
		return nil
	}
	return string(b)
}

func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique || isPostgresUnique(err)
}

// InsertKey implements KeyStore.
func (s *DB) InsertKey(ctx context.Context, k *Key) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO api_keys (id, name, hash, prefix, budget_usd, budget_period,
		rpm, tpm, models, tags, expires_at, created_at, updated_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, k.Name, k.Hash, k.Prefix, k.BudgetUSD, k.BudgetPeriod, k.RPM, k.TPM,
		jsonOrNull(k.Models), tagsOrNull(k.Tags), msOrNull(k.ExpiresAt), k.CreatedAt.UnixMilli(), k.UpdatedAt.UnixMilli(),
		msOrNull(k.RevokedAt))
	if isUniqueViolation(err) {
		return ErrNameTaken
	}
	if err != nil {
		return fmt.Errorf("inserting key: %w", err)
	}
	return nil
}

// UpdateKey implements KeyStore.
func (s *DB) UpdateKey(ctx context.Context, k *Key) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE api_keys SET name = ?, hash = ?, prefix = ?, budget_usd = ?,
		budget_period = ?, rpm = ?, tpm = ?, models = ?, tags = ?, expires_at = ?, updated_at = ?, revoked_at = ?
		WHERE id = ?`),
		k.Name, k.Hash, k.Prefix, k.BudgetUSD, k.BudgetPeriod, k.RPM, k.TPM, jsonOrNull(k.Models), tagsOrNull(k.Tags),
		msOrNull(k.ExpiresAt), k.UpdatedAt.UnixMilli(), msOrNull(k.RevokedAt), k.ID)
	if isUniqueViolation(err) {
		return ErrNameTaken
	}
	if err != nil {
		return fmt.Errorf("updating key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrKeyNotFound
	}
	return nil
}

// ListKeys implements KeyStore.
func (s *DB) ListKeys(ctx context.Context) ([]*Key, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, hash, prefix, budget_usd, budget_period, rpm, tpm,
		models, tags, expires_at, created_at, updated_at, revoked_at, spend_usd, spend_period_start
		FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	defer rows.Close()
	var out []*Key
	for rows.Next() {
		var (
			k                            Key
			models, tags                 sql.NullString
			expires, revoked, spendStart sql.NullInt64
			created, updated             int64
		)
		if err := rows.Scan(&k.ID, &k.Name, &k.Hash, &k.Prefix, &k.BudgetUSD, &k.BudgetPeriod, &k.RPM, &k.TPM,
			&models, &tags, &expires, &created, &updated, &revoked, &k.SpendUSD, &spendStart); err != nil {
			return nil, fmt.Errorf("listing keys: %w", err)
		}
		if models.Valid {
			if err := json.Unmarshal([]byte(models.String), &k.Models); err != nil {
				return nil, fmt.Errorf("listing keys: models of %s: %w", k.ID, err)
			}
		}
		if tags.Valid {
			if err := json.Unmarshal([]byte(tags.String), &k.Tags); err != nil {
				return nil, fmt.Errorf("listing keys: tags of %s: %w", k.ID, err)
			}
		}
		k.ExpiresAt, k.RevokedAt = fromMS(expires), fromMS(revoked)
		if spendStart.Valid && spendStart.Int64 != 0 {
			k.SpendPeriodStart = fromMS(spendStart)
		}
		k.CreatedAt, k.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, &k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return out, nil
}

// KeysVersion implements KeysVersioner.
func (s *DB) KeysVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, `SELECT keys_version FROM ledger_state`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading keys version: %w", err)
	}
	return v, nil
}

// KeySpend is one key's spend in one budget period.
type KeySpend struct {
	KeyID string
	// PeriodStart is the start of the period; zero for a total budget.
	PeriodStart time.Time
	USD         float64
}

// SaveSpend persists each key's spend in its current period (from
// limits.MemoryBudgets.Snapshot), in one transaction. SpendSince takes it
// into account, so that spend whose ledger rows were dropped (queue full)
// survives a restart. Unknown key ids are ignored.
func (s *DB) SaveSpend(ctx context.Context, spend []KeySpend) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("saving key spend: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, s.q(`UPDATE api_keys SET spend_usd = ?, spend_period_start = ? WHERE id = ?`))
	if err != nil {
		return fmt.Errorf("saving key spend: %w", err)
	}
	defer stmt.Close()
	for _, sp := range spend {
		if _, err := stmt.ExecContext(ctx, sp.USD, startMS(sp.PeriodStart), sp.KeyID); err != nil {
			return fmt.Errorf("saving spend of key %s: %w", sp.KeyID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("saving key spend: %w", err)
	}
	return nil
}

// startMS is the stored form of a period start: zero (a total budget)
// is 0, not the Unix time of year 1.
func startMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
