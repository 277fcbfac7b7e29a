package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tokens"
)

// ErrGroupWindowFull is wrapped by OwnCall's error when the call's model
// group's limits.model_groups rpm/tpm window was full, and those of the
// fallbacks it could turn to: no upstream was asked.
var ErrGroupWindowFull = errors.New("model group rate limit window full")

// OwnCall makes a call on the gateway's own behalf (the semantic cache's
// prompt embeddings) through the router the server uses now, as ownCall
// does. A refusal for full windows wraps ErrGroupWindowFull, so the
// caller can do without the call (the semantic cache skips its lookup)
// rather than fail the client's request.
func (s *Server) OwnCall(ctx context.Context, call *router.Call) (*router.Result, error) {
	res, err := s.ownCall(ctx, call)
	if windowRefused(err) {
		err = fmt.Errorf("%w: %w", ErrGroupWindowFull, err)
	}
	return res, err
}

// ownCall makes a call on the gateway's own behalf (a moderation
// guardrail's check, the semantic cache's embedding). It counts in the
// limits.model_groups rpm/tpm window of the group it asks, and of a
// fallback it turns to, as a client's call would: the window guards that
// upstream's capacity, which the gateway's calls use as much as a
// client's do. A full window passes the group over to its fallbacks; with
// none admitted the call fails with the window's 429 (windowRefused). It
// is not in the ledger nor charged to a budget: it is the gateway's call,
// not the client's, and the client's request is.
func (s *Server) ownCall(ctx context.Context, call *router.Call) (*router.Result, error) {
	if !s.groupRates {
		return s.Router().Do(ctx, call)
	}
	// The call's own exchange, for admitGroup and settle: only its
	// windows, never a budget or the ledger.
	x := &exchange{id: call.RequestID, op: call.Op, body: call.Body, promptEst: tokens.Prompt(call.Body)}
	call.Admit = func(ctx context.Context, group string) error { return s.admitGroup(ctx, x, group) }
	res, err := s.Router().Do(ctx, call)
	s.settleOwnCall(x, res)
	return res, err
}

// windowRefused reports whether err is admitGroup's refusal: the group's
// window (and its fallbacks') full, no upstream asked.
func windowRefused(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests
}

// settleOwnCall corrects the windows an own call counted in to the tokens
// it used, as finish and settle do for a client's request: the answer's
// usage, else (moderation answers carry none) the prompt estimate, kept
// by the group that answered.
func (s *Server) settleOwnCall(x *exchange, res *router.Result) {
	if res != nil {
		x.deployment, x.attempts = res.Deployment, res.Attempts
		if res.Response != nil {
			x.usage = res.Response.Usage
			if x.usage.PromptTokens == 0 {
				x.usage.PromptTokens = x.promptEst
			}
		}
	}
	s.settle(x)
}
