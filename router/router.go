// Package router turns a model group name into a call to one of its
// deployments: selection, and (growing) retries, cooldowns and fallbacks.
package router

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers"
)

// Deployment is one model_list entry that reaches an upstream.
type Deployment struct {
	// ID is model_info.id (default "<model_name>/<index>").
	ID string
	// Group is the model_name clients send.
	Group string
	// ProviderName is the provider id ("openai", "anthropic", "mock").
	ProviderName string
	// Model is the upstream model id, provider prefix removed.
	Model string
	// Provider sends the requests.
	Provider providers.Provider
	// Params and Info are the entry's configuration.
	Params config.Params
	Info   config.ModelInfo

	retries int // retries of a failed call (num_retries or max_retries)
	health  health
}

// State reports the deployment's circuit state: closed, open (cooled down)
// or half-open (the next request probes it).
func (d *Deployment) State(now time.Time) string { return d.health.state(now) }

// Name is "provider/model", what x-lumen-deployment reports.
func (d *Deployment) Name() string { return d.ProviderName + "/" + d.Model }

// Group is every deployment sharing a model_name.
type Group struct {
	Name        string
	Deployments []*Deployment
}

// Router routes calls to model groups. It is safe for concurrent use and
// immutable once built; a config reload builds a new one.
type Router struct {
	groups map[string]*Group
	names  []string
	auto   map[string]*config.AutoRoute

	log     zerolog.Logger
	minWait time.Duration // router_settings.retry_after
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	jitter  func(n int64) int64
}

// Backoff bounds: the first retry waits up to baseBackoff (full jitter),
// doubling per attempt up to maxBackoff. An upstream Retry-After longer
// than maxRetryAfter is not waited for: the error goes back to the client
// with the hint, unless another deployment can take the retry.
const (
	baseBackoff   = 100 * time.Millisecond
	maxBackoff    = 5 * time.Second
	maxRetryAfter = 30 * time.Second
)

// ErrUnknownGroup is returned (wrapped in *UnknownGroupError) for a model
// name the config does not define.
var ErrUnknownGroup = errors.New("unknown model group")

// UnknownGroupError names the model that was asked for and those that exist.
type UnknownGroupError struct {
	Model     string
	Available []string
}

func (e *UnknownGroupError) Error() string {
	return fmt.Sprintf("model %q does not exist", e.Model)
}

func (e *UnknownGroupError) Unwrap() error { return ErrUnknownGroup }

// Builder makes the provider for one deployment.
type Builder func(cfg providers.Config) (providers.Provider, error)

// New builds a router from a validated config.
func New(cfg *config.Config, build Builder) (*Router, error) {
	r := &Router{groups: map[string]*Group{}, auto: map[string]*config.AutoRoute{},
		log: zerolog.Nop(), minWait: cfg.RouterSettings.RetryAfter.D(), now: time.Now, sleep: sleepCtx, jitter: rand.Int64N}
	retries := *cfg.RouterSettings.NumRetries
	allowed := *cfg.RouterSettings.AllowedFails
	cooldown := cfg.RouterSettings.CooldownTime.D()
	for i := range cfg.ModelList {
		m := &cfg.ModelList[i]
		if m.Auto != nil {
			r.auto[m.ModelName] = m.Auto
			continue
		}
		p := m.Deployment()
		pc := ProviderConfig(cfg, m)
		prov, err := build(pc)
		if err != nil {
			return nil, fmt.Errorf("model_list[%d] (%s): %w", i, m.ModelName, err)
		}
		d := &Deployment{ID: m.ModelInfo.ID, Group: m.ModelName, ProviderName: pc.Provider, Model: pc.Model,
			Provider: prov, Params: *p, Info: m.ModelInfo, retries: retries,
			health: health{allowed: allowed, cooldown: cooldown}}
		if p.MaxRetries != nil {
			d.retries = *p.MaxRetries
		}
		g := r.groups[m.ModelName]
		if g == nil {
			g = &Group{Name: m.ModelName}
			r.groups[m.ModelName] = g
			r.names = append(r.names, m.ModelName)
		}
		g.Deployments = append(g.Deployments, d)
	}
	// Auto routes are not served yet (config warns), so they are not
	// listed either.
	sort.Strings(r.names)
	return r, nil
}

// SetLogger sends the router's log lines (failed attempts) to log.
func (r *Router) SetLogger(log zerolog.Logger) { r.log = log }

// ProviderConfig is the providers.Config of one model_list entry.
func ProviderConfig(cfg *config.Config, m *config.Model) providers.Config {
	p := m.Deployment()
	provider, model := config.SplitModel(p)
	pc := providers.Config{
		Provider: provider, Model: model, APIBase: p.APIBase, APIKey: p.APIKey.Value(),
		APIVersion: p.APIVersion, Headers: p.ExtraHeaders,
		Timeout: p.Timeout.D(), StreamTimeout: p.StreamTimeout.D(),
		AWSRegion: p.AWSRegionName, AWSAccessKeyID: p.AWSAccessKeyID.Value(),
		AWSSecretAccessKey: p.AWSSecretAccessKey.Value(), AWSSessionToken: p.AWSSessionToken.Value(),
		Mock: providers.MockConfig{Response: p.MockResponse, Latency: p.MockLatency.D(),
			ChunkInterval: p.MockChunkInterval.D(), FailureRate: p.MockFailureRate},
	}
	if pc.Timeout == 0 {
		pc.Timeout = cfg.RouterSettings.Timeout.D()
	}
	if pc.StreamTimeout == 0 {
		pc.StreamTimeout = cfg.RouterSettings.StreamTimeout.D()
	}
	return pc
}

