// Package breaker keeps callers off a shared backend (Redis) that has just
// failed, so that while it is down a request pays a clock read instead of
// a timeout, and says so in the log at most once per interval.
package breaker

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Options tune a Breaker. Zero fields take the defaults.
type Options struct {
	// Backoff is how long calls are skipped after the first failure
	// (default 1s).
	Backoff time.Duration
	// MaxBackoff caps the skip, which doubles with each failed probe
	// (default Backoff: it does not grow).
	MaxBackoff time.Duration
	// LogInterval spaces the log lines (default 1m).
	LogInterval time.Duration
	// Logger receives them; the zero Logger discards them.
	Logger zerolog.Logger
	// Message is the log line, e.g. "cache: Redis unavailable; serving
	// uncached".
	Message string
	// RecoverMessage is the info line that ends an outage whose failure
	// was logged, e.g. "cache: Redis available again", with how long it
	// lasted and how many calls failed and were skipped in it; empty: none.
	RecoverMessage string
	// OnRecover, when set, is called by the Succeed that closes an open
	// breaker, on the caller's goroutine: it must not block.
	OnRecover func()
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
}

// Breaker is open (calls skipped) from a failure until its backoff has
// passed; then one call probes the backend while the others go on
// skipping, and a success closes it. Each failure logs, unless a line went
// out less than LogInterval ago: the next line counts the failures and
// skipped calls in between; the success that ends an outage whose failure
// was logged logs RecoverMessage, so each "unavailable" line is followed
// by an "available again" one. It is safe for concurrent use; Allow and
// Succeed on a closed Breaker are two atomic loads.
type Breaker struct {
	o Options

	downUntil atomic.Int64 // unix nanoseconds; 0: closed
	wait      atomic.Int64 // the next backoff
	lastLog   atomic.Int64
	failures  atomic.Int64
	skipped   atomic.Int64
	// Since the last log line.
	quietFailures, quietSkipped atomic.Int64
	// The current outage: when it began (unix nanoseconds; 0: none), the
	// counts then, and whether its failure was logged.
	openedAt              atomic.Int64
	failuresAt, skippedAt atomic.Int64
	announced             atomic.Bool
}

// New returns a closed Breaker.
func New(o Options) *Breaker {
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = o.Backoff
	}
	if o.LogInterval <= 0 {
		o.LogInterval = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Breaker{o: o}
	b.wait.Store(int64(o.Backoff))
	return b
}

// Allow reports whether the backend may be called now. While the breaker
// is open it returns false and counts the call as skipped; once the
// backoff has passed it returns true to one caller, the probe, and keeps
// the others off for another backoff or until the probe succeeds.
func (b *Breaker) Allow() bool {
	until := b.downUntil.Load()
	if until == 0 {
		return true
	}
	now := b.o.Now().UnixNano()
	if now < until || !b.downUntil.CompareAndSwap(until, now+b.wait.Load()) {
		b.skipped.Add(1)
		b.quietSkipped.Add(1)
		return false
	}
	return true
}

// Succeed records a call the backend answered: the breaker closes and the
// backoff starts again from Backoff.
func (b *Breaker) Succeed() {
	until := b.downUntil.Load()
	if until == 0 || !b.downUntil.CompareAndSwap(until, 0) {
		return // closed, or another caller closed it (or a failure reopened it) first
	}
	b.wait.Store(int64(b.o.Backoff))
	opened := b.openedAt.Swap(0)
	if b.announced.Swap(false) && b.o.RecoverMessage != "" {
		ev := b.o.Logger.Info()
		if opened != 0 { // 0: a failure raced this close; its outage's start is unknown
			ev = ev.Dur("down_for", time.Duration(b.o.Now().UnixNano()-opened))
		}
		ev.Int64("errors_while_down", b.failures.Load()-b.failuresAt.Load()).
			Int64("skipped_while_down", b.skipped.Load()-b.skippedAt.Load()).
			Msg(b.o.RecoverMessage)
	}
	if b.o.OnRecover != nil {
		b.o.OnRecover()
	}
}

// Fail records a failed call of op: the breaker opens for the current
// backoff, which then doubles up to MaxBackoff. Do not call it for a call
// the caller gave up on (its context ended): the backend is not to blame.
func (b *Breaker) Fail(op string, err error) {
	failures := b.failures.Add(1)
	b.quietFailures.Add(1)
	now := b.o.Now().UnixNano()
	if b.openedAt.CompareAndSwap(0, now) { // an outage begins
		b.failuresAt.Store(failures - 1)
		b.skippedAt.Store(b.skipped.Load())
	}
	wait := b.wait.Load()
	b.downUntil.Store(now + wait)
	b.wait.Store(min(2*wait, int64(b.o.MaxBackoff)))
	last := b.lastLog.Load()
	if (last != 0 && now-last < int64(b.o.LogInterval)) || !b.lastLog.CompareAndSwap(last, now) {
		return
	}
	b.announced.Store(true)
	b.o.Logger.Warn().Err(err).Str("op", op).
		Int64("errors_since_last_log", b.quietFailures.Swap(0)).
		Int64("skipped_since_last_log", b.quietSkipped.Swap(0)).
		Msg(b.o.Message)
}

// Failures returns how many calls failed since New.
func (b *Breaker) Failures() int64 { return b.failures.Load() }

// Skipped returns how many calls Allow refused since New.
func (b *Breaker) Skipped() int64 { return b.skipped.Load() }

// Open reports whether calls are being skipped (or a probe is due).
func (b *Breaker) Open() bool { return b.downUntil.Load() != 0 }
