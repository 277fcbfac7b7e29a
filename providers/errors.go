package providers

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/lumengw/lumen/internal/credentials"
)

// UpstreamError is a failure reported by, or on the way to, an upstream.
// The router retries when Retryable is true; the server maps it to HTTP.
type UpstreamError struct {
	// Provider and Deployment name where the error came from.
	Provider, Deployment string
	// Status is the upstream HTTP status, or 0 when none arrived.
	Status int
	// Type, Code and Param are the provider's error fields, OpenAI-normalized.
	Type, Code, Param string
	// Message is the provider's message; it never holds secrets.
	Message string
	// Retryable says whether the same request may succeed on a retry.
	Retryable bool
	// RetryAfter is the upstream's Retry-After hint; zero when absent.
	RetryAfter time.Duration
	// Err is the underlying transport error, if any.
	Err error
}

func (e *UpstreamError) Error() string {
	where := e.Deployment
	if where == "" {
		where = e.Provider
	}
	switch {
	case e.Status != 0:
		return fmt.Sprintf("upstream %s returned %d: %s", where, e.Status, e.Message)
	case e.Err != nil:
		return fmt.Sprintf("upstream %s: %s: %v", where, e.Message, e.Err)
	default:
		return fmt.Sprintf("upstream %s: %s", where, e.Message)
	}
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// RetryableStatus reports whether an upstream HTTP status is worth retrying:
// 408, 409, 429 and every 5xx (529 is Anthropic's "overloaded").
func RetryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusConflict ||
		status == http.StatusTooManyRequests || status >= 500
}

// ParseRetryAfter reads a Retry-After header (seconds or HTTP date), or the
// retry-after-ms header some providers send. It returns zero when absent.
func ParseRetryAfter(h http.Header) time.Duration {
	if ms := h.Get("Retry-After-Ms"); ms != "" {
		if f, err := strconv.ParseFloat(ms, 64); err == nil && f > 0 {
			return time.Duration(f * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// SpentError is a failure after the upstream had already done, and will
// bill, part of the request: Gemini embeddings go up 100 inputs at a
// time, and one batch may fail after others succeeded. The router adds
// Usage to the cost of an attempt it gives up on for another
// (router.Result.Abandoned); the server bills it when the error is the
// answer. Err says what failed.
type SpentError struct {
	Err   error
	Usage Usage
}

func (e *SpentError) Error() string { return e.Err.Error() }

func (e *SpentError) Unwrap() error { return e.Err }

// Spent returns the usage err says the upstream billed before it failed
// (a SpentError in its chain); zero when none.
func Spent(err error) Usage {
	var se *SpentError
	if errors.As(err, &se) {
		return se.Usage
	}
	return Usage{}
}

// IsRetryable reports whether err, as returned by a Provider, may succeed on
// another attempt.
func IsRetryable(err error) bool {
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue.Retryable
	}
	return false
}

// secretRE matches key-like tokens upstreams sometimes echo ("Incorrect API
// key provided: sk-abc***xyz").
var secretRE = regexp.MustCompile(`\b(sk|lumen-sk|sk-ant|AIza|key)[-_][A-Za-z0-9_\-\*\.]{6,}`)

// Redact replaces key-like tokens in s, and the credentials of the URLs
// and connection strings it quotes (credentials.Redact), so that they
// never reach a client, a log line or a trace: an upstream's error may
// quote its own database URL.
func Redact(s string) string {
	return credentials.Redact(secretRE.ReplaceAllString(s, "[redacted]"))
}
