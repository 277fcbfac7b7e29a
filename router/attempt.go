package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/lumengw/lumen/pricing"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tracing"
)

// outcome is one attempt's result. A successful stream attempt holds the
// stream with its first event already read (first, or eof when the stream
// was empty), the deployment's in-flight count still taken, and the
// cancel of its context; whoever keeps it releases all three.
type outcome struct {
	d      *Deployment
	resp   *providers.Response
	stream providers.Stream
	first  []byte
	eof    bool
	cancel context.CancelFunc
	err    error
}

// groupTry is the state of one group's attempts within a request.
type groupTry struct {
	g     *Group
	tried uint64 // bit i: deployment i has been tried (groups past 64 reuse bits)
	skip  uint64 // bit i: deployment i cannot take this request (prompt too long)
}

func bit(i int) uint64 { return 1 << (uint(i) % 64) }

// tryGroup runs call's attempts on one group: a pick, then retries of
// retryable failures (at once on another healthy deployment, else after
// backoff on the same), each round possibly hedged.
func (r *Router) tryGroup(ctx context.Context, g *Group, rs *reqState) (outcome, error) {
	gt := groupTry{g: g}
	if g.maxInput {
		if err := r.fitPrompt(&gt, rs); err != nil {
			return outcome{}, err
		}
	}
	d, err := r.pick(&gt, rs, nil)
	if err != nil {
		return outcome{}, err
	}
	for try := 0; ; try++ {
		o := r.round(ctx, &gt, d, rs)
		if o.err == nil {
			return o, nil
		}
		err := o.err
		failed := o.d
		if !retryable(ctx, err) {
			return o, err
		}
		if try >= failed.retries {
			return o, err
		}
		next, perr := r.pick(&gt, rs, failed)
		if perr != nil {
			return o, err
		}
		// Backing off protects the deployment that failed; a retry on
		// another one of the group goes at once (after retry_after).
		wait := r.minWait
		if next == failed {
			wait = r.backoff(try)
			var ue *providers.UpstreamError
			if errors.As(err, &ue) && ue.RetryAfter > 0 {
				if ue.RetryAfter > maxRetryAfter {
					next.health.release()
					return o, err
				}
				wait = max(wait, ue.RetryAfter)
			}
		}
		if serr := r.sleep(ctx, wait); serr != nil {
			next.health.release()
			return o, err
		}
		rs.spend(failed, err)
		d = next
	}
}

// spend counts in Result.Abandoned what a failed attempt on d had spent
// upstream (providers.Spent) when the router moves on from it to another
// attempt. The failure that ends the request is not counted here: its
// error carries the usage to the caller, which bills it.
func (rs *reqState) spend(d *Deployment, err error) {
	if u := providers.Spent(err); d != nil && u.Total() > 0 {
		rs.res.Abandoned += pricing.Cost(u, d.Price)
	}
}

// retryable reports whether err may succeed on another attempt: the
// provider says so (connect errors, timeouts, 408/409/429/5xx), or a
// deadline passed that was not the caller's.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	return providers.IsRetryable(err) || errors.Is(err, context.DeadlineExceeded)
}

// fitPrompt marks the deployments whose max_input_tokens the prompt
// exceeds, by Lumen's own estimate, so they are never called. When none
// fits it returns a context-length error (which picks
// context_window_fallbacks).
func (r *Router) fitPrompt(gt *groupTry, rs *reqState) error {
	n, limit, fits := rs.promptTokens(), 0, false
	for i, d := range gt.g.Deployments {
		if m := d.Info.MaxInputTokens; m > 0 && n > m {
			gt.skip |= bit(i)
			limit = max(limit, m)
			continue
		}
		fits = true
	}
	if fits {
		return nil
	}
	return &providers.UpstreamError{Provider: "lumen", Deployment: gt.g.Name, Status: http.StatusBadRequest,
		Type: "invalid_request_error", Code: codeContextLength, Param: "messages",
		Message: fmt.Sprintf("the prompt is about %d tokens, more than model_info.max_input_tokens (%d) of every deployment of %q; shorten it or configure router_settings.context_window_fallbacks", n, limit, gt.g.Name)}
}

