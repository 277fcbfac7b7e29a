package limits

import (
	"math/rand/v2"
	"testing"
	"time"
)

// arrayCounter is counter as it was before it kept only the seconds that
// counted: sixty buckets, bucket i holding second sec[i]. It is the
// reference TestCounterMatchesSixtyBuckets checks counter against.
type arrayCounter struct {
	sec  [window]int64
	req  [window]int64
	tok  [window]int64
	last int64 // the newest second charged
}

func (c *arrayCounter) add(now int64, req, tok int64) {
	i := now % window
	if c.sec[i] != now {
		c.sec[i], c.req[i], c.tok[i] = now, 0, 0
	}
	c.req[i] += req
	c.tok[i] += tok
	c.last = max(c.last, now)
}

// live reports whether bucket i counts at second now.
func (c *arrayCounter) live(i int, now int64) bool {
	return c.sec[i] > now-window && c.sec[i] <= now
}

func (c *arrayCounter) usage(now int64) (req, tok int64) {
	for i := range window {
		if c.live(i, now) {
			req += c.req[i]
			tok += c.tok[i]
		}
	}
	return max(req, 0), max(tok, 0)
}

// until returns how long from t until at least need of the usage picked by
// amount has left the window: buckets expire oldest first, a minute after
// their second began.
func (c *arrayCounter) until(t time.Time, now int64, need int64, amount func(i int) int64) time.Duration {
	if need <= 0 {
		return 0
	}
	var freed int64
	for s := now - window + 1; s <= now; s++ {
		i := s % window
		if c.sec[i] != s {
			continue
		}
		if freed += amount(int(i)); freed >= need {
			return time.Unix(s+window, 0).Sub(t)
		}
	}
	return time.Unix(now+window, 0).Sub(t)
}

// reset returns how long from t until every bucket holding usage picked by
// amount has left the window.
func (c *arrayCounter) reset(t time.Time, now int64, amount func(i int) int64) time.Duration {
	for s := now; s > now-window; s-- {
		i := s % window
		if c.sec[i] == s && amount(int(i)) > 0 {
			return time.Unix(s+window, 0).Sub(t)
		}
	}
	return 0
}

func (c *arrayCounter) decide(t time.Time, lim Limit, tokens int) Decision {
	now := t.Unix()
	req, tok := c.usage(now)
	reqs := func(i int) int64 { return c.req[i] }
	toks := func(i int) int64 { return c.tok[i] }

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

// counter keeps only the seconds that counted something; its decisions,
// quotas and waits are those of the sixty fixed buckets it replaced, over
// random traffic with gaps longer than the window and refunds.
func TestCounterMatchesSixtyBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 50 {
		var got counter
		var want arrayCounter
		now := time.Unix(1_800_000_000, 0)
		lim := Limit{RPM: 1 + rng.IntN(30), TPM: rng.IntN(5000)}
		for step := range 2000 {
			switch r := rng.IntN(100); {
			case r < 60:
				now = now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
			case r < 62:
				now = now.Add(time.Duration(60+rng.IntN(90)) * time.Second)
			}
			if rng.IntN(5) == 0 {
				s, dt := now.Unix(), int64(-rng.IntN(300))
				got.add(s, 0, dt)
				want.add(s, 0, dt)
				continue
			}
			tokens := rng.IntN(800)
			g, w := got.decide(now, lim, tokens), want.decide(now, lim, tokens)
			if g != w {
				t.Fatalf("run %d step %d at %v, %+v, %d tokens: decide = %+v, the sixty buckets say %+v", run, step, now, lim, tokens, g, w)
			}
		}
	}
}
