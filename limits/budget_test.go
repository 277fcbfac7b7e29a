package limits

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("time zone %s not available: %v", name, err)
	}
	return loc
}

func TestPeriodBounds(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	kolkata := mustLoc(t, "Asia/Kolkata")
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name       string
		p          Period
		loc        *time.Location
		t          string
		start, end string // RFC3339 in UTC; empty means zero
	}{
		{"daily utc", Daily, nil, "2025-03-15T13:45:00Z", "2025-03-15T00:00:00Z", "2025-03-16T00:00:00Z"},
		{"daily at midnight", Daily, time.UTC, "2025-03-15T00:00:00Z", "2025-03-15T00:00:00Z", "2025-03-16T00:00:00Z"},
		{"daily new york is still the 14th", Daily, ny, "2025-03-15T03:00:00Z", "2025-03-14T04:00:00Z", "2025-03-15T04:00:00Z"},
		// 2025-03-09 is 23 hours long in New York.
		{"daily across DST", Daily, ny, "2025-03-09T12:00:00Z", "2025-03-09T05:00:00Z", "2025-03-10T04:00:00Z"},
		{"daily half-hour zone", Daily, kolkata, "2025-03-15T20:00:00Z", "2025-03-15T18:30:00Z", "2025-03-16T18:30:00Z"},
		{"weekly from monday", Weekly, nil, "2025-03-15T10:00:00Z", "2025-03-10T00:00:00Z", "2025-03-17T00:00:00Z"},
		{"weekly on monday", Weekly, nil, "2025-03-10T00:00:00Z", "2025-03-10T00:00:00Z", "2025-03-17T00:00:00Z"},
		{"weekly on sunday", Weekly, nil, "2025-03-16T23:59:59Z", "2025-03-10T00:00:00Z", "2025-03-17T00:00:00Z"},
		{"weekly across a month", Weekly, nil, "2025-03-01T10:00:00Z", "2025-02-24T00:00:00Z", "2025-03-03T00:00:00Z"},
		{"monthly", Monthly, nil, "2025-02-28T23:00:00Z", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"},
		{"monthly december", Monthly, nil, "2025-12-31T23:59:59Z", "2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"},
		{"monthly new york", Monthly, ny, "2025-04-01T02:00:00Z", "2025-03-01T05:00:00Z", "2025-04-01T04:00:00Z"},
		{"total", Total, nil, "2025-03-15T13:45:00Z", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := tt.p.Bounds(at(tt.t), tt.loc)
			check := func(what string, got time.Time, want string) {
				if want == "" {
					if !got.IsZero() {
						t.Errorf("%s = %v, want zero", what, got)
					}
					return
				}
				if !got.Equal(at(want)) {
					t.Errorf("%s = %v, want %s", what, got.UTC(), want)
				}
			}
			check("start", start, tt.start)
			check("end", end, tt.end)
		})
	}
}

func TestParsePeriod(t *testing.T) {
	for _, s := range []string{"daily", "weekly", "monthly", "total", ""} {
		if _, err := ParsePeriod(s); err != nil {
			t.Errorf("ParsePeriod(%q): %v", s, err)
		}
	}
	if _, err := ParsePeriod("yearly"); err == nil || !strings.Contains(err.Error(), `"yearly"`) {
		t.Errorf("ParsePeriod(yearly) = %v, want an error naming it", err)
	}
}

