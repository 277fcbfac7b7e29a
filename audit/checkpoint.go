package audit

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// checkpointJSON is a Checkpoint as Options.CheckpointFile holds it. The
// fields are what the signature covers (see Checkpoint.signedMessage), so
// the file can be checked with the public key alone.
type checkpointJSON struct {
	Seq       uint64 `json:"seq"`
	Hash      string `json:"hash"`      // lowercase hex
	Time      string `json:"time"`      // RFC 3339, nanoseconds, UTC
	KeyID     string `json:"key_id"`    // see KeyID
	Signature string `json:"signature"` // standard base64
}

// WriteCheckpointFile replaces the file at path with cp, as JSON, through a
// temporary file and a rename, so a reader never sees half of it.
func WriteCheckpointFile(path string, cp *Checkpoint) error {
	b, err := json.Marshal(checkpointJSON{
		Seq: cp.Seq, Hash: hex.EncodeToString(cp.Hash[:]), Time: cp.Time.UTC().Format(time.RFC3339Nano),
		KeyID: cp.KeyID, Signature: base64.StdEncoding.EncodeToString(cp.Signature),
	})
	if err != nil {
		return fmt.Errorf("writing checkpoint file %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing checkpoint file: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	if werr == nil {
		werr = f.Chmod(0o644)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing checkpoint file %s: %w", path, werr)
	}
	return nil
}

// ReadCheckpointFile reads a checkpoint that WriteCheckpointFile wrote. It
// does not check the signature: VerifyOptions.Checkpoint does.
func ReadCheckpointFile(path string) (*Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint file: %w", err)
	}
	var j checkpointJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("reading checkpoint file %s: %w", path, err)
	}
	cp := &Checkpoint{Seq: j.Seq, KeyID: j.KeyID}
	hash, err := hex.DecodeString(j.Hash)
	if err != nil || len(hash) != len(cp.Hash) {
		return nil, fmt.Errorf("reading checkpoint file %s: hash %q is not %d bytes of hex", path, j.Hash, len(cp.Hash))
	}
	copy(cp.Hash[:], hash)
	if cp.Time, err = time.Parse(time.RFC3339Nano, j.Time); err != nil {
		return nil, fmt.Errorf("reading checkpoint file %s: %w", path, err)
	}
	if cp.Signature, err = base64.StdEncoding.DecodeString(j.Signature); err != nil {
		return nil, fmt.Errorf("reading checkpoint file %s: signature: %w", path, err)
	}
	if cp.Seq == 0 {
		return nil, fmt.Errorf("reading checkpoint file %s: seq is 0", path)
	}
	return cp, nil
}

// openCheckpointFile is Open's look at Options.CheckpointFile: a missing
// file gets the database's last checkpoint (a log that had none before);
// a file the database does not match is left alone for good (it is the
// evidence Verify needs) and reported.
func (l *Log) openCheckpointFile(ctx context.Context) {
	path := l.opts.CheckpointFile
	cp, err := ReadCheckpointFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		last, err := lastCheckpoint(ctx, l.db)
		if err != nil {
			l.logger.Error().Err(err).Msg("audit checkpoint file not written")
			return
		}
		if last != nil {
			l.writeCheckpointFile(last)
		}
		return
	case err != nil:
		l.keepCheckpointFile = true
		l.logger.Error().Err(err).Str("checkpoint_file", path).
			Msg("audit checkpoint file unreadable; it is left as it is: run lumen audit verify")
		return
	}
	var h []byte
	err = l.db.QueryRowContext(ctx, l.db.q(`SELECT hash FROM audit_entries WHERE seq = ? ORDER BY rowid LIMIT 1`), int64(cp.Seq)).Scan(&h)
	if err == nil && len(h) == len(cp.Hash) && Digest(h) == cp.Hash {
		return
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		l.logger.Error().Err(err).Msg("reading the audit entry the checkpoint file signed")
	}
	l.keepCheckpointFile = true
	l.logger.Error().Str("checkpoint_file", path).Uint64("checkpoint_seq", cp.Seq).
		Msg("the audit log does not hold the entry its checkpoint file signed (truncated or replaced); " +
			"the file is kept as evidence and not updated: run lumen audit verify (after starting a new log on purpose, move the file away)")
}

// writeCheckpointFile writes cp to Options.CheckpointFile unless the file
// is kept or already holds a later checkpoint (another process on the
// same log wrote it). A failure is logged: the checkpoint is in the
// database all the same.
func (l *Log) writeCheckpointFile(cp *Checkpoint) {
	path := l.opts.CheckpointFile
	if path == "" || l.keepCheckpointFile {
		return
	}
	if old, err := ReadCheckpointFile(path); err == nil && old.Seq >= cp.Seq {
		return
	}
	if err := WriteCheckpointFile(path, cp); err != nil {
		l.logger.Error().Err(err).Uint64("seq", cp.Seq).Msg("audit checkpoint file not written")
	}
}

// lastCheckpoint returns the checkpoint with the highest seq, nil if none.
func lastCheckpoint(ctx context.Context, db conn) (*Checkpoint, error) {
	var (
		c           Checkpoint
		seq, timeNS int64
		hash        []byte
	)
	err := db.QueryRowContext(ctx, `SELECT seq, hash, time_ns, key_id, signature FROM audit_checkpoints ORDER BY seq DESC, rowid DESC LIMIT 1`).
		Scan(&seq, &hash, &timeNS, &c.KeyID, &c.Signature)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	c.Seq = uint64(seq)
	copy(c.Hash[:], hash)
	c.Time = time.Unix(0, timeNS).UTC()
	return &c, nil
}
