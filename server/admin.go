package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/ui"
)

// adminRoutes registers the admin API (/admin/...), master key only, and
// the dashboard (/ui). The dashboard's files are public: they hold no data,
// and every call they make goes through the admin API with the master key
// the user types in.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	a := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.admin(h)) }
	a("GET /admin/keys", s.listKeys)
	a("POST /admin/keys", s.createKey)
	a("GET /admin/keys/{ref}", s.keyInfo)
	a("PATCH /admin/keys/{ref}", s.updateKey)
	a("POST /admin/keys/{ref}/revoke", s.revokeKey)
	a("DELETE /admin/keys/{ref}", s.revokeKey)
	a("POST /admin/keys/{ref}/rotate", s.rotateKey)
	a("GET /admin/spend", s.spend)
	a("GET /admin/requests", s.requests)
	a("GET /admin/totals", s.totals)
	a("GET /admin/budgets", s.budgetList)
	// Any other /admin path: the same auth first, so that probing for
	// endpoints without the master key learns nothing.
	a("/admin/", s.notFound)

	mux.Handle("GET /ui/", http.StripPrefix("/ui", ui.Handler()))
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	})
}

// admin requires the master key, whatever virtual keys exist. Without a
// master key the admin API is off: it answers 403.
func (s *Server) admin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hasMaster {
			s.writeError(w, r, &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: "admin_disabled",
				Message: "the admin API needs general_settings.master_key in the config"})
			return
		}
		key := presentedKey(r)
		h := sha256.Sum256([]byte(key))
		if key == "" || subtle.ConstantTimeCompare(h[:], s.master[:]) != 1 {
			s.writeError(w, r, &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "invalid_api_key",
				Message: "the admin API takes the master key only"})
			return
		}
		// Admin answers carry spend and key metadata: never cache them.
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// maxAdminBody bounds an admin request body; key settings are small.
const maxAdminBody = 64 << 10

// errKeysOff and errReportsOff answer admin calls for stores Lumen was
// started without.
var (
	errKeysOff = &apiError{Status: http.StatusNotImplemented, Type: "api_error", Code: "keys_disabled",
		Message: "virtual keys are off: this Lumen was started without a key store (ledger)"}
	errReportsOff = &apiError{Status: http.StatusNotImplemented, Type: "api_error", Code: "reports_disabled",
		Message: "reports are off: this Lumen was started without a ledger"}
)

// keyError maps the Keyring's errors to admin answers.
func keyError(err error) error {
	switch {
	case ledger.Unreachable(err):
		return &ledgerDown{err}
	case errors.Is(err, ledger.ErrKeyNotFound):
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "key_not_found", Message: err.Error()}
	case errors.Is(err, ledger.ErrNameTaken):
		return &apiError{Status: http.StatusConflict, Type: "invalid_request_error", Code: "name_taken", Param: "name", Message: err.Error()}
	case errors.Is(err, ledger.ErrRevokedKey):
		return &apiError{Status: http.StatusConflict, Type: "invalid_request_error", Code: "key_revoked", Message: err.Error()}
	}
	return err
}

// budgetStatuser is the optional BudgetStore capability the admin API reads
// live spend from (limits.MemoryBudgets).
type budgetStatuser interface {
	Status(keyID string, p limits.Period) limits.Status
}

// keyView is a key as the admin API shows it: its record, its live budget
// position and, only in the answer that created or rotated it, the secret.
type keyView struct {
	// Secret is the key itself, set only by create and rotate.
	Secret string `json:"key,omitempty"`
	*ledger.Key
	Usage keyUsage `json:"usage"`
}

// keyUsage is a key's spend in its current budget period.
type keyUsage struct {
	Period string `json:"period"`
	// SpentUSD is the spend in the current period; ReservedUSD is held by
	// requests in flight. Live figures when the budget store has them,
	// otherwise the spend last persisted.
	SpentUSD    float64 `json:"spent_usd"`
	ReservedUSD float64 `json:"reserved_usd"`
	// RemainingUSD is what is left of the budget; absent without a budget.
	RemainingUSD *float64  `json:"remaining_usd,omitempty"`
	PeriodStart  time.Time `json:"period_start,omitzero"`
	ResetsAt     time.Time `json:"resets_at,omitzero"`
	Live         bool      `json:"live"`
}

