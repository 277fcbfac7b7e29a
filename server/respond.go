package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// writeError answers err, raised by a handler or by what runs before one
// (auth, an unknown endpoint, a panic), in the error shape of the API r
// was sent to: Anthropic's under the Anthropic API (anthropicPath), else
// OpenAI's. It, writeAPIError and writeAnthropicError are the only
// functions that turn errors into HTTP responses; classifyRequest (through
// classify) decides the status and type for all.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) *apiError {
	ae := s.classifyRequest(r.Context(), w.Header().Get("x-lumen-request-id"), err)
	if anthropicPath(r.URL.Path) {
		return writeAnthropicError(w, ae, false)
	}
	return writeAPIError(w, ae)
}

// classifyRequest is classify for the error of a request whose context is
// ctx, with id requestID. The client is not told the cause of an internal
// error, only to look for its request id in the log: the cause is logged
// here, with that id. A request that looks abandoned by its client but was
// cut off by Run at the end of shutdown's grace period (its context's
// cause) is the gateway's doing: a 503 gateway_shutting_down, on every
// route, proxied or not.
func (s *Server) classifyRequest(ctx context.Context, requestID string, err error) *apiError {
	ae, internal := classify(err)
	if ae.Status == statusClientClosed && ctx != nil && errors.Is(context.Cause(ctx), errShuttingDown) {
		ae, internal = classify(fmt.Errorf("%w: %w", errShuttingDown, err))
	}
	if internal {
		s.log.Error().Err(err).Str("request_id", requestID).Msg("internal error")
	}
	return ae
}

// classifyExchange is classifyRequest for an exchange's error.
func (s *Server) classifyExchange(x *exchange, err error) *apiError {
	return s.classifyRequest(x.ctx, x.id, err)
}

// writeAPIError writes a classified error in the OpenAI error shape.
func writeAPIError(w http.ResponseWriter, ae *apiError) *apiError {
	if ae.Status == statusClientClosed {
		return ae // nobody is listening
	}
	for k, v := range ae.Header {
		w.Header()[k] = v
	}
	writeJSON(w, ae.Status, errorJSON(ae))
	return ae
}

func errorJSON(ae *apiError) errorBody {
	b := errorBody{Error: errorFields{Message: ae.Message, Type: ae.Type}}
	if ae.Param != "" {
		b.Error.Param = &ae.Param
	}
	if ae.Code != "" {
		b.Error.Code = &ae.Code
	}
	return b
}

// writeJSON writes v with its length, so that an answer flushed before its
// handler returns (a request cut off at shutdown) reaches the client whole.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

func joinQuoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
