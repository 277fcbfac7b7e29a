package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/internal/audio"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/metrics"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tokens"
	"github.com/lumengw/lumen/tracing"
)

// exchange is one proxied request: what came in, what served it, what it
// cost. The handler goroutine owns it.
type exchange struct {
	ctx          context.Context // the request's: its cause tells a cut-off at shutdown from a client that left
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
	estimated  int // completion tokens estimated from stream chunks (tokens.Chunk)
	ttft       time.Duration
	cache      string          // hit, miss, bypass or coalesced; empty when the cache is off
	saved      providers.Usage // a cache hit's original usage (what it would have cost)

	header       http.Header // the client's headers (model "auto" reads x-lumen-* limits)
	contentType  string      // the body's when it is not JSON (a multipart transcription or image edit)
	images       int         // the images an image request asks for (its n, at least 1)
	audio        []byte      // a transcription's audio file (a budget reads its length: audioSeconds)
	audioSecs    float64     // the audio's length in seconds, once read (x.audioSeconds)
	formPrompt   string      // a multipart body's prompt field (guardrails read it)
	key          *ledger.Key // the virtual key; nil for the master key or none
	admin        bool        // the master key
	user         string      // the body's "user", or endUser
	endUser      string      // a Messages or Responses client's end-user id, as it sent it (the translated body may carry its digest: providers.UpstreamUser)
	tags         []string    // x-lumen-tags
	usageInclude bool        // "usage": {"include": true}: put the cost in the body's usage
	fallbackFrom string

	promptEst    int                  // prompt tokens estimated before the call
	abandoned    float64              // USD of hedge attempts cancelled (router.Result.Abandoned)
	windows      rateWindows          // the rate-limit windows that counted the request
	reservations []limits.Reservation // the budgets admit held money in, settled once by settle
	resBuf       [2]limits.Reservation
	cost         float64 // USD charged
	savedUSD     float64 // USD a cache hit or coalesced answer saved
	respBody     []byte  // a non-streamed answer, for the ledger and audit
	cacheField   []byte  // the request's "cache" field, taken out of the body (cache.ParseDirective)
	started      bool    // a stream's headers went out

	guards       []*guardrail.Guard  // the guardrails the request runs
	guardHits    []guardrail.Hit     // what they matched
	guardStreams []*guardrail.Stream // streams they guarded (their hits come at the end)
	checks       []*pendingCheck     // during_call checks running beside the upstream call
	skipGroups   map[string]error    // fallbacks and auto candidates whose model-group budget is spent, with its *limits.BudgetError
	groupFull    bool                // its group's own rpm/tpm window was full at admission: its fallbacks answer (admit)
	serving      router.Serving      // a routed stream: who finished it, after a failover
}

func (x *exchange) fail(ae *apiError) {
	x.err = ae
	x.status = ae.Status
}

// spent takes as the exchange's usage what the upstream call that failed
// it had already spent (providers.SpentError): the client gets the error,
// but the upstream bills that part, so the budgets and the ledger count
// it (priced in finish, like any answer's usage).
func (x *exchange) spent(err error) {
	if u := providers.Spent(err); u.Total() > 0 && x.usage.Total() == 0 {
		x.usage = u
	}
}

// proxy serves the OpenAI endpoints that reach an upstream.
func (s *Server) proxy(op providers.Op) http.Handler {
	return s.handle(op, s.serveProxy, func(w http.ResponseWriter, x *exchange, err error) *apiError {
		return writeAPIError(w, s.classifyExchange(x, err))
	})
}