// budgetView is one budget of config's limits and its position.
type budgetView struct {
	// Scope is "global", "model_group" or "tag"; Name the group or tag.
	Scope     string  `json:"scope"`
	Name      string  `json:"name,omitempty"`
	BudgetUSD float64 `json:"budget_usd"`
	keyUsage
}

// budgetList answers GET /admin/budgets: the budgets of limits (the
// gateway's, each model group's, each key tag's) with their live spend;
// the keys' own are in GET /admin/keys.
func (s *Server) budgetList(w http.ResponseWriter, r *http.Request) {
	out := []budgetView{}
	add := func(scope, name, account string, l config.Limit) {
		if l.BudgetUSD > 0 {
			out = append(out, budgetView{Scope: scope, Name: name, BudgetUSD: l.BudgetUSD, keyUsage: s.usage(account, l.Budget(), keyUsage{})})
		}
	}
	lim := s.cfg.Limits
	add("global", "", limits.GlobalAccount, lim.Global)
	for _, g := range slices.Sorted(maps.Keys(lim.ModelGroups)) {
		add("model_group", g, limits.GroupAccount(g), lim.ModelGroups[g])
	}
	for _, tag := range slices.Sorted(maps.Keys(lim.Tags)) {
		add("tag", tag, limits.TagAccount(tag), lim.Tags[tag])
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

func (s *Server) view(k *ledger.Key) keyView {
	return keyView{Key: k, Usage: s.usage(k.ID, k.Budget(), keyUsage{SpentUSD: k.SpendUSD, PeriodStart: k.SpendPeriodStart})}
}

// usage is account's position under budget b: live when the budget store
// can say (persisted, the figures of u otherwise), and what is left when
// b has a cap.
func (s *Server) usage(account string, b limits.Budget, u keyUsage) keyUsage {
	p := b.Period
	if p == "" {
		p = limits.Total
	}
	u.Period = string(p)
	if st, ok := s.budgets.(budgetStatuser); ok {
		ls := st.Status(account, p)
		u.SpentUSD, u.ReservedUSD, u.PeriodStart, u.ResetsAt, u.Live = ls.SpentUSD, ls.ReservedUSD, ls.PeriodStart, ls.ResetsAt, true
	}
	if b.LimitUSD > 0 {
		left := math.Max(b.LimitUSD-u.SpentUSD-u.ReservedUSD, 0)
		u.RemainingUSD = &left
	}
	return u
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		s.writeError(w, r, errKeysOff)
		return
	}
	keys := s.keys.List()
	out := make([]keyView, len(keys))
	for i, k := range keys {
		out[i] = s.view(k)
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

func (s *Server) keyInfo(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		s.writeError(w, r, errKeysOff)
		return
	}
	k, err := s.keys.Get(r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, keyError(err))
		return
	}
	writeJSON(w, http.StatusOK, s.view(k))
}

// keyRequest is the body of POST /admin/keys and PATCH /admin/keys/{ref}.
// On PATCH, absent fields stay as they are.
type keyRequest struct {
	Name         *string            `json:"name"`
	BudgetUSD    *float64           `json:"budget_usd"`
	BudgetPeriod *string            `json:"budget_period"`
	RPM          *int               `json:"rpm"`
	TPM          *int               `json:"tpm"`
	Models       *[]string          `json:"models"`
	Tags         *map[string]string `json:"tags"`
	// ExpiresIn is a duration from now ("30d", "12h"); ExpiresAt an
	// RFC 3339 time. On PATCH, "" or "never" (either field) clears the
	// expiry.
	ExpiresIn *string `json:"expires_in"`
	ExpiresAt *string `json:"expires_at"`
}

func decodeKeyRequest(r *http.Request) (keyRequest, error) {
	var kr keyRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kr); err != nil {
		if errors.Is(err, io.EOF) {
			return kr, invalid("", "the request body is empty: send the key's settings as a JSON object")
		}
		return kr, invalid("", "invalid JSON body: %v", err)
	}
	// The Keyring validates too; checking here names the field and keeps
	// a client's mistake from reading as a server failure.
	switch {
	case kr.Name != nil && strings.TrimSpace(*kr.Name) == "":
		return kr, invalid("name", "name must not be empty")
	case kr.Name != nil && ledger.IDShaped(*kr.Name):
		return kr, invalid("name", "name %q has the form of a key id (key_ and 16 hex digits); pick another", strings.TrimSpace(*kr.Name))
	case kr.BudgetUSD != nil && (*kr.BudgetUSD < 0 || math.IsNaN(*kr.BudgetUSD) || math.IsInf(*kr.BudgetUSD, 0)):
		return kr, invalid("budget_usd", "budget_usd must be a non-negative amount of USD, got %v", *kr.BudgetUSD)
	case kr.RPM != nil && *kr.RPM < 0:
		return kr, invalid("rpm", "rpm must not be negative, got %d", *kr.RPM)
	case kr.TPM != nil && *kr.TPM < 0:
		return kr, invalid("tpm", "tpm must not be negative, got %d", *kr.TPM)
	}
	if kr.BudgetPeriod != nil && *kr.BudgetPeriod != "" {
		if _, err := limits.ParsePeriod(*kr.BudgetPeriod); err != nil {
			return kr, invalid("budget_period", "%v", err)
		}
	}
	return kr, nil
}

