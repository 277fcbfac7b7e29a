package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/breaker"
)

// ErrUnavailable is wrapped by the errors of a Redis store whose Redis
// failed or is being skipped after a failure. The store has logged it
// (at most once per RedisOptions.LogInterval): callers that fail open
// need not log it again.
var ErrUnavailable = errors.New("redis unavailable")

// RedisOptions configure RedisBudgets and RedisLimiter. Zero fields take
// the defaults.
type RedisOptions struct {
	// Prefix starts every key (default "lumen:limits:"). Instances that
	// share limits share the prefix.
	Prefix string
	// Location is the time zone budget periods start in (default UTC);
	// every instance must use the same one.
	Location *time.Location
	// Hold is how long a reservation holds money when it is never settled
	// (its instance died): after it, the money is free again (default 1h).
	// A reservation settled later than that is still charged.
	Hold time.Duration
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
	// Timeout bounds each Redis call (default 250ms). It only works with a
	// client built with ContextTimeoutEnabled, as cache.RedisClientOptions
	// does.
	Timeout time.Duration
	// Backoff is how long a store skips Redis after a failure (default
	// 500ms); it doubles with each failed probe up to MaxBackoff (default
	// 5s). Skipped calls fail at once with ErrUnavailable, so a Redis that
	// hangs costs a request a clock read, not a timeout.
	Backoff, MaxBackoff time.Duration
	// LogInterval spaces the "Redis unavailable" log lines (default 1m).
	LogInterval time.Duration
	// Logger receives those lines; the zero Logger discards them.
	Logger zerolog.Logger
}

