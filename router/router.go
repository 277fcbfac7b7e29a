// Package router turns a model group name into a call to one of its
// deployments: selection, and (growing) retries, cooldowns and fallbacks.
package router

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"

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
}

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
}

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
	r := &Router{groups: map[string]*Group{}, auto: map[string]*config.AutoRoute{}}
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
			Provider: prov, Params: *p, Info: m.ModelInfo}
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
func (r *Router) Do(ctx context.Context, call *Call) (*Result, error) {
	g, ok := r.groups[call.Group]
	if !ok {
		return nil, &UnknownGroupError{Model: call.Group, Available: r.names}
	}
	d := g.Deployments[rand.IntN(len(g.Deployments))]
	req := &providers.Request{Op: call.Op, Model: d.Model, Body: call.Body, Stream: call.Stream}
	res := &Result{Deployment: d, Attempts: 1, Group: g.Name, Strategy: "simple-shuffle"}
	var err error
	if call.Stream {
		res.Stream, err = d.Provider.DoStream(ctx, req)
	} else {
		res.Response, err = d.Provider.Do(ctx, req)
	}
	if err != nil {
		return res, err
	}
	return res, nil
}
