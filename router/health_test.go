package router

import (
	"testing"
	"time"
)

func TestCircuit(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	newHealth := func() *health { return &health{allowed: 3, cooldown: time.Minute} }
	trip := func(h *health) {
		for range 3 {
			h.failure(t0)
		}
	}
	tests := []struct {
		name  string
		steps func(h *health)
		when  time.Time
		want  string
	}{
		{"fewer than allowed_fails stays closed", func(h *health) { h.failure(t0); h.failure(t0) }, at(1), StateClosed},
		{"allowed_fails within the window opens", trip, at(1), StateOpen},
		{"failures outside the window do not add up", func(h *health) {
			h.failure(at(0))
			h.failure(at(30))
			h.failure(at(91)) // the first is more than cooldown_time old
		}, at(92), StateClosed},
		{"a success in between does not reset the count", func(h *health) {
			h.failure(t0)
			h.success(t0)
			h.failure(t0)
			h.success(t0)
			h.failure(t0)
		}, at(1), StateOpen},
		{"open until cooldown_time has passed", trip, at(59), StateOpen},
		{"then half-open", trip, at(60), StateHalfOpen},
		{"a straggler's success keeps it open", func(h *health) { trip(h); h.success(at(10)) }, at(11), StateOpen},
		{"the probe's success closes it", func(h *health) {
			trip(h)
			if !h.acquire(at(61)) {
				t.Fatal("half-open refused the probe")
			}
			h.success(at(62))
		}, at(62), StateClosed},
		{"the probe's failure opens it for another cooldown", func(h *health) {
			trip(h)
			h.acquire(at(61))
			h.failure(at(62))
		}, at(62 + 59), StateOpen},
		{"a passing health check closes an open circuit", func(h *health) { trip(h); h.recovered() }, at(1), StateClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHealth()
			tt.steps(h)
			if got := h.state(tt.when); got != tt.want {
				t.Fatalf("state %s, want %s", got, tt.want)
			}
		})
	}
}

// Half-open admits one probe at a time; a probe that ends without a
// verdict (a 400, a cancelled client) lets the next request probe.
func TestCircuitOneProbe(t *testing.T) {
	h := &health{allowed: 1, cooldown: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.failure(t0)
	if h.admits(t0) || h.acquire(t0) {
		t.Fatal("an open circuit admitted a request")
	}
	later := t0.Add(time.Minute)
	if !h.admits(later) || !h.acquire(later) {
		t.Fatal("half-open refused the first probe")
	}
	if h.admits(later) || h.acquire(later) {
		t.Fatal("half-open admitted a second probe")
	}
	h.release()
	if !h.acquire(later) {
		t.Fatal("a released probe did not free the next")
	}
}
