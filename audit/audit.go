// Package audit keeps Lumen's tamper-evident audit log: an append-only,
// hash-chained table in SQLite (or in the Postgres database several
// instances share: they append to one chain, taking turns per batch) with
// periodic Ed25519-signed checkpoints.
//
// Every entry's hash covers all of its fields and the previous entry's hash
// (see Entry.ComputeHash for the exact encoding), so editing, deleting or
// inserting a row breaks the chain at that row. Someone who can write the
// database could recompute the whole chain after an edit; the signed
// checkpoints stop that: every Options.CheckpointEvery entries, every
// Options.CheckpointInterval and on Close the writer signs the latest
// (seq, hash) with a key the database does not hold, and Verify checks every
// entry against every checkpoint.
//
// Deleting checkpoints is caught as far as the database can tell: a writer
// signs within CheckpointEvery entries and one CheckpointInterval (a
// restarted writer at once signs what a crash left unsigned), so Verify
// reports more entries, or entries spanning more time, without a checkpoint
// (VerifyOptions). A tail deleted together with the checkpoints that signed
// it, or a log emptied, looks like a log that stopped earlier unless Verify
// is given the last checkpoint known from outside the database:
// Options.CheckpointFile keeps it, and Lumen logs every checkpoint at info
// level.
//
// Limits, stated so nobody relies on more: entries after the last checkpoint
// are protected by the chain only (Report.Unsigned says how many); and
// someone who can write the database can delete or rewrite the entries of
// the last few minutes (less than DefaultMaxUnsigned, fewer than
// CheckpointEvery) with the checkpoints that signed them, undetected
// without the outside checkpoint, or with an older copy of it.
//
// Appends never wait on disk: they go through a bounded queue to one writer
// goroutine that assigns sequence numbers and batches transactions. An entry
// that does not fit in the queue is dropped before it gets a sequence number,
// so the chain stays verifiable, and counted (Dropped) and logged.
package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/backoff"
)

// Options configures Open.
type Options struct {
	// Path is the SQLite file ("./lumen-audit.db"). It may be the ledger's
	// database file: the audit tables (audit_entries, audit_checkpoints) sit
	// beside the ledger's, and both writers share the file through WAL and a
	// busy timeout. It may also be a Postgres URL ("postgres://…"): the
	// tables go there, and every Log on that database appends to one chain
	// (give them one SigningKeyPath key, or Verify needs each). Required.
	Path string
	// SigningKeyPath is the Ed25519 private key (PEM, PKCS #8) that signs
	// checkpoints. If the file does not exist, Open generates a key, writes
	// it with mode 0600 and its public key to SigningKeyPath+".pub". Empty
	// means Path+".key". Keep it where whoever can write the database cannot.
	SigningKeyPath string
	// CheckpointEvery signs a checkpoint after this many entries. Zero means
	// 1000; negative means only on interval and Close.
	CheckpointEvery int
	// CheckpointInterval signs a checkpoint this often when entries were
	// written since the last one. Zero means one minute; negative means never
	// on a timer.
	CheckpointInterval time.Duration
	// CheckpointFile, when set, receives each checkpoint this Log signs
	// (JSON, replaced atomically; see WriteCheckpointFile), for `lumen
	// audit verify` to check the log against: keep it, or copies of it,
	// where whoever can write the database cannot. A missing file gets the
	// last checkpoint at Open; a file the log does not match is never
	// replaced (Open logs it). Empty means none.
	CheckpointFile string
	// QueueSize bounds the entries waiting for the writer. Zero means 4096.
	QueueSize int
	// StorePayloads keeps request and response bodies in the log; when false
	// (the default, and required for zero retention) only their SHA-256
	// digests are stored.
	StorePayloads bool
	// Logger receives drops (rate-limited), write failures, recovered panics
	// and checkpoints. The zero Logger discards.
	Logger zerolog.Logger
}

const (
	defaultCheckpointEvery    = 1000
	defaultCheckpointInterval = time.Minute
	defaultQueueSize          = 4096
	maxBatch                  = 256
	dropLogEvery              = 10 * time.Second
)

// ErrClosed is returned by methods of a Log that was closed.
var ErrClosed = errors.New("audit log closed")

