package limits

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Limit is a rate limit over a sliding one-minute window. A zero or
// negative field means that dimension is not limited.
type Limit struct {
	// RPM is requests per minute.
	RPM int
	// TPM is tokens per minute, prompt and completion together.
	TPM int
}

// Quota is one dimension of a Decision, in the terms of OpenAI's
// x-ratelimit-* headers.
type Quota struct {
	// Limit is the per-minute limit; zero means not limited.
	Limit int
	// Remaining is what is left in the window after this request.
	Remaining int
	// Reset is how long until the window is empty again.
	Reset time.Duration
}

// Decision is a Limiter's answer.
type Decision struct {
	// Allowed is true when the request fits; it has then been counted.
	Allowed bool
	// RetryAfter is, when Allowed is false, how long until the same request
	// would fit.
	RetryAfter time.Duration
	// TooLarge is true when the request alone needs more tokens than the
	// TPM limit allows in a minute: waiting will not help, asking for fewer
	// tokens (max_tokens) will.
	TooLarge bool
	// Requests and Tokens describe the window after this decision.
	Requests, Tokens Quota
}

// Headers sets OpenAI's rate-limit headers on h for every limited
// dimension (x-ratelimit-limit-requests, x-ratelimit-remaining-requests,
// x-ratelimit-reset-requests and the same for tokens), and Retry-After in
// whole seconds, rounded up, when the request was refused.
func (d Decision) Headers(h http.Header) {
	set := func(keys *[3]string, q Quota) {
		if q.Limit <= 0 {
			return
		}
		// Canonical keys and one backing array: this runs on every limited
		// request.
		vals := make([]string, 3)
		vals[0], vals[1], vals[2] = strconv.Itoa(q.Limit), strconv.Itoa(q.Remaining), q.Reset.Round(time.Millisecond).String()
		h[keys[0]], h[keys[1]], h[keys[2]] = vals[0:1:1], vals[1:2:2], vals[2:3:3]
	}
	set(&requestHeaders, d.Requests)
	set(&tokenHeaders, d.Tokens)
	if !d.Allowed && d.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((d.RetryAfter+time.Second-1)/time.Second), 10))
	}
}

