package limits

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)

type step struct {
	at     time.Duration // since t0
	tokens int
	// want
	allowed    bool
	retryAfter time.Duration
	remReq     int
	remTok     int
}

func runSteps(t *testing.T, lim Limit, steps []step) {
	t.Helper()
	clk := newClock(t0)
	l := NewMemoryLimiter(LimiterOptions{Now: clk.Now})
	for i, s := range steps {
		clk.Set(t0.Add(s.at))
		d, err := l.Allow(context.Background(), "key:a", lim, s.tokens)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != s.allowed || d.RetryAfter != s.retryAfter ||
			(lim.RPM > 0 && d.Requests.Remaining != s.remReq) || (lim.TPM > 0 && d.Tokens.Remaining != s.remTok) {
			t.Errorf("step %d at +%v: got allowed=%v retry=%v remaining=%d/%d, want %v %v %d/%d",
				i, s.at, d.Allowed, d.RetryAfter, d.Requests.Remaining, d.Tokens.Remaining,
				s.allowed, s.retryAfter, s.remReq, s.remTok)
		}
	}
}

func TestLimiterWindows(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		lim   Limit
		steps []step
	}{
		{
			name: "rpm fills then refuses until the oldest request leaves",
			lim:  Limit{RPM: 3},
			steps: []step{
				{at: 0, allowed: true, remReq: 2},
				{at: 10 * time.Second, allowed: true, remReq: 1},
				{at: 20 * time.Second, allowed: true, remReq: 0},
				{at: 30*time.Second + 250*ms, allowed: false, retryAfter: 29*time.Second + 750*ms, remReq: 0},
				{at: 59*time.Second + 999*ms, allowed: false, retryAfter: ms, remReq: 0},
				{at: 60 * time.Second, allowed: true, remReq: 0}, // the request at 0 left
				{at: 65 * time.Second, allowed: false, retryAfter: 5 * time.Second, remReq: 0},
				{at: 70 * time.Second, allowed: true, remReq: 0},
			},
		},
		{
			// A sliding window, not a fixed one: a burst at the end of one
			// minute still counts at the start of the next.
			name: "no double burst across a minute boundary",
			lim:  Limit{RPM: 2},
			steps: []step{
				{at: 59 * time.Second, allowed: true, remReq: 1},
				{at: 59*time.Second + 500*ms, allowed: true, remReq: 0},
				{at: 61 * time.Second, allowed: false, retryAfter: 58 * time.Second, remReq: 0},
				{at: 119 * time.Second, allowed: true, remReq: 1},
			},
		},
		{
			name: "tpm counts tokens and refuses what does not fit",
			lim:  Limit{TPM: 1000},
			steps: []step{
				{at: 0, tokens: 600, allowed: true, remTok: 400},
				{at: 5 * time.Second, tokens: 300, allowed: true, remTok: 100},
				{at: 6 * time.Second, tokens: 200, allowed: false, retryAfter: 54 * time.Second, remTok: 100},
				{at: 7 * time.Second, tokens: 100, allowed: true, remTok: 0},
				{at: 60 * time.Second, tokens: 200, allowed: true, remTok: 400},
				// 600 in the window and 700 asked: the 300 at 5s must leave.
				{at: 61 * time.Second, tokens: 700, allowed: false, retryAfter: 4 * time.Second, remTok: 400},
			},
		},
		{
			name: "both dimensions: a refusal in one counts nothing in the other",
			lim:  Limit{RPM: 10, TPM: 100},
			steps: []step{
				{at: 0, tokens: 90, allowed: true, remReq: 9, remTok: 10},
				{at: time.Second, tokens: 50, allowed: false, retryAfter: 59 * time.Second, remReq: 9, remTok: 10},
				{at: 2 * time.Second, tokens: 10, allowed: true, remReq: 8, remTok: 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.lim, tt.steps) })
	}
}

func TestLimiterTooLargeAndUnlimited(t *testing.T) {
	ctx := context.Background()
	l := NewMemoryLimiter(LimiterOptions{Now: func() time.Time { return t0 }})
	d, _ := l.Allow(ctx, "k", Limit{TPM: 100}, 101)
	if d.Allowed || !d.TooLarge || d.RetryAfter != 0 {
		t.Errorf("oversized request: %+v, want refused as TooLarge without a retry time", d)
	}
	d, _ = l.Allow(ctx, "k", Limit{TPM: 100}, 100)
	if !d.Allowed {
		t.Errorf("request of exactly the limit refused: %+v", d)
	}
	d, _ = l.Allow(ctx, "free", Limit{}, 1_000_000)
	if !d.Allowed || d.Requests.Limit != 0 || d.Tokens.Limit != 0 {
		t.Errorf("unlimited: %+v", d)
	}
	if len(l.counters) != 1 {
		t.Errorf("%d counters, want none kept for an unlimited id", len(l.counters))
	}
}