// TestBudgetRace fires 200 concurrent reservations at a key whose budget
// admits 10: exactly 10 must succeed, and the spend must end at the budget.
func TestBudgetRace(t *testing.T) {
	ctx := context.Background()
	b := NewMemoryBudgets(BudgetOptions{})
	budget := Budget{LimitUSD: 1.00, Period: Monthly}
	const n, worst = 200, 0.10

	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	held := make(chan Reservation, n)
	for range n {
		wg.Go(func() {
			<-start
			r, err := b.Reserve(ctx, "k1", budget, worst)
			var be *BudgetError
			switch {
			case err == nil:
				ok.Add(1)
				held <- r
			case errors.As(err, &be):
				refused.Add(1)
			default:
				t.Errorf("Reserve: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(held)
	if ok.Load() != 10 || refused.Load() != n-10 {
		t.Fatalf("%d reservations admitted and %d refused; want 10 and %d", ok.Load(), refused.Load(), n-10)
	}
	for r := range held {
		if err := b.Settle(ctx, r, worst); err != nil {
			t.Fatal(err)
		}
	}
	if s := b.Status("k1", Monthly); s.SpentUSD != 1.00 || s.ReservedUSD != 0 {
		t.Errorf("status after settling = %+v, want $1.00 spent and nothing held", s)
	}
	if _, err := b.Reserve(ctx, "k1", budget, 0); !errors.Is(err, ErrBudgetExceeded) {
		t.Errorf("Reserve of a free request at a spent budget = %v, want ErrBudgetExceeded", err)
	}
}

// TestBudgetRaceWithSettle reserves and settles concurrently with real
// costs below the worst case: more requests fit, but the spend plus what
// is held never passes the budget at any moment.
func TestBudgetRaceWithSettle(t *testing.T) {
	ctx := context.Background()
	b := NewMemoryBudgets(BudgetOptions{})
	budget := Budget{LimitUSD: 1.00, Period: Daily}
	const n, worst, actual = 200, 0.10, 0.04

	var ok atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			r, err := b.Reserve(ctx, "k1", budget, worst)
			if err != nil {
				if !errors.Is(err, ErrBudgetExceeded) {
					t.Errorf("Reserve: %v", err)
				}
				return
			}
			ok.Add(1)
			if s := b.Status("k1", Daily); s.SpentUSD+s.ReservedUSD > budget.LimitUSD+1e-9 {
				t.Errorf("spent %.2f + held %.2f passed the budget", s.SpentUSD, s.ReservedUSD)
			}
			if err := b.Settle(ctx, r, actual); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	s := b.Status("k1", Daily)
	if s.ReservedUSD != 0 || s.SpentUSD > budget.LimitUSD || math.Abs(s.SpentUSD-float64(ok.Load())*actual) > 1e-9 {
		t.Errorf("%d admitted, status %+v: want spend = admitted x $%.2f <= budget, nothing held", ok.Load(), s, actual)
	}
	// $1.00 at $0.04 each is 25 at most; every admission needs $0.10 free.
	if got := ok.Load(); got < 10 || got > 25 {
		t.Errorf("%d admitted, want between 10 and 25", got)
	}
}

func TestBudgetError(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC))
	b := NewMemoryBudgets(BudgetOptions{Now: clk.Now})
	budget := Budget{LimitUSD: 5, Period: Monthly}

	r, err := b.Reserve(ctx, "k1", budget, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Reserve(ctx, "k1", budget, 2.5)
	var be *BudgetError
	if !errors.As(err, &be) {
		t.Fatalf("Reserve over budget = %v, want *BudgetError", err)
	}
	want := BudgetError{KeyID: "k1", Budget: 5, Spent: 0, Reserved: 3, Requested: 2.5, Period: Monthly,
		ResetsAt: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)}
	if *be != want {
		t.Errorf("BudgetError = %+v, want %+v", *be, want)
	}
	if msg := be.Error(); !strings.Contains(msg, "this key has $2.0000 left of its $5.00 monthly budget") ||
		!strings.Contains(msg, "held by requests in flight") || !strings.Contains(msg, "resets at 2025-04-01T00:00:00Z") {
		t.Errorf("message %q does not say what is left, what is held and when it resets", msg)
	}
	if err := b.Settle(ctx, r, 5.2); err != nil { // the estimate was short
		t.Fatal(err)
	}
	_, err = b.Reserve(ctx, "k1", budget, 0.01)
	if !errors.As(err, &be) || be.Spent != 5.2 {
		t.Fatalf("Reserve after overspend = %v, want *BudgetError with spend 5.2", err)
	}
	if msg := be.Error(); !strings.Contains(msg, "spent $5.2000 of its $5.00 monthly budget") {
		t.Errorf("message %q", msg)
	}
	_, err = b.Reserve(ctx, "k2", Budget{LimitUSD: 1}, 2)
	if !errors.As(err, &be) || !be.ResetsAt.IsZero() || be.Period != Total || !strings.Contains(be.Error(), "does not reset") {
		t.Errorf("total budget error = %v", err)
	}
}

// A budget is named as it was set, however small: rounded to cents, a
// $0.001 budget read as $0.00.
func TestBudgetErrorNamesTheBudgetExactly(t *testing.T) {
	tests := []struct {
		name string
		err  BudgetError
		want string
	}{
		{name: "whole dollars", err: BudgetError{Budget: 500, Spent: 499.9988, Requested: 0.01, Period: Monthly},
			want: "has $0.0012 left of its $500.00 monthly budget"},
		{name: "dimes", err: BudgetError{Budget: 0.5, Spent: 0.5, Period: Daily},
			want: "spent $0.5000 of its $0.50 daily budget"},
		{name: "under a cent", err: BudgetError{Budget: 0.001, Requested: 0.0021, Period: Total},
			want: "has $0.0010 left of its $0.001 total budget"},
		{name: "fractions of cents", err: BudgetError{Budget: 0.025, Requested: 0.03, Period: Daily},
			want: "has $0.0250 left of its $0.025 daily budget"},
		{name: "spent, under a cent", err: BudgetError{Budget: 0.0005, Spent: 0.0006, Period: Weekly},
			want: "spent $0.0006 of its $0.0005 weekly budget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msg := tt.err.Error(); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q\ndoes not say %q", msg, tt.want)
			}
		})
	}
}

