package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// What Verify found wrong; a *VerifyError wraps exactly one of them.
var (
	// ErrAltered: an entry's stored hash does not match its contents, a
	// payload does not match its digest, or a consistently re-hashed entry
	// does not match the checkpoint that signed it.
	ErrAltered = errors.New("altered")
	// ErrDeleted: entries are missing (a gap in seq).
	ErrDeleted = errors.New("deleted")
	// ErrInserted: an entry that should not be there (duplicate or
	// non-positive seq, or a prev_hash that does not link to the entry before).
	ErrInserted = errors.New("inserted")
	// ErrTruncated: the log ends before the last signed checkpoint.
	ErrTruncated = errors.New("truncated")
	// ErrBadSignature: a checkpoint's signature does not verify with the
	// public key.
	ErrBadSignature = errors.New("bad checkpoint signature")
)

// VerifyError names the first entry at which verification failed.
type VerifyError struct {
	Seq    uint64 // the first bad entry (for ErrTruncated, the first missing one)
	Kind   error  // ErrAltered, ErrDeleted, ErrInserted, ErrTruncated or ErrBadSignature
	Detail string // what exactly is wrong
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit entry %d: %v: %s", e.Seq, e.Kind, e.Detail)
}

// Unwrap returns Kind, so errors.Is(err, ErrDeleted) works.
func (e *VerifyError) Unwrap() error { return e.Kind }

// Report describes what Verify walked.
type Report struct {
	From, To       uint64 // first and last seq walked (0, 0 for an empty range)
	Entries        uint64 // entries walked
	Checkpoints    int    // checkpoints checked
	LastCheckpoint uint64 // seq signed by the last checkpoint, 0 if none
	// Unsigned counts entries after the last checkpoint: they are covered by
	// the hash chain only, not yet by a signature.
	Unsigned uint64
	Head     Digest // hash of the last entry
}

// Verify re-walks the chain from entry from (0 or 1 means the whole log) and
// checks every entry's hash and link and every checkpoint's signature with
// the log's own public key. It reads through a separate connection, so it
// may run while entries are being written; it sees a consistent snapshot.
func (l *Log) Verify(ctx context.Context, from uint64) (Report, error) {
	if l.isClosed() {
		return Report{}, fmt.Errorf("verifying audit log: %w", ErrClosed)
	}
	return verify(ctx, l.ro, l.pub, from)
}

// VerifyFile verifies the audit log at path (a SQLite file, opened
// read-only, or a Postgres URL) with only the public key, as an auditor
// would.
func VerifyFile(ctx context.Context, path string, pub ed25519.PublicKey, from uint64) (Report, error) {
	db, err := openDB(path, true)
	if err != nil {
		return Report{}, err
	}
	defer db.Close()
	return verify(ctx, db, pub, from)
}

