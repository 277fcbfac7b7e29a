package limits

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lumengw/lumen/internal/redistest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	redistest.Stop()
	os.Exit(code)
}

// redisClient returns a client of the test Redis and a key prefix of the
// test's own.
func redisClient(t *testing.T) (*redis.Client, string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redistest.Addr(t)})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return c, fmt.Sprintf("lumen-test:%s:%d:", t.Name(), time.Now().UnixNano())
}

// The Redis limiter decides exactly as the in-memory one: the same
// sequence of requests, adjustments and waits gives the same decisions,
// quotas and Retry-After.
func TestRedisLimiterMatchesMemory(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	clk := newClock(t0)
	mem := NewMemoryLimiter(LimiterOptions{Now: clk.Now})
	red := NewRedisLimiter(c, RedisOptions{Prefix: prefix, Now: clk.Now})
	lim := Limit{RPM: 3, TPM: 1000}
	type op struct {
		at     time.Duration
		tokens int
		adjust int // tokens to Adjust by instead of an Allow
	}
	ops := []op{
		{at: 0, tokens: 400}, {at: time.Second, tokens: 400}, {at: 2 * time.Second, tokens: 400}, // tpm refuses the third
		{at: 3 * time.Second, adjust: -300}, // the first two used less
		{at: 4 * time.Second, tokens: 400},  // now fits
		{at: 5 * time.Second, tokens: 10},   // rpm refuses the fourth request
		{at: 6 * time.Second, tokens: 5000}, // too large for the tpm at all
		{at: 61 * time.Second, tokens: 10},  // the first request left the window
		{at: 62 * time.Second, tokens: 10},
		{at: 200 * time.Second, tokens: 999},
	}
	admitted := 0
	for i, o := range ops {
		clk.Set(t0.Add(o.at))
		if o.adjust != 0 {
			if err := mem.Adjust(ctx, "k", 0, o.adjust); err != nil {
				t.Fatal(err)
			}
			if err := red.Adjust(ctx, "k", 0, o.adjust); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, _ := mem.Allow(ctx, "k", lim, o.tokens)
		got, err := red.Allow(ctx, "k", lim, o.tokens)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("op %d (%+v): redis %+v, memory %+v", i, o, got, want)
		}
		if got.Allowed {
			admitted++
		}
	}
	if admitted != 6 { // of 9: the tpm, rpm and too-large refusals
		t.Errorf("%d admitted, want 6", admitted)
	}
}

// Two instances share one window.
func TestRedisLimiterShared(t *testing.T) {
	c, prefix := redisClient(t)
	c2 := redis.NewClient(&redis.Options{Addr: c.Options().Addr})
	defer c2.Close()
	a := NewRedisLimiter(c, RedisOptions{Prefix: prefix})
	b := NewRedisLimiter(c2, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for i := range 40 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			d, err := l.Allow(ctx, "global", Limit{RPM: 7}, 1)
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed {
				mu.Lock()
				admitted++
				mu.Unlock()
			} else if d.RetryAfter <= 0 {
				t.Errorf("refused without Retry-After: %+v", d)
			}
		})
	}
	wg.Wait()
	if admitted != 7 {
		t.Fatalf("two instances admitted %d requests at rpm 7", admitted)
	}
}

// Two instances share one budget: 200 concurrent reservations of $0.10,
// half on each, at a $1 budget admit exactly 10, and the settled spend is
// seen by both.
func TestRedisBudgetsShared(t *testing.T) {
	c, prefix := redisClient(t)
	c2 := redis.NewClient(&redis.Options{Addr: c.Options().Addr})
	defer c2.Close()
	a := NewRedisBudgets(c, RedisOptions{Prefix: prefix})
	b := NewRedisBudgets(c2, RedisOptions{Prefix: prefix})
	ctx := context.Background()
	budget := Budget{LimitUSD: 1, Period: Monthly}
	var mu sync.Mutex
	var held []Reservation
	refused := 0
	var wg sync.WaitGroup
	for i := range 200 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			r, err := s.Reserve(ctx, "tag:team=search", budget, 0.1)
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
	wg.Wait()
	if len(held) != 10 || refused != 190 {
		t.Fatalf("%d admitted, %d refused; want 10 and 190", len(held), refused)
	}
	if st := b.Status("tag:team=search", Monthly); st.ReservedUSD != 1 || st.SpentUSD != 0 {
		t.Errorf("status while held: %+v", st)
	}
	for i, r := range held {
		s := a
		if i%2 == 1 {
			s = b // settled by the other instance than reserved it: any may
		}
		if err := s.Settle(ctx, r, 0.05); err != nil {
			t.Fatal(err)
		}
	}
	if st := a.Status("tag:team=search", Monthly); st.SpentUSD != 0.5 || st.ReservedUSD != 0 {
		t.Errorf("status after settling: %+v", st)
	}
	_, err := b.Reserve(ctx, "tag:team=search", budget, 0.6)
	var be *BudgetError
	if !errors.As(err, &be) || be.Spent != 0.5 || be.Requested != 0.6 || be.KeyID != "tag:team=search" || be.ResetsAt.IsZero() {
		t.Fatalf("over the rest: %v %+v", err, be)
	}
	if _, err := b.Reserve(ctx, "tag:team=search", budget, 0.5); err != nil {
		t.Fatalf("exactly the rest: %v", err)
	}
}

