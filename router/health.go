package router

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// health is a deployment's circuit breaker: allowed retryable failures
// within cooldown cool it down (open) for cooldown; after that, exactly
// one probe request decides whether it closes again (half-open). It is
// safe for concurrent use; no lock is held across I/O, and a closed
// circuit is read without one.
type health struct {
	tripped  atomic.Bool // until is set: open or half-open
	mu       sync.Mutex
	fails    []time.Time // failure times within the window, oldest first
	until    time.Time   // cooled down until then
	probing  bool        // a half-open probe is in flight
	cooldown time.Duration
	allowed  int
}

// State of a deployment's circuit.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half-open"
)

// state reports the circuit state at now.
func (h *health) state(now time.Time) string {
	st, _, _ := h.snapshot(now)
	return st
}

// snapshot reports the state at now, when an open circuit turns
// half-open, and the failures counted in the current window.
func (h *health) snapshot(now time.Time) (state string, until time.Time, fails int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case now.Before(h.until):
		return StateOpen, h.until, len(h.fails)
	case !h.until.IsZero():
		return StateHalfOpen, time.Time{}, len(h.fails)
	default:
		return StateClosed, time.Time{}, len(h.fails)
	}
}

// admits reports, without claiming the probe, whether acquire would
// succeed now.
func (h *health) admits(now time.Time) bool {
	if !h.tripped.Load() {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return !now.Before(h.until) && (h.until.IsZero() || !h.probing)
}

// openUntil is when an open circuit turns half-open (zero when not open).
func (h *health) openUntil(now time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Before(h.until) {
		return h.until
	}
	return time.Time{}
}

// acquire reports whether a request may go to the deployment now. A
// half-open deployment admits one probe at a time.
func (h *health) acquire(now time.Time) bool {
	if !h.tripped.Load() {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case now.Before(h.until):
		return false
	case !h.until.IsZero():
		if h.probing {
			return false
		}
		h.probing = true
		return true
	default:
		return true
	}
}

// success records a request that succeeded at now. It closes a half-open
// circuit (the probe, or any request that ended after the cooldown). An
// open circuit stays open: the success is of a request sent before the
// circuit opened, a straggler, and a deployment failing half its calls
// must not be closed again by the half that succeed. On a closed circuit
// it changes nothing: failures count within their window whatever
// succeeded in between.
func (h *health) success(now time.Time) {
	if !h.tripped.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Before(h.until) && !h.probing {
		return
	}
	h.close()
}

// recovered closes the circuit whatever its state: an active health check
// passed, so the deployment takes traffic without waiting for its cooldown.
func (h *health) recovered() {
	if !h.tripped.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.close()
}

// close resets the circuit to closed; h.mu is held.
func (h *health) close() {
	h.fails, h.until, h.probing = h.fails[:0], time.Time{}, false
	h.tripped.Store(false)
}

// failure records a retryable failure at now and opens the circuit when
// the deployment has failed too often within the window, or its probe
// failed.
func (h *health) failure(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.probing || !h.until.IsZero() {
		h.probing = false
		h.until = now.Add(h.cooldown)
		return
	}
	cut := 0
	for cut < len(h.fails) && now.Sub(h.fails[cut]) > h.cooldown {
		cut++
	}
	h.fails = append(h.fails[cut:], now)
	if len(h.fails) >= h.allowed {
		h.until = now.Add(h.cooldown)
		h.fails = h.fails[:0]
		h.tripped.Store(true)
	}
}

// release ends a probe that neither succeeded nor failed retryably (a 400,
// a cancelled client), so the next request may probe.
func (h *health) release() {
	if !h.tripped.Load() {
		return
	}
	h.mu.Lock()
	h.probing = false
	h.mu.Unlock()
}

// takeOver gives h the circuit of old, the same upstream's in the router a
// config reload replaces: the failures within the window and how long the
// circuit stays open. A probe in flight is not handed on: its verdict lands
// on old, so h would wait for it forever; h admits a probe of its own
// instead. An open circuit stays open no longer than h's cooldown from when
// it opened, so a shortened cooldown_time applies at once. Call it before
// the router h belongs to serves.
func (h *health) takeOver(old *health) {
	old.mu.Lock()
	fails, until, cooldown := slices.Clone(old.fails), old.until, old.cooldown
	old.mu.Unlock()
	if !until.IsZero() && h.cooldown < cooldown {
		until = until.Add(h.cooldown - cooldown)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fails, h.until, h.probing = fails, until, false
	h.tripped.Store(!until.IsZero())
}