// pick chooses and claims the next deployment of gt's group. Preference:
// one not tried yet in this request, then one tried but not the one that
// just failed (failed), then failed itself; among those the strategy
// decides. A deployment whose circuit is open is skipped while any other
// remains; when all are cooled down the group is given up if the request
// has a fallback left, else the one that turns half-open soonest is tried
// anyway (a request is better tried than refused).
func (r *Router) pick(gt *groupTry, rs *reqState, failed *Deployment) (*Deployment, error) {
	g := gt.g
	now := r.now()
	atLimit := false
	for pass := 0; pass < 3; pass++ {
		if d := r.pickPass(gt, rs, failed, pass, now, &atLimit); d != nil {
			return d, nil
		}
	}
	if atLimit {
		return nil, &providers.UpstreamError{Provider: "lumen", Deployment: g.Name, Status: http.StatusTooManyRequests,
			Type: "rate_limit_error", Code: "rate_limit_exceeded", RetryAfter: time.Duration(60-now.Unix()%60) * time.Second,
			Message: fmt.Sprintf("every deployment of %q is at its rpm/tpm limit for this minute; retry after the minute turns", g.Name)}
	}
	// Every deployment that may take the request is cooled down.
	if r.nextGroup(rs, failGeneric) != nil {
		return nil, &providers.UpstreamError{Provider: "lumen", Deployment: g.Name, Status: http.StatusServiceUnavailable,
			Type: "api_error", Code: codeCoolingDown, Retryable: true,
			Message: fmt.Sprintf("every deployment of %q is cooling down after failures", g.Name)}
	}
	var soonest *Deployment
	var at time.Time
	for i, d := range g.Deployments {
		if gt.skip&bit(i) != 0 {
			continue
		}
		if u := d.health.openUntil(now); soonest == nil || u.Before(at) {
			soonest, at = d, u
		}
	}
	if soonest == nil {
		soonest = g.Deployments[0]
	}
	gt.tried |= bit(soonest.index)
	return soonest, nil
}

// codeCoolingDown is the code of pick's error for a group given up, every
// deployment cooled down, for a fallback.
const codeCoolingDown = "cooling_down"

// isCoolingDown reports pick's error for a group given up for a fallback,
// every deployment of it cooled down: none was called.
func isCoolingDown(err error) bool {
	var ue *providers.UpstreamError
	return errors.As(err, &ue) && ue.Provider == "lumen" && ue.Code == codeCoolingDown
}

// pickPass chooses among one preference class (see pick): pass 0 the
// untried deployments, 1 the tried ones other than failed, 2 failed
// itself. Only deployments whose circuit admits a request (and, for
// usage-based-routing, with rpm/tpm left) are candidates. It returns nil
// when the class is empty.
func (r *Router) pickPass(gt *groupTry, rs *reqState, failed *Deployment, pass int, now time.Time, atLimit *bool) *Deployment {
	g := gt.g
	var buf [16]int
	usage := r.strategy == UsageBased
	for range len(g.Deployments) + 1 {
		cands := buf[:0]
		for i, d := range g.Deployments {
			b := bit(i)
			if gt.skip&b != 0 {
				continue
			}
			tried := gt.tried&b != 0
			if pass == 0 && tried || pass == 1 && (!tried || d == failed) || pass == 2 && d != failed {
				continue
			}
			if !d.health.admits(now) {
				continue
			}
			if usage {
				if _, ok := d.headroom(now); !ok {
					*atLimit = true
					continue
				}
			}
			cands = append(cands, i)
		}
		if len(cands) == 0 {
			return nil
		}
		d := r.choose(g, cands, rs.call.Stream, now)
		if d.health.acquire(now) {
			gt.tried |= bit(d.index)
			return d
		}
		// Another request took the half-open probe meanwhile: look again.
	}
	return nil
}

// round makes one attempt on d, hedged by a second deployment of the group
// when hedge_after passes without a first byte. It returns the winning
// outcome, or the last failure when every attempt failed.
func (r *Router) round(ctx context.Context, gt *groupTry, d *Deployment, rs *reqState) outcome {
	rs.res.Attempts++
	rs.res.Deployment = d
	after := gt.g.hedgeAfter()
	if after <= 0 || len(gt.g.Deployments) < 2 {
		return r.attempt(ctx, d, rs, rs.body, rs.res.Attempts, false)
	}
	return r.hedged(ctx, gt, d, rs, after)
}

