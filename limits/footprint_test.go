package limits

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// heapAfter returns the live heap after f, garbage collected.
func heapAfter(f func()) uint64 {
	var ms runtime.MemStats
	f()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// userFixture is a MemoryBudgets on a settable clock and n end-user
// account ids.
type userFixture struct {
	now time.Time
	m   *MemoryBudgets
	ids []string
	b   Budget
}

func newUserFixture(n int) *userFixture {
	f := &userFixture{now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), b: Budget{LimitUSD: 2, Period: Daily}}
	f.m = NewMemoryBudgets(BudgetOptions{Now: func() time.Time { return f.now }})
	f.ids = make([]string, n)
	for i := range f.ids {
		f.ids[i] = UserAccount(fmt.Sprintf("u-%08d", i))
	}
	return f
}

// spend makes one request, reserved and settled, for each of ids.
func (f *userFixture) spend(t *testing.T, ids []string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		r, err := f.m.Reserve(ctx, id, f.b, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.m.Settle(ctx, r, 0.001); err != nil {
			t.Fatal(err)
		}
	}
}

// An end user's budget account lives until its period ends (limits.users
// gives every distinct "user" value one), so a day's worth of distinct
// users must cost little each: the account, not a map of its settled holds.
func TestBudgetAccountFootprint(t *testing.T) {
	const users = 20000
	f := newUserFixture(users)
	before := heapAfter(func() {})
	after := heapAfter(func() { f.spend(t, f.ids) })
	if got := len(f.m.accounts); got != users {
		t.Fatalf("%d accounts, want %d", got, users)
	}
	// An account is 64 bytes and its map slot a few dozen more; the id
	// string is the caller's.
	per := int64(after-before) / users
	t.Logf("%d bytes per budget account", per)
	if per > 200 {
		t.Errorf("each budget account takes %d bytes of heap, want at most 200", per)
	}
	runtime.KeepAlive(f)
}

// The accounts of an ended period are forgotten, and the room they took
// in the map with them: a Go map does not shrink as it is emptied.
func TestBudgetSweepFreesTheRoom(t *testing.T) {
	const users = 20000
	f := newUserFixture(users)
	before := heapAfter(func() {})
	f.spend(t, f.ids)
	f.now = f.now.Add(24 * time.Hour)
	left := heapAfter(func() { f.spend(t, f.ids[:1]) }) // the next day's first request sweeps
	if got := len(f.m.accounts); got != 1 {
		t.Fatalf("%d accounts the next day, want 1", got)
	}
	if kept := int64(left) - int64(before); kept > users*4 {
		t.Errorf("yesterday's %d accounts still take %d bytes of heap, want at most %d", users, kept, users*4)
	}
	runtime.KeepAlive(f)
}

// The limiter keeps a window for every id seen in the last minute or two
// (limits.users: every distinct end user), so one that counted a request
// must cost little: the seconds it counted, not sixty of them.
func TestRateCounterFootprint(t *testing.T) {
	const users = 20000
	f := newUserFixture(users)
	l := NewMemoryLimiter(LimiterOptions{Now: func() time.Time { return f.now }})
	ctx := context.Background()
	lim := Limit{RPM: 20, TPM: 100000}
	before := heapAfter(func() {})
	after := heapAfter(func() {
		for _, id := range f.ids {
			if d, err := l.Allow(ctx, id, lim, 100); err != nil || !d.Allowed {
				t.Fatalf("Allow(%s) = %+v, %v", id, d, err)
			}
			if err := l.Adjust(ctx, id, 0, -40); err != nil {
				t.Fatal(err)
			}
		}
	})
	if got := len(l.counters); got != users {
		t.Fatalf("%d counters, want %d", got, users)
	}
	per := int64(after-before) / users
	t.Logf("%d bytes per rate window", per)
	if per > 200 {
		t.Errorf("each rate window takes %d bytes of heap, want at most 200", per)
	}
	runtime.KeepAlive(l)
}

// Idle windows are forgotten after a minute, and the room they took in
// the map with them: a Go map does not shrink as it is emptied.
func TestLimiterSweepFreesTheRoom(t *testing.T) {
	const users = 20000
	f := newUserFixture(users)
	l := NewMemoryLimiter(LimiterOptions{Now: func() time.Time { return f.now }})
	ctx := context.Background()
	lim := Limit{RPM: 20}
	allow := func(ids []string) {
		for _, id := range ids {
			if _, err := l.Allow(ctx, id, lim, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := heapAfter(func() {})
	allow(f.ids)
	f.now = f.now.Add(2 * time.Minute)
	left := heapAfter(func() { allow(f.ids[:1]) }) // sweeps
	if got := len(l.counters); got != 1 {
		t.Fatalf("%d counters two minutes on, want 1", got)
	}
	if kept := int64(left) - int64(before); kept > users*4 {
		t.Errorf("%d forgotten windows still take %d bytes of heap, want at most %d", users, kept, users*4)
	}
	runtime.KeepAlive(l)
}