func TestBudgetPeriodReset(t *testing.T) {
	ctx := context.Background()
	tokyo := mustLoc(t, "Asia/Tokyo")
	// 14:30 UTC is 23:30 in Tokyo; its day ends at 15:00 UTC.
	clk := newClock(time.Date(2025, 3, 15, 14, 30, 0, 0, time.UTC))
	b := NewMemoryBudgets(BudgetOptions{Location: tokyo, Now: clk.Now})
	budget := Budget{LimitUSD: 1, Period: Daily}

	r1, err := b.Reserve(ctx, "k1", budget, 0.6)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Settle(ctx, r1, 0.6); err != nil {
		t.Fatal(err)
	}
	inFlight, err := b.Reserve(ctx, "k1", budget, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, "k1", budget, 0.3); !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("third reservation = %v, want refused", err)
	}

	clk.Set(time.Date(2025, 3, 15, 15, 0, 0, 0, time.UTC)) // midnight in Tokyo
	s := b.Status("k1", Daily)
	if s.SpentUSD != 0 || s.ReservedUSD != 0.3 || !s.PeriodStart.Equal(clk.Now()) {
		t.Errorf("status after midnight = %+v, want a new day with the in-flight $0.30 still held", s)
	}
	// The request in flight across midnight is charged to the day it
	// arrived in, as its ledger row is: the new day owes nothing for it.
	if err := b.Settle(ctx, inFlight, 0.25); err != nil {
		t.Fatal(err)
	}
	if s := b.Status("k1", Daily); s.SpentUSD != 0 || s.ReservedUSD != 0 {
		t.Errorf("status after the straddling request settled = %+v, want the new day untouched", s)
	}
	if _, err := b.Reserve(ctx, "k1", budget, 1); err != nil {
		t.Errorf("Reserve the whole new day: %v", err)
	}
	if _, err := b.Reserve(ctx, "k1", budget, 0.01); !errors.Is(err, ErrBudgetExceeded) {
		t.Errorf("Reserve past the new day's budget = %v, want refused", err)
	}
	// A request that arrived in the new day is charged to it.
	clk.Set(time.Date(2025, 3, 15, 16, 0, 0, 0, time.UTC))
	r, err := b.Reserve(ctx, "k2", budget, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Settle(ctx, r, 0.5); err != nil {
		t.Fatal(err)
	}
	if s := b.Status("k2", Daily); s.SpentUSD != 0.5 {
		t.Errorf("a request of the new day: %+v", s)
	}
}