// hedged runs d's attempt and, if it has produced nothing within the
// group's hedge_after, a second one on the next-best healthy deployment
// not tried yet. The first success wins and the other is cancelled at once
// (its result is drained and released in the background), its prompt
// is counted in Result.Abandoned and the time it ran is folded into its
// latency estimate as a lower bound (see tookAtLeast). If one fails, the
// other is awaited; when both fail the error returned is the last. Both
// attempts count in Result.Attempts.
func (r *Router) hedged(ctx context.Context, gt *groupTry, d *Deployment, rs *reqState, after time.Duration) outcome {
	type running struct {
		d      *Deployment
		start  time.Time
		cancel context.CancelFunc
	}
	results := make(chan outcome, 2)
	var live [2]running
	n := 0
	launch := func(d *Deployment, attempt int) {
		actx, cancel := context.WithCancel(ctx)
		live[n] = running{d, r.now(), cancel}
		n++
		go func() {
			o := r.attempt(actx, d, rs, rs.body, attempt, true)
			o.cancel = cancel
			results <- o
		}()
	}
	launch(d, rs.res.Attempts)
	timer := time.NewTimer(after)
	defer timer.Stop()
	var o outcome
	select {
	case o = <-results:
	case <-timer.C:
		var atLimit bool
		if h := r.pickPass(gt, rs, d, 0, r.now(), &atLimit); h != nil {
			rs.res.Attempts++
			r.stats.hedges.Add(1)
			if r.obs != nil {
				r.obs.Hedge(gt.g.Name)
			}
			r.log.Info().Str("request_id", rs.call.RequestID).Str("model_group", gt.g.Name).
				Str("deployment", d.ID).Str("hedge", h.ID).Dur("after", after).
				Msg("no first byte yet: hedging on another deployment")
			launch(h, rs.res.Attempts)
		}
		o = <-results
	}
	pending := n - 1
	for o.err != nil && pending > 0 {
		rs.spend(o.d, o.err)
		o.release()
		o = <-results
		pending--
	}
	if o.err != nil {
		o.release()
		o.cancel = nil
		return o
	}
	if o.d != d {
		r.stats.hedgeWins.Add(1)
		rs.res.Deployment = o.d
	}
	if pending > 0 {
		now := r.now()
		for _, l := range live[:n] {
			if l.d != o.d {
				l.cancel() // the loser stops now
				rs.res.Abandoned += pricing.Cost(providers.Usage{PromptTokens: rs.promptTokens()}, l.d.Price)
				l.d.tookAtLeast(now.Sub(l.start), rs.call.Stream)
			}
		}
		go drain(results, pending)
	}
	return o
}

// tookAtLeast keeps the books of an attempt stopped after running for ran,
// before it answered: it timed out, or lost a hedge race. It would have
// taken at least ran, and latency-based-routing must learn that (a
// deployment that always loses would otherwise stay unmeasured and, ranked
// as such, be picked first), without a short cut-off pulling a longer
// average down; so must the group's percentile hedge delay, which would
// otherwise see the winners only. An attempt cancelled because the client
// went away says nothing about the deployment and does not get here.
func (d *Deployment) tookAtLeast(ran time.Duration, stream bool) {
	if stream {
		d.ttft.atLeast(ran)
	} else {
		d.latency.atLeast(ran)
	}
	d.group.firstByte.atLeast(ran)
}

// drain releases the attempts that lost a hedge race.
func drain(results <-chan outcome, n int) {
	for ; n > 0; n-- {
		o := <-results
		o.release()
	}
}

// release gives back what a successful outcome holds that nobody will use.
func (o *outcome) release() {
	if o.cancel != nil {
		o.cancel()
	}
	if o.err != nil {
		return
	}
	if o.stream != nil {
		_ = o.stream.Close()
		o.d.inflight.Add(-1)
	}
}

// protect runs a provider call, turning a panic (a bug in a provider's
// code, say on an answer it did not expect) into an error that fails the
// request as Lumen's own (a 500, not retried), its stack logged. A hedged
// attempt runs on a goroutine of its own, where a panic would end the
// process.
func (r *Router) protect(d *Deployment, call func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error().Str("deployment", d.ID).Interface("panic", p).Bytes("stack", debug.Stack()).Msg("provider panicked")
			err = fmt.Errorf("provider %s panicked: %v", d.Name(), p)
		}
	}()
	return call()
}

