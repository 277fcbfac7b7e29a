package cache

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func testEntry(t testing.TB, text string) *Entry {
	t.Helper()
	body := fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":%q},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}`, text)
	e, err := NewEntry([]byte(body), 0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testKey(t testing.TB, i int) Key {
	t.Helper()
	k, err := NewKey("g", "", fmt.Appendf(nil, `{"model":"m","messages":[{"role":"user","content":"q%d"}]}`, i))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLocalTTL(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Unix(1000, 0)}
	l := NewLocal(1<<20, time.Hour)
	l.now = clk.now
	k1, k2 := testKey(t, 1), testKey(t, 2)
	l.Set(ctx, k1, testEntry(t, "a"), 0)              // default: 1h
	l.Set(ctx, k2, testEntry(t, "b"), 10*time.Minute) // per-request override

	steps := []struct {
		after      time.Duration
		hit1, hit2 bool
	}{
		{0, true, true},
		{10*time.Minute - time.Second, true, true},
		{time.Second, true, false},
		{50*time.Minute - time.Second, true, false},
		{time.Second, false, false},
	}
	for i, s := range steps {
		clk.add(s.after)
		_, h1 := l.Get(ctx, k1)
		_, h2 := l.Get(ctx, k2)
		if h1 != s.hit1 || h2 != s.hit2 {
			t.Errorf("step %d: hits = %v, %v; want %v, %v", i, h1, h2, s.hit1, s.hit2)
		}
	}
	st := l.Stats()
	if st.Entries != 0 || st.Bytes != 0 || st.Expired != 2 {
		t.Errorf("after expiry: %+v; want no entries, no bytes, 2 expired", st)
	}
}

func TestLocalSweepsExpiredOnSet(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Unix(1000, 0)}
	l := NewLocal(1<<20, time.Minute)
	l.now = clk.now
	l.Set(ctx, testKey(t, 1), testEntry(t, "a"), 0)
	clk.add(2 * time.Minute)
	l.Set(ctx, testKey(t, 2), testEntry(t, "b"), 0)
	if st := l.Stats(); st.Entries != 1 || st.Expired != 1 {
		t.Errorf("stats = %+v, want the expired entry swept", st)
	}
}

func TestLocalByteBound(t *testing.T) {
	ctx := context.Background()
	e := testEntry(t, "some answer text")
	per := int64(e.Size()) + itemOverhead
	l := NewLocal(10*per, 0)
	for i := 0; i < 10; i++ {
		l.Set(ctx, testKey(t, i), e, 0)
	}
	if st := l.Stats(); st.Entries != 10 || st.Bytes != 10*per || st.Evictions != 0 {
		t.Fatalf("full: %+v; want 10 entries, %d bytes", st, 10*per)
	}
	// Touch 0 so that 1 is the least recently used.
	if _, ok := l.Get(ctx, testKey(t, 0)); !ok {
		t.Fatal("entry 0 missing")
	}
	l.Set(ctx, testKey(t, 10), e, 0)
	if _, ok := l.Get(ctx, testKey(t, 1)); ok {
		t.Error("least recently used entry 1 survived")
	}
	for _, i := range []int{0, 2, 10} {
		if _, ok := l.Get(ctx, testKey(t, i)); !ok {
			t.Errorf("entry %d evicted", i)
		}
	}
	st := l.Stats()
	if st.Bytes > 10*per || st.Evictions != 1 {
		t.Errorf("after overflow: %+v", st)
	}

	// A bigger entry evicts as many as it needs.
	big := testEntry(t, strings.Repeat("y", int(3*per)))
	l.Set(ctx, testKey(t, 99), big, 0)
	if st := l.Stats(); st.Bytes > 10*per {
		t.Errorf("over bound: %d > %d", st.Bytes, 10*per)
	}
	if _, ok := l.Get(ctx, testKey(t, 99)); !ok {
		t.Error("big entry not stored")
	}
	// One larger than the whole bound is not stored at all.
	huge := testEntry(t, strings.Repeat("y", int(11*per)))
	l.Set(ctx, testKey(t, 100), huge, 0)
	if _, ok := l.Get(ctx, testKey(t, 100)); ok {
		t.Error("entry larger than max_bytes stored")
	}
	// Replacing an entry does not count it twice.
	before := l.Stats().Bytes
	l.Set(ctx, testKey(t, 99), big, 0)
	if after := l.Stats().Bytes; after != before {
		t.Errorf("replacing an entry: bytes %d -> %d", before, after)
	}
}

func TestLocalConcurrent(t *testing.T) {
	ctx := context.Background()
	l := NewLocal(64<<10, 0)
	e := testEntry(t, "x")
	keys := make([]Key, 50)
	for i := range keys {
		keys[i] = testKey(t, i)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := keys[(g*7+i)%len(keys)]
				if i%3 == 0 {
					l.Set(ctx, k, e, 0)
				} else if got, ok := l.Get(ctx, k); ok && got != e {
					t.Error("wrong entry")
				}
			}
		}()
	}
	wg.Wait()
	st := l.Stats()
	per := int64(e.Size()) + itemOverhead
	if st.Hits+st.Misses != 8*333 || st.Bytes > 64<<10 || st.Bytes != st.Entries*per {
		t.Errorf("stats = %+v; want %d lookups and %d bytes per entry", st, 8*333, per)
	}
}
