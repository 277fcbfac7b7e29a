package providers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// TransportError classifies an error on the way to or from an upstream, for
// every HTTP provider: a watchdog or deadline is a retryable
// timeout, the caller's cancel is context.Canceled (the upstream is not
// blamed), a connection cut mid-answer and anything else is a retryable
// *UpstreamError. name is "provider/model", for the message.
func TransportError(ctx context.Context, provider, name string, err error, watchdog bool) error {
	ue := &UpstreamError{Provider: provider, Deployment: name, Err: err, Retryable: true}
	switch {
	case watchdog || errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		ue.Message = "timed out"
		ue.Err = context.DeadlineExceeded
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("upstream %s: %w", name, context.Canceled)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		ue.Message = "connection closed mid-response"
	default:
		ue.Message = "unreachable"
	}
	return ue
}

// ErrorType is OpenAI's error type for an upstream HTTP status.
func ErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "api_error"
	default:
		return "invalid_request_error"
	}
}
