package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
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
	// ErrTruncated: the log ends before the last signed checkpoint (in the
	// database, or VerifyOptions.Checkpoint).
	ErrTruncated = errors.New("truncated")
	// ErrBadSignature: a checkpoint's signature does not verify with any of
	// the public keys.
	ErrBadSignature = errors.New("bad checkpoint signature")
	// ErrMissingCheckpoint: more entries, or entries spanning more time,
	// than a writer leaves unsigned have no checkpoint between them (see
	// VerifyOptions): signed checkpoints were deleted.
	ErrMissingCheckpoint = errors.New("checkpoints missing")
)

// VerifyError names the first entry at which verification failed.
type VerifyError struct {
	Seq    uint64 // the first bad entry (for ErrTruncated, the first missing one)
	Kind   error  // one of the Err values above
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
	// UnsignedSince is the earliest Time of those entries (zero if none).
	// A writer signs within a minute; an older unsigned tail means it
	// stopped without signing (a crash) or its checkpoints were deleted.
	UnsignedSince time.Time
	Head          Digest // hash of the last entry
}

// DefaultMaxUnsigned is the VerifyOptions.MaxUnsigned of Verify and
// VerifyFile: the one-minute checkpoint interval plus room for entries that
// carry an earlier time than their write (a request's entry has the time
// it started; a write waits up to two minutes while the database is away).
const DefaultMaxUnsigned = defaultCheckpointInterval + unsignedMargin

// unsignedMargin is what DefaultMaxUnsigned adds to the interval.
const unsignedMargin = 14 * time.Minute

// VerifyOptions says what VerifyFileWith checks. The hash chain and every
// checkpoint signature are always checked; the rest catches signed
// checkpoints deleted by someone who can write the database but does not
// hold the signing key.
type VerifyOptions struct {
	// From is the first entry to verify; 0 or 1 means the whole log. The
	// entry before it is read for its link.
	From uint64
	// Keys are the public keys checkpoints may be signed with (after the
	// signing key changed, the old and the new). Each checkpoint is checked
	// with the key its key_id names, else with each. At least one.
	Keys []ed25519.PublicKey
	// CheckpointEvery is audit.checkpoint_every, the most entries a writer
	// appends without signing: more entries than that between two
	// checkpoints (or after the last) is ErrMissingCheckpoint. Zero means
	// not checked.
	CheckpointEvery int
	// MaxUnsigned is the longest span of entry times a writer leaves
	// without a checkpoint: entries between two checkpoints (or after the
	// last) whose times span more is ErrMissingCheckpoint. Zero means not
	// checked.
	MaxUnsigned time.Duration
	// Checkpoint, when not nil, is the last checkpoint known from outside
	// the database (ReadCheckpointFile; Options.CheckpointFile): the log
	// must reach its entry with its hash, or Verify reports ErrTruncated or
	// ErrAltered. It is what catches a tail deleted together with the
	// checkpoints that signed it. Ignored when From is past it.
	Checkpoint *Checkpoint
}

// Verify re-walks the chain from entry from (0 or 1 means the whole log) and
// checks every entry's hash and link and every checkpoint's signature with
// the log's own public key, and that no more entries, or entries spanning
// more time, are unsigned than this Log's options let a writer leave (see
// VerifyOptions; time with DefaultMaxUnsigned when checkpoints are signed
// on a timer). It reads through a separate connection, so it may run while
// entries are being written; it sees a consistent snapshot.
func (l *Log) Verify(ctx context.Context, from uint64) (Report, error) {
	if l.isClosed() {
		return Report{}, fmt.Errorf("verifying audit log: %w", ErrClosed)
	}
	opts := VerifyOptions{From: from, Keys: []ed25519.PublicKey{l.pub}, CheckpointEvery: max(l.opts.CheckpointEvery, 0)}
	if l.opts.CheckpointInterval > 0 {
		opts.MaxUnsigned = l.opts.CheckpointInterval + unsignedMargin
	}
	return verify(ctx, l.ro, opts)
}

// VerifyFile verifies the audit log at path (a SQLite file, opened
// read-only, or a Postgres URL) with only the public key, as an auditor
// would, assuming the default checkpoint_every (1000) and DefaultMaxUnsigned.
// VerifyFileWith takes other settings, several keys and an outside
// checkpoint.
func VerifyFile(ctx context.Context, path string, pub ed25519.PublicKey, from uint64) (Report, error) {
	return VerifyFileWith(ctx, path, VerifyOptions{
		From: from, Keys: []ed25519.PublicKey{pub},
		CheckpointEvery: defaultCheckpointEvery, MaxUnsigned: DefaultMaxUnsigned,
	})
}

// VerifyFileWith verifies the audit log at path as opts says.
func VerifyFileWith(ctx context.Context, path string, opts VerifyOptions) (Report, error) {
	if err := checkKeys(opts.Keys); err != nil {
		return Report{}, err
	}
	db, err := openDB(path, true)
	if err != nil {
		return Report{}, err
	}
	defer db.Close()
	return verify(ctx, db, opts)
}

func checkKeys(keys []ed25519.PublicKey) error {
	if len(keys) == 0 {
		return errors.New("verifying audit log: no public key")
	}
	for _, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("verifying audit log: public key has %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
	}
	return nil
}

