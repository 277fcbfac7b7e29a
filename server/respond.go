package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/rs/zerolog"
)

// writeError writes err in the OpenAI error shape with its status. It and
// writeAnthropicError (the same, in Anthropic's shape, for /v1/messages)
// are the only functions that turn errors into HTTP responses; classify
// decides the status and type for both. An endpoint's handler picks its
// API's; writeErrorTo picks it for what runs before the handler.
func writeError(w http.ResponseWriter, log *zerolog.Logger, err error) *apiError {
	ae, internal := classify(err)
	if internal {
		log.Error().Err(err).Msg("internal error")
	}
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
	if anthropicPath(r.URL.Path) {
		return writeAnthropicError(w, s, err, false)
	}
	return writeError(w, &s.log, err)
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
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