// A hold its instance never settled lapses; periods start again; Load
// raises the spend to the ledger's and never lowers it.
func TestRedisBudgetsHoldsPeriodsAndLoad(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	clk := newClock(time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC))
	s := NewRedisBudgets(c, RedisOptions{Prefix: prefix, Hold: time.Minute, Now: clk.Now})
	daily := Budget{LimitUSD: 1, Period: Daily}
	if _, err := s.Reserve(ctx, "global", daily, 0.9); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, "global", daily, 0.2); !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("a second hold past the budget: %v", err)
	}
	clk.Set(clk.Now().Add(2 * time.Minute)) // the first instance died holding $0.90
	r, err := s.Reserve(ctx, "global", daily, 0.2)
	if err != nil {
		t.Fatalf("after the hold lapsed: %v", err)
	}
	if err := s.Settle(ctx, r, 0.8); err != nil {
		t.Fatal(err)
	}
	if st := s.Status("global", Daily); st.SpentUSD != 0.8 || !st.ResetsAt.Equal(time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("today: %+v", st)
	}
	clk.Set(time.Date(2026, 3, 31, 0, 0, 1, 0, time.UTC))
	if st := s.Status("global", Daily); st.SpentUSD != 0 {
		t.Errorf("a new day starts at zero: %+v", st)
	}
	src := spendSource{"global": 0.3, "group:x": 2}
	budgets := map[string]Budget{"global": daily, "group:x": {LimitUSD: 5, Period: Total}}
	if err := s.Load(ctx, src, budgets); err != nil {
		t.Fatal(err)
	}
	src["global"] = 0.1 // an older, lower figure does not lower it
	if err := s.Load(ctx, src, budgets); err != nil {
		t.Fatal(err)
	}
	if st := s.Status("global", Daily); st.SpentUSD != 0.3 {
		t.Errorf("loaded: %+v", st)
	}
	if st := s.Status("group:x", Total); st.SpentUSD != 2 || !st.ResetsAt.IsZero() {
		t.Errorf("loaded total: %+v", st)
	}
}

// A request that straddles midnight is charged to the day it arrived in
// (Reservation.At), as MemoryBudgets and the ledger count it; one settled
// more than a day after its day ended is charged nowhere, leaving no key
// without an expiry behind.
func TestRedisBudgetsChargeTheDayTheRequestArrived(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	clk := newClock(time.Date(2026, 3, 30, 23, 59, 0, 0, time.UTC))
	s := NewRedisBudgets(c, RedisOptions{Prefix: prefix, Now: clk.Now})
	daily := Budget{LimitUSD: 1, Period: Daily}
	straddling, err := s.Reserve(ctx, "k", daily, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	late, err := s.Reserve(ctx, "k", daily, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Date(2026, 3, 31, 0, 1, 0, 0, time.UTC))
	if err := s.Settle(ctx, straddling, 0.4); err != nil {
		t.Fatal(err)
	}
	if st := s.Status("k", Daily); st.SpentUSD != 0 {
		t.Errorf("the new day after the straddling request: %+v", st)
	}
	clk.Set(time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC))
	if st := s.Status("k", Daily); st.SpentUSD != 0.4 {
		t.Errorf("the day it arrived in: %+v", st)
	}
	clk.Set(time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC))
	if err := s.Settle(ctx, late, 0.3); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if ttl := c.TTL(ctx, k).Val(); ttl < 0 {
			t.Errorf("key %s lives for ever (TTL %v)", k, ttl)
		}
	}
}

