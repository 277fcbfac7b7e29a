package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeMinuteLog writes 25 entries a minute apart (checkpoints at 10, 20
// and 25, the last on Close) with the checkpoint file beside the database,
// as a server busy for 25 minutes would.
func writeMinuteLog(t *testing.T) (Options, ed25519.PublicKey) {
	t.Helper()
	l, opts := openTest(t, func(o *Options) { o.CheckpointFile = filepath.Join(filepath.Dir(o.Path), "checkpoint.json") })
	for i := range 25 {
		e := testEntry(i)
		e.Time = baseTime.Add(time.Duration(i) * time.Minute)
		l.Append(e)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return opts, l.PublicKey()
}

// rehashFrom re-hashes entries seq.. as someone who can write the database
// would after editing entry seq.
func rehashFrom(t *testing.T, db *sql.DB, seq int64, edit func(*Entry)) {
	t.Helper()
	prev := readEntry(t, db, seq-1).Hash
	for s := seq; ; s++ {
		var n int
		db.QueryRow(`SELECT count(*) FROM audit_entries WHERE seq = ?`, s).Scan(&n)
		if n == 0 {
			return
		}
		e := readEntry(t, db, s)
		if s == seq {
			edit(&e.Entry)
		}
		e.PrevHash = prev
		prev = rewrite(t, db, s, &e.Entry)
	}
}

func TestVerifyMissingCheckpoints(t *testing.T) {
	tests := []struct {
		name   string
		tamper string // SQL
		rehash bool   // then edit entry 21 and re-hash the chain after it
		opts   VerifyOptions
		anchor bool // give VerifyOptions.Checkpoint from the checkpoint file
		kind   error
		seq    uint64
		msg    string // in the error
	}{
		{name: "clean", opts: VerifyOptions{CheckpointEvery: 10, MaxUnsigned: DefaultMaxUnsigned}, anchor: true},
		{name: "every checkpoint deleted", tamper: `DELETE FROM audit_checkpoints`,
			opts: VerifyOptions{MaxUnsigned: DefaultMaxUnsigned}, kind: ErrMissingCheckpoint, seq: 1,
			msg: "audit entry 1: checkpoints missing: entries 1..25 are signed by no checkpoint, but their times span 24m0s (entry 1 to entry 25)"},
		{name: "every checkpoint deleted, counted", tamper: `DELETE FROM audit_checkpoints`,
			opts: VerifyOptions{CheckpointEvery: 10}, kind: ErrMissingCheckpoint, seq: 1,
			msg: "entries 1..25 are signed by no checkpoint, but a checkpoint is signed every 10 entries"},
		{name: "a middle checkpoint deleted", tamper: `DELETE FROM audit_checkpoints WHERE seq = 10`,
			opts: VerifyOptions{MaxUnsigned: DefaultMaxUnsigned}, kind: ErrMissingCheckpoint, seq: 1,
			msg: "entries 1..20 have no checkpoint between them"},
		{name: "last checkpoints deleted and the tail rewritten", tamper: `DELETE FROM audit_checkpoints WHERE seq > 10`, rehash: true,
			opts: VerifyOptions{CheckpointEvery: 10}, kind: ErrMissingCheckpoint, seq: 11},
		{name: "within the limits, the database alone cannot tell", tamper: `DELETE FROM audit_checkpoints WHERE seq > 20`, rehash: true,
			opts: VerifyOptions{CheckpointEvery: 10, MaxUnsigned: DefaultMaxUnsigned}},
		{name: "within the limits, the checkpoint file tells", tamper: `DELETE FROM audit_checkpoints WHERE seq > 20`, rehash: true,
			opts: VerifyOptions{CheckpointEvery: 10, MaxUnsigned: DefaultMaxUnsigned}, anchor: true, kind: ErrAltered, seq: 25,
			msg: "the chain does not match the last known checkpoint"},
		{name: "tail and its checkpoints deleted", tamper: `DELETE FROM audit_entries WHERE seq > 22; DELETE FROM audit_checkpoints WHERE seq > 20`,
			opts: VerifyOptions{CheckpointEvery: 10, MaxUnsigned: DefaultMaxUnsigned}, anchor: true, kind: ErrTruncated, seq: 23,
			msg: "the log ends at entry 22 but the last known checkpoint"},
		{name: "log emptied", tamper: `DELETE FROM audit_entries; DELETE FROM audit_checkpoints`,
			anchor: true, kind: ErrTruncated, seq: 1, msg: "the log ends at entry 0 but the last known checkpoint"},
		{name: "from past the checkpoint file", tamper: `DELETE FROM audit_checkpoints WHERE seq > 20`, rehash: true,
			opts: VerifyOptions{From: 25 + 1}, anchor: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, pub := writeMinuteLog(t)
			db := rawDB(t, opts.Path)
			if tt.tamper != "" {
				mustExec(t, db, tt.tamper)
			}
			if tt.rehash {
				rehashFrom(t, db, 21, func(e *Entry) { e.Actor = "mallory" })
			}
			vo := tt.opts
			vo.Keys = []ed25519.PublicKey{pub}
			if tt.anchor {
				cp, err := ReadCheckpointFile(opts.CheckpointFile)
				if err != nil {
					t.Fatal(err)
				}
				vo.Checkpoint = cp
			}
			_, err := VerifyFileWith(context.Background(), opts.Path, vo)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("VerifyFileWith: %v", err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, tt.kind) || ve.Seq != tt.seq || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("VerifyFileWith = %v, want %v at entry %d with %q", err, tt.kind, tt.seq, tt.msg)
			}
		})
	}
}