func (o *RedisOptions) defaults() {
	if o.Prefix == "" {
		o.Prefix = "lumen:limits:"
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Hold <= 0 {
		o.Hold = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
}

// newBreaker returns the breaker of one store; what names it in the log,
// onRecover (may be nil) is called when Redis answers after an outage.
func (o *RedisOptions) newBreaker(what string, onRecover func()) *breaker.Breaker {
	return breaker.New(breaker.Options{
		Backoff: o.Backoff, MaxBackoff: o.MaxBackoff, LogInterval: o.LogInterval, Logger: o.Logger, Now: o.Now,
		Message:        "limits: Redis unavailable; " + what + " unchecked (requests admitted)",
		RecoverMessage: "limits: Redis available again; " + what + " checked",
		OnRecover:      onRecover,
	})
}

// call runs fn against Redis unless down says to skip it, bounded by
// o.Timeout, and tells down how it went. Its error wraps ErrUnavailable
// when Redis failed or was skipped, not when ctx ended first (the client
// left; Redis is not to blame).
func call(ctx context.Context, down *breaker.Breaker, o *RedisOptions, op string, fn func(context.Context) error) error {
	if !down.Allow() {
		return ErrUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	err := fn(cctx)
	cancel()
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		down.Succeed()
		return err
	case ctx.Err() != nil:
		return err
	default:
		down.Fail(op, err)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// RedisBudgets is a BudgetStore shared by every Lumen instance using the
// same Redis and prefix: a reservation on one instance counts on all, so
// together they never admit more than a budget. Each account keeps its
// spend per period in one key and its open reservations in a sorted set
// (member "<instance>:<n>:<nano-USD>", scored by when the hold lapses);
// each Reserve and Settle is one atomic script. Amounts are integer
// billionths of a dollar, as in MemoryBudgets.
type RedisBudgets struct {
	c        redis.UniversalClient
	o        RedisOptions
	instance string
	next     atomic.Uint64
	down     *breaker.Breaker
	back     chan struct{} // Recovered
	missed   atomic.Int64  // unix ms of the last signal of a missing spend key
	marked   atomic.Int64  // unix ms of when the loaded marker was last seen
}

var _ BudgetStore = (*RedisBudgets)(nil)

// NewRedisBudgets returns a budget store over client; the caller owns the
// client and closes it.
func NewRedisBudgets(client redis.UniversalClient, o RedisOptions) *RedisBudgets {
	o.defaults()
	var id [6]byte
	_, _ = rand.Read(id[:])
	b := &RedisBudgets{c: client, o: o, instance: hex.EncodeToString(id[:]), back: make(chan struct{}, 1)}
	b.down = o.newBreaker("budgets", b.signal)
	return b
}

func (b *RedisBudgets) signal() {
	select {
	case b.back <- struct{}{}:
	default: // one is pending
	}
}

// missedEvery spaces the Recovered signals of reservations that find an
// account's spend key missing.
const missedEvery = 5 * time.Second

// markedFresh is how long a reservation that finds its spend key missing
// trusts the last sight of the loaded marker instead of looking again: a
// stream of new accounts costs at most one more Redis call a second.
const markedFresh = time.Second

// Recovered receives a value when the spend Redis holds may be short of
// the ledger's: Redis answers again after the store found it down, or
// Redis lost its data while up (it restarted empty, or was flushed), at
// most one signal every 5 s. The spend counted is then gone until Load
// raises it: the owner should LoadAll at once rather than wait for its
// next periodic load.
//
// A lost Redis is told from a new account by a marker key that LoadAll
// writes: a reservation that finds its account's spend key missing (a
// new end user, a new period, or lost spend) looks for the marker, and
// only its absence is a loss. So new accounts cost no reload, but a key
// evicted alone (Redis at maxmemory with an eviction policy) while the
// marker stays is noticed only by the owner's next periodic load.
func (b *RedisBudgets) Recovered() <-chan struct{} { return b.back }

// loadedKey is the marker LoadAll writes: its absence means Redis lost
// what the last full load put there.
func (b *RedisBudgets) loadedKey() string { return b.o.Prefix + "budget:loaded" }

// keys returns account's spend key for the period of p containing at, its
// holds key, the period's end (zero for Total) and how long, from now, the
// spend key must live (0: for ever; negative: it is gone, its period long
// over). The {account} hash tag keeps both keys in one Redis Cluster slot,
// as a script needs.
func (b *RedisBudgets) keys(account string, p Period, at, now time.Time) (spent, open string, end time.Time, ttl time.Duration) {
	start, end := period(p).Bounds(at, b.o.Location)
	base := b.o.Prefix + "budget:{" + account + "}:"
	spent = base + "spent:total"
	if !start.IsZero() {
		spent = base + "spent:" + strconv.FormatInt(start.Unix(), 10)
		ttl = end.Sub(now) + 24*time.Hour
	}
	return spent, base + "open", end, ttl
}

// reserveScript drops lapsed holds, and adds a hold of ARGV[2] unless the
// spend plus the holds would pass the limit ARGV[1] (0: none). It returns
// {admitted, spent, held, spend key present}.
var reserveScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local held = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  held = held + tonumber(string.match(m, ':(%d+)$'))
end
local raw = redis.call('GET', KEYS[1])
local present = 1
if not raw then present = 0 end
local spent = tonumber(raw or '0')
local limit, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit > 0 and (spent >= limit or spent + held + amount > limit) then
  return {0, spent, held, present}
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {1, spent, held, present}
`)

// settleScript releases hold ARGV[1] and, unless ARGV[3] is negative (the
// period is long over), adds ARGV[2] to the spend, whose key then lives
// ARGV[3] ms (0: for ever). The key is written even for a charge of 0: an
// account that was charged has its key, and Reserve looks for the sign of
// a lost Redis (Recovered) only when it finds none.
var settleScript = redis.NewScript(`
redis.call('ZREM', KEYS[2], ARGV[1])
if tonumber(ARGV[3]) < 0 then
  return 0
end
redis.call('INCRBY', KEYS[1], ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
`)

// raiseScript sets the spend to ARGV[1] when it is lower, or missing.
var raiseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur or tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('SET', KEYS[1], ARGV[1])
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// Reserve implements BudgetStore.
func (b *RedisBudgets) Reserve(ctx context.Context, account string, bu Budget, worstCaseUSD float64) (Reservation, error) {
	p := period(bu.Period)
	now := b.o.Now()
	spentKey, openKey, end, _ := b.keys(account, p, now, now)
	amount := toNano(worstCaseUSD)
	limit := nano(0)
	if bu.LimitUSD > 0 {
		limit = toNano(bu.LimitUSD)
	}
	id := b.next.Add(1)
	member := b.instance + ":" + strconv.FormatUint(id, 10) + ":" + strconv.FormatInt(int64(amount), 10)
	var res []int64
	err := call(ctx, b.down, &b.o, "reserve", func(ctx context.Context) (err error) {
		res, err = reserveScript.Run(ctx, b.c, []string{spentKey, openKey},
			int64(limit), int64(amount), now.UnixMilli(), now.Add(b.o.Hold).UnixMilli(), member, (b.o.Hold + time.Minute).Milliseconds()).Int64Slice()
		return err
	})
	if err != nil {
		return Reservation{}, fmt.Errorf("reserving budget of %s in redis: %w", account, err)
	}
	if len(res) != 4 {
		return Reservation{}, fmt.Errorf("reserving budget of %s in redis: unexpected reply %v", account, res)
	}
	if res[3] == 0 {
		b.missing(ctx, now)
	}
	if res[0] == 0 {
		return Reservation{}, &BudgetError{KeyID: account, Budget: bu.LimitUSD, Period: p, ResetsAt: end,
			Spent: nano(res[1]).usd(), Reserved: nano(res[2]).usd(), Requested: amount.usd()}
	}
	return Reservation{KeyID: account, USD: amount.usd(), Period: p, At: now, member: member}, nil
}

// missing is told by a reservation that found its spend key missing: it
// signals Recovered, at most once every missedEvery, when the loaded
// marker is gone too (Redis lost its data); else the account or its
// period is new. The marker seen within markedFresh is not looked at
// again. A Redis call that fails signals nothing: the breaker signals
// when Redis is back.
func (b *RedisBudgets) missing(ctx context.Context, now time.Time) {
	ms := now.UnixMilli()
	if ms-b.missed.Load() < missedEvery.Milliseconds() || ms-b.marked.Load() < markedFresh.Milliseconds() {
		return
	}
	var n int64
	err := call(ctx, b.down, &b.o, "reserve", func(ctx context.Context) (err error) {
		n, err = b.c.Exists(ctx, b.loadedKey()).Result()
		return err
	})
	if err != nil {
		return
	}
	if n > 0 {
		b.marked.Store(ms)
		return
	}
	last := b.missed.Load()
	if ms-last < missedEvery.Milliseconds() || !b.missed.CompareAndSwap(last, ms) {
		return
	}
	b.signal()
}

// Settle implements BudgetStore. Unlike MemoryBudgets it cannot tell a
// second Settle of one reservation from the first: the server settles
// each once.
func (b *RedisBudgets) Settle(ctx context.Context, r Reservation, actualUSD float64) error {
	if r.member == "" {
		return fmt.Errorf("settling a reservation for %s: %w", r.KeyID, ErrSettled)
	}
	spentKey, openKey, end, ttl := b.keys(r.KeyID, r.Period, r.At, b.o.Now())
	charge := toNano(actualUSD)
	if !end.IsZero() && ttl <= 0 {
		// The window ended a day ago: its key, and what counts it, is gone.
		charge, ttl = 0, -time.Millisecond
	}
	err := call(ctx, b.down, &b.o, "settle", func(ctx context.Context) error {
		return settleScript.Run(ctx, b.c, []string{spentKey, openKey}, r.member, int64(charge), ttl.Milliseconds()).Err()
	})
	if err != nil {
		return fmt.Errorf("settling budget of %s in redis: %w", r.KeyID, err)
	}
	return nil
}

// Status returns account's spend in the current period of p; zero when
// Redis cannot be read (or is being skipped after a failure).
func (b *RedisBudgets) Status(account string, p Period) Status {
	p = period(p)
	now := b.o.Now()
	spentKey, openKey, end, _ := b.keys(account, p, now, now)
	start, _ := p.Bounds(now, b.o.Location)
	st := Status{Period: p, PeriodStart: start, ResetsAt: end}
	var spent *redis.StringCmd
	var holds *redis.StringSliceCmd
	err := call(context.Background(), b.down, &b.o, "status", func(ctx context.Context) error {
		pipe := b.c.Pipeline()
		spent = pipe.Get(ctx, spentKey)
		holds = pipe.ZRangeByScore(ctx, openKey, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"})
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return st
	}
	if n, err := spent.Int64(); err == nil {
		st.SpentUSD = nano(n).usd()
	}
	var held nano
	for _, m := range holds.Val() {
		if n, err := strconv.ParseInt(m[strings.LastIndexByte(m, ':')+1:], 10, 64); err == nil {
			held += nano(n)
		}
	}
	st.ReservedUSD = held.usd()
	return st
}

// loadChunk is how many accounts one Redis call of Load raises.
const loadChunk = 500

// Load raises each account's spend in its current period to what src
// recorded, for the budgets given: other instances may already have
// counted more than the ledger holds, so a lower figure never replaces a
// higher one. Call LoadAll on start, and Load when a key's budget period
// changes: the new window's spend is missing, or holds only what was
// counted the last time the key had that period. Its Redis calls go through the
// store's breaker as Reserve's do: each is bounded by
// RedisOptions.Timeout (loadChunk accounts a call), a Redis that fails
// is logged by the store (the error wraps ErrUnavailable) and skipped for
// a while, and Load stops at the first failure.
func (b *RedisBudgets) Load(ctx context.Context, src SpendSource, budgets map[string]Budget) error {
	now := b.o.Now()
	byStart := map[time.Time][]string{}
	for id, bu := range budgets {
		start, _ := period(bu.Period).Bounds(now, b.o.Location)
		byStart[start] = append(byStart[start], id)
	}
	for start, ids := range byStart {
		spent, err := src.SpendSince(ctx, start)
		if err != nil {
			return fmt.Errorf("loading spend since %s: %w", start.Format(time.RFC3339), err)
		}
		// In chunks: each call must fit in the timeout however many
		// accounts there are.
		for chunk := range slices.Chunk(ids, loadChunk) {
			err := call(ctx, b.down, &b.o, "load", func(ctx context.Context) error {
				pipe := b.c.Pipeline()
				for _, id := range chunk {
					key, _, _, ttl := b.keys(id, budgets[id].Period, now, now)
					raiseScript.Eval(ctx, pipe, []string{key}, int64(toNano(spent[id])), ttl.Milliseconds())
				}
				_, err := pipe.Exec(ctx)
				return err
			})
			if err != nil {
				return fmt.Errorf("loading spend into redis: %w", err)
			}
		}
	}
	return nil
}

// LoadAll is Load given every budget account there is (the owner's load
// at start, after Recovered and periodically; not a reload of some keys):
// it first writes the marker whose absence tells Reserve that Redis lost
// what was loaded. Written first, a Redis that loses it during the load is
// noticed; a load that fails after it is the owner's to retry.
func (b *RedisBudgets) LoadAll(ctx context.Context, src SpendSource, budgets map[string]Budget) error {
	err := call(ctx, b.down, &b.o, "load", func(ctx context.Context) error {
		return b.c.Set(ctx, b.loadedKey(), b.o.Now().UnixMilli(), 0).Err()
	})
	if err != nil {
		return fmt.Errorf("marking the spend loaded in redis: %w", err)
	}
	return b.Load(ctx, src, budgets)
}

// RedisLimiter is a Limiter shared by every Lumen instance using the same
// Redis and prefix: the same sliding minute of one-second buckets as
// MemoryLimiter, kept in one hash per id ("<second>r" and "<second>t"
// fields), checked and counted by one atomic script. The clock is each
// instance's own: keep them in sync (NTP).
type RedisLimiter struct {
	c    redis.UniversalClient
	o    RedisOptions
	down *breaker.Breaker
}

var _ Limiter = (*RedisLimiter)(nil)

// NewRedisLimiter returns a limiter over client; the caller owns the client
// and closes it.
func NewRedisLimiter(client redis.UniversalClient, o RedisOptions) *RedisLimiter {
	o.defaults()
	return &RedisLimiter{c: client, o: o, down: o.newBreaker("rate limits", nil)}
}

func (l *RedisLimiter) key(id string) string { return l.o.Prefix + "rate:{" + id + "}" }

// allowScript drops the buckets that left the minute ending at second
// ARGV[1], counts one request of ARGV[4] tokens if it fits rpm ARGV[2] and
// tpm ARGV[3] (0: unlimited) by counter.decide's rule, and returns
// {admitted, field, value, ...} of the buckets as they were before.
var allowScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local h = redis.call('HGETALL', KEYS[1])
local out = {0}
local req, tok = 0, 0
for i = 1, #h, 2 do
  local f, v = h[i], tonumber(h[i + 1])
  local sec = tonumber(string.sub(f, 1, -2))
  if sec <= now - 60 then
    redis.call('HDEL', KEYS[1], f)
  elseif sec <= now then
    table.insert(out, f)
    table.insert(out, v)
    if string.sub(f, -1) == 'r' then req = req + v else tok = tok + v end
  end
end
req, tok = math.max(req, 0), math.max(tok, 0)
local rpm, tpm, tokens = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if (rpm <= 0 or req + 1 <= rpm) and (tpm <= 0 or tok + tokens <= tpm) then
  out[1] = 1
  redis.call('HINCRBY', KEYS[1], ARGV[1] .. 'r', 1)
  redis.call('HINCRBY', KEYS[1], ARGV[1] .. 't', tokens)
  redis.call('EXPIRE', KEYS[1], 61)
end
return out
`)

// Allow implements Limiter.
func (l *RedisLimiter) Allow(ctx context.Context, id string, lim Limit, tokens int) (Decision, error) {
	if lim.RPM <= 0 && lim.TPM <= 0 {
		return Decision{Allowed: true}, nil
	}
	tokens = max(tokens, 0)
	t := l.o.Now()
	now := t.Unix()
	var res []any
	err := call(ctx, l.down, &l.o, "allow", func(ctx context.Context) (err error) {
		res, err = allowScript.Run(ctx, l.c, []string{l.key(id)}, now, max(lim.RPM, 0), max(lim.TPM, 0), tokens).Slice()
		return err
	})
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit %s in redis: %w", id, err)
	}
	if len(res) == 0 || len(res)%2 == 0 {
		return Decision{}, fmt.Errorf("rate limit %s in redis: unexpected reply %v", id, res)
	}
	// The same decision, with its quotas and waits, from the buckets the
	// script saw.
	var c counter
	for i := 1; i+1 < len(res); i += 2 {
		f, _ := res[i].(string)
		v, _ := res[i+1].(int64)
		sec, err := strconv.ParseInt(f[:max(len(f)-1, 0)], 10, 64)
		if err != nil || f == "" {
			continue
		}
		if f[len(f)-1] == 'r' {
			c.add(sec, v, 0)
		} else {
			c.add(sec, 0, v)
		}
	}
	d := c.decide(t, lim, tokens)
	d.Allowed = res[0] == int64(1) // the script counted it, or not
	return d, nil
}

// Adjust implements Limiter.
func (l *RedisLimiter) Adjust(ctx context.Context, id string, requests, tokens int) error {
	now := strconv.FormatInt(l.o.Now().Unix(), 10)
	key := l.key(id)
	err := call(ctx, l.down, &l.o, "adjust", func(ctx context.Context) error {
		pipe := l.c.TxPipeline()
		if requests != 0 {
			pipe.HIncrBy(ctx, key, now+"r", int64(requests))
		}
		if tokens != 0 {
			pipe.HIncrBy(ctx, key, now+"t", int64(tokens))
		}
		pipe.Expire(ctx, key, 61*time.Second)
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("adjusting rate limit %s in redis: %w", id, err)
	}
	return nil
}