// A Redis that lost the budgets' spend (restarted empty, or flushed) is
// noticed by the next reservation, which finds its account's spend key
// missing and the marker LoadAll wrote gone too, and tells the owner to
// load at once (Recovered), at most once every missedEvery; an account
// LoadAll wrote, even at zero spend, or a settled one, has its key, and
// one new since has none but is no loss.
func TestRedisBudgetsNoticeLostSpend(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	clk := newClock(time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC))
	s := NewRedisBudgets(c, RedisOptions{Prefix: prefix, Now: clk.Now})
	daily := Budget{LimitUSD: 1, Period: Daily}
	signalled := func() bool {
		select {
		case <-s.Recovered():
			return true
		default:
			return false
		}
	}
	budgets := map[string]Budget{"spender": daily, "idle": daily}
	if err := s.LoadAll(ctx, spendSource{"spender": 0.9}, budgets); err != nil {
		t.Fatal(err)
	}
	for _, account := range []string{"spender", "idle", "new"} {
		r, err := s.Reserve(ctx, account, daily, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Settle(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
		if signalled() {
			t.Fatalf("a reservation of %s signalled a lost spend", account)
		}
	}

	// Redis forgets everything.
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	if err := c.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	clk.Add(markedFresh) // the marker was seen for "new"
	if _, err := s.Reserve(ctx, "spender", daily, 0.2); err != nil || !signalled() {
		t.Fatalf("reservation after the loss: %v; want it admitted (the spend is gone until a load) and a signal", err)
	}
	if _, err := s.Reserve(ctx, "idle", daily, 0.2); err != nil || signalled() {
		t.Fatalf("a second reservation within missedEvery: %v; want no second signal", err)
	}
	clk.Add(missedEvery)
	if _, err := s.Reserve(ctx, "spender", daily, 0.2); err != nil || !signalled() {
		t.Fatalf("reservation missedEvery later: %v; want a signal", err)
	}
	if err := s.LoadAll(ctx, spendSource{"spender": 0.9}, budgets); err != nil {
		t.Fatal(err)
	}
	var be *BudgetError
	if _, err := s.Reserve(ctx, "spender", daily, 0.2); !errors.As(err, &be) {
		t.Fatalf("after LoadAll: %v, want the budget refused", err)
	}
	clk.Add(missedEvery)
	if _, err := s.Reserve(ctx, "another-new", daily, 0.05); err != nil || signalled() {
		t.Fatalf("a new account after LoadAll: %v; want no signal", err)
	}
}

type spendSource map[string]float64

func (s spendSource) SpendSince(context.Context, time.Time) (map[string]float64, error) {
	return s, nil
}

// BenchmarkRedis measures what a shared limit adds to a request: one
// window check, and one budget reservation and its settlement, against
// the test Redis on loopback.
func BenchmarkRedis(b *testing.B) {
	c := redis.NewClient(&redis.Options{Addr: redistest.Addr(b)})
	defer c.Close()
	prefix := fmt.Sprintf("lumen-bench:%d:", time.Now().UnixNano())
	ctx := context.Background()
	b.Run("limiter", func(b *testing.B) {
		l := NewRedisLimiter(c, RedisOptions{Prefix: prefix})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Allow(ctx, "key:bench", Limit{RPM: 1 << 30, TPM: 1 << 40}, 500); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("budget", func(b *testing.B) {
		s := NewRedisBudgets(c, RedisOptions{Prefix: prefix})
		budget := Budget{LimitUSD: 1e9, Period: Monthly}
		b.ReportAllocs()
		for b.Loop() {
			r, err := s.Reserve(ctx, "key_bench", budget, 0.01)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Settle(ctx, r, 0.005); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// New end users cost no reload: after the owner's load, the first
// reservation of an account the ledger never saw (a new user, each 5 s
// apart so the rate limit of the signal does not hide one) finds no spend
// key, and that is no loss. Redis losing everything still is.
func TestRedisBudgetsNewAccountsAreNoLoss(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	clk := newClock(time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC))
	s := NewRedisBudgets(c, RedisOptions{Prefix: prefix, Now: clk.Now})
	daily := Budget{LimitUSD: 1, Period: Daily}
	signals := 0
	drain := func() {
		select {
		case <-s.Recovered():
			signals++
		default:
		}
	}
	budgets := map[string]Budget{UserAccount("old"): daily}
	if err := s.LoadAll(ctx, spendSource{UserAccount("old"): 0.9}, budgets); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		clk.Add(missedEvery)
		r, err := s.Reserve(ctx, UserAccount(fmt.Sprintf("new-%d", i)), daily, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		drain()
		if err := s.Settle(ctx, r, 0.01); err != nil {
			t.Fatal(err)
		}
	}
	if signals != 0 {
		t.Errorf("5 new users, 5 s apart, signalled a lost spend %d times; want 0", signals)
	}

	// Redis restarts empty.
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	if err := c.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	clk.Add(missedEvery)
	if _, err := s.Reserve(ctx, UserAccount("new-0"), daily, 0.05); err != nil {
		t.Fatal(err)
	}
	drain()
	if signals != 1 {
		t.Errorf("after Redis lost everything, a reservation signalled %d times; want 1", signals)
	}
}
