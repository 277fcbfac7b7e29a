package server

import (
	"net/http"
	"sort"
	"time"

	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/metrics"
	"github.com/lumengw/lumen/router"
)

// metricsHandler serves /metrics, first setting each deployment's circuit
// state gauge from the router (states change on time, not only on
// requests, so they are read at scrape time).
func (s *Server) metricsHandler() http.Handler {
	h := s.metrics.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.observeCircuits()
		h.ServeHTTP(w, r)
	})
}

// MetricsHandler is /metrics for a separate listener (metrics.listen); nil
// when metrics are off.
func (s *Server) MetricsHandler() http.Handler {
	if s.metrics == nil {
		return nil
	}
	return s.metricsHandler()
}

func (s *Server) observeCircuits() {
	rt := s.Router()
	now := time.Now()
	var cs []metrics.Circuit
	for _, name := range rt.Names() {
		g, ok := rt.Group(name)
		if !ok {
			continue
		}
		for _, d := range g.Deployments {
			st := metrics.CircuitClosed
			switch d.State(now) {
			case router.StateOpen:
				st = metrics.CircuitOpen
			case router.StateHalfOpen:
				st = metrics.CircuitHalfOpen
			}
			cs = append(cs, metrics.Circuit{Route: s.metrics.Route(name, d.ID, d.ProviderName), State: st})
		}
	}
	s.metrics.SetCircuits(cs) // only these: a reload's removed deployments lose their gauge
}

// keyTagsEntry is keyTags' cache entry for one key id: the tags of the
// key version it was computed for.
type keyTagsEntry struct {
	key  *ledger.Key
	tags []string
}

// keyTags are a key's tags as metric label values ("team=search"), sorted,
// computed once per key version (a changed key is a new *ledger.Key) and
// added to the metrics' allow-list, which caps how many distinct values
// there can be. The cache holds one entry per key id: every reload of the
// keyring makes a new *ledger.Key of each key, so an entry per version
// would keep every old version for as long as the server runs.
func (s *Server) keyTags(k *ledger.Key) []string {
	if v, ok := s.tagCache.Load(k.ID); ok {
		if e := v.(keyTagsEntry); e.key == k {
			return e.tags
		}
	}
	tags := make([]string, 0, len(k.Tags))
	for name, v := range k.Tags {
		tags = append(tags, name+"="+v)
	}
	sort.Strings(tags)
	s.metrics.AllowKeyTags(tags...)
	s.tagCache.Store(k.ID, keyTagsEntry{key: k, tags: tags})
	return tags
}
