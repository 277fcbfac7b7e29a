// Package server is Lumen's HTTP front: the OpenAI-compatible API, health
// endpoints, auth, and the one place errors become HTTP responses.
package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/metrics"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tracing"
)

// Options configure a Server.
type Options struct {
	// Config is the validated configuration. Required.
	Config *config.Config
	// Router routes calls to deployments. Required.
	Router *router.Router
	// Logger receives one line per request and lifecycle events.
	Logger zerolog.Logger
	// Version is reported by /health.
	Version string
	// Cache is the response cache; nil means off.
	Cache *cache.Cache
	// Keys authenticates virtual keys; nil means none is accepted: only
	// the master key, or on an open gateway any key but a virtual one.
	Keys *ledger.Keyring
	// Budgets and Limiter enforce the keys' budgets and rpm/tpm limits;
	// nil disables each.
	Budgets limits.BudgetStore
	Limiter limits.Limiter
	// Ledger receives one record per request; nil records nothing.
	Ledger Recorder
	// Reports answers the admin API's spend and request queries; nil
	// disables those endpoints.
	Reports Reports
	// Metrics observes traffic; nil observes nothing.
	Metrics *metrics.Metrics
	// Audit receives an entry per request served and per admin change;
	// nil keeps no audit log.
	Audit *audit.Log
	// Tracer records a span per API request; nil records none.
	Tracer *tracing.Tracer
	// Guardrails are the configured content filters; nil runs none.
	Guardrails *guardrail.Set
}

// Recorder takes ledger records off the request path (ledger.Writer).
type Recorder interface {
	Record(r ledger.Record) bool
}

// Reports are the ledger queries behind /admin/spend, /admin/requests and
// /admin/totals (ledger.DB).
type Reports interface {
	Spend(ctx context.Context, q ledger.Query) ([]ledger.Row, error)
	Requests(ctx context.Context, f ledger.RequestFilter) (ledger.Page, error)
	Totals(ctx context.Context, q ledger.Query) ([]ledger.Total, error)
}

// Server serves Lumen's HTTP API. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg       *config.Config
	router    atomic.Pointer[router.Router]
	cache     *cache.Cache
	log       zerolog.Logger
	version   string
	master    [sha256.Size]byte
	hasMaster bool
	maxBody   int64
	loc       *time.Location // ledger.budget_timezone: reports' days and dates
	started   time.Time
	ready     atomic.Bool
	inflight  atomic.Int64
	handler   http.Handler
	running   handlers // every handler, for Run to wait on
	// recordWait is the constant recordWait; tests shorten it.
	recordWait time.Duration

	keys    *ledger.Keyring
	budgets limits.BudgetStore
	limiter limits.Limiter
	ledger  Recorder
	reports Reports
	metrics *metrics.Metrics
	audit   *audit.Log
	tracer  *tracing.Tracer
	// groupRates is true when a Limiter counts some limits.model_groups
	// rpm/tpm window: then the router asks admitGroup for every group it
	// turns to besides the one the client named.
	groupRates bool

	// loopbackOnly is set by Run when it serves on a loopback address:
	// then an open gateway answers only requests to a loopback Host (see
	// browserGuard).
	loopbackOnly atomic.Bool

	tagCache   sync.Map // key id -> keyTagsEntry, see keyTags
	guardrails atomic.Pointer[guardrail.Set]
}

