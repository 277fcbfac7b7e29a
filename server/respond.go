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

	"github.com/rs/zerolog"
)

// writeError writes err in the OpenAI error shape with its status. It,
// writeAPIError and writeAnthropicError (the same, in Anthropic's shape,
// for /v1/messages) are the only functions that turn errors into HTTP
// responses; classify decides the status and type for all. An endpoint's
// handler picks its API's; writeErrorTo picks it for what runs before the
// handler.
func writeError(w http.ResponseWriter, log *zerolog.Logger, err error) *apiError {
	ae, internal := classify(err)
	if internal {
		log.Error().Err(err).Msg("internal error")
	}
	return writeAPIError(w, ae)
}

// classifyExchange is classify for an exchange's error. The client is not
// told the cause of an internal error, only to look for its request id in
// the log: the cause is logged here, with that id. A request that looks
// abandoned by its client but was cut off by Run at the end of shutdown's
// grace period (its context's cause) is the gateway's doing: a 503.
func (s *Server) classifyExchange(x *exchange, err error) *apiError {
	ae, internal := classify(err)
	if ae.Status == statusClientClosed && x.ctx != nil && errors.Is(context.Cause(x.ctx), errShuttingDown) {
		ae, internal = classify(fmt.Errorf("%w: %w", errShuttingDown, err))
	}
	if internal {
		s.log.Error().Err(err).Str("request_id", x.id).Msg("internal error")
	}
	return ae
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

// writeErrorTo answers err, raised outside an endpoint's handler (auth, an
// unknown endpoint, a panic), in the error shape of the API r was sent to:
// Anthropic's under the Anthropic API (anthropicPath), else OpenAI's.
func (s *Server) writeErrorTo(w http.ResponseWriter, r *http.Request, err error) *apiError {
	ae, internal := classify(err)
	if internal {
		s.log.Error().Err(err).Str("request_id", w.Header().Get("x-lumen-request-id")).Msg("internal error")
	}
	if anthropicPath(r.URL.Path) {
		return writeAnthropicError(w, ae, false)
	}
	return writeAPIError(w, ae)
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