// keyring finds the key that verifies a checkpoint.
type keyring struct {
	keys []ed25519.PublicKey
	ids  []string
}

func newKeyring(keys []ed25519.PublicKey) keyring {
	r := keyring{keys: keys}
	for _, k := range keys {
		r.ids = append(r.ids, KeyID(k))
	}
	return r
}

// verify reports whether one of the keys signed c, trying first the one
// c.KeyID names (key_id is not signed: it only saves work).
func (r keyring) verify(c *Checkpoint) bool {
	for i, id := range r.ids {
		if id == c.KeyID && c.verify(r.keys[i]) {
			return true
		}
	}
	for i, id := range r.ids {
		if id != c.KeyID && c.verify(r.keys[i]) {
			return true
		}
	}
	return false
}

func (r keyring) String() string {
	if len(r.ids) == 1 {
		return "key " + r.ids[0]
	}
	return "keys " + strings.Join(r.ids, ", ")
}

// segment tracks the entries walked since the last checkpoint, for the
// checks of VerifyOptions.CheckpointEvery and MaxUnsigned.
type segment struct {
	first, last          uint64
	earliest, latest     time.Time
	earliestAt, latestAt uint64
}

func (s *segment) add(e *storedEntry) {
	if s.first == 0 {
		*s = segment{first: e.Seq, earliest: e.Time, latest: e.Time, earliestAt: e.Seq, latestAt: e.Seq}
	}
	s.last = e.Seq
	if e.Time.Before(s.earliest) {
		s.earliest, s.earliestAt = e.Time, e.Seq
	}
	if e.Time.After(s.latest) {
		s.latest, s.latestAt = e.Time, e.Seq
	}
}

// check returns what is wrong with the segment, or "". signed says whether
// a checkpoint ends it (else it is the unsigned tail).
func (s *segment) check(opts *VerifyOptions, signed bool) string {
	if s.first == 0 {
		return ""
	}
	where := fmt.Sprintf("entries %d..%d have no checkpoint between them", s.first, s.last)
	if !signed {
		where = fmt.Sprintf("entries %d..%d are signed by no checkpoint", s.first, s.last)
	}
	if n := s.last - s.first + 1; opts.CheckpointEvery > 0 && n > uint64(opts.CheckpointEvery) {
		return fmt.Sprintf("%s, but a checkpoint is signed every %d entries (audit.checkpoint_every): signed checkpoints were deleted",
			where, opts.CheckpointEvery)
	}
	if span := s.latest.Sub(s.earliest); opts.MaxUnsigned > 0 && span > opts.MaxUnsigned {
		return fmt.Sprintf("%s, but their times span %v (entry %d to entry %d) and a checkpoint is signed every minute "+
			"(%v allowed): signed checkpoints were deleted, or requests ran that long",
			where, span.Round(time.Second), s.earliestAt, s.latestAt, opts.MaxUnsigned)
	}
	return ""
}

func verify(ctx context.Context, db conn, opts VerifyOptions) (Report, error) {
	if err := checkKeys(opts.Keys); err != nil {
		return Report{}, err
	}
	keys := newKeyring(opts.Keys)
	from := max(opts.From, 1)
	outside := opts.Checkpoint
	if outside != nil {
		if !keys.verify(outside) {
			return Report{}, &VerifyError{Seq: outside.Seq, Kind: ErrBadSignature,
				Detail: fmt.Sprintf("the last known checkpoint (signed by key %s) does not verify with %s", outside.KeyID, keys)}
		}
		if outside.Seq < from {
			outside = nil
		}
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

	var (
		rep  Report
		prev *storedEntry // the entry before the current one, once checked
		ci   int          // next checkpoint to match
		seg  segment      // entries since the last checkpoint
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
		seg.add(e)
		signed := false
		for ; ci < len(cps) && cps[ci].Seq <= e.Seq; ci++ {
			c := &cps[ci]
			if c.Seq < e.Seq {
				// Its entry was skipped over: only a gap does that, reported above.
				continue
			}
			if !keys.verify(c) {
				return fail(c.Seq, ErrBadSignature, "checkpoint signed by key %s does not verify with %s", c.KeyID, keys)
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
			signed = true
		}
		if outside != nil && outside.Seq == e.Seq {
			if outside.Hash != e.Hash {
				return fail(e.Seq, ErrAltered,
					"the chain does not match the last known checkpoint (signed %s): the log was rewritten",
					outside.Time.Format(time.RFC3339))
			}
			signed = true
		}
		if signed {
			if msg := seg.check(&opts, true); msg != "" {
				return fail(seg.first, ErrMissingCheckpoint, "%s", msg)
			}
			seg = segment{}
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
	if outside != nil && outside.Seq > rep.To {
		return fail(max(rep.To+1, from), ErrTruncated,
			"the log ends at entry %d but the last known checkpoint (signed %s) signed entry %d: entries and the checkpoints that signed them were deleted",
			rep.To, outside.Time.Format(time.RFC3339), outside.Seq)
	}
	if msg := seg.check(&opts, false); msg != "" {
		return fail(seg.first, ErrMissingCheckpoint, "%s", msg)
	}
	if seg.first != 0 {
		rep.Unsigned, rep.UnsignedSince = seg.last-seg.first+1, seg.earliest
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
