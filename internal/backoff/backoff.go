// Package backoff is the wait between retries of a write to a database
// that may be away for a moment: 100 ms, doubling up to 5 s, cut short when
// the writer is told to stop.
package backoff

import "time"

// First and Max bound the waits.
const (
	First = 100 * time.Millisecond
	Max   = 5 * time.Second
)

// Wait waits d, or until stop is closed, and returns the wait after it.
func Wait(d time.Duration, stop <-chan struct{}) time.Duration {
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-stop:
		t.Stop()
	}
	return min(2*d, Max)
}