// Log is an open audit log. Append, Dropped, Failed, Verify and Export are
// safe for concurrent use. One goroutine, started by Open and stopped by
// Close, owns all writes.
type Log struct {
	opts   Options
	logger zerolog.Logger
	db     conn      // the writer's single connection
	insert *sql.Stmt // insertEntry, prepared once on it
	ro     conn      // read-only connections for Verify and Export

	priv      ed25519.PrivateKey
	pub       ed25519.PublicKey
	keyID     string
	generated bool

	mu     sync.RWMutex // held for reading while sending on queue; Close takes it to close queue
	closed bool
	queue  chan Entry

	dropped     atomic.Uint64
	failed      atomic.Uint64
	written     atomic.Uint64
	lastDropLog atomic.Int64

	closeOnce sync.Once
	closeErr  error
	stop      chan struct{} // closed by Close: cuts retries short
	done      chan struct{}

	// Owned by the writer goroutine.
	keepCheckpointFile bool // the file does not match the log: leave it
	seq                uint64
	head               Digest
	signedSeq          uint64
	lastErr            error         // of the last write, if it failed for good
	retryFor           time.Duration // retryFor; tests shorten it

	// hook, when set by a test, runs in the writer on each entry before it
	// is chained.
	hook func(*Entry)
}

// Open opens (creating if needed) the audit log at opts.Path (a SQLite file
// or a Postgres URL), loads or generates the signing key and starts the
// writer. The caller must Close the Log. PublicKey returns the key to print
// for auditors.
func Open(ctx context.Context, opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, errors.New("opening audit log: path is empty")
	}
	if opts.SigningKeyPath == "" {
		if isPostgres(opts.Path) {
			return nil, errors.New("opening audit log: a log in Postgres needs a SigningKeyPath")
		}
		opts.SigningKeyPath = opts.Path + ".key"
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = defaultCheckpointEvery
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = defaultCheckpointInterval
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = defaultQueueSize
	}
	priv, generated, err := loadOrCreateKey(opts.SigningKeyPath)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	db, err := openDB(opts.Path, false)
	if err != nil {
		return nil, err
	}
	ddl := schema
	if db.pg {
		ddl = postgresSchema
	}
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating audit tables: %w", err)
	}
	ro, err := openDB(opts.Path, true)
	if err != nil {
		db.Close()
		return nil, err
	}
	seq, head, cpSeq, cpKey, err := chainHead(ctx, db)
	if err != nil {
		db.Close()
		ro.Close()
		return nil, err
	}
	insert, err := db.PrepareContext(ctx, db.q(insertEntry))
	if err != nil {
		db.Close()
		ro.Close()
		return nil, fmt.Errorf("preparing audit insert: %w", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	l := &Log{
		insert:    insert,
		opts:      opts,
		logger:    opts.Logger.With().Str("component", "audit").Logger(),
		db:        db,
		ro:        ro,
		priv:      priv,
		pub:       pub,
		keyID:     KeyID(pub),
		generated: generated,
		queue:     make(chan Entry, opts.QueueSize),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		retryFor:  retryFor,
		seq:       seq,
		head:      head,
		signedSeq: cpSeq,
	}
	if cpSeq > seq {
		// Entries a checkpoint signed are gone: Verify reports it as
		// truncated. Keep writing, so the damage is not hidden by a stop.
		l.logger.Error().Uint64("last_entry", seq).Uint64("last_checkpoint", cpSeq).
			Msg("audit log ends before its last signed checkpoint; run lumen audit verify")
		l.signedSeq = seq
	}
	if cpKey != "" && cpKey != l.keyID {
		l.logger.Error().Str("checkpoint_key", cpKey).Str("signing_key", l.keyID).
			Msg("audit signing key differs from the one that signed the last checkpoint; " +
				"verify needs both public keys: lumen audit verify --public-key OLD.pub --public-key NEW.pub")
	}
	if opts.CheckpointFile != "" {
		l.openCheckpointFile(ctx)
	}
	go l.run()
	return l, nil
}

// PublicKey returns the Ed25519 public key that verifies this log's
// checkpoints.
func (l *Log) PublicKey() ed25519.PublicKey { return l.pub }

// KeyID returns the fingerprint of PublicKey (see KeyID).
func (l *Log) KeyID() string { return l.keyID }

// KeyGenerated reports whether Open generated the signing key (first start).
func (l *Log) KeyGenerated() bool { return l.generated }

// PublicKeyPEM returns PublicKey as PEM, ready to print.
func (l *Log) PublicKeyPEM() string {
	b, _ := MarshalPublicKey(l.pub) // cannot fail for a valid Ed25519 key
	return string(b)
}

// Append queues e to be written. It never blocks: when the queue is full, or
// the Log is closed, e is dropped, counted in Dropped and logged (at most
// every 10 s while open; every one after Close). See Entry for the fields the caller fills.
func (l *Log) Append(e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		l.drop("closed")
		return
	}
	select {
	case l.queue <- e:
		l.mu.RUnlock()
	default:
		l.mu.RUnlock()
		l.drop("queue full")
	}
}

