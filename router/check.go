package router

import (
	"context"
	"sync"
	"time"

	"github.com/lumengw/lumen/internal/loop"
	"github.com/lumengw/lumen/providers"
)

// checkTimeout bounds one active health check when the deployment sets no
// timeout of its own.
const checkTimeout = 30 * time.Second

// Run sends active health checks to every deployment each
// router_settings.health_check_interval until ctx is done, and returns nil
// then. With the interval at zero (the default: every check is a paid
// request) it returns nil at once. The caller owns the goroutine running
// it; after a config reload, cancel the old router's Run.
//
// A check is the cheapest request the deployment's mode allows (chat and
// completion: one token of output; embedding: one word). A success closes
// the deployment's circuit, so a recovered deployment takes traffic
// without waiting for its cooldown; any failure (a bad key included)
// counts against it like a failed request.
func (r *Router) Run(ctx context.Context) error {
	if r.checkEvery <= 0 {
		return nil
	}
	t := time.NewTicker(r.checkEvery)
	defer t.Stop()
	for {
		r.CheckAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// CheckAll checks every deployment once, concurrently, and returns when
// all checks are done. Run calls it; it is exported for `lumen route`-style
// tools and tests.
func (r *Router) CheckAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, name := range r.names {
		for _, d := range r.groups[name].Deployments {
			wg.Go(func() {
				loop.Step(r.log.With().Str("deployment", d.ID).Logger(), "health check", func() { r.check(ctx, d) })
			})
		}
	}
	wg.Wait()
}

// check sends one health check to d and records its outcome. Image,
// speech and transcription models have no cheap request: they are not
// checked (passive health, from real traffic, still applies).
func (r *Router) check(parent context.Context, d *Deployment) {
	switch d.Info.Mode {
	case "image_generation", "audio_speech", "audio_transcription":
		return
	}
	timeout := d.Params.Timeout.D()
	if timeout <= 0 {
		timeout = checkTimeout
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	req := &providers.Request{Op: providers.OpChat, Model: d.Model,
		Body: []byte(`{"messages":[{"role":"user","content":"ping"}],"max_tokens":1}`)}
	switch d.Info.Mode {
	case "embedding":
		req.Op, req.Body = providers.OpEmbedding, []byte(`{"input":"ping"}`)
	case "completion":
		req.Op, req.Body = providers.OpCompletion, []byte(`{"prompt":"ping","max_tokens":1}`)
	case "moderation":
		req.Op, req.Body = providers.OpModeration, []byte(`{"input":"ping"}`)
	case "rerank":
		req.Op, req.Body = providers.OpRerank, []byte(`{"query":"ping","documents":["ping"]}`)
	}
	start := r.now()
	_, err := d.Provider.Do(ctx, req)
	now := r.now()
	if err != nil && parent.Err() != nil {
		return // shutting down: no verdict
	}
	res := &checkResult{at: now}
	if err != nil {
		res.err = redact(err.Error())
		d.health.failure(now)
		r.log.Warn().Str("model_group", d.Group).Str("deployment", d.ID).Str("reason", reason(err)).
			Str("state", d.health.state(now)).Str("error", res.err).Msg("health check failed")
	} else {
		d.latency.observe(now.Sub(start))
		if d.health.state(now) != StateClosed {
			r.log.Info().Str("model_group", d.Group).Str("deployment", d.ID).Msg("health check passed: deployment back in rotation")
		}
		d.health.recovered()
	}
	d.check.Store(res)
}