func TestSettleTwice(t *testing.T) {
	ctx := context.Background()
	b := NewMemoryBudgets(BudgetOptions{})
	r, err := b.Reserve(ctx, "k1", Budget{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Settle(ctx, r, 0.5); err != nil {
		t.Fatal(err)
	}
	if err := b.Settle(ctx, r, 0.5); !errors.Is(err, ErrSettled) {
		t.Errorf("second Settle = %v, want ErrSettled", err)
	}
	if err := b.Settle(ctx, Reservation{KeyID: "k1"}, 0.5); !errors.Is(err, ErrSettled) {
		t.Errorf("Settle of a made-up reservation = %v, want ErrSettled", err)
	}
	// No budget: always admitted, still counted.
	if s := b.Status("k1", Total); s.SpentUSD != 0.5 || s.ReservedUSD != 0 {
		t.Errorf("status = %+v, want $0.50 spent once", s)
	}
}

type fakeSource struct {
	calls []time.Time
	rows  []struct {
		key string
		at  time.Time
		usd float64
	}
}

func (f *fakeSource) add(key string, at time.Time, usd float64) {
	f.rows = append(f.rows, struct {
		key string
		at  time.Time
		usd float64
	}{key, at, usd})
}

func (f *fakeSource) SpendSince(_ context.Context, since time.Time) (map[string]float64, error) {
	f.calls = append(f.calls, since)
	out := map[string]float64{}
	for _, r := range f.rows {
		if !r.at.Before(since) {
			out[r.key] += r.usd
		}
	}
	return out, nil
}

func TestLoadAndSnapshot(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC) // a Saturday
	b := NewMemoryBudgets(BudgetOptions{Now: func() time.Time { return now }})
	src := &fakeSource{}
	add := src.add
	add("daily", now.Add(-13*time.Hour), 5)  // yesterday
	add("daily", now.Add(-1*time.Hour), 1.5) // today
	add("weekly", time.Date(2025, 3, 9, 23, 0, 0, 0, time.UTC), 7)
	add("weekly", time.Date(2025, 3, 10, 1, 0, 0, 0, time.UTC), 2)
	add("monthly", time.Date(2025, 2, 28, 0, 0, 0, 0, time.UTC), 9)
	add("monthly", time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), 3)
	add("monthly2", time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC), 4)
	add("total", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 11)

	budgets := map[string]Budget{
		"daily": {LimitUSD: 10, Period: Daily}, "weekly": {LimitUSD: 10, Period: Weekly},
		"monthly": {LimitUSD: 10, Period: Monthly}, "monthly2": {LimitUSD: 10, Period: Monthly},
		"total": {LimitUSD: 20, Period: Total}, "idle": {LimitUSD: 1, Period: Daily},
	}
	if err := b.Load(ctx, src, budgets); err != nil {
		t.Fatal(err)
	}
	if len(src.calls) != 4 {
		t.Errorf("Load queried %d times (%v), want once per distinct period start (4)", len(src.calls), src.calls)
	}
	want := map[string]float64{"daily": 1.5, "weekly": 2, "monthly": 3, "monthly2": 4, "total": 11, "idle": 0}
	for key, usd := range want {
		if s := b.Status(key, budgets[key].Period); s.SpentUSD != usd {
			t.Errorf("%s spent %v after Load, want %v", key, s.SpentUSD, usd)
		}
	}
	if _, err := b.Reserve(ctx, "total", budgets["total"], 9.5); !errors.Is(err, ErrBudgetExceeded) {
		t.Errorf("Reserve over a loaded total budget = %v, want refused", err)
	}

	snap := b.Snapshot()
	if len(snap) != len(want) {
		t.Fatalf("Snapshot has %d keys, want %d: %+v", len(snap), len(want), snap)
	}
	for _, s := range snap {
		if s.USD != want[s.KeyID] || s.Period != budgets[s.KeyID].Period {
			t.Errorf("snapshot %+v, want $%v", s, want[s.KeyID])
		}
	}
	if snap[0].KeyID != "daily" || !snap[0].PeriodStart.Equal(time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("first snapshot entry %+v", snap[0])
	}

	b.SetSpent("daily", Daily, 0)
	if s := b.Status("daily", Daily); s.SpentUSD != 0 {
		t.Errorf("after SetSpent: %+v", s)
	}
}

