package server

import (
	"math"
	"net/http"
	"time"

	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/router"
)

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) modelObject(name string) (modelObject, bool) {
	m := modelObject{ID: name, Object: "model", Created: s.started.Unix(), OwnedBy: "lumen"}
	if g, ok := s.Router().Group(name); ok {
		m.OwnedBy = g.Deployments[0].ProviderName
		return m, true
	}
	for _, n := range s.Router().AutoNames() {
		if n == name {
			return m, true
		}
	}
	if t := s.Router().Resolve(name); t != name {
		tm, ok := s.modelObject(t)
		tm.ID = name
		return tm, ok
	}
	return m, false
}

// models lists the model groups, then "auto" and the named auto routes, in
// OpenAI's list shape. A key restricted to models sees only those (and the
// auto routes, which choose among the models it may use).
func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	rt := s.Router()
	key := callerFrom(r.Context()).key
	names := rt.Names()
	data := make([]modelObject, 0, len(names)+1)
	for _, n := range append(append(names[:len(names):len(names)], rt.AutoNames()...), rt.Aliases()...) {
		if !visible(rt, key, n) {
			continue
		}
		m, _ := s.modelObject(n)
		data = append(data, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// visible reports whether a caller with key (nil: any model) sees model
// name n: a group, or an alias of one, the key may use, and every auto
// route, which chooses among the models the key may use.
func visible(rt *router.Router, key *ledger.Key, n string) bool {
	g, plain := rt.Group(rt.Resolve(n))
	return !plain || key == nil || key.Allows(g.Name)
}

func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	key := callerFrom(r.Context()).key
	m, ok := s.modelObject(r.PathValue("model"))
	if ok && !visible(s.Router(), key, m.ID) {
		ok = false // a group the key may not use is, to it, no group at all
	}
	if !ok {
		// Like a chat request for it: only the groups the key may use are named.
		var avail []string
		for _, n := range s.Router().Names() {
			if key == nil || key.Allows(n) {
				avail = append(avail, n)
			}
		}
		s.writeError(w, r, &router.UnknownGroupError{Model: m.ID, Available: avail})
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) liveness(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

// readiness fails once shutdown has begun, so load balancers drain us.
func (s *Server) readiness(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// health reports the model groups' deployments. Their detail (upstream
// providers and models, circuits, traffic, check errors) is the
// operator's: the master key's, or any caller's on an open gateway but a
// virtual key's. A virtual key is a tenant: it sees only the groups it may
// use, each as one status (keyHealth), and nothing of the gateway's
// traffic.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if key := callerFrom(r.Context()).key; key != nil {
		s.keyHealth(w, key)
		return
	}
	type dep struct {
		ID       string `json:"id"`
		Provider string `json:"provider"`
		Model    string `json:"model"`
		// State is the circuit: closed, open (cooled down) or half-open.
		State         string     `json:"state"`
		CooldownUntil *time.Time `json:"cooldown_until,omitempty"`
		// RecentFailures are the retryable failures in the current window.
		RecentFailures int   `json:"recent_failures"`
		InFlight       int64 `json:"in_flight"`
		// Moving averages; absent until a sample.
		LatencyMS          float64    `json:"latency_ms,omitempty"`
		TTFTMS             float64    `json:"ttft_ms,omitempty"`
		RequestsThisMinute int64      `json:"requests_this_minute"`
		TokensThisMinute   int64      `json:"tokens_this_minute"`
		LastCheck          *time.Time `json:"last_check,omitempty"`
		LastCheckError     string     `json:"last_check_error,omitempty"`
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }
	groups := map[string][]dep{}
	for _, st := range s.Router().Snapshot() {
		d := dep{ID: st.ID, Provider: st.Provider, Model: st.Model, State: st.State, RecentFailures: st.RecentFailures,
			InFlight: st.InFlight, LatencyMS: ms(st.Latency), TTFTMS: ms(st.TTFT),
			RequestsThisMinute: st.RequestsThisMinute, TokensThisMinute: st.TokensThisMinute, LastCheckError: st.LastCheckError}
		if !st.CooldownUntil.IsZero() {
			d.CooldownUntil = &st.CooldownUntil
		}
		if !st.LastCheck.IsZero() {
			d.LastCheck = &st.LastCheck
		}
		groups[st.Group] = append(groups[st.Group], d)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "version": s.version, "uptime_s": int64(time.Since(s.started).Seconds()),
		"in_flight": s.inflight.Load(), "model_groups": groups,
	})
}

// groupHealth is a model group as a virtual key sees it on /health.
type groupHealth struct {
	// Status is healthy (every deployment takes requests), degraded (some
	// do) or unavailable (none does: every circuit is open).
	Status string `json:"status"`
	// Deployments and Available count the group's deployments, and those
	// whose circuit is not open.
	Deployments int `json:"deployments"`
	Available   int `json:"available"`
}

// keyHealth answers /health for a virtual key: the groups key may use.
func (s *Server) keyHealth(w http.ResponseWriter, key *ledger.Key) {
	groups := map[string]*groupHealth{}
	for _, st := range s.Router().Snapshot() {
		if !key.Allows(st.Group) {
			continue
		}
		g := groups[st.Group]
		if g == nil {
			g = &groupHealth{}
			groups[st.Group] = g
		}
		g.Deployments++
		if st.State != router.StateOpen {
			g.Available++
		}
	}
	for _, g := range groups {
		switch g.Available {
		case g.Deployments:
			g.Status = "healthy"
		case 0:
			g.Status = "unavailable"
		default:
			g.Status = "degraded"
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "version": s.version, "model_groups": groups})
}