// expiry returns the expiry kr asks for: set is false when it names none;
// a zero time means never.
func (kr *keyRequest) expiry(now time.Time) (at time.Time, set bool, err error) {
	switch {
	case kr.ExpiresIn != nil && kr.ExpiresAt != nil:
		return time.Time{}, false, invalid("expires_in", "send expires_in or expires_at, not both")
	case kr.ExpiresIn != nil:
		if v := strings.TrimSpace(*kr.ExpiresIn); v == "" || v == "never" {
			return time.Time{}, true, nil
		}
		d, err := parseAge(*kr.ExpiresIn)
		if err != nil || d <= 0 {
			return time.Time{}, false, invalid("expires_in", "expires_in must be a positive duration like \"30d\" or \"12h\", got %q", *kr.ExpiresIn)
		}
		return now.Add(d).UTC(), true, nil
	case kr.ExpiresAt != nil:
		if v := strings.TrimSpace(*kr.ExpiresAt); v == "" || v == "never" {
			return time.Time{}, true, nil
		}
		t, err := time.Parse(time.RFC3339, *kr.ExpiresAt)
		if err != nil {
			return time.Time{}, false, invalid("expires_at", "expires_at must be an RFC 3339 time, got %q", *kr.ExpiresAt)
		}
		return t.UTC(), true, nil
	}
	return time.Time{}, false, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		s.writeError(w, r, errKeysOff)
		return
	}
	kr, err := decodeKeyRequest(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if strings.TrimSpace(deref(kr.Name)) == "" {
		s.writeError(w, r, invalid("name", "name is required: every key needs a unique name"))
		return
	}
	exp, _, err := kr.expiry(time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	raw, k, err := s.keys.Create(r.Context(), ledger.KeySpec{
		Name: deref(kr.Name), BudgetUSD: deref(kr.BudgetUSD), BudgetPeriod: deref(kr.BudgetPeriod),
		RPM: deref(kr.RPM), TPM: deref(kr.TPM), Models: deref(kr.Models), Tags: deref(kr.Tags), ExpiresAt: exp,
	})
	if err != nil {
		s.writeError(w, r, keyError(err))
		return
	}
	s.auditKey(audit.ActionKeyCreated, k, describeKey(k))
	s.log.Info().Str("key_id", k.ID).Str("key_name", k.Name).Msg("admin: key created")
	v := s.view(k)
	v.Secret = raw
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		s.writeError(w, r, errKeysOff)
		return
	}
	kr, err := decodeKeyRequest(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	old, err := s.keys.Get(r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, keyError(err))
		return
	}
	u := ledger.KeyUpdate{Name: kr.Name, BudgetUSD: kr.BudgetUSD, BudgetPeriod: kr.BudgetPeriod,
		RPM: kr.RPM, TPM: kr.TPM, Models: kr.Models, Tags: kr.Tags}
	exp, set, err := kr.expiry(time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if set {
		u.ExpiresAt = &exp
	}
	// Update by id: the name may be what this very request changes.
	k, err := s.keys.Update(r.Context(), old.ID, u)
	if err != nil {
		s.writeError(w, r, keyError(err))
		return
	}
	s.auditKey(audit.ActionKeyUpdated, k, diffKeys(old, k))
	if old.BudgetUSD != k.BudgetUSD || old.BudgetPeriod != k.BudgetPeriod {
		s.auditKey(audit.ActionBudgetChanged, k, fmt.Sprintf("budget %s -> %s", budgetString(old), budgetString(k)))
	}
	s.log.Info().Str("key_id", k.ID).Str("key_name", k.Name).Msg("admin: key updated")
	writeJSON(w, http.StatusOK, s.view(k))
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		s.writeError(w, r, errKeysOff)
		return
	}
	k, err := s.keys.Revoke(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, keyError(err))
		return
	}
	s.auditKey(audit.ActionKeyRevoked, k, "revoked "+k.Name)
	s.log.Info().Str("key_id", k.ID).Str("key_name", k.Name).Msg("admin: key revoked")
	writeJSON(w, http.StatusOK, s.view(k))
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		s.writeError(w, r, errKeysOff)
		return
	}
	raw, k, err := s.keys.Rotate(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, keyError(err))
		return
	}
	s.auditKey(audit.ActionKeyRotated, k, "rotated "+k.Name+", new prefix "+k.Prefix)
	s.log.Info().Str("key_id", k.ID).Str("key_name", k.Name).Msg("admin: key rotated")
	v := s.view(k)
	v.Secret = raw
	writeJSON(w, http.StatusOK, v)
}

