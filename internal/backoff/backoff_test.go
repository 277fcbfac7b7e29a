package backoff

import (
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	stop := make(chan struct{})
	if next := Wait(time.Millisecond, stop); next != 2*time.Millisecond {
		t.Errorf("after 1 ms: %v, want 2 ms", next)
	}
	if next := Wait(0, stop); next != 0 {
		t.Errorf("after 0: %v", next)
	}
	close(stop)
	done := make(chan time.Duration, 1)
	go func() { done <- Wait(time.Hour, stop) }()
	select {
	case next := <-done:
		if next != Max {
			t.Errorf("after an hour: %v, want the cap %v", next, Max)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a closed stop did not cut the wait short")
	}
}