// A key whose budget period changes keeps its old window, spend and all,
// until Load brings the new window's spend: neither a request admitted
// under the new period before the load nor one still carrying the old
// period after it starts a window at zero.
func TestBudgetPeriodChangeWaitsForLoad(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)
	b := NewMemoryBudgets(BudgetOptions{Now: func() time.Time { return now }})
	daily := Budget{LimitUSD: 1, Period: Daily}
	monthly := Budget{LimitUSD: 1, Period: Monthly}
	r, err := b.Reserve(ctx, "k", daily, 0.6)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Settle(ctx, r, 0.6); err != nil {
		t.Fatal(err)
	}

	// Changed, not yet loaded: the day's spend still counts.
	if s := b.Status("k", Monthly); s.SpentUSD != 0.6 || s.Period != Daily {
		t.Errorf("status under the new period before the load = %+v, want the day's $0.60", s)
	}
	if _, err := b.Reserve(ctx, "k", monthly, 0.6); !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("a request under the new period before the load = %v, want refused", err)
	}

	src := &fakeSource{}
	src.add("k", time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC), 0.3)
	src.add("k", now.Add(-time.Hour), 0.6)
	if err := b.Load(ctx, src, map[string]Budget{"k": monthly}); err != nil {
		t.Fatal(err)
	}
	if s := b.Status("k", Monthly); s.SpentUSD != 0.9 || s.Period != Monthly || !s.PeriodStart.Equal(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("status after the load = %+v, want the month's $0.90", s)
	}
	// A request that authenticated before the change reserves under the
	// old period: the account stays in the month.
	if _, err := b.Reserve(ctx, "k", daily, 0.2); !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("a request under the old period after the load = %v, want refused", err)
	}
	if s := b.Status("k", Monthly); s.SpentUSD != 0.9 || s.Period != Monthly {
		t.Errorf("status after an old-period request = %+v, want the month's $0.90", s)
	}
	if _, err := b.Reserve(ctx, "k", monthly, 0.1); err != nil {
		t.Errorf("what is left of the month: %v", err)
	}
}

func BenchmarkReserveSettle(b *testing.B) {
	ctx := context.Background()
	m := NewMemoryBudgets(BudgetOptions{})
	budget := Budget{LimitUSD: 1e9, Period: Monthly}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := m.Reserve(ctx, "k1", budget, 0.01)
			if err != nil {
				b.Error(err)
				return
			}
			_ = m.Settle(ctx, r, 0.005)
		}
	})
}

