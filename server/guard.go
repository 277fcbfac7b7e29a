package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
)

// SetGuardrails swaps in the guardrails of a (re)loaded config; nil runs
// none. Requests in flight keep the ones they started with.
func (s *Server) SetGuardrails(set *guardrail.Set) { s.guardrails.Store(set) }

// guardInput selects the exchange's guardrails (every default_on one,
// those the key's "guardrails" tag names, those the body names in
// "guardrails", a field Lumen takes out, and those the x-lumen-guardrails
// header names) and applies those that check requests to x.body and, for
// the Messages and Responses APIs, to the client's own body, which native
// deployments get.
// A masked match is replaced in both; a blocking one is an error before
// any upstream call, limit or budget.
func (s *Server) guardInput(ctx context.Context, x *exchange, native *[]byte) error {
	named, err := takeGuardrails(&x.body)
	if err == nil && native != nil {
		var more []string
		more, err = takeGuardrails(native)
		named = append(named, more...)
	}
	if err != nil {
		return err
	}
	// Clients that cannot add a body field (Claude Code, Codex) can send
	// the names in a header: x-lumen-guardrails: pii, secrets.
	for _, h := range x.header.Values("x-lumen-guardrails") {
		named = append(named, splitNames(h)...)
	}
	set := s.guardrails.Load()
	if x.key != nil && x.key.Tags[keyGuardrailsTag] != "" {
		// A key's "guardrails" tag runs them on every request it sends.
		// A name no longer configured fails closed.
		for _, n := range splitNames(x.key.Tags[keyGuardrailsTag]) {
			if !set.Has(n) {
				return invalid("", "this API key's guardrails tag names %q, which is not configured; ask your Lumen admin to fix the key", n)
			}
			named = append(named, n)
		}
	}
	if set == nil && len(named) == 0 {
		return nil
	}
	if x.guards, err = set.Select(named); err != nil {
		return err
	}
	if x.contentType != "" { // multipart: only the prompt field is text
		return x.guardFormPrompt()
	}
	var hits []guardrail.Hit
	x.body, hits, err = guardrail.Input(x.guards, x.body)
	x.guardHits = append(x.guardHits, hits...)
	if err == nil && native != nil {
		*native, hits, err = guardrail.Input(x.guards, *native)
		if len(x.guardHits) == 0 { // the same text: count its matches once
			x.guardHits = append(x.guardHits, hits...)
		}
	}
	for _, g := range x.guards {
		if err != nil {
			break
		}
		if g.Moderation == "" || !g.Input() {
			continue
		}
		texts := guardrail.Texts(x.body)
		if len(texts) == 0 {
			continue
		}
		if g.During() {
			x.startCheck(ctx, func(ctx context.Context) ([]guardrail.Hit, error) { return s.moderate(ctx, x.id, texts, g) })
			continue
		}
		var hits []guardrail.Hit
		hits, err = s.moderate(ctx, x.id, texts, g)
		x.guardHits = append(x.guardHits, hits...)
	}
	return err
}

// moderate asks a moderation guardrail's model group about a request's
// texts (after the content filters masked them) and blocks what it flags.
// A moderation model that cannot answer fails the request closed. It
// touches no exchange: a during_call check runs it on a goroutine.
//
// The call counts in the limits.model_groups rpm/tpm window of the group
// it asks (and of a fallback it turns to), as a client's /v1/moderations
// would: the window guards that upstream's capacity, which the guardrail
// uses as much as a client does. A full window sends the check to the
// group's fallbacks; with none that has room it refuses the check, and
// the request, with the window's 429 and Retry-After. Its cost is in the
// ledger, marked lumen:purpose=guardrail, and in the group's budget
// (ownCall).
func (s *Server) moderate(ctx context.Context, requestID string, texts []string, g *guardrail.Guard) ([]guardrail.Hit, error) {
	body, err := json.Marshal(map[string]any{"model": g.Moderation, "input": texts})
	if err != nil {
		return nil, fmt.Errorf("moderation request: %w", err)
	}
	res, err := s.ownCall(ctx, purposeGuardrail, &router.Call{Group: g.Moderation, Op: providers.OpModeration, Body: body, RequestID: requestID})
	var flagged []string
	if err == nil {
		flagged, err = guardrail.Flagged(res.Response.Body, g.Categories)
	}
	if err != nil {
		ae, _ := classify(err)
		switch {
		case ae.Status == statusClientClosed:
			return nil, ae
		case windowRefused(err):
			// admitGroup's: the group's window is full (and its
			// fallbacks', which classify adds), not its upstream down; the
			// client is told so, and when to retry.
			out := *ae
			out.Message = sprintf("guardrail %q could not check the request: %s", g.Name, ae.Message)
			return nil, &out
		}
		return nil, &apiError{Status: http.StatusServiceUnavailable, Type: "api_error", Code: "guardrail_unavailable", Header: ae.Header,
			Message: sprintf("guardrail %q could not check the request (model group %s): %s", g.Name, g.Moderation, ae.Message)}
	}
	if len(flagged) == 0 {
		return nil, nil
	}
	return []guardrail.Hit{{Guard: g.Name, Rule: "moderation", Action: guardrail.Block}},
		&guardrail.BlockedError{Guard: g.Name, What: "moderation categories " + strings.Join(flagged, ", ")}
}