// handle runs one exchange: counts it in flight, serves it, answers an
// error in the endpoint's shape (writeErr), and finishes it (settlement,
// ledger, metrics, audit, log) whatever happened.
func (s *Server) handle(op providers.Op, serve func(http.ResponseWriter, *http.Request, *exchange) error,
	writeErr func(http.ResponseWriter, *exchange, error) *apiError) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		if s.metrics != nil {
			s.metrics.RequestStarted()
			defer s.metrics.RequestFinished()
		}
		c := callerFrom(r.Context())
		x := &exchange{ctx: r.Context(), id: requestIDFrom(r.Context()), start: time.Now(), op: op, key: c.key, admin: c.admin, header: r.Header}
		x.windows.scopes = x.windows.buf[:0]
		x.reservations = x.resBuf[:0]
		var span *tracing.Span
		if s.tracer != nil {
			var ctx context.Context
			ctx, span = s.tracer.Start(r, op.Operation())
			r = r.WithContext(ctx) // the router's upstream calls carry the trace
		}
		if err := s.serveRecovered(w, r, x, serve); err != nil {
			x.spent(err)
			x.fail(writeErr(w, x, err))
			if x.err.Type == typeShuttingDown {
				// Run closes the connection soon, perhaps before this
				// handler has recorded the request: the answer goes now.
				_ = http.NewResponseController(w).Flush()
			}
		}
		x.stopChecks()
		s.finish(w, x)
		if span != nil {
			span.End(traced(x))
		}
	})
}

// serveRecovered runs serve, turning a panic into errPanic (a 500, its
// stack logged) so that the exchange is still finished: its budget holds
// settled, its ledger row and audit entry written. http.ErrAbortHandler
// is passed on, after the exchange is finished as cut off.
func (s *Server) serveRecovered(w http.ResponseWriter, r *http.Request, x *exchange,
	serve func(http.ResponseWriter, *http.Request, *exchange) error) (err error) {
	defer func() {
		v := recover()
		switch {
		case v == nil:
		case v == http.ErrAbortHandler:
			x.fail(&apiError{Status: statusClientClosed, Type: "api_error", Message: "the handler aborted the response"})
			s.finish(w, x)
			panic(v)
		default:
			s.log.Error().Str("request_id", x.id).Interface("panic", v).Bytes("stack", debug.Stack()).Msg("handler panicked")
			err = errPanic
		}
	}()
	return serve(w, r, x)
}

// traced is what the exchange's span records.
func traced(x *exchange) tracing.Done {
	d := tracing.Done{Model: x.group, RequestID: x.id, Cache: x.cache, Status: x.status, Stream: x.stream,
		InputTokens: x.usage.PromptTokens, OutputTokens: x.usage.CompletionTokens, Attempts: x.attempts, CostUSD: x.cost}
	if x.deployment != nil {
		d.ResponseModel, d.Provider, d.Deployment = x.deployment.Model, x.deployment.ProviderName, x.deployment.ID
	}
	if x.key != nil {
		d.KeyID = x.key.ID
	}
	if x.err != nil {
		d.ErrorType, d.ErrorMessage = x.err.Type, redact(x.err.Message)
	}
	return d
}

func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request, x *exchange) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	if err := s.begin(w, r, x, body, nil); err != nil {
		return err
	}
	if s.cache != nil && x.op == providers.OpChat {
		return s.serveCached(w, r, x)
	}
	return s.serveUpstream(w, r, x)
}

// begin reads what Lumen needs from an OpenAI-form body, runs the
// request's guardrails on it (and on native, the client's own body when
// it was translated), and admits the exchange (key models, rate limits,
// budget).
func (s *Server) begin(w http.ResponseWriter, r *http.Request, x *exchange, body []byte, native *[]byte) error {
	x.body = body
	if native != nil {
		if err := refuseDuplicateKeys(*native); err != nil {
			return err
		}
		if err := x.takeGatewayFields(native); err != nil {
			return err
		}
	}
	if err := x.parse(); err != nil {
		return err
	}
	if err := s.guardInput(r.Context(), x, native); err != nil {
		return err
	}
	x.tags = requestTags(r)
	w.Header().Set("x-lumen-model-group", x.group)
	return s.admit(r.Context(), w, x)
}

