package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tokens"
)

// exchange is one proxied request: what came in, what served it, what it
// cost. The handler goroutine owns it.
type exchange struct {
	id           string
	start        time.Time
	op           providers.Op
	body         []byte
	group        string
	stream       bool
	includeUsage bool

	deployment *router.Deployment
	attempts   int
	status     int
	err        *apiError
	usage      providers.Usage
	estimated  int // completion tokens counted from stream deltas
	ttft       time.Duration
	cache      string          // hit, miss, bypass or coalesced; empty when the cache is off
	saved      providers.Usage // a cache hit's original usage (what it would have cost)
}

func (x *exchange) fail(ae *apiError) {
	x.err = ae
	x.status = ae.Status
}

// proxy serves the OpenAI endpoints that reach an upstream.
func (s *Server) proxy(op providers.Op) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		x := &exchange{id: requestIDFrom(r.Context()), start: time.Now(), op: op}
		if err := s.serveProxy(w, r, x); err != nil {
			x.fail(writeError(w, &s.log, err))
		}
		s.finish(x)
	})
}

func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request, x *exchange) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	x.body = body
	if err := x.parse(); err != nil {
		return err
	}
	w.Header().Set("x-lumen-model-group", x.group)
	if s.cache != nil && x.op == providers.OpChat {
		return s.serveCached(w, r, x)
	}
	return s.serveUpstream(w, r, x)
}

// serveUpstream routes the exchange and relays the answer.
func (s *Server) serveUpstream(w http.ResponseWriter, r *http.Request, x *exchange) error {
	res, err := s.route(r.Context(), x)
	s.routed(w, x, res)
	if err != nil {
		return err
	}
	if x.stream {
		return s.writeStream(w, r, x, res.Stream)
	}
	return s.writeResponse(w, x, res.Response)
}

// route sends the exchange to its model group.
func (s *Server) route(ctx context.Context, x *exchange) (*router.Result, error) {
	return s.Router().Do(ctx, &router.Call{Group: x.group, Op: x.op, Body: x.body, Stream: x.stream, RequestID: x.id})
}

// routed records which deployment answered and says so in the headers.
func (s *Server) routed(w http.ResponseWriter, x *exchange, res *router.Result) {
	if res == nil {
		return
	}
	x.attempts = res.Attempts
	x.deployment = res.Deployment
	h := w.Header()
	if res.Attempts > 0 {
		h.Set("x-lumen-attempts", strconv.Itoa(res.Attempts))
	}
	if res.Strategy != "" {
		h.Set("x-lumen-routing-strategy", res.Strategy)
	}
	if res.FallbackFrom != "" {
		h.Set("x-lumen-fallback-from", res.FallbackFrom)
		h.Set("x-lumen-model-group", res.Group)
	}
	if d := res.Deployment; d != nil {
		h.Set("x-lumen-deployment", d.Name())
		h.Set("x-lumen-deployment-id", d.ID)
		h.Set("x-lumen-provider", d.ProviderName)
	}
}

func (s *Server) writeResponse(w http.ResponseWriter, x *exchange, resp *providers.Response) error {
	x.usage = resp.Usage
	x.status = http.StatusOK
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp.Body)
	return nil
}

// readBody reads the request body, bounded by limit.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	size := r.ContentLength
	if size <= 0 || size > 1<<20 {
		size = 4 << 10
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+1))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge(limit)
	case err != nil:
		return nil, invalid("", "reading the request body: %v", err)
	}
	return buf.Bytes(), nil
}

func tooLarge(limit int64) *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
		Message: sprintf("the request body exceeds %d MiB; raise general_settings.max_request_size_mb if this is expected", limit>>20)}
}

// parse checks the fields Lumen needs and reads them without decoding the
// whole body: unknown fields pass through untouched.
func (x *exchange) parse() error {
	b := bytes.TrimSpace(x.body)
	if len(b) == 0 || b[0] != '{' || !gjson.ValidBytes(b) {
		return invalid("", "the request body is not a valid JSON object")
	}
	model := gjson.GetBytes(b, "model")
	if model.Type != gjson.String || model.Str == "" {
		return invalid("model", "you must provide a model parameter")
	}
	x.group = model.Str
	switch x.op {
	case providers.OpChat:
		if m := gjson.GetBytes(b, "messages"); !m.IsArray() || len(m.Array()) == 0 {
			return invalid("messages", "Missing required parameter: 'messages' (a non-empty array).")
		}
	case providers.OpCompletion:
		if !gjson.GetBytes(b, "prompt").Exists() {
			return invalid("prompt", "Missing required parameter: 'prompt'.")
		}
	case providers.OpEmbedding:
		if !gjson.GetBytes(b, "input").Exists() {
			return invalid("input", "Missing required parameter: 'input'.")
		}
	}
	if x.op != providers.OpEmbedding {
		x.stream = gjson.GetBytes(b, "stream").Bool()
		x.includeUsage = gjson.GetBytes(b, "stream_options.include_usage").Bool()
	}
	return nil
}

// finish settles and records an exchange. It runs on the handler goroutine
// after the response is complete and must not block on I/O.
func (s *Server) finish(x *exchange) {
	if x.usage.PromptTokens == 0 && x.body != nil && x.status == http.StatusOK {
		x.usage.PromptTokens = tokens.Prompt(x.body)
	}
	if x.usage.CompletionTokens == 0 {
		x.usage.CompletionTokens = x.estimated
	}
	ev := s.log.Info()
	if x.err != nil {
		ev = s.log.Warn()
		if x.status >= 500 && x.status != http.StatusBadGateway && x.status != http.StatusGatewayTimeout {
			ev = s.log.Error()
		}
		ev = ev.Str("error_type", x.err.Type).Str("error", redact(x.err.Message))
	}
	ev = ev.Str("request_id", x.id).Str("op", x.op.String()).Str("model_group", x.group).
		Int("status", x.status).Bool("stream", x.stream).
		Float64("latency_ms", msec(time.Since(x.start))).
		Int("prompt_tokens", x.usage.PromptTokens).Int("completion_tokens", x.usage.CompletionTokens).
		Int("attempts", x.attempts)
	if x.deployment != nil {
		ev = ev.Str("deployment", x.deployment.ID).Str("provider", x.deployment.ProviderName)
	}
	if x.cache != "" {
		ev = ev.Str("cache", x.cache)
	}
	if x.stream && x.ttft > 0 {
		ev = ev.Float64("ttft_ms", msec(x.ttft))
	}
	ev.Msg("request")
}

func msec(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
