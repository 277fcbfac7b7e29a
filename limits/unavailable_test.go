package limits

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/redistest"
)

// hangingRedis is a TCP listener that accepts connections and never
// answers: a Redis stopped with SIGSTOP. It returns its address.
func hangingRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time       { return c.t }
func (c *fakeClock) add(d time.Duration)  { c.t = c.t.Add(d) }
func lines(b *bytes.Buffer, s string) int { return strings.Count(b.String(), s) }
func (c *fakeClock) String() string       { return c.t.String() }
func dialCounting(addr *atomic.Value, n *atomic.Int64) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr.Load().(string))
	}
}

// TestRedisStoresFailFastWhileDown points both stores at a Redis that
// hangs: the first call of each times out and opens its breaker, the
// calls after it fail at once with ErrUnavailable without dialling, one
// probe goes through after each (growing) backoff, one line is logged per
// store and minute, and a Redis that answers again closes the breaker.
func TestRedisStoresFailFastWhileDown(t *testing.T) {
	var addr atomic.Value
	addr.Store(hangingRedis(t))
	var dials atomic.Int64
	client := redis.NewClient(&redis.Options{
		Addr: "redis.invalid:6379", Dialer: dialCounting(&addr, &dials), Protocol: 2,
		ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: time.Second,
	})
	t.Cleanup(func() { client.Close() })

	var logs bytes.Buffer
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	o := RedisOptions{
		Prefix: fmt.Sprintf("lumen-test:%s:%d:", t.Name(), time.Now().UnixNano()),
		Now:    clk.now, Timeout: 50 * time.Millisecond, Backoff: time.Second, MaxBackoff: 4 * time.Second,
		Logger: zerolog.New(&logs),
	}
	lim, bud := NewRedisLimiter(client, o), NewRedisBudgets(client, o)
	ctx := context.Background()
	l := Limit{RPM: 10}
	b := Budget{LimitUSD: 1, Period: Daily}

	wantDials := func(step string, n int64) {
		t.Helper()
		if got := dials.Load(); got != n {
			t.Fatalf("%s: %d dials, want %d", step, got, n)
		}
	}
	wantDown := func(step string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s: err = %v, want ErrUnavailable", step, err)
		}
	}

	_, err := lim.Allow(ctx, "key:a", l, 1)
	wantDown("first Allow", err)
	wantDials("first Allow", 1)
	_, err = bud.Reserve(ctx, "a", b, 0.01)
	wantDown("first Reserve", err)
	wantDials("first Reserve", 2)
	for i := range 10 {
		_, err := lim.Allow(ctx, "key:a", l, 1)
		wantDown("Allow while backed off", err)
		_, err = bud.Reserve(ctx, "a", b, 0.01)
		wantDown("Reserve while backed off", err)
		wantDown("Adjust while backed off", lim.Adjust(ctx, "key:a", 0, 5))
		wantDown("Settle while backed off", bud.Settle(ctx, Reservation{KeyID: "a", member: "x:1:1"}, 0))
		if st := bud.Status("a", Daily); st.SpentUSD != 0 {
			t.Fatalf("Status while down: %+v", st)
		}
		wantDials(fmt.Sprint("call ", i, " inside the backoff"), 2)
	}
	if n := lines(&logs, "\n"); n != 2 {
		t.Fatalf("%d log lines, want one per store:\n%s", n, logs.String())
	}

	// The backoff grows: 1s, then 2s, then 4s (MaxBackoff).
	want := int64(2)
	for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		clk.add(wait - time.Millisecond)
		_, err := lim.Allow(ctx, "key:a", l, 1)
		wantDown("Allow just before the backoff ends", err)
		wantDials(fmt.Sprint("before ", wait), want)
		clk.add(time.Millisecond)
		_, err = lim.Allow(ctx, "key:a", l, 1)
		wantDown("the probe", err)
		want++
		wantDials(fmt.Sprint("probe after ", wait), want)
		_, err = lim.Allow(ctx, "key:a", l, 1)
		wantDown("Allow after the probe", err)
		wantDials(fmt.Sprint("after the probe after ", wait), want)
	}
	if n := lines(&logs, "\n"); n != 2 {
		t.Fatalf("%d log lines within the minute, want 2:\n%s", n, logs.String())
	}
	clk.add(time.Minute)
	_, _ = lim.Allow(ctx, "key:a", l, 1)
	if n := lines(&logs, "\n"); n != 3 || lines(&logs, `"errors_since_last_log":5`) != 1 || lines(&logs, `"skipped_since_last_log":28`) != 1 {
		// The limiter's: 4 probes and this call failed; 10×2 calls in
		// the first loop and 2×4 around the probes were skipped.
		t.Fatalf("after a minute, logs:\n%s", logs.String())
	}
	if lines(&logs, "rate limits unchecked") != 2 || lines(&logs, "budgets unchecked") != 1 {
		t.Errorf("log lines do not say which store:\n%s", logs.String())
	}

	// Redis answers again: the next probe closes the breaker.
	addr.Store(redistest.Addr(t))
	clk.add(4 * time.Second)
	for i := range 3 {
		if _, err := lim.Allow(ctx, "key:a", l, 1); err != nil {
			t.Fatalf("Allow %d after Redis came back: %v", i, err)
		}
	}
}