// pendingCheck is a during_call check running beside the upstream call.
// Its goroutine belongs to the exchange: awaitChecks or stopChecks waits
// for it before the exchange ends.
type pendingCheck struct {
	done   chan struct{}
	cancel context.CancelFunc
	hits   []guardrail.Hit
	err    error
}

// startCheck runs check beside the upstream call.
func (x *exchange) startCheck(ctx context.Context, check func(context.Context) ([]guardrail.Hit, error)) {
	ctx, cancel := context.WithCancel(ctx)
	c := &pendingCheck{done: make(chan struct{}), cancel: cancel}
	x.checks = append(x.checks, c)
	go func() {
		defer close(c.done)
		c.hits, c.err = check(ctx)
	}()
}

// awaitChecks waits for the exchange's during_call checks, which must
// pass before any of the answer is sent, and returns the first failure.
// res, the routed upstream call, is released when one fails: its stream
// closed (the upstream call ends), or its usage kept for the ledger (the
// answer was paid for).
func (x *exchange) awaitChecks(res *router.Result) error {
	var failed error
	for _, c := range x.checks {
		<-c.done
		c.cancel()
		x.guardHits = append(x.guardHits, c.hits...)
		if failed == nil {
			failed = c.err
		}
	}
	x.checks = nil
	if failed != nil && res != nil {
		if res.Stream != nil {
			_ = res.Stream.Close()
		}
		if res.Response != nil {
			x.usage = res.Response.Usage
		}
	}
	return failed
}

// stopChecks ends the checks nobody awaited (the request failed before
// its answer) and waits for their goroutines.
func (x *exchange) stopChecks() {
	for _, c := range x.checks {
		c.cancel()
		<-c.done
	}
	x.checks = nil
}

// guardFormPrompt applies the request guardrails to a multipart body's
// prompt field (an image edit's, a transcription's hint); the files are
// not read.
func (x *exchange) guardFormPrompt() error {
	if x.formPrompt == "" {
		return nil
	}
	out, hits, err := guardrail.InputText(x.guards, x.formPrompt, "prompt")
	x.guardHits = append(x.guardHits, hits...)
	if err != nil || out == x.formPrompt {
		return err
	}
	if x.body, err = providers.SetFormValue(x.body, x.contentType, "prompt", out); err != nil {
		return invalid("prompt", "the prompt could not be masked: %v", err)
	}
	return nil
}

// keyGuardrailsTag is the virtual key tag naming guardrails that run on
// all of the key's requests.
const keyGuardrailsTag = "guardrails"

// splitNames reads a list of guardrail names from a header or a key tag:
// "pii secrets", "pii,secrets" or "pii|secrets".
func splitNames(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '|' })
}

// takeGuardrails removes a body's "guardrails" (a list of names, LiteLLM's
// request field) and returns the names.
func takeGuardrails(body *[]byte) ([]string, error) {
	g := gjson.GetBytes(*body, "guardrails")
	if !g.Exists() {
		return nil, nil
	}
	if !g.IsArray() {
		return nil, invalid("guardrails", "guardrails must be a list of guardrail names")
	}
	var names []string
	for _, n := range g.Array() {
		if n.Type != gjson.String || n.Str == "" {
			return nil, invalid("guardrails", "guardrails must be a list of guardrail names")
		}
		names = append(names, n.Str)
	}
	b, err := sjson.DeleteBytes(*body, "guardrails")
	if err != nil {
		return nil, invalid("guardrails", "the guardrails field could not be removed: %v", err)
	}
	*body = b
	return names, nil
}