// VerifyFile assumes a server's settings: checkpoints deleted from a log
// that was written for longer than DefaultMaxUnsigned are reported.
func TestVerifyFileReportsDeletedCheckpoints(t *testing.T) {
	opts, pub := writeMinuteLog(t)
	mustExec(t, rawDB(t, opts.Path), `DELETE FROM audit_checkpoints`)
	if _, err := VerifyFile(context.Background(), opts.Path, pub, 0); !errors.Is(err, ErrMissingCheckpoint) {
		t.Fatalf("VerifyFile = %v, want ErrMissingCheckpoint", err)
	}
}

func TestCheckpointFileBadSignature(t *testing.T) {
	opts, pub := writeMinuteLog(t)
	cp, err := ReadCheckpointFile(opts.CheckpointFile)
	if err != nil {
		t.Fatal(err)
	}
	cp.Seq = 30 // claims more than was signed
	_, err = VerifyFileWith(context.Background(), opts.Path, VerifyOptions{Keys: []ed25519.PublicKey{pub}, Checkpoint: cp})
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyFileWith = %v, want ErrBadSignature", err)
	}
}

func TestCheckpointFile(t *testing.T) {
	opts, pub := writeMinuteLog(t)
	cp, err := ReadCheckpointFile(opts.CheckpointFile)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seq != 25 || !cp.verify(pub) || cp.KeyID != KeyID(pub) {
		t.Fatalf("checkpoint file = %+v, want the signed checkpoint of entry 25", cp)
	}
	if matches, _ := filepath.Glob(opts.CheckpointFile + ".*"); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}

	// A missing file gets the database's last checkpoint at Open.
	os.Remove(opts.CheckpointFile)
	l, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ReadCheckpointFile(opts.CheckpointFile); err != nil || got.Seq != 25 {
		t.Fatalf("after Open: %+v, %v; want checkpoint 25", got, err)
	}
	l.Close()

	// A log cut short: the file is evidence, and no later writer replaces it.
	mustExec(t, rawDB(t, opts.Path), `DELETE FROM audit_entries WHERE seq > 20; DELETE FROM audit_checkpoints WHERE seq > 20`)
	l, err = Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		l.Append(testEntry(100 + i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadCheckpointFile(opts.CheckpointFile); err != nil || got.Hash != cp.Hash || got.Seq != 25 {
		t.Fatalf("after writing over the cut: %+v, %v; want the old checkpoint 25 kept", got, err)
	}
	_, err = VerifyFileWith(context.Background(), opts.Path, VerifyOptions{Keys: []ed25519.PublicKey{pub}, Checkpoint: cp})
	if !errors.Is(err, ErrAltered) {
		t.Fatalf("VerifyFileWith = %v, want ErrAltered (entry 25 is another entry now)", err)
	}
}

func TestReadCheckpointFileRejectsJunk(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"not json":   "seq=5",
		"short hash": `{"seq":5,"hash":"abcd","time":"2025-11-01T12:00:00Z","key_id":"k","signature":""}`,
		"bad time":   `{"seq":5,"hash":"` + strings.Repeat("00", 32) + `","time":"yesterday","key_id":"k","signature":""}`,
		"seq zero":   `{"seq":0,"hash":"` + strings.Repeat("00", 32) + `","time":"2025-11-01T12:00:00Z","key_id":"k","signature":""}`,
	} {
		p := filepath.Join(dir, "cp.json")
		os.WriteFile(p, []byte(text), 0o600)
		if _, err := ReadCheckpointFile(p); err == nil {
			t.Errorf("%s: read without error", name)
		}
	}
}