// serveUpstream routes the exchange and relays the answer.
func (s *Server) serveUpstream(w http.ResponseWriter, r *http.Request, x *exchange) error {
	res, err := s.route(r.Context(), x)
	s.routed(w, x, res)
	if err == nil {
		err = x.awaitChecks(res)
	}
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
	return s.Router().Do(ctx, s.call(x))
}

// call is the router call for an exchange.
func (s *Server) call(x *exchange) *router.Call {
	call := &router.Call{Group: x.group, Op: x.op, Body: x.body, ContentType: x.contentType, Stream: x.stream, RequestID: x.id, Header: x.header}
	if len(x.skipGroups) > 0 {
		call.Skip = x.skips
	}
	if s.groupRates {
		call.Admit = func(ctx context.Context, group string) error { return s.admitGroup(ctx, x, group) }
	}
	if x.key != nil {
		call.Caller = x.key.ID
		if len(x.key.Models) > 0 {
			call.Allow = x.key.Allows
		}
	}
	return call
}

// routed records which deployment answered and says so in the headers.
func (s *Server) routed(w http.ResponseWriter, x *exchange, res *router.Result) {
	if res == nil {
		return
	}
	x.attempts = res.Attempts
	x.deployment = res.Deployment
	x.abandoned = res.Abandoned
	x.serving, _ = res.Stream.(router.Serving)
	h := w.Header()
	if res.Attempts > 0 {
		h.Set("x-lumen-attempts", strconv.Itoa(res.Attempts))
	}
	if res.Strategy != "" {
		h.Set("x-lumen-routing-strategy", res.Strategy)
	}
	if res.FallbackFrom != "" {
		x.fallbackFrom = res.FallbackFrom
		h.Set("x-lumen-fallback-from", res.FallbackFrom)
		h.Set("x-lumen-model-group", res.Group)
	}
	if d := res.Deployment; d != nil {
		h.Set("x-lumen-deployment", d.Name())
		h.Set("x-lumen-deployment-id", d.ID)
		h.Set("x-lumen-provider", d.ProviderName)
	}
	if a := res.Auto; a != nil {
		h.Set("x-lumen-model-group", res.Group)
		h.Set("x-lumen-selected-model", a.Selected)
		h.Set("x-lumen-difficulty", strconv.FormatFloat(a.Difficulty, 'f', 3, 64))
		h.Set("x-lumen-predicted-quality", strconv.FormatFloat(a.PredictedQuality, 'f', 3, 64))
		h.Set("x-lumen-route-reason", a.Reason)
		if a.BestEffort {
			h.Set("x-lumen-best-effort", "true")
		}
	}
}

func (s *Server) writeResponse(w http.ResponseWriter, x *exchange, resp *providers.Response) error {
	x.usage = resp.Usage
	x.status = http.StatusOK
	s.price(x)
	body, err := x.guardOutput(resp.Body, resp.ContentType)
	if err != nil {
		return err
	}
	if x.usageInclude && resp.ContentType == "" {
		if b, err := sjson.SetBytes(body, "usage.cost", x.cost); err == nil {
			body = b
		}
	}
	s.writeAnswer(w, x, body, resp.ContentType)
	return nil
}

// writeTranslated writes a non-streamed answer in the client's own API
// (Anthropic Messages, Responses): the upstream's body as it is when
// native says it already is one (a deployment that speaks that API),
// else translate's version of the chat completion.
func (s *Server) writeTranslated(w http.ResponseWriter, x *exchange, resp *providers.Response,
	native func([]byte) bool, translate func(chat []byte) ([]byte, error)) error {
	x.usage = resp.Usage
	x.status = http.StatusOK
	s.price(x)
	out := resp.Body
	if !native(out) {
		var err error
		if out, err = translate(out); err != nil {
			return x.blame(err)
		}
	}
	out, err := x.guardOutput(out, "")
	if err != nil {
		return err
	}
	s.writeAnswer(w, x, out, "")
	return nil
}