func TestLimiterReset(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	l := NewMemoryLimiter(LimiterOptions{Now: clk.Now})
	lim := Limit{RPM: 100, TPM: 10_000}
	l.Allow(ctx, "k", lim, 100)
	clk.Add(20*time.Second + 300*time.Millisecond)
	d, _ := l.Allow(ctx, "k", lim, 0)
	// Requests were made at 0s and 20s; tokens only at 0s.
	if d.Requests.Reset != 59*time.Second+700*time.Millisecond || d.Tokens.Reset != 39*time.Second+700*time.Millisecond {
		t.Errorf("reset requests=%v tokens=%v, want 59.7s and 39.7s", d.Requests.Reset, d.Tokens.Reset)
	}
}

func TestLimiterAdjust(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	l := NewMemoryLimiter(LimiterOptions{Now: clk.Now})
	lim := Limit{RPM: 2, TPM: 1000}
	if d, _ := l.Allow(ctx, "k", lim, 900); !d.Allowed {
		t.Fatal("first request refused")
	}
	// The call used 300 tokens, not the 900 estimated.
	if err := l.Adjust(ctx, "k", 0, -600); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	d, _ := l.Allow(ctx, "k", lim, 700)
	if !d.Allowed || d.Tokens.Remaining != 0 || d.Requests.Remaining != 0 {
		t.Fatalf("after adjusting: %+v", d)
	}
	// A later check (say, the model group's) refused: refund the request.
	if err := l.Adjust(ctx, "k", -1, -700); err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Allow(ctx, "k", lim, 700); !d.Allowed {
		t.Errorf("refunded request still counted: %+v", d)
	}
}

func TestLimiterForgetsIdleIDs(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	l := NewMemoryLimiter(LimiterOptions{Now: clk.Now})
	for i := range 100 {
		l.Allow(ctx, "k"+strconv.Itoa(i), Limit{RPM: 1}, 0)
	}
	clk.Add(2 * time.Minute)
	l.Allow(ctx, "other", Limit{RPM: 1}, 0)
	if n := len(l.counters); n != 1 {
		t.Errorf("%d counters after two idle minutes, want 1", n)
	}
	// A forgotten id starts afresh.
	if d, _ := l.Allow(ctx, "k1", Limit{RPM: 1}, 0); !d.Allowed {
		t.Errorf("forgotten id refused: %+v", d)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	ctx := context.Background()
	l := NewMemoryLimiter(LimiterOptions{Now: func() time.Time { return t0 }})
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Go(func() {
			<-start
			for range 10 {
				if d, _ := l.Allow(ctx, "k", Limit{RPM: 100, TPM: 1_000_000}, 10); d.Allowed {
					ok.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 100 {
		t.Errorf("%d of 500 concurrent requests allowed under rpm 100", ok.Load())
	}
}

func TestDecisionHeaders(t *testing.T) {
	tests := []struct {
		name string
		d    Decision
		want map[string]string
	}{
		{
			name: "allowed",
			d: Decision{Allowed: true,
				Requests: Quota{Limit: 60, Remaining: 59, Reset: time.Second},
				Tokens:   Quota{Limit: 150000, Remaining: 149984, Reset: 6*time.Millisecond + 400*time.Microsecond}},
			want: map[string]string{
				"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s",
				"x-ratelimit-limit-tokens": "150000", "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "6ms",
				"Retry-After": "",
			},
		},
		{
			name: "refused, requests only",
			d:    Decision{RetryAfter: 1500 * time.Millisecond, Requests: Quota{Limit: 3, Remaining: 0, Reset: 6 * time.Minute}},
			want: map[string]string{
				"x-ratelimit-limit-requests": "3", "x-ratelimit-reset-requests": "6m0s", "Retry-After": "2",
				"x-ratelimit-limit-tokens": "",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			tt.d.Headers(h)
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func BenchmarkAllow(b *testing.B) {
	ctx := context.Background()
	l := NewMemoryLimiter(LimiterOptions{})
	lim := Limit{RPM: 1 << 30, TPM: 1 << 40}
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		id := "key:" + strconv.FormatInt(n.Add(1)%8, 10)
		for pb.Next() {
			if _, err := l.Allow(ctx, id, lim, 100); err != nil {
				b.Fatal(err)
			}
		}
	})
}