// Names returns every model name clients may send, sorted.
func (r *Router) Names() []string { return r.names }

// Group returns the named deployment-backed model group.
func (r *Router) Group(name string) (*Group, bool) {
	g, ok := r.groups[name]
	return g, ok
}

// Call is one client request to route.
type Call struct {
	// Group is the model name the client sent.
	Group string
	// Op, Body and Stream describe the request (see providers.Request).
	Op     providers.Op
	Body   []byte
	Stream bool
	// RequestID tags the log lines of failed attempts.
	RequestID string
	// Allow reports whether the caller may use a model group (virtual keys
	// restricted to models); it is checked for every group tried, fallbacks
	// included. Nil allows all.
	Allow func(group string) bool
}

// Result is what served a call.
type Result struct {
	// Response is set for non-streaming calls, Stream for streaming ones.
	Response *providers.Response
	Stream   providers.Stream
	// Deployment answered (for a stream: the first one that did).
	Deployment *Deployment
	// Attempts counts upstream calls made, failed ones included.
	Attempts int
	// Group is the model group that answered; it differs from Call.Group
	// after a fallback.
	Group string
	// FallbackFrom is the group first asked for when a fallback answered.
	FallbackFrom string
	// Strategy is the routing strategy that chose the deployment.
	Strategy string
}

// Do routes call to a deployment of its group and returns its answer.
// Retryable failures (connect errors, timeouts, 408/409/429/5xx) are
// retried up to the deployment's retry count, on another healthy deployment
// when the group has one (at once), else on the same one after exponential
// backoff with full jitter and the upstream's Retry-After.
// Non-retryable failures (400, 401, 404, …) return at once. A stream is
// retried only until the upstream has answered.
func (r *Router) Do(ctx context.Context, call *Call) (*Result, error) {
	g, ok := r.groups[call.Group]
	if !ok {
		return nil, &UnknownGroupError{Model: call.Group, Available: r.names}
	}
	res := &Result{Group: g.Name, Strategy: "simple-shuffle"}
	d := r.pick(g, nil)
	for try := 0; ; try++ {
		res.Deployment = d
		res.Attempts++
		req := &providers.Request{Op: call.Op, Model: d.Model, Body: call.Body, Stream: call.Stream}
		var err error
		if call.Stream {
			res.Stream, err = d.Provider.DoStream(ctx, req)
		} else {
			res.Response, err = d.Provider.Do(ctx, req)
		}
		if err == nil {
			d.health.success()
			return res, nil
		}
		if !providers.IsRetryable(err) || ctx.Err() != nil {
			d.health.release()
			return res, err
		}
		d.health.failure(r.now())
		r.log.Warn().Str("request_id", call.RequestID).Str("model_group", g.Name).Str("deployment", d.ID).
			Int("attempt", try+1).Str("state", d.health.state(r.now())).Err(err).Msg("upstream attempt failed")
		if try >= d.retries {
			return res, err
		}
		// Backing off protects the deployment that failed; a retry on
		// another one of the group goes at once (after retry_after).
		next := r.pick(g, d)
		wait := r.minWait
		if next == d {
			wait = r.backoff(try)
			var ue *providers.UpstreamError
			if errors.As(err, &ue) && ue.RetryAfter > 0 {
				if ue.RetryAfter > maxRetryAfter {
					next.health.release()
					return res, err
				}
				wait = max(wait, ue.RetryAfter)
			}
		}
		if err := r.sleep(ctx, wait); err != nil {
			next.health.release()
			return res, err
		}
		d = next
	}
}

// backoff is the wait before retry number try+1: full jitter over an
// exponentially growing cap, at least router_settings.retry_after.
func (r *Router) backoff(try int) time.Duration {
	ceiling := min(baseBackoff<<try, maxBackoff)
	return max(r.minWait, time.Duration(r.jitter(int64(ceiling)+1)))
}

// pick chooses a deployment of g at random among those whose circuit
// admits a request, preferring one other than avoid (the one that just
// failed). When every deployment is cooled down it still picks one: a
// request is better tried than refused.
func (r *Router) pick(g *Group, avoid *Deployment) *Deployment {
	now := r.now()
	n := len(g.Deployments)
	start := int(r.jitter(int64(n)))
	var fallback *Deployment
	for i := 0; i < n; i++ {
		d := g.Deployments[(start+i)%n]
		if d == avoid && n > 1 {
			fallback = d
			continue
		}
		if d.health.acquire(now) {
			return d
		}
	}
	if fallback != nil && fallback.health.acquire(now) {
		return fallback
	}
	if avoid != nil {
		return avoid
	}
	return g.Deployments[start]
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
