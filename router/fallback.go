package router

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/providers"
)

// failKind is why a model group gave up, which decides the fallback list.
type failKind uint8

const (
	failGeneric       failKind = iota // retries exhausted, dead, rate limited, auth…
	failContextWindow                 // the prompt is too long for the group
	failContentPolicy                 // the upstream refused on content policy
	numKinds

	// failFinal ends the call: the client went away, or the request itself
	// is wrong (a fallback would fail the same way and cost money).
	failFinal failKind = 255
)

func (k failKind) String() string {
	switch k {
	case failContextWindow:
		return "context_window"
	case failContentPolicy:
		return "content_policy"
	case failFinal:
		return "final"
	default:
		return "failed"
	}
}

// Codes upstreams use for the two refusals that have their own fallbacks.
const (
	codeContextLength = "context_length_exceeded"
	codeContentPolicy = "content_policy_violation"
	codeContentFilter = "content_filter"
)

// failureKind classifies the error a group ended with.
func failureKind(ctx context.Context, err error) failKind {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return failFinal
	}
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) {
		if errors.Is(err, context.DeadlineExceeded) {
			return failGeneric
		}
		return failFinal // ErrUnsupported and other local errors
	}
	switch {
	case ue.Code == codeContextLength:
		return failContextWindow
	case ue.Code == codeContentPolicy || ue.Code == codeContentFilter:
		return failContentPolicy
	case ue.Status == http.StatusBadRequest || ue.Status == http.StatusRequestEntityTooLarge ||
		ue.Status == http.StatusUnprocessableEntity:
		return failFinal
	default:
		return failGeneric
	}
}

// flatten merges LiteLLM's list-of-maps fallback shape into one map.
func flatten(list []map[string][]string) map[string][]string {
	out := map[string][]string{}
	for _, m := range list {
		for from, to := range m {
			out[from] = append(out[from], to...)
		}
	}
	return out
}

// nextGroup is the first group after a failure of this kind that the
// request has not tried, exists and the caller may use.
//
// The request's own list ("models", then "fallbacks") replaces the
// config's for every kind of failure. Otherwise the lists are keyed by the
// group the client asked for (as LiteLLM does: a fallback's own fallbacks
// are not followed): context_window_fallbacks for a prompt too long,
// content_policy_fallbacks for a policy refusal, each falling through to
// fallbacks when it names nothing for the group.
func (r *Router) nextGroup(rs *reqState, kind failKind) *Group {
	if kind == failFinal {
		return nil
	}
	lists := [2][]string{rs.chain}
	if rs.chain == nil {
		lists[0] = r.fallbacks[kind][rs.call.Group]
		if kind != failGeneric {
			lists[1] = r.fallbacks[failGeneric][rs.call.Group]
		}
	}
	for _, list := range lists {
		for _, name := range list {
			if rs.triedGroup(name) {
				continue
			}
			g, ok := r.groups[name]
			if !ok {
				continue
			}
			if rs.call.Allow != nil && !rs.call.Allow(name) {
				r.log.Warn().Str("request_id", rs.call.RequestID).Str("fallback", name).
					Msg("skipping a fallback model group this key may not use")
				rs.groups = append(rs.groups, name) // warn once
				continue
			}
			if err := rs.skip(name); err != nil {
				r.log.Warn().Str("request_id", rs.call.RequestID).Str("fallback", name).Str("reason", redact(err.Error())).
					Msg("skipping a fallback model group whose budget is spent")
				rs.groups = append(rs.groups, name)
				rs.refused = append(rs.refused, err) // once: name counts as tried now
				continue
			}
			return g
		}
	}
	return nil
}

// fallbackTo is the group to fall back to after a failure of this kind:
// the first nextGroup gives that Call.Admit admits. A group Admit refuses
// (its rate window is full) is passed over, as one Skip names is. Unlike
// nextGroup, which only looks, it is called once the router turns to the
// group, since Admit counts the call there. The refusals are kept in
// rs.refused for the error the call may end with (FallbacksRefusedError).
func (r *Router) fallbackTo(ctx context.Context, rs *reqState, kind failKind) *Group {
	for {
		g := r.nextGroup(rs, kind)
		if g == nil || rs.call.Admit == nil {
			return g
		}
		err := rs.call.Admit(ctx, g.Name)
		if err == nil {
			return g
		}
		r.log.Warn().Str("request_id", rs.call.RequestID).Str("fallback", g.Name).Str("reason", redact(err.Error())).
			Msg("skipping a fallback model group that refused the request")
		rs.groups = append(rs.groups, g.Name) // not asked again
		rs.refused = append(rs.refused, err)
	}
}

