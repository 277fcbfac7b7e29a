package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/server"
	"github.com/lumengw/lumen/tracing"
)

// ServeOptions are the inputs of lumen serve.
type ServeOptions struct {
	f *Factory
	v *viper.Viper
	// Ready, when set, receives the bound address once Lumen listens.
	Ready func(addr string)
}

// NewCmdServe builds `lumen serve`. runF replaces the work in tests.
func NewCmdServe(f *Factory, runF func(context.Context, *ServeOptions) error) *cobra.Command {
	opts := &ServeOptions{f: f}
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the OpenAI-compatible API",
		Long: `Serve the OpenAI-compatible API (chat/completions, completions,
embeddings, responses, models, moderations, rerank, images/generations,
images/edits, audio/speech, audio/transcriptions) for the model groups in
the config.

Settings come from flags, then LUMEN_* environment variables (LUMEN_HOST,
LUMEN_PORT, LUMEN_LOG_LEVEL, LUMEN_LOG_FORMAT, LUMEN_GRACE_PERIOD,
LUMEN_CONFIG), then the config file's server and log sections, then
defaults. SIGINT or SIGTERM fails /health/readiness (and, with
server.drain_delay, serves on that long for a load balancer to notice),
stops accepting, lets in-flight requests and streams finish within the
grace period, cuts off the rest (answered, while their clients are still
connected, and recorded in the ledger and the audit log as 503
gateway_shutting_down before they close), and exits 0.
SIGHUP reloads the config file: model_list, router_settings and
guardrails are swapped in atomically once the whole file validates; a bad
file is logged and the running config kept. Deployments that keep their
model_info.id and upstream keep their circuit, this minute's usage and
latency averages.

Besides the OpenAI API (the Responses API translated to chat for providers
without it) it serves the Anthropic Messages API (/v1/messages), /metrics
(Prometheus), the admin API (/admin/…, master key) and the dashboard
(/ui/). Every request is recorded in the ledger (written off the request
path: the SQLite file at ledger.path, or the Postgres database at
ledger.postgres_url that several instances share with their keys) and the
audit log; virtual keys (lumen keys) are enforced with their models,
budgets and rate limits, and the config's limits add budgets and rate
limits per key tag (a team), end user, model group and the whole gateway,
kept in Redis and shared by every instance when limits.redis_url is set.
With tracing.otlp_endpoint, every API request is an OpenTelemetry span.
The config's guardrails (content filters: PII, credentials, regexes,
blocked words) mask or block requests before any upstream call and
answers, streams included, before the client sees them.`,
		Example: `  lumen serve                                  # embedded example config, mock model "demo"
  lumen serve --config config.yaml --port 8080
  LUMEN_HOST=0.0.0.0 lumen serve -c config.yaml --log-format console`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.v = newViper(cmd.Flags())
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return serveRun(cmd.Context(), opts)
		},
	}
	fs := cmd.Flags()
	configFlag(fs, &configPath)
	fs.String("host", "127.0.0.1", "address to bind (env LUMEN_HOST; config server.host)")
	fs.Int("port", 4000, "port to listen on (env LUMEN_PORT; config server.port)")
	fs.String("log-level", "info", "trace, debug, info, warn or error (env LUMEN_LOG_LEVEL)")
	fs.String("log-format", "json", "json or console (env LUMEN_LOG_FORMAT)")
	fs.Duration("grace-period", 30*time.Second, "how long shutdown waits for in-flight requests (env LUMEN_GRACE_PERIOD)")
	return cmd
}

