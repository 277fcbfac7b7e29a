package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		status   int
		typ      string
		code     string
		message  string
		internal bool
	}{
		{"own error", invalid("messages", "bad"), 400, "invalid_request_error", "", "bad", false},
		{"unknown group", &router.UnknownGroupError{Model: "x", Available: []string{"a", "b"}}, 404, "invalid_request_error", "model_not_found", `The model "x" does not exist. Available models: "a", "b".`, false},
		{"unknown group, nothing available", &router.UnknownGroupError{Model: "x"}, 404, "invalid_request_error", "model_not_found", `The model "x" does not exist, and no model is available to this caller; ask your Lumen admin which models your key may use.`, false},
		{"client gone", fmt.Errorf("writing: %w", context.Canceled), statusClientClosed, "client_closed_request", "", "the client closed the request", false},
		{"cut off at shutdown", fmt.Errorf("%w: %w", errShuttingDown, &apiError{Status: statusClientClosed, Type: "client_closed_request"}), 503, typeShuttingDown, typeShuttingDown, "the gateway shut down before this request finished (its shutdown grace period ran out); retry it", false},
		{"upstream timeout", &providers.UpstreamError{Deployment: "openai/gpt-4o", Err: context.DeadlineExceeded, Message: "timed out"}, 504, "api_error", "upstream_timeout", "deployment openai/gpt-4o: timed out waiting for the upstream; retry, or raise timeout/stream_timeout", false},
		{"upstream unreachable", &providers.UpstreamError{Deployment: "openai/gpt-4o", Err: errors.New("dial"), Message: "unreachable"}, 502, "api_error", "upstream_unreachable", "deployment openai/gpt-4o: unreachable; check api_base and that the server is up", false},
		{"upstream status keeps type and code", &providers.UpstreamError{Deployment: "anthropic/claude", Status: 529, Type: "overloaded_error", Message: "Overloaded"}, 529, "overloaded_error", "", "deployment anthropic/claude: Overloaded", false},
		{"upstream status without type", &providers.UpstreamError{Deployment: "d", Status: 403, Message: "no"}, 403, "permission_error", "", "deployment d: no", false},
		{"upstream key redacted", &providers.UpstreamError{Deployment: "d", Status: 401, Message: "Incorrect API key provided: sk-proj-abcdef123456"}, 401, "authentication_error", "", "deployment d: Incorrect API key provided: [redacted]", false},
		{"cancel inside an upstream error is the upstream's", &providers.UpstreamError{Deployment: "d", Status: 500, Message: "x", Err: context.Canceled}, 500, "api_error", "", "deployment d: x", false},
		{"bare deadline", context.DeadlineExceeded, 504, "api_error", "upstream_timeout", "the upstream did not answer in time; retry later", false},
		{"unsupported", fmt.Errorf("mock embeddings: %w", providers.ErrUnsupported), 400, "invalid_request_error", "unsupported", "mock embeddings: operation not supported by this provider", false},
		{"ledger out of reach", reportError(fmt.Errorf("spend report: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})), 503, "api_error", "ledger_unavailable", "the ledger database is out of reach; retry once it is back (requests are still served with the keys already loaded)", true},
		{"a key change with the ledger out of reach", keyError(fmt.Errorf("inserting key: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})), 503, "api_error", "ledger_unavailable", "the ledger database is out of reach; retry once it is back (requests are still served with the keys already loaded)", true},
		{"anything else is internal", errors.New("boom"), 500, "api_error", "internal_error", "internal error in Lumen; the request id is in x-lumen-request-id and the log", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ae, internal := classify(tt.err)
			if ae.Status != tt.status || ae.Type != tt.typ || ae.Code != tt.code || ae.Message != tt.message || internal != tt.internal {
				t.Fatalf("classify = %+v internal=%v", ae, internal)
			}
		})
	}
}

func TestRetryAfterRelayed(t *testing.T) {
	ae, _ := classify(&providers.UpstreamError{Status: 429, Message: "slow down", RetryAfter: 1500 * time.Millisecond})
	if ae.Header.Get("Retry-After") != "2" || ae.Status != http.StatusTooManyRequests || ae.Type != "rate_limit_error" {
		t.Fatalf("%+v", ae)
	}
}

// A failure after every fallback left was refused by its rate window
// keeps its status, names the windows and takes the soonest Retry-After:
// the refusals' or the upstream's own.
func TestClassifyFallbacksRefused(t *testing.T) {
	full := func(group string, secs int) error {
		d := limits.Decision{RetryAfter: time.Duration(secs) * time.Second, Requests: limits.Quota{Limit: 2, Reset: time.Duration(secs) * time.Second}}
		return rateLimited(d, scope{kind: "model_group", name: group, limit: limits.Limit{RPM: 2}}, 10)
	}
	tooLarge := rateLimited(limits.Decision{TooLarge: true}, scope{kind: "model_group", name: "small", limit: limits.Limit{TPM: 5}}, 10)
	// A fallback skipped for its spent budget (holdOtherGroups), which
	// resets long after the failure may have passed.
	spent := &limits.BudgetError{KeyID: limits.GroupAccount("dear"), Owner: `model "dear"`, Budget: 5, Spent: 5.25, Period: limits.Monthly,
		ResetsAt: time.Now().Add(20 * 24 * time.Hour).Truncate(time.Hour)}
	spentMsg := `budget exceeded: model "dear" spent $5.2500 of its $5.00 monthly budget; it resets at ` + spent.ResetsAt.UTC().Format(time.RFC3339)
	tests := []struct {
		name    string
		err     error
		refused []error
		status  int
		message string
		retry   string
	}{
		{"the soonest window", &providers.UpstreamError{Deployment: "d", Status: 500, Message: "boom"},
			[]error{full("a", 30), full("b", 12)}, 500,
			`deployment d: boom; fallbacks passed over: rate limit reached for model "a": 2 requests per minute; retry after 30s; rate limit reached for model "b": 2 requests per minute; retry after 12s`, "12"},
		{"the upstream's sooner", &providers.UpstreamError{Deployment: "d", Status: 429, Message: "slow down", RetryAfter: 5 * time.Second},
			[]error{full("a", 30)}, 429, `deployment d: slow down; fallbacks passed over: rate limit reached for model "a": 2 requests per minute; retry after 30s`, "5"},
		{"a window the request never fits", &providers.UpstreamError{Deployment: "d", Status: 502, Message: "bad gateway"},
			[]error{tooLarge}, 502, `deployment d: bad gateway; fallbacks passed over: this request needs about 10 tokens (prompt plus max_tokens) but model "small" is limited to 5 tokens per minute; lower max_tokens`, ""},
		{"a spent budget: the failure's status, no Retry-After", &providers.UpstreamError{Deployment: "d", Status: 500, Message: "boom"},
			[]error{spent}, 500, `deployment d: boom; fallbacks passed over: ` + spentMsg, ""},
		{"a spent budget and a full window: the window's Retry-After", &providers.UpstreamError{Deployment: "d", Status: 503, Message: "overloaded"},
			[]error{spent, full("a", 30)}, 503, `deployment d: overloaded; fallbacks passed over: ` + spentMsg + `; rate limit reached for model "a": 2 requests per minute; retry after 30s`, "30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ae, internal := classify(fmt.Errorf("routing: %w", &router.FallbacksRefusedError{Err: tt.err, Refused: tt.refused}))
			if ae.Status != tt.status || ae.Message != tt.message || ae.Header.Get("Retry-After") != tt.retry || internal {
				t.Fatalf("classify = %+v, Retry-After %q", ae, ae.Header.Get("Retry-After"))
			}
		})
	}
}
