package cache

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/breaker"
	"github.com/lumengw/lumen/internal/credentials"
)

// Redis is a Store shared by every Lumen instance that points at the same
// Redis: entries are MarshalBinary values under Prefix+hex(Key.Hash), with
// the TTL as the key's expiry, so all instances see the same entries expire
// at the same moment.
//
// Redis being down never fails a request: Get reports a miss and Set drops
// the entry; the failure is counted (Stats.Errors, lumen_cache_errors_total)
// and logged at most once per LogInterval. After a failure the store does
// not call Redis for Backoff, so a dead Redis costs requests nothing but a
// clock read (internal/breaker, as the Redis limits).
type Redis struct {
	client redis.UniversalClient
	o      RedisOptions
	now    func() time.Time // the breaker's clock; tests replace it
	c      counters
	down   *breaker.Breaker
}

var (
	_ Store         = (*Redis)(nil)
	_ StatsReporter = (*Redis)(nil)
)

// RedisOptions tune a Redis store. Zero fields take the defaults.
type RedisOptions struct {
	// Prefix starts every key (default "lumen:cache:").
	Prefix string
	// TTL is the default entry lifetime (default 1h).
	TTL time.Duration
	// Timeout bounds each Redis call (default 250ms). It only works with a
	// client built with ContextTimeoutEnabled, as RedisClientOptions does.
	Timeout time.Duration
	// Backoff is how long the store skips Redis after a failure (default 1s).
	Backoff time.Duration
	// LogInterval spaces the "Redis unavailable" log lines (default 1m).
	LogInterval time.Duration
	// Logger receives those lines; the zero Logger discards them.
	Logger zerolog.Logger
}

// NewRedis returns a Store backed by client. The caller owns the client and
// closes it.
func NewRedis(client redis.UniversalClient, o RedisOptions) *Redis {
	if o.Prefix == "" {
		o.Prefix = "lumen:cache:"
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.LogInterval <= 0 {
		o.LogInterval = time.Minute
	}
	r := &Redis{client: client, o: o, now: time.Now}
	r.down = breaker.New(breaker.Options{
		Backoff: o.Backoff, LogInterval: o.LogInterval, Logger: o.Logger,
		Message:        "cache: Redis unavailable; serving uncached",
		RecoverMessage: "cache: Redis available again; caching",
		Now:            func() time.Time { return r.now() },
	})
	return r
}

// RedisClientOptions parses a redis:// or rediss:// URL into client options
// fit for a cache (and for the shared limits, which fail open the same
// way): calls bounded by their context, short timeouts and no retries, so
// that a slow or dead Redis turns into a quick miss.
//
// go-redis also logs dial failures itself, through a process-wide logger;
// cmd should route it (redis.SetLogger) so that a dead Redis does not flood
// the log.
func RedisClientOptions(url string) (*redis.Options, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parsing redis_url: %w", credentials.RedactError(err))
	}
	o.ContextTimeoutEnabled = true
	o.DialTimeout = 250 * time.Millisecond
	o.ReadTimeout = 250 * time.Millisecond
	o.WriteTimeout = 250 * time.Millisecond
	o.PoolTimeout = 250 * time.Millisecond
	o.MaxRetries = -1 // go-redis: -1 disables retries
	o.DialerRetries = 1
	return o, nil
}

func (r *Redis) key(k Key) string {
	var b [64]byte
	hex.Encode(b[:], k.Hash[:])
	return r.o.Prefix + string(b[:])
}

// available reports whether Redis may be called now.
func (r *Redis) available() bool { return r.down.Allow() }

// failed records a Redis failure, unless the caller gave up first.
func (r *Redis) failed(ctx context.Context, op string, err error) {
	if ctx.Err() != nil {
		return // the client left; Redis is not to blame
	}
	r.c.errors.Add(1)
	r.down.Fail(op, err)
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, k Key) (*Entry, bool) {
	if !r.available() {
		r.c.misses.Add(1)
		return nil, false
	}
	cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	b, err := r.client.Get(cctx, r.key(k)).Bytes()
	cancel()
	if err != nil && !errors.Is(err, redis.Nil) {
		r.failed(ctx, "get", err)
		r.c.misses.Add(1)
		return nil, false
	}
	r.down.Succeed() // Redis answered, if only "no such key"
	if err != nil {
		r.c.misses.Add(1)
		return nil, false
	}
	e := new(Entry)
	if err := e.UnmarshalBinary(b); err != nil {
		// A foreign or corrupt value: not Redis being down, but counted
		// and served as a miss all the same.
		r.c.errors.Add(1)
		r.c.misses.Add(1)
		return nil, false
	}
	r.c.hits.Add(1)
	return e, true
}

// Set implements Store. It writes even when ctx is already cancelled (the
// answer is complete and worth keeping), bounded by Timeout.
func (r *Redis) Set(ctx context.Context, k Key, e *Entry, ttl time.Duration) {
	if ttl <= 0 {
		ttl = r.o.TTL
	}
	if !r.available() {
		return
	}
	b, _ := e.MarshalBinary()
	base := context.WithoutCancel(ctx)
	cctx, cancel := context.WithTimeout(base, r.o.Timeout)
	defer cancel()
	if err := r.client.Set(cctx, r.key(k), b, ttl).Err(); err != nil {
		r.failed(base, "set", err)
		return
	}
	r.down.Succeed()
	r.c.sets.Add(1)
}

// Stats implements StatsReporter. Evictions and Expired are Redis's own
// business and stay zero; Entries and Bytes are not tracked.
func (r *Redis) Stats() Stats { return r.c.stats() }

// Skipped returns how many calls were skipped while Redis was backed off.
func (r *Redis) Skipped() int64 { return r.down.Skipped() }
