package ledger

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/backoff"
)

// WriterOptions configure a Writer. Zero fields take the defaults.
type WriterOptions struct {
	// QueueSize bounds the records waiting to be written (default 10000).
	QueueSize int
	// BatchSize bounds the records written in one transaction (default 500).
	BatchSize int
	// StorePayloads keeps Record.Request and Record.Response; otherwise the
	// Writer drops them before queueing (default false).
	StorePayloads bool
	// RetentionDays prunes records older than this many days; zero keeps
	// everything. A prune that Close interrupts goes on at the next start.
	// Budgets keep the spend of the records pruned (DB.Prune rolls it up).
	RetentionDays int
	// PruneEvery is how often old records are looked for (default 1h; the
	// first look is at start).
	PruneEvery time.Duration
	// PruneChunk bounds the records deleted in one transaction (default
	// 2000); the Writer writes a batch between chunks.
	PruneChunk int
	// RetryFor is how long a batch that fails to commit is retried, with a
	// backoff from 100 ms to 5 s, before its records count as failed
	// (default 2m; negative: never retried). Records queue meanwhile (and
	// are dropped, counted, once the queue is full), so a database away
	// for a moment (a Postgres restart or failover) loses nothing. After
	// Close, batches are not retried: one waiting to retry gets one last
	// attempt, and the rest one attempt each.
	RetryFor time.Duration
	// OnCommit, if set, is called by the writing goroutine after each batch
	// is committed, with the batch. The slice is reused after the call.
	OnCommit func(batch []Record)
	// Logger receives write failures, drops (at most one line per
	// DropLogInterval while open; every one after Close) and recovered
	// panics; the zero Logger discards them.
	Logger zerolog.Logger
	// DropLogInterval spaces the "queue full" log lines (default 10s).
	DropLogInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Writer queues records and writes them to a Store from one goroutine of
// its own, which it starts in NewWriter and stops in Close. Record never
// blocks. Its methods are safe for concurrent use.
type Writer struct {
	store Store
	o     WriterOptions
	log   zerolog.Logger

	mu     sync.RWMutex // guards closed against the close of queue
	closed bool
	queue  chan Record
	once   sync.Once
	stop   chan struct{} // closed by Close: cuts retries short
	done   chan struct{}

	written, dropped, failed atomic.Uint64
	pruned                   atomic.Uint64
	queued                   atomic.Uint64 // records enqueued since NewWriter, for Flush
	lastDropLog              atomic.Int64  // Unix nanoseconds
}

// NewWriter starts a Writer for store. The caller closes it.
func NewWriter(store Store, o WriterOptions) *Writer {
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Hour
	}
	if o.PruneChunk <= 0 {
		o.PruneChunk = 2000
	}
	if o.RetryFor == 0 {
		o.RetryFor = 2 * time.Minute
	}
	if o.DropLogInterval <= 0 {
		o.DropLogInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Writer{store: store, o: o, log: o.Logger, queue: make(chan Record, o.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Record queues r without blocking. It returns false, and counts a drop,
// when the queue is full or the Writer is closed. A zero r.Time is set to
// now.
func (w *Writer) Record(r Record) bool {
	if r.Time.IsZero() {
		r.Time = w.o.Now()
	}
	if !w.o.StorePayloads {
		r.Request, r.Response = nil, nil
	}
	if w.enqueue(r) {
		return true
	}
	w.drop()
	return false
}

func (w *Writer) enqueue(r Record) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return false
	}
	select {
	case w.queue <- r:
		w.queued.Add(1)
		return true
	default:
		return false
	}
}

// flushPoll is how often Flush looks whether the writer caught up.
const flushPoll = 2 * time.Millisecond

// Flush waits until every record queued before the call is committed (or
// counted as failed), so that a query of the store that follows sees
// them; records queued meanwhile may be written too. It returns ctx's
// error if ctx ends first. A budget reload uses it: the rows of the
// requests already settled must be summed.
func (w *Writer) Flush(ctx context.Context) error {
	target := w.queued.Load()
	for w.written.Load()+w.failed.Load() < target {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the ledger writer: %w", ctx.Err())
		case <-w.done:
			return nil
		case <-time.After(flushPoll):
		}
	}
	return nil
}

func (w *Writer) closedNow() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.closed
}

func (w *Writer) drop() {
	n := w.dropped.Add(1)
	if w.closedNow() {
		// Nothing logs the count after Close's summary: each late record
		// is logged, with the total (a shutdown that waits for its
		// handlers leaves few).
		w.log.Warn().Uint64("dropped_total", n).Msg("ledger writer closed: request record dropped")
		return
	}
	now := time.Now().UnixNano()
	last := w.lastDropLog.Load()
	if now-last < int64(w.o.DropLogInterval) || !w.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	w.log.Warn().Uint64("dropped_total", n).Int("queue_size", w.o.QueueSize).
		Msg("ledger queue full: request records dropped (budgets still hold; spend reports will miss them)")
}