func (l *Log) drop(why string) {
	n := l.dropped.Add(1)
	now := time.Now().UnixNano()
	last := l.lastDropLog.Load()
	// After Close nothing else reports the count: every late entry is
	// logged, with the total.
	if why != "closed" && (now-last < int64(dropLogEvery) || !l.lastDropLog.CompareAndSwap(last, now)) {
		return
	}
	l.logger.Error().Str("reason", why).Uint64("dropped_total", n).
		Msg("audit entry dropped; the chain stays valid but is missing events")
}

func (l *Log) isClosed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.closed
}

// Dropped returns how many entries Append dropped (queue full or closed).
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Failed returns how many queued entries were lost because their write
// failed (or the writer panicked on them). They never got a sequence number.
func (l *Log) Failed() uint64 { return l.failed.Load() }

// Written returns how many entries were committed since Open.
func (l *Log) Written() uint64 { return l.written.Load() }

// QueueDepth returns how many entries wait for the writer.
func (l *Log) QueueDepth() int { return len(l.queue) }

// Close stops accepting entries, writes every queued one, signs a final
// checkpoint and closes the database. If entries were lost since Open it
// logs how many. It is safe to call more than once; later
// calls return the first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.queue)
		l.mu.Unlock()
		close(l.stop)
		<-l.done
		if d, f := l.dropped.Load(), l.failed.Load(); d+f > 0 {
			// In full: the drop lines before it are rate-limited.
			l.logger.Error().Uint64("dropped_total", d).Uint64("failed_total", f).Uint64("written_total", l.written.Load()).
				Msg("audit log closed; entries were lost since open")
		}
		l.closeErr = errors.Join(l.lastErr, l.insert.Close(), l.db.Close(), l.ro.Close())
		if l.closeErr != nil {
			l.closeErr = fmt.Errorf("closing audit log: %w", l.closeErr)
		}
	})
	return l.closeErr
}

// run is the writer goroutine: it batches queued entries into transactions
// until the queue is closed, then signs a last checkpoint.
func (l *Log) run() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.opts.CheckpointInterval > 0 {
		t := time.NewTicker(l.opts.CheckpointInterval)
		defer t.Stop()
		tick = t.C
	}
	// What a crash left unsigned is signed before anything new, so every
	// run of entries without a checkpoint stays short (Verify checks).
	if l.seq > l.signedSeq {
		l.writeBatch(nil)
	}
	batch := make([]Entry, 0, maxBatch)
	for {
		select {
		case e, ok := <-l.queue:
			if !ok {
				l.finish()
				return
			}
			batch = append(batch[:0], e)
			open := true
		fill:
			for len(batch) < maxBatch {
				select {
				case e, ok := <-l.queue:
					if !ok {
						open = false
						break fill
					}
					batch = append(batch, e)
				default:
					break fill
				}
			}
			l.writeBatch(batch)
			clear(batch) // let payloads go
			if !open {
				l.finish()
				return
			}
		case <-tick:
			if l.seq > l.signedSeq || l.othersUnsigned() {
				l.writeBatch(nil)
			}
		}
	}
}

// othersUnsigned reports whether the log holds entries after its last
// checkpoint that another writer on the database appended (and, having
// stopped, will not sign).
func (l *Log) othersUnsigned() bool {
	seq, _, cpSeq, _, err := chainHead(context.Background(), l.ro)
	return err == nil && seq > cpSeq
}

func (l *Log) finish() {
	if l.seq > l.signedSeq {
		l.writeBatch(nil)
	}
}

// retryFor is how long writeBatch retries a batch that fails to commit (a
// database restarting or out of reach), with a backoff from 100 ms to 5 s,
// while new entries queue; after Close it does not wait.
const retryFor = 2 * time.Minute

// errPanic marks a commit that panicked: retrying would panic again.
var errPanic = errors.New("panic")

// writeBatch chains and inserts batch in one transaction, with a checkpoint
// when one is due (always, for an empty batch). A failed commit is retried
// for retryFor; on final failure nothing of the batch is kept and the chain
// head is unchanged.
func (l *Log) writeBatch(batch []Entry) {
	ready := batch[:0] // prepared once; nil stays nil (a checkpoint request)
	for i := range batch {
		if l.prepare(&batch[i]) {
			ready = append(ready, batch[i])
		}
	}
	start := time.Now()
	wait := backoff.First
	for attempt := 1; ; attempt++ {
		err := l.commit(ready)
		if err == nil {
			// The database is back: an earlier failure is not Close's to
			// report (it was logged and counted in Failed).
			l.lastErr = nil
			if attempt > 1 { // the "retrying" warning gets its answer
				l.logger.Info().Int("entries", len(ready)).Int("attempts", attempt).Dur("failing_for", time.Since(start)).
					Msg("audit write works again")
			}
			return
		}
		if errors.Is(err, errPanic) || l.isClosed() || time.Since(start) >= l.retryFor {
			l.failed.Add(uint64(len(ready)))
			l.lastErr = err
			l.logger.Error().Err(err).Int("lost", len(ready)).Int("attempts", attempt).Msg("audit write failed; entries lost, chain unchanged")
			return
		}
		if attempt == 1 {
			l.logger.Warn().Err(err).Int("entries", len(ready)).Msg("audit write failed; retrying while new entries queue")
		}
		wait = backoff.Wait(wait, l.stop)
	}
}

