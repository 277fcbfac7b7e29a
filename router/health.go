package router

import (
	"sync"
	"time"
)

// health is a deployment's circuit breaker: allowedFails retryable
// failures within window cool it down for cooldown; after that, exactly one
// probe request decides whether it closes again (half-open). It is safe for
// concurrent use; no lock is held across I/O.
type health struct {
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
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case now.Before(h.until):
		return StateOpen
	case !h.until.IsZero():
		return StateHalfOpen
	default:
		return StateClosed
	}
}

// acquire reports whether a request may go to the deployment now. A
// half-open deployment admits one probe at a time.
func (h *health) acquire(now time.Time) bool {
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

// success closes the circuit.
func (h *health) success() {
	h.mu.Lock()
	h.fails, h.until, h.probing = h.fails[:0], time.Time{}, false
	h.mu.Unlock()
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
	}
}

// release ends a probe that neither succeeded nor failed retryably (a 400,
// a cancelled client), so the next request may probe.
func (h *health) release() {
	h.mu.Lock()
	h.probing = false
	h.mu.Unlock()
}
