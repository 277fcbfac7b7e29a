package providers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// MaxAnswerBytes bounds a non-streamed upstream answer, which Lumen reads
// whole: far above any chat, embedding, image or speech answer, it keeps
// one misbehaving upstream from taking the gateway's memory.
const MaxAnswerBytes = 64 << 20

// ErrAnswerTooLarge is ReadAnswer's error for an answer over
// MaxAnswerBytes; TransportError makes it a 502 that is not retried.
var ErrAnswerTooLarge = fmt.Errorf("answered with more than %d MiB", MaxAnswerBytes>>20)

// ReadAnswer reads a non-streamed answer's body, at most MaxAnswerBytes,
// into a buffer sized from its Content-Length when it has one. Its errors
// go to TransportError.
func ReadAnswer(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > MaxAnswerBytes {
		return nil, ErrAnswerTooLarge
	}
	size := resp.ContentLength
	if size <= 0 {
		size = 16 << 10
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+1))
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	switch {
	case err != nil:
		return nil, err
	case n > MaxAnswerBytes:
		return nil, ErrAnswerTooLarge
	}
	return buf.Bytes(), nil
}

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
	case errors.Is(err, ErrAnswerTooLarge):
		// A 200 came, but no answer Lumen will hold; the same request
		// would get the same answer.
		ue.Status, ue.Message, ue.Retryable = http.StatusBadGateway, err.Error(), false
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
