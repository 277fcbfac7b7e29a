package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/router/auto"
)

// statusClientClosed is nginx's 499: the client went away before the answer.
const statusClientClosed = 499

// errShuttingDown is the cause with which Run cancels the requests still
// running when shutdown's grace period is over: the gateway cut them off,
// their clients did not leave. classify answers it with a 503 of type
// typeShuttingDown.
var errShuttingDown = errors.New("the gateway is shutting down")

const typeShuttingDown = "gateway_shutting_down"

// ledgerDown is an admin call's ledger error that is the database being
// out of reach (ledger.Unreachable): 503, not 500.
type ledgerDown struct{ err error }

func (e *ledgerDown) Error() string { return e.err.Error() }
func (e *ledgerDown) Unwrap() error { return e.err }

// apiError is an error Lumen itself raises about a request.
type apiError struct {
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
	// Header is set on the response (Retry-After, x-ratelimit-*).
	Header http.Header
}

func (e *apiError) Error() string { return e.Message }

func invalid(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: sprintf(format, args...)}
}

// errorBody is the OpenAI error shape.
type errorBody struct {
	Error errorFields `json:"error"`
}

type errorFields struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// classify is the one place that maps an error to an HTTP status and the
// OpenAI error fields. Every handler's error goes through it.
func classify(err error) (*apiError, bool) {
	var ae *apiError
	var ue *providers.UpstreamError
	var ug *router.UnknownGroupError
	var fr *router.FallbacksRefusedError
	var na *router.NotAllowedError
	var re *router.RequestError
	var be *limits.BudgetError
	var ie *providers.InvalidRequestError
	var gb *guardrail.BlockedError
	var gu *guardrail.UnknownError
	switch {
	case errors.Is(err, errShuttingDown): // before apiError: it may wrap a 499
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeShuttingDown, Code: typeShuttingDown,
			Message: "the gateway shut down before this request finished (its shutdown grace period ran out); retry it"}, false
	case errors.As(err, &fr): // before apiError and the upstream's: it wraps the failure
		ae, internal := classify(fr.Err)
		return fallbacksRefused(ae, fr.Refused), internal
	case errors.As(err, &ae):
		return ae, false
	case errors.As(err, &na):
		return &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: "model_not_allowed", Param: "model",
			Message: sprintf("this API key may not use model %q; ask your Lumen admin to add it to the key's models", na.Group)}, false
	case errors.As(err, &re):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: re.Param, Message: re.Message}, false
	case errors.As(err, &be):
		return budgetError(be), false
	case errors.As(err, &ie):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: ie.Param, Message: ie.Message}, false
	case errors.As(err, &gb):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "content_policy_violation",
			Message: gb.Error()}, false
	case errors.As(err, &gu):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "guardrail_not_found", Param: "guardrails",
			Message: gu.Error()}, false
	case errors.Is(err, auto.ErrNoCandidate):
		return &apiError{Status: http.StatusUnprocessableEntity, Type: "invalid_request_error", Code: "no_auto_candidate", Param: "model",
			Message: err.Error() + "; relax the limit (lumen object, x-lumen-* headers or the route's auto block) or pin a model"}, false
	case errors.As(err, &ug):
		msg := sprintf("The model %q does not exist. Available models: %s.", ug.Model, joinQuoted(ug.Available))
		if len(ug.Available) == 0 {
			msg = sprintf("The model %q does not exist, and no model is available to this caller; ask your Lumen admin which models your key may use.", ug.Model)
		}
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "model", Message: msg}, false
	case errors.Is(err, context.Canceled) && !errors.As(err, &ue):
		return &apiError{Status: statusClientClosed, Type: "client_closed_request", Message: "the client closed the request"}, false
	case errors.As(err, &ue):
		return upstreamError(ue), false
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusGatewayTimeout, Type: "api_error", Code: "upstream_timeout", Message: "the upstream did not answer in time; retry later"}, false
	case errors.Is(err, providers.ErrUnsupported):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "unsupported", Message: err.Error()}, false
	case errors.As(err, new(*ledgerDown)):
		// An admin call's database is down, not Lumen broken: say so, and
		// log the cause as for an internal error.
		return &apiError{Status: http.StatusServiceUnavailable, Type: "api_error", Code: "ledger_unavailable",
			Message: "the ledger database is out of reach; retry once it is back (requests are still served with the keys already loaded)"}, true
	default:
		return &apiError{Status: http.StatusInternalServerError, Type: "api_error", Code: "internal_error",
			Message: "internal error in Lumen; the request id is in x-lumen-request-id and the log"}, true
	}
}