// auditKey records an admin change to k. Detail never holds the secret.
func (s *Server) auditKey(action audit.Action, k *ledger.Key, detail string) {
	if s.audit == nil {
		return
	}
	s.audit.Append(audit.Entry{Actor: audit.ActorAdmin, Action: action, Target: k.ID, Detail: detail})
}

func budgetString(k *ledger.Key) string {
	if k.BudgetUSD <= 0 {
		return "none"
	}
	p := k.BudgetPeriod
	if p == "" {
		p = string(limits.Total)
	}
	return strconv.FormatFloat(k.BudgetUSD, 'f', -1, 64) + " USD " + p
}

func describeKey(k *ledger.Key) string {
	parts := []string{"name " + k.Name, "budget " + budgetString(k)}
	if k.RPM > 0 {
		parts = append(parts, "rpm "+strconv.Itoa(k.RPM))
	}
	if k.TPM > 0 {
		parts = append(parts, "tpm "+strconv.Itoa(k.TPM))
	}
	if len(k.Models) > 0 {
		parts = append(parts, "models "+strings.Join(k.Models, ","))
	}
	if !k.ExpiresAt.IsZero() {
		parts = append(parts, "expires "+k.ExpiresAt.Format(time.RFC3339))
	}
	return strings.Join(parts, "; ")
}

// diffKeys says what an update changed ("rpm 0 -> 60; name a -> b").
func diffKeys(a, b *ledger.Key) string {
	var d []string
	add := func(field, from, to string) {
		if from != to {
			d = append(d, field+" "+from+" -> "+to)
		}
	}
	add("name", a.Name, b.Name)
	add("budget", budgetString(a), budgetString(b))
	add("rpm", strconv.Itoa(a.RPM), strconv.Itoa(b.RPM))
	add("tpm", strconv.Itoa(a.TPM), strconv.Itoa(b.TPM))
	add("models", strings.Join(a.Models, ",")+"", strings.Join(b.Models, ","))
	add("tags", fmt.Sprint(a.Tags), fmt.Sprint(b.Tags))
	add("expires", a.ExpiresAt.Format(time.RFC3339), b.ExpiresAt.Format(time.RFC3339))
	if len(d) == 0 {
		return "no change"
	}
	return strings.Join(d, "; ")
}

// parseAge parses "30d", "2w", "90m", "24h" or any Go duration.
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || f > 1e5 {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			return time.Duration(f * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

// parseWhen parses a report bound: empty is zero (unbounded); an age
// ("7d", "24h") is that long before now; else an RFC 3339 time or a date,
// midnight in loc (ledger.ParseTime, as lumen spend reads one).
func parseWhen(param, v string, now time.Time, loc *time.Location) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := parseAge(v); err == nil {
		return now.Add(-d), nil
	}
	if t, ok := ledger.ParseTime(v, loc); ok {
		return t, nil
	}
	return time.Time{}, invalid(param, "%s must be an age like \"7d\" or \"24h\", an RFC 3339 time or a date (2006-01-02), got %q", param, v)
}

// reportQuery reads since, until and key from the query string. def is
// the since used when none is given. Dates, and ByDay's days, are in the
// budget time zone, as lumen spend has them.
func (s *Server) reportQuery(r *http.Request, def string) (ledger.Query, error) {
	now := time.Now()
	q := r.URL.Query()
	since := def
	if q.Has("since") {
		since = q.Get("since")
	}
	lq := ledger.Query{Location: s.loc}
	var err error
	if lq.Since, err = parseWhen("since", since, now, s.loc); err != nil {
		return lq, err
	}
	if lq.Until, err = parseWhen("until", q.Get("until"), now, s.loc); err != nil {
		return lq, err
	}
	lq.Key = q.Get("key") // an id, else a name: a name may start with key_ too
	return lq, nil
}

// reportError maps a report's failure: an unknown key name is the
// caller's mistake, anything else is ours.
func reportError(err error) error {
	if ledger.Unreachable(err) {
		return &ledgerDown{err}
	}
	if errors.Is(err, ledger.ErrKeyNotFound) {
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "key_not_found", Param: "key", Message: err.Error()}
	}
	return err
}

