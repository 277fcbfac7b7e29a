package server

import (
	"net/http"
	"time"
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
		if g, plain := rt.Group(rt.Resolve(n)); plain && key != nil && !key.Allows(g.Name) {
			continue
		}
		m, _ := s.modelObject(n)
		data = append(data, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	m, ok := s.modelObject(r.PathValue("model"))
	if !ok {
		writeError(w, &s.log, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
			Message: sprintf("The model %q does not exist. Available models: %s.", m.ID, joinQuoted(s.Router().Names()))})
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

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	type dep struct {
		ID       string `json:"id"`
		Provider string `json:"provider"`
		Model    string `json:"model"`
		// State is the circuit: closed, open (cooled down) or half-open.
		State string `json:"state"`
	}
	now := time.Now()
	groups := map[string][]dep{}
	for _, n := range s.Router().Names() {
		if g, ok := s.Router().Group(n); ok {
			for _, d := range g.Deployments {
				groups[n] = append(groups[n], dep{ID: d.ID, Provider: d.ProviderName, Model: d.Model, State: d.State(now)})
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "version": s.version, "uptime_s": int64(time.Since(s.started).Seconds()),
		"in_flight": s.inflight.Load(), "model_groups": groups,
	})
}
