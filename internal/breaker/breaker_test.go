package breaker

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestBreaker(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var logs bytes.Buffer
	b := New(Options{Backoff: time.Second, MaxBackoff: 3 * time.Second, Logger: zerolog.New(&logs), Message: "down", Now: func() time.Time { return now }})
	boom := errors.New("boom")
	if !b.Allow() || b.Open() {
		t.Fatal("a new breaker is not closed")
	}
	b.Fail("get", boom)
	steps := []struct {
		after time.Duration
		allow bool
		fail  bool // the allowed probe fails
	}{
		{999 * time.Millisecond, false, false},
		{time.Millisecond, true, true}, // probe after 1s; backoff now 2s
		{0, false, false},
		{1999 * time.Millisecond, false, false},
		{time.Millisecond, true, true}, // after 2s; now 3s (the cap)
		{2999 * time.Millisecond, false, false},
		{time.Millisecond, true, true}, // after 3s; stays 3s
		{3 * time.Second, true, false}, // the probe succeeds
	}
	for i, s := range steps {
		now = now.Add(s.after)
		if got := b.Allow(); got != s.allow {
			t.Fatalf("step %d: Allow = %v, want %v", i, got, s.allow)
		}
		if s.allow && b.Allow() {
			t.Fatalf("step %d: a second caller probes at the same time", i)
		}
		switch {
		case s.fail:
			b.Fail("get", boom)
		case s.allow:
			b.Succeed()
		}
	}
	if b.Open() || !b.Allow() || !b.Allow() {
		t.Error("not closed after a successful probe")
	}
	if b.Failures() != 4 || b.Skipped() != 8 {
		t.Errorf("failures %d skipped %d, want 4 8", b.Failures(), b.Skipped())
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Errorf("%d log lines within a minute, want 1:\n%s", n, logs.String())
	}
	now = now.Add(time.Minute)
	b.Fail("set", boom)
	if !strings.Contains(logs.String(), `"errors_since_last_log":4,"skipped_since_last_log":8`) {
		t.Errorf("the next line does not count the quiet minute:\n%s", logs.String())
	}
	now = now.Add(time.Second) // the backoff restarted at 1s after the success
	if !b.Allow() {
		t.Error("the backoff did not restart from Backoff after a success")
	}
}

// TestBreakerLogsRecovery: the success that ends an outage says so, with
// its length and what failed and was skipped in it, and calls OnRecover
// once; an outage whose failure went unlogged (within LogInterval of the
// last line) ends unlogged too.
func TestBreakerLogsRecovery(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var logs bytes.Buffer
	recovered := 0
	b := New(Options{Backoff: time.Second, Logger: zerolog.New(&logs), Message: "down", RecoverMessage: "up",
		OnRecover: func() { recovered++ }, Now: func() time.Time { return now }})
	boom := errors.New("boom")
	b.Succeed() // closed: nothing to end
	b.Fail("get", boom)
	b.Allow() // skipped
	b.Allow() // skipped
	now = now.Add(time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the backoff")
	}
	b.Fail("get", boom) // the probe fails: the same outage
	now = now.Add(2 * time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the doubled backoff")
	}
	b.Succeed()
	b.Succeed()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"level":"info","down_for":3000,"errors_while_down":2,"skipped_while_down":2,"message":"up"`) {
		t.Fatalf("want the failure and one recovery line, got:\n%s", logs.String())
	}
	if recovered != 1 {
		t.Fatalf("OnRecover called %d times, want 1", recovered)
	}
	// A second outage within the minute: its failure is not logged, nor
	// its end; OnRecover still runs.
	logs.Reset()
	b.Fail("set", boom)
	now = now.Add(time.Second)
	b.Allow()
	b.Succeed()
	if logs.Len() != 0 || recovered != 2 {
		t.Fatalf("quiet outage: logs %q, OnRecover %d times", logs.String(), recovered)
	}
}