func (s *Server) spend(w http.ResponseWriter, r *http.Request) {
	if s.reports == nil {
		s.writeError(w, r, errReportsOff)
		return
	}
	by, err := ledger.ParseBy(r.URL.Query().Get("by"))
	if err != nil {
		s.writeError(w, r, invalid("by", "%v", err))
		return
	}
	q, err := s.reportQuery(r, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q.By = by
	rows, err := s.reports.Spend(r.Context(), q)
	if err != nil {
		s.writeError(w, r, reportError(err))
		return
	}
	if rows == nil {
		rows = []ledger.Row{}
	}
	// timezone is the zone of the dates: the dashboard lays out its days in it.
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "by": by, "timezone": s.loc.String(), "data": rows})
}

func (s *Server) requests(w http.ResponseWriter, r *http.Request) {
	if s.reports == nil {
		s.writeError(w, r, errReportsOff)
		return
	}
	q := r.URL.Query()
	lq, err := s.reportQuery(r, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := ledger.RequestFilter{
		Key: lq.Key, Since: lq.Since, Until: lq.Until,
		ModelGroup: q.Get("model"), Deployment: q.Get("deployment"), User: q.Get("user"),
		Cursor: q.Get("cursor"),
	}
	if v := q.Get("errors"); v != "" {
		if f.ErrorsOnly, err = strconv.ParseBool(v); err != nil {
			s.writeError(w, r, invalid("errors", "errors must be true or false, got %q", v))
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 {
			s.writeError(w, r, invalid("limit", "limit must be a positive number, got %q", v))
			return
		}
	}
	page, err := s.reports.Requests(r.Context(), f)
	if err != nil {
		if strings.Contains(err.Error(), "invalid cursor") {
			s.writeError(w, r, invalid("cursor", "invalid cursor: pass the next value of a previous page"))
			return
		}
		s.writeError(w, r, reportError(err))
		return
	}
	if page.Entries == nil {
		page.Entries = []ledger.Entry{}
	}
	writeJSON(w, http.StatusOK, page)
}

// totalView is a model group's summary with durations in milliseconds, as
// the dashboard plots them.
type totalView struct {
	ledger.Total
	LatencyP50ms float64 `json:"latency_p50_ms"`
	LatencyP95ms float64 `json:"latency_p95_ms"`
	TTFTP50ms    float64 `json:"ttft_p50_ms"`
	TTFTP95ms    float64 `json:"ttft_p95_ms"`
	ErrorRate    float64 `json:"error_rate"`
	CacheHitRate float64 `json:"cache_hit_rate"`
}

func (s *Server) totals(w http.ResponseWriter, r *http.Request) {
	if s.reports == nil {
		s.writeError(w, r, errReportsOff)
		return
	}
	q, err := s.reportQuery(r, "24h")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	totals, err := s.reports.Totals(r.Context(), q)
	if err != nil {
		s.writeError(w, r, reportError(err))
		return
	}
	out := make([]totalView, len(totals))
	for i, t := range totals {
		v := totalView{Total: t, LatencyP50ms: millis(t.LatencyP50), LatencyP95ms: millis(t.LatencyP95),
			TTFTP50ms: millis(t.TTFTP50), TTFTP95ms: millis(t.TTFTP95)}
		if t.Requests > 0 {
			v.ErrorRate = float64(t.Errors) / float64(t.Requests)
			v.CacheHitRate = float64(t.CacheHits) / float64(t.Requests)
		}
		out[i] = v
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "since": q.Since, "data": out})
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
