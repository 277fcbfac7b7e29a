package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// The tables live beside any other (the ledger's, when Options.Path is the
// ledger database) and are prefixed audit_. seq is indexed but not unique on
// purpose: the database does not get to hide a duplicated seq from Verify.
const schema = `
CREATE TABLE IF NOT EXISTS audit_entries (
	seq               INTEGER NOT NULL,
	time_ns           INTEGER NOT NULL,
	actor             TEXT    NOT NULL,
	action            TEXT    NOT NULL,
	target            TEXT    NOT NULL,
	request_id        TEXT    NOT NULL,
	model_group       TEXT    NOT NULL,
	deployment        TEXT    NOT NULL,
	provider          TEXT    NOT NULL,
	status            INTEGER NOT NULL,
	prompt_tokens     INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL,
	cached_tokens     INTEGER NOT NULL,
	cost_usd          REAL    NOT NULL,
	detail            TEXT    NOT NULL,
	request_sha256    BLOB,
	response_sha256   BLOB,
	request_payload   BLOB,
	response_payload  BLOB,
	prev_hash         BLOB    NOT NULL,
	hash              BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_seq ON audit_entries(seq);
CREATE INDEX IF NOT EXISTS audit_entries_time ON audit_entries(time_ns);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	seq       INTEGER NOT NULL,
	hash      BLOB    NOT NULL,
	time_ns   INTEGER NOT NULL,
	key_id    TEXT    NOT NULL,
	signature BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_checkpoints_seq ON audit_checkpoints(seq);
`

const entryColumns = `seq, time_ns, actor, action, target, request_id, model_group,
	deployment, provider, status, prompt_tokens, completion_tokens, cached_tokens,
	cost_usd, detail, request_sha256, response_sha256, request_payload,
	response_payload, prev_hash, hash`

const insertEntry = `INSERT INTO audit_entries (` + entryColumns + `)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

const insertCheckpoint = `INSERT INTO audit_checkpoints (seq, hash, time_ns, key_id, signature)
	VALUES (?,?,?,?,?)`

// openDB opens the SQLite file at path. The writer gets one connection with
// WAL, immediate transactions and a busy timeout (the ledger may share the
// file); readers open it read-only and never create it.
func openDB(path string, readOnly bool) (*sql.DB, error) {
	q := url.Values{}
	q.Set("_busy_timeout", "5000")
	if readOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("opening audit log %s: %w", path, err)
		}
		q.Set("mode", "ro")
	} else {
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "NORMAL")
		q.Set("_txlock", "immediate")
	}
	db, err := sql.Open("sqlite3", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening audit log %s: %w", path, err)
	}
	if !readOnly {
		db.SetMaxOpenConns(1)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening audit log %s: %w", path, err)
	}
	return db, nil
}

func digestArg(d Digest) any {
	if d.IsZero() {
		return nil
	}
	return d[:]
}

func insertArgs(e *Entry) []any {
	s := &e.Summary
	return []any{
		int64(e.Seq), e.Time.UnixNano(), e.Actor, string(e.Action), e.Target,
		s.RequestID, s.ModelGroup, s.Deployment, s.Provider, s.Status,
		s.PromptTokens, s.CompletionTokens, s.CachedTokens, s.CostUSD, e.Detail,
		digestArg(e.RequestSHA256), digestArg(e.ResponseSHA256),
		e.RequestPayload, e.ResponsePayload, e.PrevHash[:], e.Hash[:],
	}
}

// storedEntry is an entry as read back, with the raw blobs kept so that a
// digest of the wrong length is reported instead of silently zero-padded.
type storedEntry struct {
	Entry
	seq                int64
	reqDigest, respDig []byte
	prevHash, hash     []byte
	hasReqPayload      bool
	hasRespPayload     bool
}

func scanEntry(rows *sql.Rows) (*storedEntry, error) {
	var (
		se     storedEntry
		timeNS int64
		action string
	)
	s := &se.Summary
	err := rows.Scan(&se.seq, &timeNS, &se.Actor, &action, &se.Target,
		&s.RequestID, &s.ModelGroup, &s.Deployment, &s.Provider, &s.Status,
		&s.PromptTokens, &s.CompletionTokens, &s.CachedTokens, &s.CostUSD, &se.Detail,
		&se.reqDigest, &se.respDig, &se.RequestPayload, &se.ResponsePayload,
		&se.prevHash, &se.hash)
	if err != nil {
		return nil, fmt.Errorf("reading audit entry: %w", err)
	}
	se.Seq = uint64(se.seq)
	se.Time = time.Unix(0, timeNS).UTC()
	se.Action = Action(action)
	se.hasReqPayload = se.RequestPayload != nil
	se.hasRespPayload = se.ResponsePayload != nil
	copy(se.RequestSHA256[:], se.reqDigest)
	copy(se.ResponseSHA256[:], se.respDig)
	copy(se.PrevHash[:], se.prevHash)
	copy(se.Hash[:], se.hash)
	return &se, nil
}

// Checkpoint is a signed statement that entry Seq had hash Hash at Time.
type Checkpoint struct {
	Seq       uint64
	Hash      Digest
	Time      time.Time
	KeyID     string // KeyID of the public key that verifies Signature
	Signature []byte
}

// checkpointDomain starts the signed message of a checkpoint.
const checkpointDomain = "lumen-audit-checkpoint-v1\n"

// signedMessage returns the bytes a checkpoint signs (Ed25519, RFC 8032):
//
//	"lumen-audit-checkpoint-v1\n" (26 bytes)
//	|| seq  (8 bytes, unsigned big-endian)
//	|| hash (the 32 bytes of entry seq's chain hash)
//	|| time (8 bytes, Unix nanoseconds, signed big-endian)
func (c *Checkpoint) signedMessage() []byte {
	msg := make([]byte, 0, len(checkpointDomain)+8+len(c.Hash)+8)
	msg = append(msg, checkpointDomain...)
	msg = binary.BigEndian.AppendUint64(msg, c.Seq)
	msg = append(msg, c.Hash[:]...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(c.Time.UnixNano()))
	return msg
}

// verify reports whether c is signed by pub.
func (c *Checkpoint) verify(pub ed25519.PublicKey) bool {
	return len(c.Signature) == ed25519.SignatureSize && ed25519.Verify(pub, c.signedMessage(), c.Signature)
}

// chainHead returns the seq and hash of the last entry and the seq and key
// id of the last checkpoint, or zeros for an empty log.
func chainHead(ctx context.Context, db *sql.DB) (seq uint64, hash Digest, cpSeq uint64, cpKey string, err error) {
	var (
		s int64
		h []byte
	)
	err = db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_entries ORDER BY seq DESC, rowid DESC LIMIT 1`).Scan(&s, &h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, Digest{}, 0, "", fmt.Errorf("reading audit chain head: %w", err)
	default:
		seq = uint64(s)
		copy(hash[:], h)
	}
	var cs int64
	err = db.QueryRowContext(ctx, `SELECT seq, key_id FROM audit_checkpoints ORDER BY seq DESC, rowid DESC LIMIT 1`).Scan(&cs, &cpKey)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		err = nil
	case err != nil:
		return 0, Digest{}, 0, "", fmt.Errorf("reading audit checkpoints: %w", err)
	default:
		cpSeq = uint64(cs)
	}
	return seq, hash, cpSeq, cpKey, nil
}
