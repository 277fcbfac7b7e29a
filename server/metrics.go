package server

import (
	"net"
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

// MetricsHandler is /metrics for a separate listener (metrics.listen)
// listening on addr; nil when metrics are off. Metrics need no key, master
// key or not, so on a loopback address it answers only requests whose Host
// is localhost, a name under .localhost or a loopback address, as an open
// gateway's API does (browserGuard): a web page on a DNS name pointed at
// 127.0.0.1 (DNS rebinding) is same-origin with the listener and could
// read the model groups, deployments, key tags and cost counters. Others
// are a 403 host_not_allowed. A page of another origin cannot read the
// answer, and the listener serves nothing but GET: the API's cross-origin
// check would have nothing to refuse here.
func (s *Server) MetricsHandler(addr net.Addr) http.Handler {
	if s.metrics == nil {
		return nil
	}
	h := s.metricsHandler()
	if !loopbackAddr(addr) {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			s.writeError(w, r, &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: "host_not_allowed",
				Message: sprintf("the metrics listener (metrics.listen) is on loopback and answers only requests to localhost or a loopback address, not to %q; scrape it as localhost or 127.0.0.1", r.Host)})
			return
		}
		h.ServeHTTP(w, r)
	})
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
