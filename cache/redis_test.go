package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/redistest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	redistest.Stop()
	os.Exit(code)
}

func redisAddr(t *testing.T) string { return redistest.Addr(t) }

// newTestRedis returns a store over a real Redis, under a prefix of its own.
func newTestRedis(t *testing.T, o RedisOptions) (*Redis, *redis.Client) {
	t.Helper()
	opts, err := RedisClientOptions("redis://" + redisAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping %s: %v", opts.Addr, err)
	}
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("lumen-test:%s:%d:", t.Name(), time.Now().UnixNano())
	}
	return NewRedis(client, o), client
}

func TestRedisSharedAcrossInstances(t *testing.T) {
	ctx := context.Background()
	a, _ := newTestRedis(t, RedisOptions{})
	b, _ := newTestRedis(t, RedisOptions{Prefix: a.o.Prefix}) // another Lumen, own client
	k := testKey(t, 1)
	if _, ok := b.Get(ctx, k); ok {
		t.Fatal("hit before any Set")
	}
	e := testEntry(t, "shared answer")
	a.Set(ctx, k, e, 0)
	got, ok := b.Get(ctx, k)
	if !ok {
		t.Fatal("instance b misses what instance a stored")
	}
	if !bytes.Equal(got.Body("i", 1), e.Body("i", 1)) || got.Usage() != e.Usage() || !got.Stored().Equal(e.Stored()) {
		t.Error("entry changed on its way through Redis")
	}
	if _, ok := b.Get(ctx, testKey(t, 2)); ok {
		t.Error("hit for another key")
	}
	if st := b.Stats(); st.Hits != 1 || st.Misses != 2 || st.Errors != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRedisTTL(t *testing.T) {
	ctx := context.Background()
	s, client := newTestRedis(t, RedisOptions{TTL: 30 * time.Minute})
	k1, k2 := testKey(t, 1), testKey(t, 2)
	s.Set(ctx, k1, testEntry(t, "a"), 0)
	s.Set(ctx, k2, testEntry(t, "b"), 90*time.Second)
	for _, c := range []struct {
		k   Key
		max time.Duration
	}{{k1, 30 * time.Minute}, {k2, 90 * time.Second}} {
		ttl, err := client.TTL(ctx, s.key(c.k)).Result()
		if err != nil || ttl <= c.max-5*time.Second || ttl > c.max {
			t.Errorf("Redis TTL = %v, %v; want about %v", ttl, err, c.max)
		}
	}
	// Expiry is Redis's: once the key is gone, the entry is a miss.
	if err := client.PExpire(ctx, s.key(k2), time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if n, _ := client.Exists(ctx, s.key(k2)).Result(); n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := s.Get(ctx, k2); ok {
		t.Error("expired entry served")
	}
}

func TestRedisCorruptValueIsMiss(t *testing.T) {
	ctx := context.Background()
	s, client := newTestRedis(t, RedisOptions{})
	k := testKey(t, 1)
	if err := client.Set(ctx, s.key(k), "not an entry", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(ctx, k); ok {
		t.Error("corrupt value served")
	}
	if st := s.Stats(); st.Errors != 1 {
		t.Errorf("Errors = %d, want 1", st.Errors)
	}
}

// TestRedisDown needs no redis-server: it points at a port nobody listens on.
func TestRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	opts, _ := RedisClientOptions("redis://" + addr)
	client := redis.NewClient(opts)
	defer client.Close()

	var logs bytes.Buffer
	clk := &clock{t: time.Unix(1000, 0)}
	s := NewRedis(client, RedisOptions{Backoff: time.Second, LogInterval: time.Minute, Logger: zerolog.New(&logs)})
	s.now = clk.now
	ctx := context.Background()
	k := testKey(t, 1)

	for i := 0; i < 5; i++ {
		if e, ok := s.Get(ctx, k); ok || e != nil {
			t.Fatal("hit from a dead Redis")
		}
		s.Set(ctx, k, testEntry(t, "x"), 0) // skipped: backed off
		clk.add(2 * time.Second)            // past Backoff, within LogInterval
	}
	st := s.Stats()
	if st.Errors != 5 || st.Misses != 5 || st.Sets != 0 {
		t.Errorf("stats = %+v; want 5 errors, 5 misses", st)
	}
	if s.Skipped() != 5 {
		t.Errorf("Skipped() = %d; want the 5 Sets inside the backoff skipped", s.Skipped())
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Errorf("%d log lines, want 1 per interval:\n%s", n, logs.String())
	}
	clk.add(time.Minute)
	s.Get(ctx, k)
	if n := strings.Count(logs.String(), "\n"); n != 2 || !strings.Contains(logs.String(), `"errors_since_last_log":5`) {
		t.Errorf("after the interval, logs:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "password") {
		t.Error("log mentions a password")
	}
}

// TestRedisRecovers takes Redis away and back through the client's dialer.
func TestRedisRecovers(t *testing.T) {
	addr := redisAddr(t)
	var down atomic.Bool
	down.Store(true)
	opts, _ := RedisClientOptions("redis://" + addr)
	opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if down.Load() {
			return nil, errors.New("connection refused (test)")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	clk := &clock{t: time.Unix(1000, 0)}
	s := NewRedis(client, RedisOptions{Prefix: fmt.Sprintf("lumen-test:recover:%d:", time.Now().UnixNano())})
	s.now = clk.now
	ctx := context.Background()
	k := testKey(t, 1)

	s.Set(ctx, k, testEntry(t, "x"), 0)
	if _, ok := s.Get(ctx, k); ok {
		t.Fatal("hit while down")
	}
	down.Store(false)
	if _, ok := s.Get(ctx, k); ok {
		t.Fatal("hit inside the backoff")
	}
	clk.add(2 * time.Second)
	s.Set(ctx, k, testEntry(t, "x"), 0)
	if _, ok := s.Get(ctx, k); !ok {
		t.Fatal("no hit after Redis came back")
	}
}

func TestRedisClientOptions(t *testing.T) {
	o, err := RedisClientOptions("redis://:s3cret@127.0.0.1:6390/2")
	if err != nil {
		t.Fatal(err)
	}
	if o.Addr != "127.0.0.1:6390" || o.DB != 2 || o.Password != "s3cret" || !o.ContextTimeoutEnabled || o.MaxRetries != -1 {
		t.Errorf("options = %+v", o)
	}
	for _, bad := range []string{"http://:s3cret@x", "redis://:s3cret@127.0.0.1:6379/\x7f", "redis://:s3cret@host:port", "redis://:s3cret@host/x",
		"redis://:s3cret/x@host:6379/0"} { // net/url quotes ":s3cret" as the port it cannot read
		if _, err := RedisClientOptions(bad); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("RedisClientOptions(%q) error = %v; want an error without the password", bad, err)
		}
	}
}