func serveRun(ctx context.Context, opts *ServeOptions) error {
	cfg, source, warnings, err := loadConfig(opts.v, opts.f)
	if err != nil {
		return err
	}
	if err := override(opts.v, cfg); err != nil {
		return err
	}
	log := newLogger(cfg.Log, opts.f.ErrOut)
	for _, w := range warnings {
		log.Warn().Str("config", source).Msg(w)
	}
	if cfg.GeneralSettings.MasterKey == "" {
		log.Warn().Msg("NO MASTER KEY: general_settings.master_key is not set, so anyone who can reach this address can use every model; set it before exposing Lumen beyond localhost")
	}
	tracer, err := newTracer(cfg, log)
	if err != nil {
		return err
	}
	if tracer != nil {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tracer.Shutdown(ctx); err != nil {
				log.Warn().Err(err).Msg("tracing: the last spans were not exported")
			}
		}()
	}
	build := builder(tracer)
	r, err := router.New(cfg, build)
	if err != nil {
		return fmt.Errorf("building routes: %w", err)
	}
	for _, w := range r.Warnings() {
		log.Warn().Str("config", source).Msg(w)
	}
	r.SetLogger(log)
	// What auto:smart learned lives in the ledger; a Lumen before
	// 2026-11-28 kept it in a file beside it, merged in once here.
	banditPath := router.BanditPath(cfg.Ledger.Path)
	imported, err := r.ImportBandit(banditPath)
	if err != nil {
		log.Warn().Err(err).Str("path", banditPath).Msg("auto:smart: the old state file could not be read; it is left as it is")
	}
	// The semantic cache's embeddings are the server's own calls (counted
	// in the embedding group's window, its budget and the ledger); srv is
	// set before it serves.
	var srv *server.Server
	respCache, closeCache, err := buildCache(cfg, func(ctx context.Context, purpose string, c *router.Call) (*router.Result, error) {
		return srv.OwnCall(ctx, purpose, c)
	}, log)
	if err != nil {
		return err
	}
	defer closeCache()
	st, err := openStores(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.close()
	guards, err := guardrail.NewSet(cfg.Guardrails)
	if err != nil {
		return fmt.Errorf("guardrails: %w", err)
	}
	so := server.Options{Config: cfg, Router: r, Logger: log, Version: Version, Cache: respCache, Tracer: tracer, Guardrails: guards}
	st.options(&so)
	srv = server.New(so)
	st.learner = srv.Router
	if st.syncLearning() && imported > 0 {
		if err := os.Rename(banditPath, banditPath+".imported"); err != nil {
			log.Warn().Err(err).Msg("auto:smart: the old state file is in the ledger now but could not be renamed; it would be merged again at the next start")
		} else {
			log.Info().Int("arms", imported).Str("path", banditPath).Msg("auto:smart: the old state file is merged into the ledger (renamed .imported)")
		}
	}
	addr := net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	st.run(ctx)
	if cfg.Metrics.Listen != "" && st.metrics != nil {
		stopMetrics, err := serveMetrics(cfg.Metrics.Listen, srv.MetricsHandler, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	log.Info().Str("addr", ln.Addr().String()).Str("config", source).Strs("models", r.Names()).
		Str("version", Version).Msg("lumen is serving")
	checks := &healthChecks{}
	checks.start(ctx, r)
	defer checks.stop() // after the reload goroutine, which may start another run, has returned
	reloadCtx, stopReload := context.WithCancel(ctx)
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		watchReload(reloadCtx, opts.v, opts.f, srv, cfg, build, st.audit, checks, log)
	}()
	defer func() { stopReload(); <-reloaded }()
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	return srv.Run(ctx, ln)
}

// newTracer starts the OTLP exporter of tracing.otlp_endpoint; nil when
// tracing is off.
func newTracer(cfg *config.Config, log zerolog.Logger) (*tracing.Tracer, error) {
	tc := cfg.Tracing
	if tc.OTLPEndpoint == "" {
		return nil, nil
	}
	headers := make(map[string]string, len(tc.Headers))
	for k, v := range tc.Headers {
		headers[k] = v.Value()
	}
	t, err := tracing.New(tracing.Options{Endpoint: tc.OTLPEndpoint.Value(), Headers: headers, ServiceName: tc.ServiceName,
		SampleRatio: tc.SampleRatio, Version: Version,
		OnError: func(err error) { log.Warn().Err(err).Msg("tracing: spans not exported") }})
	if err != nil {
		return nil, fmt.Errorf("tracing.otlp_endpoint: %w", err)
	}
	return t, nil
}

// builder builds the deployments' providers; with tracing on, their HTTP
// client adds the request's trace context to every upstream call.
func builder(t *tracing.Tracer) router.Builder {
	if t == nil {
		return router.Build
	}
	client := &http.Client{Transport: t.Transport(providers.DefaultClient.Transport)}
	return func(pc providers.Config) (providers.Provider, error) {
		if pc.Client == nil {
			pc.Client = client
		}
		return router.Build(pc)
	}
}

// serveMetrics serves /metrics on its own address (metrics.listen), with
// the handler handler returns for the address it listens on. The returned
// func stops it and waits for its goroutine.
func serveMetrics(addr string, handler func(net.Addr) http.Handler, log zerolog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", handler(ln.Addr()))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics listener stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving /metrics")
	return func() { _ = hs.Close(); <-done }, nil
}

// newLogger builds the process logger; secrets never reach it (config
// secrets print as [redacted]).
func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}
	}
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