// Accounts whose daily period ended with nothing held are forgotten (one
// per end user would pile up); one holding money, or a total budget's,
// is kept.
func TestSweepForgetsEndedPeriods(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	b := NewMemoryBudgets(BudgetOptions{Now: clk.Now})
	daily := Budget{LimitUSD: 5, Period: Daily}
	for i := range 100 {
		r, err := b.Reserve(ctx, fmt.Sprintf("user:%d", i), daily, 0.1)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Settle(ctx, r, 0.1); err != nil {
			t.Fatal(err)
		}
	}
	held, err := b.Reserve(ctx, "user:held", daily, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, "key_total", Budget{LimitUSD: 5}, 0); err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)) // the next day
	if _, err := b.Reserve(ctx, "user:new", daily, 0.1); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	n := len(b.accounts)
	_, keptHeld := b.accounts["user:held"]
	_, keptTotal := b.accounts["key_total"]
	b.mu.Unlock()
	if n != 3 || !keptHeld || !keptTotal {
		t.Fatalf("%d accounts after a day (held kept %v, total kept %v), want 3", n, keptHeld, keptTotal)
	}
	if err := b.Settle(ctx, held, 0.5); err != nil {
		t.Fatalf("settling the held reservation after the sweep: %v", err)
	}
	if st := b.Status("user:7", Daily); st.SpentUSD != 0 {
		t.Errorf("a forgotten account starts the new day at zero: %+v", st)
	}
}

// statusStore is what MemoryBudgets and RedisBudgets both are.
type statusStore interface {
	BudgetStore
	Load(context.Context, SpendSource, map[string]Budget) error
	Status(string, Period) Status
}

// A nearly spent budget under concurrent requests, in memory and in Redis:
// each reservation holds its worst case against spend + holds, so exactly
// as many as fit are admitted (in integer billionths: an exact fit is
// admitted), however many arrive at once; a budget spent to its limit
// refuses even a free request; and Settle charges the real cost in full,
// also above what was held (the estimate was short), so the spend can end
// past the limit by that much.
func TestBudgetStoresNearlySpentUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		store func(t *testing.T) statusStore
	}{
		{"memory", func(*testing.T) statusStore {
			return NewMemoryBudgets(BudgetOptions{})
		}},
		{"redis", func(t *testing.T) statusStore {
			c, prefix := redisClient(t)
			return NewRedisBudgets(c, RedisOptions{Prefix: prefix})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.store(t)
			budget := Budget{LimitUSD: 1, Period: Total}
			if err := s.Load(ctx, spendSource{"k": 0.75}, map[string]Budget{"k": budget}); err != nil {
				t.Fatal(err)
			}
			// burst sends n concurrent reservations of usd and returns the
			// admitted ones and how many were refused.
			burst := func(n int, usd float64) ([]Reservation, int) {
				var mu sync.Mutex
				var held []Reservation
				refused := 0
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range n {
					wg.Go(func() {
						<-start
						r, err := s.Reserve(ctx, "k", budget, usd)
						mu.Lock()
						defer mu.Unlock()
						var be *BudgetError
						switch {
						case errors.As(err, &be):
							refused++
						case err != nil:
							t.Error(err)
						default:
							held = append(held, r)
						}
					})
				}
				close(start)
				wg.Wait()
				return held, refused
			}
			settle := func(held []Reservation, usd float64) {
				for _, r := range held {
					if err := s.Settle(ctx, r, usd); err != nil {
						t.Fatal(err)
					}
				}
			}

			// $0.25 left: two of fifty $0.10 requests.
			held, refused := burst(50, 0.10)
			if len(held) != 2 || refused != 48 {
				t.Fatalf("$0.25 left, 50 requests of $0.10: %d admitted, %d refused; want 2 and 48", len(held), refused)
			}
			settle(held, 0.10)
			// $0.05 left: one of fifty $0.05 requests, the exact fit.
			held, refused = burst(50, 0.05)
			if len(held) != 1 || refused != 49 {
				t.Fatalf("$0.05 left, 50 requests of $0.05: %d admitted, %d refused; want 1 and 49", len(held), refused)
			}
			// It cost more than its estimate: charged in full.
			settle(held, 0.07)
			if st := s.Status("k", Total); math.Abs(st.SpentUSD-1.02) > 1e-9 || st.ReservedUSD != 0 {
				t.Errorf("after settling: %+v, want $1.02 spent and nothing held", st)
			}
			if held, refused := burst(10, 0); len(held) != 0 || refused != 10 {
				t.Errorf("a spent budget, 10 free requests: %d admitted, %d refused; want 0 and 10", len(held), refused)
			}
		})
	}
}
