package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tokens"
)

// ErrGroupWindowFull is wrapped by OwnCall's error when the call's model
// group's limits.model_groups rpm/tpm window was full, and those of the
// fallbacks it could turn to: no upstream was asked.
var ErrGroupWindowFull = errors.New("model group rate limit window full")

// The purposes of the gateway's own calls: what made the call, in its
// ledger row's tag (PurposeTag).
const (
	// PurposeSemanticCache is the semantic cache's prompt embeddings.
	PurposeSemanticCache = "semantic_cache"
	// purposeGuardrail is a moderation guardrail's check.
	purposeGuardrail = "guardrail"
)

// PurposeTag is the tag an own call's ledger row carries
// ("lumen:purpose=semantic_cache"), with no key id: reports tell the
// gateway's calls from the clients' by it (lumen spend --by tag).
func PurposeTag(purpose string) string { return reservedTagPrefix + "purpose=" + purpose }

// reservedTagPrefix starts the ledger tags only Lumen writes.
const reservedTagPrefix = "lumen:"

// OwnCall makes a call on the gateway's own behalf (the semantic cache's
// prompt embeddings) for purpose through the router the server uses now,
// as ownCall does. A refusal for full windows wraps ErrGroupWindowFull,
// so the caller can do without the call (the semantic cache skips its
// lookup) rather than fail the client's request.
func (s *Server) OwnCall(ctx context.Context, purpose string, call *router.Call) (*router.Result, error) {
	res, err := s.ownCall(ctx, purpose, call)
	if windowRefused(err) {
		err = fmt.Errorf("%w: %w", ErrGroupWindowFull, err)
	}
	return res, err
}

// ownCall makes a call on the gateway's own behalf (a moderation
// guardrail's check, the semantic cache's embedding) for purpose. It
// counts in the limits.model_groups rpm/tpm window of the group it asks,
// and of a fallback it turns to, as a client's call would: the window
// guards that upstream's capacity, which the gateway's calls use as much
// as a client's do. A full window passes the group over to its fallbacks;
// with none admitted the call fails with the window's 429
// (windowRefused).
//
// Its request id is the client request's (call.RequestID, else the one in
// ctx) with the call's kind after a slash ("<id>/embedding"), so that its
// log lines and ledger row tie to the request that caused it. Once an
// upstream was asked, the call is priced, charged to the budgets of the
// gateway's own (finishOwnCall) and written to the ledger like a client's
// request.
func (s *Server) ownCall(ctx context.Context, purpose string, call *router.Call) (*router.Result, error) {
	parent := call.RequestID
	if parent == "" {
		parent = requestIDFrom(ctx)
	}
	call.RequestID = ownRequestID(parent, call.Op)
	x := &exchange{ctx: ctx, id: call.RequestID, start: time.Now(), op: call.Op, body: call.Body, group: call.Group,
		tags: []string{PurposeTag(purpose)}, promptEst: tokens.Prompt(call.Body)}
	x.windows.scopes = x.windows.buf[:0]
	x.reservations = x.resBuf[:0]
	if s.groupRates {
		call.Admit = func(ctx context.Context, group string) error { return s.admitGroup(ctx, x, group) }
	}
	res, err := s.Router().Do(ctx, call)
	s.finishOwnCall(x, res, err)
	return res, err
}

// ownRequestID is the request id of an own call of kind op made for the
// client request parent: "<parent>/embedding", "<parent>/moderation".
func ownRequestID(parent string, op providers.Op) string {
	kind := op.String()
	switch op {
	case providers.OpEmbedding:
		kind = "embedding"
	case providers.OpModeration:
		kind = "moderation"
	}
	if parent == "" {
		return "lumen/" + kind
	}
	return parent + "/" + kind
}

// windowRefused reports whether err is admitGroup's refusal: the group's
// window (and its fallbacks') full, no upstream asked.
func windowRefused(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests
}

// finishOwnCall settles an own call as finish does a client's request.
// The windows it counted in are corrected to the tokens it used: the
// answer's usage, else (moderation answers carry none) the prompt
// estimate, kept by the group that answered. When an upstream was asked
// it is priced with the deployment's prices, its cost charged to the
// limits.model_groups budget of the group that answered and to the
// gateway's (limits.global), never to a key's, a tag's or a user's (it is
// no client's call), and its ledger row queued: no key id, the purpose
// tag, no bodies (they are the client's texts, which logging_only
// guardrails would have masked). A call refused before any upstream was
// asked cost nothing and has no row. Like finish, it does no I/O.
func (s *Server) finishOwnCall(x *exchange, res *router.Result, err error) {
	if res != nil {
		x.deployment, x.attempts, x.abandoned = res.Deployment, res.Attempts, res.Abandoned
		if res.Response != nil {
			x.usage = res.Response.Usage
			if x.usage.PromptTokens == 0 {
				x.usage.PromptTokens = x.promptEst
			}
		}
	}
	if err != nil {
		x.spent(err)
		ae, _ := classify(err)
		x.fail(ae)
	} else {
		x.status = http.StatusOK
	}
	s.price(x)
	s.holdOwnCost(x)
	s.settle(x)
	if s.ledger != nil && x.attempts > 0 {
		rec := s.record(x, time.Since(x.start))
		rec.Request, rec.Response = nil, nil
		s.ledger.Record(rec)
	}
}

// holdOwnCost makes the reservations settle charges an own call's cost
// to: the answering group's budget and the gateway's, when limits sets
// them. They are made after the call, at no limit: the cost is counted
// (as the ledger rows they reload from on a restart count it) but a spent
// budget does not refuse the gateway's own call, which would fail or
// degrade a client's request for a group it did not ask for.
func (s *Server) holdOwnCost(x *exchange) {
	if s.budgets == nil || x.cost <= 0 || x.deployment == nil || x.attempts == 0 {
		return
	}
	lim := s.cfg.Limits
	hold := func(account string, b limits.Budget) {
		b.LimitUSD = 0 // charged, never refused
		res, err := s.budgets.Reserve(context.Background(), account, b, 0)
		if err != nil {
			s.limitsUnavailable(x, "budget", err, "charging the gateway's own call to a budget")
			return
		}
		res.At = x.start // charged to the period its ledger row is in
		x.reservations = append(x.reservations, res)
	}
	if l, ok := lim.ModelGroups[x.deployment.Group]; ok && l.BudgetUSD > 0 {
		hold(limits.GroupAccount(x.deployment.Group), l.Budget())
	}
	if lim.Global.BudgetUSD > 0 {
		hold(limits.GlobalAccount, lim.Global.Budget())
	}
}