// commit is one attempt at writeBatch's transaction; on success it moves
// the chain head.
func (l *Log) commit(batch []Entry) error {
	seq, head, signed := l.seq, l.head, l.signedSeq
	n := 0
	var signedCP *Checkpoint // the last checkpoint committed
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %v", errPanic, r)
			}
		}()
		ctx := context.Background()
		tx, err := l.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("beginning audit transaction: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // no-op after Commit
		if l.db.pg {
			// Instances sharing the database take turns, as SQLite's
			// immediate transaction makes processes sharing a file do.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(4242012)`); err != nil {
				return fmt.Errorf("locking the audit chain: %w", err)
			}
		}
		// Another process on the same file (lumen keys … while lumen serve
		// runs) may have appended since this writer's last batch: continue
		// the chain from the head the database holds, read under the write
		// lock the immediate transaction took, or the two chains would fork.
		var dbSeq int64
		var dbHash []byte
		switch err := tx.QueryRowContext(ctx,
			`SELECT seq, hash FROM audit_entries ORDER BY seq DESC, rowid DESC LIMIT 1`).Scan(&dbSeq, &dbHash); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("reading audit chain head: %w", err)
		case dbSeq > 0 && uint64(dbSeq) > seq:
			seq = uint64(dbSeq)
			copy(head[:], dbHash)
		}
		stmt := tx.StmtContext(ctx, l.insert) // the statement prepared at Open
		defer stmt.Close()
		var cps []*Checkpoint
		checkpoint := func() error {
			cp := l.sign(seq, head)
			if _, err := tx.ExecContext(ctx, l.db.q(insertCheckpoint),
				int64(cp.Seq), cp.Hash[:], cp.Time.UnixNano(), cp.KeyID, cp.Signature); err != nil {
				return fmt.Errorf("inserting audit checkpoint %d: %w", cp.Seq, err)
			}
			cps = append(cps, cp)
			signed = seq
			return nil
		}
		every := uint64(max(l.opts.CheckpointEvery, 0))
		for i := range batch {
			e := &batch[i]
			e.Seq, e.PrevHash = seq+1, head
			e.Hash = e.ComputeHash()
			if _, err := stmt.ExecContext(ctx, insertArgs(e)...); err != nil {
				return fmt.Errorf("inserting audit entry %d: %w", e.Seq, err)
			}
			seq, head = e.Seq, e.Hash
			n++
			if every > 0 && seq-signed >= every {
				if err := checkpoint(); err != nil {
					return err
				}
			}
		}
		// An empty batch asks for a checkpoint (timer, Close).
		if batch == nil && seq > signed {
			if err := checkpoint(); err != nil {
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("committing audit entries: %w", err)
		}
		for _, cp := range cps {
			l.logger.Info().Uint64("seq", cp.Seq).Str("hash", cp.Hash.String()).
				Str("key_id", cp.KeyID).Msg("audit checkpoint signed")
		}
		if len(cps) > 0 {
			signedCP = cps[len(cps)-1]
		}
		return nil
	}()
	if err != nil {
		return err
	}
	l.seq, l.head, l.signedSeq = seq, head, signed
	l.written.Add(uint64(n))
	if signedCP != nil {
		l.writeCheckpointFile(signedCP)
	}
	return nil
}

// prepare normalizes e for storage, running the test hook. A panic on one
// entry loses that entry only; it is counted and logged.
func (l *Log) prepare(e *Entry) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			l.failed.Add(1)
			l.logger.Error().Interface("panic", r).Str("action", string(e.Action)).
				Msg("audit writer recovered from a panic; entry lost, chain unchanged")
			ok = false
		}
	}()
	if l.hook != nil {
		l.hook(e)
	}
	e.normalize(l.opts.StorePayloads)
	return true
}

func (l *Log) sign(seq uint64, hash Digest) *Checkpoint {
	cp := &Checkpoint{Seq: seq, Hash: hash, Time: time.Now().UTC(), KeyID: l.keyID}
	cp.Signature = ed25519.Sign(l.priv, cp.signedMessage())
	return cp
}