// TestRedisBudgetsLoadFailsFast points RedisBudgets at a closed port: Load
// (serve's at start, and on a key's budget period change) goes through the
// breaker Reserve uses. Its failure wraps ErrUnavailable and is logged
// once, by the store; the calls after it, another Load or a Reserve, skip
// Redis without dialling until the backoff has passed.
func TestRedisBudgetsLoadFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var addr atomic.Value
	addr.Store(ln.Addr().String())
	ln.Close()
	var dials atomic.Int64
	client := redis.NewClient(&redis.Options{
		Addr: "redis.invalid:6379", Dialer: dialCounting(&addr, &dials), Protocol: 2,
		ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second,
	})
	t.Cleanup(func() { client.Close() })
	var logs bytes.Buffer
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	bud := NewRedisBudgets(client, RedisOptions{
		Prefix: fmt.Sprintf("lumen-test:%s:%d:", t.Name(), time.Now().UnixNano()),
		Now:    clk.now, Timeout: 50 * time.Millisecond, Backoff: time.Second, Logger: zerolog.New(&logs),
	})
	ctx := context.Background()
	budgets := map[string]Budget{"a": {LimitUSD: 1, Period: Daily}, "b": {LimitUSD: 1, Period: Monthly}, "c": {LimitUSD: 1}}
	src := spendSource{"a": 0.1, "b": 0.2, "c": 0.3}

	if err := bud.Load(ctx, src, budgets); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Load with Redis down: %v, want ErrUnavailable", err)
	}
	tried := dials.Load() // go-redis dials twice for a pipeline
	if tried == 0 {
		t.Fatal("Load with Redis down did not dial")
	}
	if err := bud.Load(ctx, src, budgets); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Load again inside the backoff: %v, want ErrUnavailable", err)
	}
	if _, err := bud.Reserve(ctx, "a", budgets["a"], 0.01); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reserve inside the backoff: %v, want ErrUnavailable", err)
	}
	if got := dials.Load(); got != tried {
		t.Fatalf("%d dials after Load, Load and Reserve inside the backoff, want %d (the first Load's)", got, tried)
	}
	if n := lines(&logs, "\n"); n != 1 || lines(&logs, `"op":"load"`) != 1 || lines(&logs, "budgets unchecked") != 1 {
		t.Fatalf("want one line, from the failed Load:\n%s", logs.String())
	}

	// Redis answers again: after the backoff, Load raises the spend.
	addr.Store(redistest.Addr(t))
	clk.add(time.Second)
	if err := bud.Load(ctx, src, budgets); err != nil {
		t.Fatalf("Load after Redis came back: %v", err)
	}
	for id, b := range budgets {
		if got := bud.Status(id, b.Period).SpentUSD; got != src[id] {
			t.Errorf("%s: spent %v after Load, want %v", id, got, src[id])
		}
	}
}