// Dropped returns how many records were refused because the queue was full
// or the Writer closed.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Failed returns how many queued records were lost because their batch
// failed to commit.
func (w *Writer) Failed() uint64 { return w.failed.Load() }

// Written returns how many records were committed.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Pruned returns how many records retention deleted.
func (w *Writer) Pruned() uint64 { return w.pruned.Load() }

// QueueDepth returns how many records are waiting to be written.
func (w *Writer) QueueDepth() int { return len(w.queue) }

// Close stops accepting records, writes every queued one and waits for the
// writing goroutine to end. If records were lost since NewWriter it logs
// how many, in full: the drop lines before it are rate-limited. It is safe
// to call more than once.
func (w *Writer) Close() error {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		close(w.queue)
		w.mu.Unlock()
		close(w.stop)
		<-w.done
		if d, f := w.dropped.Load(), w.failed.Load(); d+f > 0 {
			w.log.Warn().Uint64("dropped_total", d).Uint64("failed_total", f).Uint64("written_total", w.written.Load()).
				Msg("ledger writer closed; request records were lost since start")
		}
	})
	<-w.done
	return nil
}

func (w *Writer) run() {
	defer close(w.done)
	batch := make([]Record, 0, w.o.BatchSize)
	var tick <-chan time.Time
	pruning := false
	if w.o.RetentionDays > 0 {
		t := time.NewTicker(w.o.PruneEvery)
		defer t.Stop()
		tick = t.C
		pruning = true
	}
	for {
		if pruning {
			// Old rows go a chunk at a time, with any queued batch in
			// between, so a large first prune does not stall the queue.
			pruning = w.pruneChunk()
			select {
			case r, ok := <-w.queue:
				if !ok {
					return
				}
				w.write(w.fill(append(batch[:0], r)))
			default:
			}
			continue
		}
		select {
		case r, ok := <-w.queue:
			if !ok {
				return
			}
			w.write(w.fill(append(batch[:0], r)))
		case <-tick:
			pruning = true
		}
	}
}

// fill adds queued records to batch without waiting, up to BatchSize.
func (w *Writer) fill(batch []Record) []Record {
	for len(batch) < w.o.BatchSize {
		select {
		case r, ok := <-w.queue:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// write commits batch, logging rather than losing the goroutine to a panic.
func (w *Writer) write(batch []Record) {
	committed := false
	defer func() {
		if p := recover(); p != nil {
			if !committed {
				w.failed.Add(uint64(len(batch)))
			}
			w.log.Error().Str("panic", fmt.Sprint(p)).Int("records", len(batch)).Msg("ledger writer recovered from a panic")
		}
	}()
	start := time.Now()
	wait := backoff.First
	attempt := 1
	for ; ; attempt++ {
		err := w.insert(batch)
		if err == nil {
			break
		}
		if w.o.RetryFor < 0 || w.stopping() || time.Since(start) >= w.o.RetryFor {
			w.failed.Add(uint64(len(batch)))
			w.log.Error().Err(err).Int("records", len(batch)).Int("attempts", attempt).Msg("writing request records to the ledger")
			return
		}
		if attempt == 1 {
			w.log.Warn().Err(err).Int("records", len(batch)).Dur("retry_for", w.o.RetryFor).
				Msg("writing request records to the ledger failed; retrying while new records queue")
		}
		wait = backoff.Wait(wait, w.stop)
	}
	if attempt > 1 {
		// The "retrying" warning gets its answer: nothing was lost.
		w.log.Info().Int("records", len(batch)).Int("attempts", attempt).Dur("failing_for", time.Since(start)).
			Msg("writing request records to the ledger works again")
	}
	committed = true
	w.written.Add(uint64(len(batch)))
	if w.o.OnCommit != nil {
		w.o.OnCommit(batch)
	}
}

// insert is one attempt at committing batch.
func (w *Writer) insert(batch []Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return w.store.Insert(ctx, batch)
}

// stopping reports whether Close was called.
func (w *Writer) stopping() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// pruneChunk deletes one chunk of expired records and reports whether
// there may be more.
func (w *Writer) pruneChunk() (more bool) {
	defer func() {
		if p := recover(); p != nil {
			more = false
			w.log.Error().Str("panic", fmt.Sprint(p)).Msg("ledger retention recovered from a panic")
		}
	}()
	before := w.o.Now().AddDate(0, 0, -w.o.RetentionDays)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := w.store.Prune(ctx, before, w.o.PruneChunk)
	if err != nil {
		w.log.Error().Err(err).Msg("pruning old ledger records")
		return false
	}
	w.pruned.Add(uint64(n))
	return n >= int64(w.o.PruneChunk)
}