// writeAnswer sends a priced, non-streamed answer and keeps it for the
// ledger and the audit log. contentType is the answer's when it is not
// JSON (speech), else empty.
func (s *Server) writeAnswer(w http.ResponseWriter, x *exchange, body []byte, contentType string) {
	x.respBody = body
	h := w.Header()
	if contentType == "" {
		contentType = "application/json"
	}
	h.Set("Content-Type", contentType)
	h.Set(costHeaderName, costHeader(x.cost))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// costHeaderName carries a request's cost in USD; for a stream it is an
// HTTP trailer (the cost is known only at the end).
const costHeaderName = "x-lumen-cost-usd"

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
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, &apiError{Status: http.StatusRequestTimeout, Type: "invalid_request_error", Code: "request_timeout",
			Message: "the request body did not arrive within server.read_timeout; send it whole without pausing, or raise server.read_timeout for slow uploads"}
	case err != nil:
		return nil, invalid("", "reading the request body: %v", err)
	}
	return buf.Bytes(), nil
}

func tooLarge(limit int64) *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
		Message: sprintf("the request body exceeds %d MiB; raise general_settings.max_request_size_mb if this is expected", limit>>20)}
}

// parseForm reads a multipart body, a transcription's or an image edit's:
// a model and the file (an image edit's image, or image[], and a prompt)
// are required; the body goes upstream as it came, model replaced.
func (x *exchange) parseForm() error {
	ct := x.header.Get("Content-Type")
	what := "a transcription request is multipart/form-data (a file and a model)"
	if x.op == providers.OpImageEdit {
		what = "an image edit is multipart/form-data (an image, a prompt and a model)"
	}
	form, err := providers.ParseForm(x.body, ct)
	if err != nil {
		return invalid("", "%s: %v", what, err)
	}
	if x.group = form.Values["model"]; x.group == "" {
		return invalid("model", "you must provide a model parameter")
	}
	switch x.op {
	case providers.OpTranscription:
		if form.Files["file"] == 0 {
			return invalid("file", "Missing required parameter: 'file' (the audio to transcribe).")
		}
		if form.Values["stream"] == "true" {
			return invalid("stream", "streamed transcription is not supported; leave stream unset")
		}
		x.audio = form.Data["file"]
	case providers.OpImageEdit:
		if form.Files["image"] == 0 && form.Files["image[]"] == 0 {
			return invalid("image", "Missing required parameter: 'image' (the image file, or files, to edit).")
		}
		if form.Values["prompt"] == "" {
			return invalid("prompt", "Missing required parameter: 'prompt' (a string).")
		}
		if form.Values["stream"] == "true" {
			return invalid("stream", "streamed image edits (partial images) are not supported; leave stream unset")
		}
		n, _ := strconv.Atoi(form.Values["n"])
		x.images = max(n, 1)
	}
	if u := form.Values["user"]; u != "" {
		x.user = truncate(u, 128)
	}
	x.formPrompt = form.Values["prompt"]
	x.contentType = ct
	return nil
}

