package cmd

import (
	"context"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/viper"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/internal/loop"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/server"
)

// watchReload reloads the config file on SIGHUP until ctx is done. The
// whole file is parsed and validated and a new router built before it is
// swapped in; a bad file is logged and the running config kept. Only
// model_list, router_settings and guardrails take effect on reload; the other sections
// (server, cache, ledger, audit, limits, auth) need a restart, which is
// logged when they changed. The new router takes over the deployment state
// (circuits, minute usage, latencies) and auto learning of the old one.
//
// Each reload that took effect is appended to the audit log (al may be nil).
func watchReload(ctx context.Context, v *viper.Viper, f *Factory, srv *server.Server, running *config.Config, build router.Builder,
	al *audit.Log, checks *healthChecks, log zerolog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		// A reload that panics keeps the running config, as a bad file does.
		loop.Step(log, "config reload", func() { reload(ctx, v, f, srv, running, build, al, checks, log) })
	}
}

// reload is one of watchReload's reloads.
func reload(ctx context.Context, v *viper.Viper, f *Factory, srv *server.Server, running *config.Config, build router.Builder,
	al *audit.Log, checks *healthChecks, log zerolog.Logger) {
	cfg, source, warnings, err := loadConfig(v, f)
	if err == nil {
		err = override(v, cfg)
	}
	if err != nil {
		log.Error().Err(err).Msg("config reload failed: keeping the running config")
		return
	}
	for _, w := range warnings {
		log.Warn().Str("config", source).Msg(w)
	}
	r, err := router.New(cfg, build)
	if err != nil {
		log.Error().Err(err).Msg("config reload failed: keeping the running config")
		return
	}
	for _, w := range r.Warnings() {
		log.Warn().Str("config", source).Msg(w)
	}
	guards, err := guardrail.NewSet(cfg.Guardrails)
	if err != nil {
		log.Error().Err(err).Msg("config reload failed: keeping the running config")
		return
	}
	r.SetLogger(log)
	r.KeepLearning(srv.Router()) // auto:smart keeps what it learned
	r.KeepState(srv.Router())    // open circuits, minute usage and latencies survive
	srv.SetRouter(r)
	checks.start(ctx, r) // the new router's deployments, at its interval
	srv.SetGuardrails(guards)
	if restartNeeded(running, cfg) {
		log.Warn().Msg("config reload: server, cache, ledger, audit, limits or auth settings changed; they take effect on restart")
	}
	log.Info().Str("config", source).Strs("models", r.Names()).Msg("config reloaded")
	if al != nil {
		al.Append(audit.Entry{Actor: audit.ActorSystem, Action: audit.ActionConfigReloaded, Target: source,
			Detail: "model groups: " + strings.Join(r.Names(), ", ")})
	}
}

// restartNeeded reports whether sections that only apply at start changed.
// The values are compared, not their YAML: secrets (the master key, the
// Postgres and Redis URLs) marshal redacted, and a changed one must be
// noticed too.
func restartNeeded(old, cur *config.Config) bool {
	a := config.Config{Server: old.Server, Cache: old.Cache, Ledger: old.Ledger, Audit: old.Audit,
		GeneralSettings: old.GeneralSettings, Privacy: old.Privacy, Metrics: old.Metrics, Log: old.Log, Limits: old.Limits, Tracing: old.Tracing}
	b := config.Config{Server: cur.Server, Cache: cur.Cache, Ledger: cur.Ledger, Audit: cur.Audit,
		GeneralSettings: cur.GeneralSettings, Privacy: cur.Privacy, Metrics: cur.Metrics, Log: cur.Log, Limits: cur.Limits, Tracing: cur.Tracing}
	return !reflect.DeepEqual(a, b)
}

// healthChecks runs the active health checks (router_settings.
// health_check_interval) of the router in service: one Router.Run at a
// time, the previous one stopped when a reload swaps the router. Its owner
// is serveRun: the reload goroutine starts runs, and serveRun stops the
// last once that goroutine has returned.
type healthChecks struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start stops the running checks, if any, and runs r's.
func (h *healthChecks) start(ctx context.Context, r *router.Router) {
	h.stop()
	ctx, h.cancel = context.WithCancel(ctx)
	done := make(chan struct{})
	h.done = done
	go func() {
		defer close(done)
		_ = r.Run(ctx) // nil at once when the interval is 0
	}()
}

// stop ends the running checks and waits for them.
func (h *healthChecks) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel, h.done = nil, nil
	}
}