// New returns a Server for o.
func New(o Options) *Server {
	s := &Server{
		cfg: o.Config, cache: o.Cache, log: o.Logger, version: o.Version,
		maxBody: int64(o.Config.GeneralSettings.MaxRequestSizeMB * (1 << 20)),
		started: time.Now(),
		keys:    o.Keys, budgets: o.Budgets, limiter: o.Limiter, ledger: o.Ledger,
		reports: o.Reports, metrics: o.Metrics, audit: o.Audit, tracer: o.Tracer,
		recordWait: recordWait,
	}
	loc, err := o.Config.Ledger.Location()
	if err != nil { // Validate refuses it; a Config that skipped it gets UTC
		s.log.Error().Err(err).Msg("spend reports use UTC")
		loc = time.UTC
	}
	s.loc = loc
	for _, l := range o.Config.Limits.ModelGroups {
		s.groupRates = s.groupRates || s.limiter != nil && (l.RPM > 0 || l.TPM > 0)
	}
	if mk := o.Config.GeneralSettings.MasterKey.Value(); mk != "" {
		s.master, s.hasMaster = sha256.Sum256([]byte(mk)), true
	}
	s.SetRouter(o.Router)
	if s.metrics != nil && o.Cache != nil {
		if r, ok := o.Cache.Store().(cache.StatsReporter); ok {
			errs := func() uint64 { return uint64(r.Stats().Errors) }
			// The calls a Redis store skipped while it was down were
			// served uncached too: a dead Redis fails one call a second,
			// and skips the rest.
			if sk, ok := r.(interface{ Skipped() int64 }); ok {
				errs = func() uint64 { return uint64(r.Stats().Errors + sk.Skipped()) }
			}
			s.metrics.SetCache(errs)
		}
	}
	s.guardrails.Store(o.Guardrails)
	s.handler = s.routes()
	s.ready.Store(true)
	return s
}

// Router returns the router requests use now.
func (s *Server) Router() *router.Router { return s.router.Load() }

// SetRouter swaps in a router built from a reloaded config. Requests in
// flight finish on the router they started with; new ones use r.
func (s *Server) SetRouter(r *router.Router) {
	if s.metrics != nil {
		r.SetObserver(s.metrics)
	}
	s.router.Store(r)
}

// Open reports whether the API accepts requests without a key.
func (s *Server) Open() bool { return !s.hasMaster }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, prefix := range []string{"/v1", ""} {
		mux.Handle("POST "+prefix+"/chat/completions", s.authed(s.proxy(providers.OpChat)))
		mux.Handle("POST "+prefix+"/completions", s.authed(s.proxy(providers.OpCompletion)))
		mux.Handle("POST "+prefix+"/embeddings", s.authed(s.proxy(providers.OpEmbedding)))
		mux.Handle("POST "+prefix+"/moderations", s.authed(s.proxy(providers.OpModeration)))
		mux.Handle("POST "+prefix+"/rerank", s.authed(s.proxy(providers.OpRerank)))
		mux.Handle("POST "+prefix+"/images/generations", s.authed(s.proxy(providers.OpImage)))
		mux.Handle("POST "+prefix+"/audio/speech", s.authed(s.proxy(providers.OpSpeech)))
		mux.Handle("POST "+prefix+"/audio/transcriptions", s.authed(s.proxy(providers.OpTranscription)))
		mux.Handle("POST "+prefix+"/images/edits", s.authed(s.proxy(providers.OpImageEdit)))
		mux.Handle("POST "+prefix+"/responses", s.authed(s.responsesAPI()))
		mux.Handle("POST "+prefix+"/feedback", s.authed(http.HandlerFunc(s.feedback)))
		mux.Handle("GET "+prefix+"/models", s.authed(http.HandlerFunc(s.models)))
		mux.Handle("GET "+prefix+"/models/{model...}", s.authed(http.HandlerFunc(s.model)))
		mux.Handle("GET "+prefix+"/guardrails/list", s.authed(http.HandlerFunc(s.listGuardrails)))
	}
	for _, prefix := range []string{"/v1", "/anthropic/v1"} {
		mux.Handle("POST "+prefix+"/messages", s.authed(s.messages()))
		mux.Handle("POST "+prefix+"/messages/count_tokens", s.authed(http.HandlerFunc(s.countTokens)))
	}
	mux.HandleFunc("GET /health/liveness", s.liveness)
	mux.HandleFunc("GET /health/readiness", s.readiness)
	mux.Handle("GET /health", s.authed(http.HandlerFunc(s.health))) // names deployments and their state: a key, as LiteLLM asks
	if s.metrics != nil && s.cfg.Metrics.Listen == "" {
		mux.Handle("GET /metrics", s.metricsHandler())
	}
	s.adminRoutes(mux)
	mux.HandleFunc("/", s.notFound)
	return s.recoverer(s.requestID(s.browserGuard(mux)))
}

// recordWait is how long shutdown waits, once the grace period is over and
// the requests still running are cut off, for their handlers to record
// them. A handler that answers its cancelled context needs milliseconds;
// this bounds one that does not.
const recordWait = 5 * time.Second