// parse checks the fields Lumen needs and reads them without decoding the
// whole body: unknown fields pass through untouched.
func (x *exchange) parse() error {
	if x.op == providers.OpTranscription || x.op == providers.OpImageEdit {
		return x.parseForm()
	}
	b := bytes.TrimSpace(x.body)
	if err := refuseDeepJSON(b); err != nil {
		return err
	}
	if len(b) == 0 || b[0] != '{' || !gjson.ValidBytes(b) {
		return invalid("", "the request body is not a valid JSON object")
	}
	if err := refuseDuplicateKeys(b); err != nil {
		return err
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
	case providers.OpEmbedding, providers.OpModeration:
		in := gjson.GetBytes(b, "input")
		switch {
		case !in.Exists():
			return invalid("input", "Missing required parameter: 'input'.")
		case in.Type == gjson.String && in.Str == "", in.IsArray() && len(in.Array()) == 0:
			return invalid("input", "'input' must not be empty: give a string or a non-empty array.")
		case in.Type != gjson.String && !in.IsArray():
			return invalid("input", "'input' must be a string or an array.")
		}
	case providers.OpImage:
		if p := gjson.GetBytes(b, "prompt"); p.Type != gjson.String || p.Str == "" {
			return invalid("prompt", "Missing required parameter: 'prompt' (a string).")
		}
		if gjson.GetBytes(b, "stream").Bool() {
			return invalid("stream", "streamed image generation (partial images) is not supported; leave stream unset")
		}
		x.images = max(int(gjson.GetBytes(b, "n").Int()), 1)
	case providers.OpSpeech:
		if in := gjson.GetBytes(b, "input"); in.Type != gjson.String || in.Str == "" {
			return invalid("input", "Missing required parameter: 'input' (the text to read out).")
		}
		if gjson.GetBytes(b, "stream_format").Str == "sse" {
			return invalid("stream_format", "streamed speech (sse) is not supported; leave stream_format unset for the audio file")
		}
	case providers.OpRerank:
		if q := gjson.GetBytes(b, "query"); q.Type != gjson.String || q.Str == "" {
			return invalid("query", "Missing required parameter: 'query' (a string).")
		}
		if d := gjson.GetBytes(b, "documents"); !d.IsArray() || len(d.Array()) == 0 {
			return invalid("documents", "Missing required parameter: 'documents' (a non-empty array).")
		}
	}
	if x.op.Streams() {
		x.stream = gjson.GetBytes(b, "stream").Bool()
		x.includeUsage = gjson.GetBytes(b, "stream_options.include_usage").Bool()
	}
	if u := gjson.GetBytes(b, "user"); u.Type == gjson.String {
		x.user = truncate(u.Str, 128)
	}
	if x.endUser != "" {
		x.user = truncate(x.endUser, 128)
	}
	// LiteLLM's "cache": {"no-cache": true, "ttl": 600 …} is the response
	// cache's to read (serveCached), so it does not go upstream either.
	if c := gjson.GetBytes(b, "cache"); c.Exists() {
		x.cacheField = []byte(c.Raw)
		body, err := sjson.DeleteBytes(x.body, "cache")
		if err != nil {
			return invalid("cache", "the cache field could not be removed: %v", err)
		}
		x.body, b = body, body
	}
	// OpenRouter's "usage": {"include": true} asks for the cost in the
	// answer's usage. It is Lumen's to answer, so it does not go upstream.
	if u := gjson.GetBytes(b, "usage"); u.IsObject() {
		x.usageInclude = u.Get("include").Bool()
		if x.usageInclude && x.stream {
			x.includeUsage = true
		}
		body, err := sjson.DeleteBytes(x.body, "usage")
		if err != nil {
			return invalid("usage", "the usage field could not be removed: %v", err)
		}
		x.body = body
	}
	return nil
}

// gatewayFields are the body fields that speak to Lumen, not to the model:
// OpenRouter-style "models" and "fallbacks" (the router's), "lumen" (auto
// routing's options) and LiteLLM's "cache". "guardrails" is another, taken
// by guardInput.
var gatewayFields = [...]string{"models", "fallbacks", "lumen", "cache"}

// takeGatewayFields moves the gateway's fields of a client's own body (a
// Messages or Responses request) into x.body, the OpenAI form Lumen reads
// and routes: there they work as on chat completions, and the native body
// that a deployment speaking the client's API gets never carries them.
func (x *exchange) takeGatewayFields(native *[]byte) error {
	for _, f := range gatewayFields {
		v := gjson.GetBytes(*native, f)
		if !v.Exists() {
			continue
		}
		body, err := sjson.SetRawBytes(x.body, f, []byte(v.Raw))
		if err == nil {
			*native, err = sjson.DeleteBytes(*native, f)
		}
		if err != nil {
			return invalid(f, "the %s field could not be read: %v", f, err)
		}
		x.body = body
	}
	return nil
}

