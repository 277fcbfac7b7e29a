package providers

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// DefaultClient is the HTTP client providers share when Config.Client is
// nil: pooled keep-alive connections, generous per-host idle limits for a
// gateway that sends many concurrent requests to a few hosts.
var DefaultClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	ForceAttemptHTTP2:     true,
	MaxIdleConns:          2048,
	MaxIdleConnsPerHost:   512,
	IdleConnTimeout:       90 * time.Second,
	TLSHandshakeTimeout:   10 * time.Second,
	ExpectContinueTimeout: time.Second,
}}

// HTTPClient returns cfg.Client or DefaultClient.
func (cfg *Config) HTTPClient() *http.Client {
	if cfg.Client != nil {
		return cfg.Client
	}
	return DefaultClient
}

// Watchdog cancels a call whose upstream is too slow: first bounds the time
// to the first event, gap the time between later events. Zero disables
// either. It is safe for concurrent use.
type Watchdog struct {
	timer *time.Timer
	gap   time.Duration
	fired atomic.Bool
}

// NewWatchdog arms a watchdog that calls cancel when a deadline passes.
func NewWatchdog(cancel context.CancelFunc, first, gap time.Duration) *Watchdog {
	w := &Watchdog{gap: gap}
	if first > 0 {
		w.timer = time.AfterFunc(first, func() { w.fired.Store(true); cancel() })
	} else if gap > 0 {
		w.timer = time.AfterFunc(gap, func() { w.fired.Store(true); cancel() })
	}
	return w
}

// Kick records that an event arrived and rearms for the gap.
func (w *Watchdog) Kick() {
	if w.timer == nil {
		return
	}
	if w.gap > 0 {
		w.timer.Reset(w.gap)
	} else {
		w.timer.Stop()
	}
}

// Stop disarms the watchdog.
func (w *Watchdog) Stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

// Fired reports whether a deadline passed and the call was cancelled.
func (w *Watchdog) Fired() bool { return w.fired.Load() }