// attempt makes one call to d with body. For a stream it waits for the first event,
// so a stream that fails before its first byte counts as a failed attempt.
// It keeps d's counters and circuit, and logs a failure.
func (r *Router) attempt(ctx context.Context, d *Deployment, rs *reqState, body []byte, n int, hedged bool) outcome {
	start := r.now()
	d.inflight.Add(1)
	d.usage.addRequest(start)
	req := &providers.Request{Op: rs.call.Op, Model: d.Model, Body: body, ContentType: rs.call.ContentType, Stream: rs.call.Stream,
		Native: rs.call.Native, NativeHeader: rs.call.NativeHeader, Responses: rs.call.Responses}
	if limit := d.outputCap(); limit > 0 {
		req.Body, req.Native, req.Responses = capOutput(req.Body, limit), capOutput(req.Native, limit), capOutput(req.Responses, limit)
	}
	o := outcome{d: d}
	ctx, end := tracing.StartAttempt(ctx, tracing.Attempt{Operation: rs.call.Op.Operation(), Model: d.Model,
		Provider: d.ProviderName, Deployment: d.ID, N: n, Hedged: hedged})
	defer func() { end(o.err) }()
	if rs.call.Stream {
		o.err = r.protect(d, func() (err error) {
			if o.stream, err = d.Provider.DoStream(ctx, req); err == nil {
				o.first, err = o.stream.Recv()
			}
			return err
		})
		if o.err == io.EOF {
			o.first, o.eof, o.err = nil, true, nil
		}
		if o.err != nil && o.stream != nil {
			_ = o.stream.Close()
			o.stream = nil
		}
		if o.err == nil {
			d.ttft.observe(r.now().Sub(start))
			d.group.firstByte.observe(r.now().Sub(start))
			d.health.success(r.now())
			return o // in-flight is released when the stream closes
		}
	} else {
		o.err = r.protect(d, func() (err error) {
			o.resp, err = d.Provider.Do(ctx, req)
			return err
		})
		if o.err == nil {
			d.inflight.Add(-1)
			d.latency.observe(r.now().Sub(start))
			d.group.firstByte.observe(r.now().Sub(start))
			d.usage.addTokens(start, o.resp.Usage.Total())
			d.health.success(r.now())
			return o
		}
	}
	d.inflight.Add(-1)
	r.failed(ctx, d, rs, n, o.err, start, hedged)
	return o
}

// failed keeps the books of a failed attempt: a retryable failure counts
// against the deployment's circuit (and a timeout against its latency);
// anything else, a cancellation included, only releases a half-open
// probe. Retryable failures are logged at warn, others at info.
func (r *Router) failed(ctx context.Context, d *Deployment, rs *reqState, n int, err error, start time.Time, hedged bool) {
	now := r.now()
	if hedged && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		d.health.release()
		return // a hedge loser, or the client went away
	}
	ev := r.log.Info()
	if retryable(ctx, err) {
		d.health.failure(now)
		if errors.Is(err, context.DeadlineExceeded) {
			// It would have taken at least this long: a floor, which
			// must not pull a higher average down (ewma.atLeast).
			d.tookAtLeast(now.Sub(start), rs.call.Stream)
		}
		ev = r.log.Warn()
	} else {
		d.health.release()
	}
	ev.Str("request_id", rs.call.RequestID).Str("model_group", d.Group).Str("deployment", d.ID).
		Int("attempt", n).Str("reason", reason(err)).Str("state", d.health.state(now)).
		Str("error", redact(err.Error())).Msg("upstream attempt failed")
}

// reason is a short, log-friendly cause of a failed attempt.
func reason(err error) string {
	var ue *providers.UpstreamError
	switch {
	case errors.As(err, &ue) && ue.Code == codeContextLength:
		return "context_window"
	case errors.As(err, &ue) && (ue.Code == codeContentPolicy || ue.Code == codeContentFilter):
		return "content_policy"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &ue) && ue.Status != 0:
		return fmt.Sprintf("status_%d", ue.Status)
	case errors.As(err, &ue):
		return "unreachable"
	default:
		return "error"
	}
}