// fallbacksRefused is ae, the failure of the model group a request ended
// on, when fallbacks were passed over: refused by their rpm/tpm window
// (admitGroup) or skipped because their model-group budget is spent
// (holdOtherGroups). The status and type stay the failure's, which is what
// happened to the request (a 429 would blame a limit the client's own
// model is not at, and hide an upstream outage); the message adds why no
// fallback answered, and Retry-After says when the soonest refused window
// (or the upstream, if it said sooner) can take the request again. A
// spent budget's reset does not set it: it may be a month away, and the
// failure can pass long before.
func fallbacksRefused(ae *apiError, refused []error) *apiError {
	out := *ae
	out.Header = ae.Header.Clone()
	retry := -1
	if v, err := strconv.Atoi(ae.Header.Get("Retry-After")); err == nil {
		retry = v
	}
	why := make([]string, 0, len(refused))
	for _, err := range refused {
		r, _ := classify(err)
		why = append(why, r.Message)
		if errors.Is(err, limits.ErrBudgetExceeded) {
			continue
		}
		if v, err := strconv.Atoi(r.Header.Get("Retry-After")); err == nil && (retry < 0 || v < retry) {
			retry = v
		}
	}
	out.Message = ae.Message + "; fallbacks passed over: " + strings.Join(why, "; ")
	if retry >= 0 {
		if out.Header == nil {
			out.Header = http.Header{}
		}
		out.Header.Set("Retry-After", strconv.Itoa(retry))
	}
	return &out
}

// budgetError is OpenAI-shaped with Lumen's type budget_exceeded; the
// message holds the budget, the spend and when it resets, and so do
// x-lumen-budget-* headers for programs.
func budgetError(be *limits.BudgetError) *apiError {
	h := http.Header{}
	h.Set("x-lumen-budget-usd", costHeader(be.Budget))
	h.Set("x-lumen-budget-spent-usd", costHeader(be.Spent))
	if !be.ResetsAt.IsZero() {
		h.Set("x-lumen-budget-reset", be.ResetsAt.UTC().Format(time.RFC3339))
		if secs := int(time.Until(be.ResetsAt).Seconds()) + 1; secs > 0 {
			h.Set("Retry-After", strconv.Itoa(secs))
		}
	}
	return &apiError{Status: http.StatusTooManyRequests, Type: "budget_exceeded", Code: "budget_exceeded", Message: be.Error(), Header: h}
}

func upstreamError(ue *providers.UpstreamError) *apiError {
	where := ue.Deployment
	if where == "" {
		where = ue.Provider
	}
	ae := &apiError{Status: ue.Status, Type: ue.Type, Code: ue.Code, Param: ue.Param}
	switch {
	case ue.Status == 0 && errors.Is(ue.Err, context.DeadlineExceeded):
		ae.Status, ae.Type, ae.Code = http.StatusGatewayTimeout, "api_error", "upstream_timeout"
		ae.Message = sprintf("deployment %s: timed out waiting for the upstream; retry, or raise timeout/stream_timeout", where)
	case ue.Status == 0:
		ae.Status, ae.Type, ae.Code = http.StatusBadGateway, "api_error", "upstream_unreachable"
		ae.Message = sprintf("deployment %s: %s; check api_base and that the server is up", where, ue.Message)
	default:
		ae.Message = sprintf("deployment %s: %s", where, redact(ue.Message))
	}
	if ae.Type == "" {
		ae.Type = providers.ErrorType(ae.Status)
	}
	if ue.RetryAfter > 0 {
		secs := int(ue.RetryAfter.Seconds() + 0.999)
		ae.Header = http.Header{"Retry-After": {strconv.Itoa(secs)}}
	}
	return ae
}

// blame names the deployment that answered in an upstream error raised
// without one: the translators (Anthropic Messages, Responses) find
// faults in an answer without knowing whose it is. Other errors are
// returned as they are.
func (x *exchange) blame(err error) error {
	var ue *providers.UpstreamError
	if x.deployment != nil && errors.As(err, &ue) && ue.Deployment == "" && ue.Provider == "" {
		ue.Provider, ue.Deployment = x.deployment.ProviderName, x.deployment.Name()
	}
	return err
}

// redact keeps key-like tokens upstreams echo from clients and logs.
func redact(s string) string { return providers.Redact(s) }