// refuseDuplicateKeys is a 400 for a JSON body with a duplicate key (see
// duplicateKey).
func refuseDuplicateKeys(b []byte) error {
	if k, dup := duplicateKey(b); dup {
		return invalid("", "the request body has the key %q twice in one object; JSON parsers disagree on which one counts, so Lumen refuses such a body", k)
	}
	return nil
}

// audioSeconds is how long a transcription's audio is, read from its
// container (package audio); when the format is not one it reads, a bound:
// the file at 16 kbit/s, below what speech is recorded at, so a budget
// holds at least the real cost.
func audioSeconds(data []byte) float64 {
	if d, ok := audio.Duration(data); ok {
		return d
	}
	return float64(len(data)) * 8 / 16000
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// finish settles and records an exchange: budget and rate-limit
// settlement, cost trailer, ledger row, metrics, audit entry and log line.
// It runs on the handler goroutine after the response is complete and does
// no I/O: the ledger and the audit log are written by their own goroutines.
func (s *Server) finish(w http.ResponseWriter, x *exchange) {
	if x.serving != nil {
		// A stream that failed over mid-answer was finished by another
		// deployment, after more upstream calls than routing counted.
		if d, n := x.serving.Serving(); d != nil {
			x.deployment, x.attempts = d, max(x.attempts, n)
		}
	}
	// An upstream that answered without usage, or a stream cut before its
	// usage came (the client hung up, the upstream broke with nowhere to
	// fail over to): the upstream read the prompt all the same, and bills
	// it. Lumen's estimate stands in.
	if x.usage.PromptTokens == 0 && x.body != nil && x.attempts > 0 && (x.status == http.StatusOK || x.started) {
		x.usage.PromptTokens = x.promptEst
		if x.usage.PromptTokens == 0 {
			x.usage.PromptTokens = tokens.Prompt(x.body)
		}
	}
	if x.usage.CompletionTokens == 0 {
		x.usage.CompletionTokens = x.estimated
	}
	s.price(x)
	if x.stream {
		if x.started {
			w.Header().Set(costHeaderName, costHeader(x.cost)) // a declared trailer
		}
	}
	s.settle(x)
	latency := time.Since(x.start)
	rec := s.record(x, latency)
	if s.ledger != nil {
		s.ledger.Record(rec)
	}
	s.observe(x, latency)
	guarded, matches := s.observeGuardrails(x)
	if s.audit != nil {
		s.audit.Append(auditEntry(x, &rec))
	}
	ev := s.log.Info()
	if x.err != nil {
		ev = s.log.Warn()
		if x.status >= 500 && x.status != http.StatusBadGateway && x.status != http.StatusGatewayTimeout && x.err.Type != typeShuttingDown {
			ev = s.log.Error()
		}
		ev = ev.Str("error_type", x.err.Type).Str("error", redact(x.err.Message))
	}
	ev = ev.Str("request_id", x.id).Str("op", x.op.String()).Str("model_group", x.group).
		Int("status", x.status).Bool("stream", x.stream).
		Float64("latency_ms", msec(latency)).
		Int("prompt_tokens", x.usage.PromptTokens).Int("completion_tokens", x.usage.CompletionTokens).
		Int("attempts", x.attempts).Float64("cost_usd", x.cost)
	if x.key != nil {
		ev = ev.Str("key_id", x.key.ID)
	}
	if x.deployment != nil {
		ev = ev.Str("deployment", x.deployment.ID).Str("provider", x.deployment.ProviderName)
	}
	if x.cache != "" {
		ev = ev.Str("cache", x.cache)
	}
	if len(guarded) > 0 {
		ev = ev.Strs("guardrails", guarded).Int("guardrail_matches", matches)
	}
	if x.stream && x.ttft > 0 {
		ev = ev.Float64("ttft_ms", msec(x.ttft))
	}
	ev.Msg("request")
}

// record is the exchange's ledger row.
func (s *Server) record(x *exchange, latency time.Duration) ledger.Record {
	rec := ledger.Record{
		Time: x.start, RequestID: x.id, User: x.user, Tags: x.tags, ModelGroup: x.group,
		Status: x.status, Usage: x.usage, CostUSD: x.cost, SavedUSD: x.savedUSD,
		Latency: latency, Attempts: x.attempts, CacheHit: x.cache == "hit" || x.cache == "coalesced",
		Stream: x.stream, Request: x.body, Response: x.respBody,
	}
	if guardrail.Logging(x.guards) {
		// logging_only guardrails: the ledger and the audit log keep the
		// bodies masked; the upstream and the client had them whole.
		var hits []guardrail.Hit
		rec.Request, hits = guardrail.Logged(x.guards, x.body)
		x.guardHits = append(x.guardHits, hits...)
		rec.Response, hits = guardrail.Logged(x.guards, x.respBody) // audio, text: as they are
		x.guardHits = append(x.guardHits, hits...)
	}
	if x.deployment != nil && x.attempts > 0 {
		// The group that answered (x-lumen-model-group), not the name the
		// client sent: an auto route's choice or a fallback is recorded,
		// reported and reloaded into budgets under the group that spent.
		rec.ModelGroup = x.deployment.Group
	}
	if x.stream {
		rec.TTFT = x.ttft
	}
	if rec.CacheHit {
		rec.Usage = x.saved // what the answer holds; CostUSD stays 0
	}
	if x.key != nil {
		rec.KeyID, rec.KeyName = x.key.ID, x.key.Name
	}
	if x.err != nil {
		rec.ErrorType = x.err.Type
	}
	if d := x.deployment; d != nil {
		rec.Deployment, rec.Provider, rec.Model = d.ID, d.ProviderName, d.Model
	}
	return rec
}

// observe updates the Prometheus metrics for a finished exchange.
func (s *Server) observe(x *exchange, latency time.Duration) {
	if s.metrics == nil {
		return
	}
	var dep, prov string
	if d := x.deployment; d != nil {
		dep, prov = d.ID, d.ProviderName
	}
	rt := s.metrics.Route(x.group, dep, prov)
	o := metrics.Outcome{Status: x.status, Duration: latency, CostUSD: x.cost}
	if x.attempts > 0 {
		o.PromptTokens, o.CompletionTokens, o.CachedTokens = x.usage.PromptTokens, x.usage.CompletionTokens, x.usage.CachedTokens
	}
	if x.stream {
		o.TTFT = x.ttft
	}
	rt.Observe(o)
	g := rt.Group()
	switch x.cache {
	case "hit":
		g.CacheHit(x.savedUSD)
	case "coalesced":
		g.CacheCoalesced(x.savedUSD)
	case "miss":
		g.CacheMiss()
	}
	for range x.attempts - 1 {
		g.Retry()
	}
	if x.fallbackFrom != "" {
		g.Fallback()
	}
	var tags []string
	if x.key != nil && len(x.key.Tags) > 0 {
		tags = s.keyTags(x.key)
	}
	s.metrics.ObserveKeyTags(tags, x.cost)
}

// auditEntry is the exchange's audit entry: metadata and, through the
// payloads, their digests (the log keeps the bodies only when configured).
func auditEntry(x *exchange, rec *ledger.Record) audit.Entry {
	actor := "anonymous"
	switch {
	case x.key != nil:
		actor = x.key.ID
	case x.admin:
		actor = audit.ActorAdmin
	}
	return audit.Entry{
		Time: x.start, Actor: actor, Action: audit.ActionRequest,
		Summary: audit.Summary{
			RequestID: x.id, ModelGroup: x.group, Deployment: rec.Deployment, Provider: rec.Provider,
			Status: x.status, PromptTokens: rec.Usage.PromptTokens, CompletionTokens: rec.Usage.CompletionTokens,
			CachedTokens: rec.Usage.CachedTokens, CostUSD: x.cost,
		},
		RequestPayload: rec.Request, ResponsePayload: rec.Response,
	}
}

func msec(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