// guardOutput applies the exchange's post_call guardrails to a JSON
// answer that holds text (chat, completions, a transcription): masked, or
// a *guardrail.BlockedError. Embeddings, images, audio, moderations and
// rerank scores, and text/srt/vtt transcripts, pass as they are.
func (x *exchange) guardOutput(body []byte, contentType string) ([]byte, error) {
	if len(x.guards) == 0 || (contentType != "" && !strings.Contains(contentType, "json")) {
		return body, nil
	}
	switch x.op {
	case providers.OpChat, providers.OpCompletion, providers.OpTranscription:
	default:
		return body, nil
	}
	out, hits, err := guardrail.Output(x.guards, body)
	x.guardHits = append(x.guardHits, hits...)
	return out, err
}

// guardStream wraps a stream in the exchange's post_call guardrails.
func (x *exchange) guardStream(st providers.Stream) providers.Stream {
	if !guardrail.Active(x.guards, true) {
		return st
	}
	gs := guardrail.NewStream(x.guards, st)
	x.guardStreams = append(x.guardStreams, gs.(*guardrail.Stream))
	return gs
}

// sealAnswer is how the response cache stores the exchange's answer: as
// its post_call guardrails let a client see it, and a blocked answer not
// at all, so that no store (a shared Redis too) holds what they mask.
// Every request is still guarded as it is served, from the cache or not.
// nil when no guardrail checks answers.
func (x *exchange) sealAnswer() cache.Seal {
	if !guardrail.Active(x.guards, true) {
		return nil
	}
	guards := x.guards
	return func(body []byte) ([]byte, error) {
		out, _, err := guardrail.Output(guards, body)
		return out, err
	}
}

// guardAnswerScope names the exchange's post_call guardrails for the
// response cache: answers are stored masked by them (sealAnswer), so a
// request whose answers other guardrails check does not share their
// entries. Empty when no guardrail checks answers.
func (x *exchange) guardAnswerScope() string {
	var names []string
	for _, g := range x.guards {
		if g.Output() {
			names = append(names, g.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return " guardrails:" + strconv.Quote(strings.Join(names, ","))
}

// observeGuardrails counts what the exchange's guardrails matched, each
// match, and returns for the log line each guardrail/rule/action that
// matched once (rule names only, never the text) and how many matches
// there were: a prompt with thousands of e-mail addresses logs one entry.
func (s *Server) observeGuardrails(x *exchange) (matched []string, matches int) {
	for _, gs := range x.guardStreams {
		x.guardHits = append(x.guardHits, gs.Hits()...)
	}
	if len(x.guardHits) == 0 {
		return nil, 0
	}
	for _, h := range x.guardHits {
		if s.metrics != nil {
			s.metrics.GuardrailMatched(h.Guard, h.Rule, h.Action.String())
		}
		if e := h.Guard + "/" + h.Rule + "/" + h.Action.String(); !slices.Contains(matched, e) {
			matched = append(matched, e)
		}
	}
	return matched, len(x.guardHits)
}

// listGuardrails serves GET /guardrails/list (LiteLLM's): the configured
// guardrails, when they run and whether by default, so a client knows
// what it may name in "guardrails". The patterns themselves are not
// listed.
func (s *Server) listGuardrails(w http.ResponseWriter, r *http.Request) {
	type item struct {
		Name      string         `json:"guardrail_name"`
		Mode      []string       `json:"mode"`
		DefaultOn bool           `json:"default_on"`
		Info      map[string]any `json:"guardrail_info,omitempty"`
	}
	out := struct {
		Guardrails []item `json:"guardrails"`
	}{Guardrails: []item{}}
	for _, g := range s.guardrails.Load().All() {
		out.Guardrails = append(out.Guardrails, item{Name: g.Name, Mode: g.Modes, DefaultOn: g.DefaultOn, Info: g.Info})
	}
	writeJSON(w, http.StatusOK, out)
}