// A writer that stopped without signing (a crash) leaves entries unsigned;
// the next one to open the log signs them at once, not on its first tick,
// so a run of unsigned entries stays short.
func TestOpenSignsWhatACrashLeftUnsigned(t *testing.T) {
	opts, _ := writeLog(t, 12, nil)
	mustExec(t, rawDB(t, opts.Path), `DELETE FROM audit_checkpoints WHERE seq = 12`) // as if it crashed before Close
	l, err := Open(context.Background(), opts)                                       // CheckpointInterval -1: no timer
	if err != nil {
		t.Fatal(err)
	}
	waitSigned(t, l, 12)
}

// A writer's timer signs the entries another writer on the database left
// unsigned, so one that stops without signing does not leave them so
// until it is back.
func TestTimerSignsOtherWritersEntries(t *testing.T) {
	a, opts := openTest(t, func(o *Options) { o.CheckpointInterval = 10 * time.Millisecond })
	b, err := Open(context.Background(), Options{Path: opts.Path, SigningKeyPath: opts.SigningKeyPath, CheckpointEvery: -1, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Append(testEntry(0))
	waitWritten(t, b, 1)
	waitSigned(t, a, 1)
}

func waitSigned(t *testing.T, l *Log, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep, err := l.Verify(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if rep.LastCheckpoint == seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry %d not signed: %+v", seq, rep)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// After the signing key changed, the checkpoints of each key verify with
// it, all of them with both.
func TestVerifyWithSeveralKeys(t *testing.T) {
	opts, oldPub := writeLog(t, 12, nil)
	os.Rename(opts.SigningKeyPath, opts.SigningKeyPath+".old")
	os.Rename(opts.SigningKeyPath+".pub", opts.SigningKeyPath+".old.pub")
	l, err := Open(context.Background(), opts) // generates a new key
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		l.Append(testEntry(20 + i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	newPub := l.PublicKey()
	verify := func(keys ...ed25519.PublicKey) (Report, error) {
		return VerifyFileWith(context.Background(), opts.Path, VerifyOptions{Keys: keys, CheckpointEvery: 10})
	}
	if _, err := verify(oldPub); !errors.Is(err, ErrBadSignature) {
		t.Errorf("old key only: %v, want ErrBadSignature", err)
	}
	if _, err := verify(newPub); !errors.Is(err, ErrBadSignature) {
		t.Errorf("new key only: %v, want ErrBadSignature", err)
	}
	for _, keys := range [][]ed25519.PublicKey{{oldPub, newPub}, {newPub, oldPub}} {
		if rep, err := verify(keys...); err != nil || rep.To != 24 || rep.Checkpoints != 4 {
			t.Errorf("both keys: %+v, %v", rep, err)
		}
	}
	// key_id is a hint, not signed: a wrong one costs a try, not the check.
	mustExec(t, rawDB(t, opts.Path), `UPDATE audit_checkpoints SET key_id = 'forged'`)
	if _, err := verify(oldPub, newPub); err != nil {
		t.Errorf("both keys, key ids forged: %v", err)
	}
	_, err = verify(newPub)
	if err == nil || !strings.Contains(err.Error(), "does not verify with key "+KeyID(newPub)) {
		t.Errorf("error = %v, want it to name the key tried", err)
	}
	if _, err := verify(); err == nil {
		t.Error("verify with no key succeeded")
	}
}