// The x-ratelimit-* header names, canonicalized (limit, remaining, reset).
var (
	requestHeaders = [3]string{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"}
	tokenHeaders   = [3]string{"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"}
)

// Limiter counts requests and tokens per id over a sliding minute.
// Implementations are safe for concurrent use. An id is any string the
// caller chooses; the server uses "key:<id>", "group:<model group>" and
// "global" so one Limiter serves every scope.
type Limiter interface {
	// Allow counts one request of tokens tokens (the caller's estimate:
	// prompt plus max_tokens) against id if it fits l in both dimensions,
	// and says so. Nothing is counted when it does not fit. Errors mean the
	// limiter failed (a shared store may be unreachable); the caller
	// decides whether to fail open.
	Allow(ctx context.Context, id string, l Limit, tokens int) (Decision, error)
	// Adjust adds requests and tokens (either may be negative) to id's
	// current window: to refund a request a later check refused, or to
	// replace the token estimate by the real count after the call.
	Adjust(ctx context.Context, id string, requests, tokens int) error
}

var _ Limiter = (*MemoryLimiter)(nil)

// window is the sliding window, in one-second buckets.
const window = 60

// counter is one id's last minute: a bucket per second that counted
// something, oldest first. Only those seconds take room: a limiter keeps
// a counter for every id seen in the last minute or two (one per end user
// with limits.users), most of which count a request or two.
type counter struct {
	b    []bucket
	last int64 // the newest second charged
}

// bucket is what one second counted.
type bucket struct{ sec, req, tok int64 }

// add counts req and tok in second now, forgetting the seconds that left
// the window before it.
func (c *counter) add(now int64, req, tok int64) {
	n := 0
	for n < len(c.b) && c.b[n].sec <= now-window {
		n++
	}
	if n > 0 {
		c.b = append(c.b[:0], c.b[n:]...)
	}
	i := len(c.b)
	for i > 0 && c.b[i-1].sec > now {
		i--
	}
	if i > 0 && c.b[i-1].sec == now {
		c.b[i-1].req += req
		c.b[i-1].tok += tok
	} else {
		c.b = slices.Insert(c.b, i, bucket{sec: now, req: req, tok: tok})
	}
	c.last = max(c.last, now)
}

// live reports whether bucket i counts at second now.
func (c *counter) live(i int, now int64) bool {
	return c.b[i].sec > now-window && c.b[i].sec <= now
}

func (c *counter) usage(now int64) (req, tok int64) {
	for i := range c.b {
		if c.live(i, now) {
			req += c.b[i].req
			tok += c.b[i].tok
		}
	}
	return max(req, 0), max(tok, 0)
}

// until returns how long from t until at least need of the usage picked by
// amount has left the window: buckets expire oldest first, a minute after
// their second began.
func (c *counter) until(t time.Time, now int64, need int64, amount func(i int) int64) time.Duration {
	if need <= 0 {
		return 0
	}
	var freed int64
	for i := range c.b {
		if !c.live(i, now) {
			continue
		}
		if freed += amount(i); freed >= need {
			return time.Unix(c.b[i].sec+window, 0).Sub(t)
		}
	}
	return time.Unix(now+window, 0).Sub(t)
}

// reset returns how long from t until every bucket holding usage picked by
// amount has left the window.
func (c *counter) reset(t time.Time, now int64, amount func(i int) int64) time.Duration {
	for i := len(c.b) - 1; i >= 0; i-- {
		if c.live(i, now) && amount(i) > 0 {
			return time.Unix(c.b[i].sec+window, 0).Sub(t)
		}
	}
	return 0
}

// MemoryLimiter is a Limiter for one process: an exact sliding window of
// sixty one-second buckets per id. The zero value is not usable; call
// NewMemoryLimiter. It is safe for concurrent use; ids idle for a minute
// are forgotten.
type MemoryLimiter struct {
	now func() time.Time

	mu        sync.Mutex
	counters  map[string]*counter
	lastSweep int64
}

// LimiterOptions configure a MemoryLimiter. Zero fields take the defaults.
type LimiterOptions struct {
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
}

// NewMemoryLimiter returns an empty in-memory limiter.
func NewMemoryLimiter(o LimiterOptions) *MemoryLimiter {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &MemoryLimiter{now: o.Now, counters: map[string]*counter{}}
}

// counter returns id's counter, creating it, and forgets idle ones once a
// minute. l.mu is held.
func (l *MemoryLimiter) counter(id string, now int64) *counter {
	if now-l.lastSweep >= window {
		before := len(l.counters)
		for k, c := range l.counters {
			if c.last <= now-window {
				delete(l.counters, k)
			}
		}
		// A Go map keeps the room it grew to: after a burst of distinct
		// ids, copy the survivors into one of their size.
		if len(l.counters) < before/2 {
			kept := make(map[string]*counter, len(l.counters)) // not maps.Clone: it keeps the room
			maps.Copy(kept, l.counters)
			l.counters = kept
		}
		l.lastSweep = now
	}
	c := l.counters[id]
	if c == nil {
		c = &counter{}
		l.counters[id] = c
	}
	return c
}

// Allow implements Limiter. It never returns an error.
func (l *MemoryLimiter) Allow(_ context.Context, id string, lim Limit, tokens int) (Decision, error) {
	if lim.RPM <= 0 && lim.TPM <= 0 {
		return Decision{Allowed: true}, nil
	}
	t := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counter(id, t.Unix()).decide(t, lim, max(tokens, 0)), nil
}

// decide counts a request of tokens at time t if it fits lim, and says so.
// MemoryLimiter and RedisLimiter (whose script counts by the same rule)
// share it.
func (c *counter) decide(t time.Time, lim Limit, tokens int) Decision {
	now := t.Unix()
	req, tok := c.usage(now)
	reqs := func(i int) int64 { return c.b[i].req }
	toks := func(i int) int64 { return c.b[i].tok }

	d := Decision{Allowed: true}
	if lim.RPM > 0 && req+1 > int64(lim.RPM) {
		d.Allowed = false
		d.RetryAfter = max(d.RetryAfter, c.until(t, now, req+1-int64(lim.RPM), reqs))
	}
	if lim.TPM > 0 && tok+int64(tokens) > int64(lim.TPM) {
		d.Allowed = false
		if int64(tokens) > int64(lim.TPM) {
			d.TooLarge = true
		} else {
			d.RetryAfter = max(d.RetryAfter, c.until(t, now, tok+int64(tokens)-int64(lim.TPM), toks))
		}
	}
	if d.Allowed {
		c.add(now, 1, int64(tokens))
		req++
		tok += int64(tokens)
	}
	if lim.RPM > 0 {
		d.Requests = Quota{Limit: lim.RPM, Remaining: int(max(int64(lim.RPM)-req, 0)), Reset: c.reset(t, now, reqs)}
	}
	if lim.TPM > 0 {
		d.Tokens = Quota{Limit: lim.TPM, Remaining: int(max(int64(lim.TPM)-tok, 0)), Reset: c.reset(t, now, toks)}
	}
	return d
}

// Adjust implements Limiter. It never returns an error.
func (l *MemoryLimiter) Adjust(_ context.Context, id string, requests, tokens int) error {
	now := l.now().Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counter(id, now).add(now, int64(requests), int64(tokens))
	return nil
}