func verify(ctx context.Context, db conn, pub ed25519.PublicKey, from uint64) (Report, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Report{}, fmt.Errorf("verifying audit log: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if from == 0 {
		from = 1
	}
	// One read transaction: entries and checkpoints from the same snapshot.
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Report{}, fmt.Errorf("verifying audit log: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only

	cps, err := loadCheckpointsTx(ctx, tx, db, from)
	if err != nil {
		return Report{}, err
	}
	// A full verify also reads seq <= 0 so such rows are reported, not skipped.
	lower := int64(from) - 1
	if from == 1 {
		lower = math.MinInt64
	}
	rows, err := tx.QueryContext(ctx,
		db.q(`SELECT `+entryColumns+` FROM audit_entries WHERE seq >= ? ORDER BY seq, rowid`), lower)
	if err != nil {
		return Report{}, fmt.Errorf("reading audit entries: %w", err)
	}
	defer rows.Close()

	keyID := KeyID(pub)
	var (
		rep  Report
		prev *storedEntry // the entry before the current one, once checked
		ci   int          // next checkpoint to match
	)
	fail := func(seq uint64, kind error, format string, args ...any) (Report, error) {
		return rep, &VerifyError{Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
	}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return rep, err
		}
		if e.seq <= 0 {
			return fail(uint64(e.seq), ErrInserted, "seq %d is not a valid position (seq starts at 1)", e.seq)
		}
		if msg := checkEntry(e); msg != "" {
			return fail(e.Seq, ErrAltered, "%s", msg)
		}
		anchor := prev == nil && e.Seq == from-1 && from > 1
		switch {
		case anchor:
			// Entry from-1 is read only to check the link into entry from.
		case prev == nil && e.Seq != from:
			return fail(from, ErrDeleted, "entries %d..%d are missing (the first entry found is %d)", from, e.Seq-1, e.Seq)
		case prev == nil && e.Seq == 1 && !e.PrevHash.IsZero():
			return fail(1, ErrInserted, "the first entry's prev_hash is not zero: entries before it were removed or it does not belong here")
		case prev != nil && e.Seq == prev.Seq:
			return fail(e.Seq, ErrInserted, "seq %d appears more than once", e.Seq)
		case prev != nil && e.Seq > prev.Seq+1:
			return fail(prev.Seq+1, ErrDeleted, "entries %d..%d are missing", prev.Seq+1, e.Seq-1)
		case prev != nil && e.PrevHash != prev.Hash:
			return fail(e.Seq, ErrInserted,
				"prev_hash does not match the hash of entry %d: entry %d was inserted or entry %d replaced", prev.Seq, e.Seq, prev.Seq)
		}
		prev = e
		if anchor {
			continue
		}
		if rep.Entries == 0 {
			rep.From = e.Seq
		}
		rep.Entries++
		rep.To, rep.Head = e.Seq, e.Hash
		for ; ci < len(cps) && cps[ci].Seq <= e.Seq; ci++ {
			c := &cps[ci]
			if c.Seq < e.Seq {
				// Its entry was skipped over: only a gap does that, reported above.
				continue
			}
			if !c.verify(pub) {
				return fail(c.Seq, ErrBadSignature, "checkpoint signed by key %s does not verify with key %s", c.KeyID, keyID)
			}
			if c.Hash != e.Hash {
				after := "the start"
				if rep.LastCheckpoint > 0 {
					after = fmt.Sprintf("entry %d", rep.LastCheckpoint)
				}
				return fail(e.Seq, ErrAltered,
					"the chain does not match the signed checkpoint: entries after %s were rewritten and re-hashed", after)
			}
			rep.Checkpoints++
			rep.LastCheckpoint = c.Seq
		}
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("reading audit entries: %w", err)
	}
	if ci < len(cps) {
		last := cps[len(cps)-1]
		return fail(rep.To+1, ErrTruncated,
			"the log ends at entry %d but a checkpoint signed entry %d", rep.To, last.Seq)
	}
	rep.Unsigned = rep.Entries
	if rep.LastCheckpoint > 0 {
		rep.Unsigned = rep.To - rep.LastCheckpoint
	}
	return rep, nil
}

// checkEntry returns what is wrong with e on its own, or "".
func checkEntry(e *storedEntry) string {
	if len(e.hash) != sha256.Size {
		return fmt.Sprintf("stored hash has %d bytes, want %d", len(e.hash), sha256.Size)
	}
	if len(e.prevHash) != sha256.Size {
		return fmt.Sprintf("stored prev_hash has %d bytes, want %d", len(e.prevHash), sha256.Size)
	}
	for _, d := range []struct {
		name string
		b    []byte
	}{{"request_sha256", e.reqDigest}, {"response_sha256", e.respDig}} {
		if d.b != nil && len(d.b) != sha256.Size {
			return fmt.Sprintf("stored %s has %d bytes, want %d", d.name, len(d.b), sha256.Size)
		}
	}
	if got := e.ComputeHash(); got != e.Hash {
		return "the stored hash does not match the entry's contents"
	}
	if e.hasReqPayload && sha256.Sum256(e.RequestPayload) != e.RequestSHA256 {
		return "the stored request payload does not match its digest"
	}
	if e.hasRespPayload && sha256.Sum256(e.ResponsePayload) != e.ResponseSHA256 {
		return "the stored response payload does not match its digest"
	}
	return ""
}

func loadCheckpointsTx(ctx context.Context, tx *sql.Tx, db conn, from uint64) ([]Checkpoint, error) {
	rows, err := tx.QueryContext(ctx,
		db.q(`SELECT seq, hash, time_ns, key_id, signature FROM audit_checkpoints
		 WHERE seq >= ? ORDER BY seq, rowid`), int64(from))
	if err != nil {
		return nil, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	defer rows.Close()
	var cps []Checkpoint
	for rows.Next() {
		var (
			c      Checkpoint
			seq    int64
			hash   []byte
			timeNS int64
		)
		if err := rows.Scan(&seq, &hash, &timeNS, &c.KeyID, &c.Signature); err != nil {
			return nil, fmt.Errorf("reading audit checkpoint: %w", err)
		}
		c.Seq = uint64(seq)
		copy(c.Hash[:], hash)
		c.Time = time.Unix(0, timeNS).UTC()
		cps = append(cps, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	return cps, nil
}