// answerWait is how long shutdown, once it has cancelled the requests
// still running at the end of the grace period, leaves their connections
// open for the handlers to answer 503 before it closes them. A handler
// answers its cancelled context in milliseconds; one still running after
// this (blocked writing to a client that does not read) is unblocked by
// the close.
const answerWait = time.Second

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.running.add()
	defer s.running.done()
	s.handler.ServeHTTP(w, r)
}

// Run serves on ln until ctx is done, then shuts down gracefully: it stops
// accepting and lets in-flight requests and streams finish within the
// configured grace period. Then it cancels those still running, with
// errShuttingDown as the cause: their handlers answer 503
// gateway_shutting_down (an error event on a stream that started) to the
// clients still connected and record them so. After answerWait, or once
// every handler has returned, it closes the remaining connections; it
// waits up to recordWait in all for the handlers to record. When
// it returns, every handler that was going to reach the ledger and the
// audit log has; those abandoned after recordWait are counted in a log
// line. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	// Every request's context derives from base, so that the end of the
	// grace period cancels every handler and, through it, its upstream
	// calls: closing a connection cancels its request only once the server
	// reads from it again.
	s.loopbackOnly.Store(loopbackAddr(ln.Addr()))
	base, cutOff := context.WithCancelCause(context.Background())
	defer cutOff(nil)
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		// The whole request, body included. net/http lifts the deadline
		// once the handler has read the body to its end, so that it
		// bounds neither the upstream call nor a stream; WriteTimeout,
		// which would, stays unset.
		ReadTimeout: s.cfg.Server.ReadTimeout.D(),
		IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return base },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.ready.Store(false)
	if d := s.cfg.Server.DrainDelay.D(); d > 0 {
		// Readiness fails from now on; until the load balancer notices,
		// requests still come and are served.
		s.log.Info().Dur("drain_delay", d).Msg("shutting down: readiness fails; serving on until the drain delay is over")
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			return err
		}
	}
	grace := s.cfg.Server.GracePeriod.D()
	s.log.Info().Dur("grace_period", grace).Int64("in_flight", s.inflight.Load()).Msg("shutting down: draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := hs.Shutdown(sctx)
	// Neither Shutdown's deadline nor Close stops handlers: the ones cut
	// off still settle and record their requests. Closing the ledger and
	// the audit log (the caller's next step) before they have would drop
	// those records.
	wctx, wcancel := context.WithTimeout(context.Background(), s.recordWait)
	defer wcancel()
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn().Int64("in_flight", s.inflight.Load()).Msg("grace period over: cancelling the remaining requests (503 gateway_shutting_down) and closing their connections")
		// Requests first, while their connections are open: a handler
		// answers its cancelled context at once, and its client learns
		// that the gateway, not the client, ended the request. Then the
		// connections, for a handler blocked writing to a client that
		// does not read, which no context unblocks.
		cutOff(errShuttingDown)
		actx, acancel := context.WithTimeout(wctx, answerWait)
		s.running.wait(actx)
		acancel()
		_ = hs.Close()
	}
	if n := s.running.wait(wctx); n > 0 {
		s.log.Error().Int("handlers", n).Dur("waited", s.recordWait).
			Msg("shutdown: handlers still running after their requests were cut off are abandoned; the ledger and the audit log may miss their requests")
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	s.log.Info().Msg("shutdown complete")
	return nil
}

// handlers counts the handlers running, so that Run can wait for the last
// of them. Unlike a sync.WaitGroup it may gain one while waited on: a
// connection can hand over a request it read just before the server
// closed.
type handlers struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero; nil while nobody waits
}

func (h *handlers) add() {
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
}

func (h *handlers) done() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n--
	if h.n == 0 && h.idle != nil {
		close(h.idle)
		h.idle = nil
	}
}

// wait waits until no handler runs or ctx is done, and returns how many
// still run.
func (h *handlers) wait(ctx context.Context) int {
	for {
		h.mu.Lock()
		if h.n == 0 {
			h.mu.Unlock()
			return 0
		}
		if h.idle == nil {
			h.idle = make(chan struct{})
		}
		idle := h.idle
		h.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.n
		}
	}
}