// skip is Call.Skip's reason to pass over group, nil when there is none.
func (rs *reqState) skip(group string) error {
	if rs.call.Skip == nil {
		return nil
	}
	return rs.call.Skip(group)
}

// FallbacksRefusedError is the error a call ends with when its model
// group failed and some fallback was passed over: refused by Call.Admit
// (its rate window is full) or named by Call.Skip (its budget is spent).
// Err is the failure of the last group tried, which it unwraps to, and
// Refused holds the reasons, Admit's errors and Skip's, in the order the
// fallbacks came up. The caller can then say why no fallback answered
// and when one could.
type FallbacksRefusedError struct {
	Err     error
	Refused []error
}

func (e *FallbacksRefusedError) Error() string {
	return fmt.Sprintf("%v (%d fallback model groups refused the request)", e.Err, len(e.Refused))
}

func (e *FallbacksRefusedError) Unwrap() error { return e.Err }

// withRefusals is err, as a *FallbacksRefusedError when Call.Admit or
// Call.Skip passed over some fallback of rs.
func withRefusals(rs *reqState, err error) error {
	if len(rs.refused) == 0 || err == nil {
		return err
	}
	return &FallbacksRefusedError{Err: err, Refused: rs.refused}
}

// readLists reads the request's OpenRouter-style "models" (tried in order
// after "model") and "fallbacks" lists, and removes both from the body sent
// upstream. They are always removed: the names are Lumen model groups,
// meaningless upstream, OpenAI rejects unknown parameters ("Unrecognized
// request argument supplied"), and OpenRouter would start fallbacks of its
// own.
func (r *Router) readLists(rs *reqState) error {
	body := rs.body
	for _, field := range [...]string{"models", "fallbacks"} {
		v := gjson.GetBytes(body, field)
		if !v.Exists() {
			continue
		}
		if !v.IsArray() && v.Type != gjson.Null {
			return &RequestError{Param: field, Message: "must be an array of model names"}
		}
		var bad error
		v.ForEach(func(_, name gjson.Result) bool {
			if name.Type != gjson.String || name.Str == "" {
				bad = &RequestError{Param: field, Message: "must be an array of model names"}
				return false
			}
			if _, ok := r.groups[name.Str]; !ok {
				bad = &UnknownGroupError{Model: name.Str, Available: r.available(rs.call.Allow)}
				return false
			}
			if rs.call.Allow != nil && !rs.call.Allow(name.Str) {
				// A list the caller wrote may name only groups its key may
				// use (config fallbacks it may not use are skipped instead).
				bad = &NotAllowedError{Group: name.Str}
				return false
			}
			if name.Str != rs.call.Group && !contains(rs.chain, name.Str) {
				rs.chain = append(rs.chain, name.Str)
			}
			return true
		})
		if bad != nil {
			return bad
		}
		var err error
		if body, err = sjson.DeleteBytes(body, field); err != nil {
			return fmt.Errorf("removing %s from the request: %w", field, err)
		}
	}
	if rs.chain == nil && len(body) != len(rs.body) {
		rs.chain = []string{} // the request said: no fallbacks
	}
	rs.body = body
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// redact keeps key-like tokens upstreams echo out of log lines.
func redact(s string) string { return providers.Redact(s) }

// Reachable returns the model groups other than model itself that a call
// for model may be answered by: a group's fallbacks of every kind (its
// config lists; the request's own lists are the caller's to add), an auto
// route's candidates. An alias is resolved first.
func (r *Router) Reachable(model string) []string {
	model = r.Resolve(model)
	var out []string
	add := func(name string) {
		if name != model && !slices.Contains(out, name) {
			if _, ok := r.groups[name]; ok {
				out = append(out, name)
			}
		}
	}
	if _, plain := r.groups[model]; !plain {
		if r.autoRT != nil {
			if route, _, ok := r.autoRoute(model); ok {
				groups, _ := r.autoGroups(model, route)
				for _, name := range groups {
					add(name)
				}
			}
		}
		return out
	}
	for _, byGroup := range r.fallbacks {
		for _, name := range byGroup[model] {
			add(name)
		}
	}
	return out
}
