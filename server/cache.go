package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
)

// serveCached answers a chat request from the response cache, or routes it
// through the cache's single-flight so identical concurrent misses make one
// upstream call, and records the answer.
func (s *Server) serveCached(w http.ResponseWriter, r *http.Request, x *exchange) error {
	d := cache.ParseDirective(r.Header, x.cacheField)
	if x.groupFull {
		// Its group's window is full: a fallback answers, not the
		// group's cached answers (nor a flight of its group).
		d.NoCache = true
	}
	k, err := cache.NewKey(x.group, s.cacheScope(r, x.key, d)+x.guardAnswerScope(), x.body)
	if err != nil {
		// Not canonicalizable (it parsed as JSON, so this is rare): serve
		// uncached rather than fail the request.
		x.cache = "bypass"
		w.Header().Set("x-lumen-cache", x.cache)
		return s.serveUpstream(w, r, x)
	}
	if e, ok := s.cache.Lookup(r.Context(), k, d, x.stream); ok {
		x.cache = "hit"
		x.saved = e.Usage()
		w.Header().Set("x-lumen-cache", x.cache)
		if err := x.awaitChecks(nil); err != nil {
			return err
		}
		id, created := e.NewID(), time.Now().Unix()
		if x.stream {
			return s.writeStream(w, r, x, e.Stream(id, created))
		}
		body, err := x.guardOutput(e.Body(id, created), "")
		if err != nil {
			return err
		}
		x.status = http.StatusOK
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(costHeaderName, "0")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
		return nil
	}
	x.cache = "miss"
	if d.Bypass() {
		x.cache = "bypass"
	}
	if x.stream {
		sr, err := s.cache.Stream(r.Context(), k, d, x.sealAnswer(), func(ctx context.Context) (providers.Stream, any, error) {
			res, err := s.route(ctx, x)
			if err != nil {
				return nil, res, err
			}
			return res.Stream, res, nil
		})
		s.afterFlight(w, x, sr.Meta, sr.Shared)
		if err == nil {
			err = x.awaitChecks(&router.Result{Stream: sr.Stream})
		}
		if err != nil {
			return err
		}
		return s.writeStream(w, r, x, sr.Stream)
	}
	rr, err := s.cache.Do(r.Context(), k, d, x.sealAnswer(), func(ctx context.Context) (*providers.Response, any, error) {
		res, err := s.route(ctx, x)
		if err != nil {
			return nil, res, err
		}
		return res.Response, res, nil
	})
	s.afterFlight(w, x, rr.Meta, rr.Shared)
	if err == nil {
		err = x.awaitChecks(nil) // a flight's answer is shared: its usage is not this request's to keep
	}
	if err != nil {
		return err
	}
	resp := rr.Response
	if rr.Shared {
		// Another request's answer: the same content, its own id, and no
		// tokens billed to this request (it made no upstream call).
		body, err := sjson.SetBytes(resp.Body, "id", freshID())
		if err != nil {
			return fmt.Errorf("renaming a shared answer: %w", err)
		}
		x.saved = resp.Usage
		resp = &providers.Response{Body: body}
	}
	return s.writeResponse(w, x, resp)
}

// freshID is a new chat completion id, for answers served to a request
// that did not make the upstream call.
func freshID() string {
	var b [12]byte
	v1, v2 := rand.Uint64(), rand.Uint32()
	binary.LittleEndian.PutUint64(b[:8], v1)
	binary.LittleEndian.PutUint32(b[8:], v2)
	return "chatcmpl-lumen-" + hex.EncodeToString(b[:])
}

// afterFlight reports the routing of a (possibly shared) upstream call.
func (s *Server) afterFlight(w http.ResponseWriter, x *exchange, meta any, shared bool) {
	if shared {
		x.cache = "coalesced"
	}
	w.Header().Set("x-lumen-cache", x.cache)
	if res, ok := meta.(*router.Result); ok {
		s.routed(w, x, res)
		if shared {
			x.attempts, x.serving = 0, nil // another request made the call
		}
	}
}

// cacheScope is the cache namespace of a request, by cache.Scope's rule:
// global unless the cache is scoped per key, the virtual key k is tagged
// cache_scope=key (a namespace of its own) or tenant=<name> (its tenant's),
// narrowed by the request's own "cache": {"namespace": …}. k is nil for
// the master key or none.
func (s *Server) cacheScope(r *http.Request, k *ledger.Key, d cache.Directive) string {
	var tags map[string]string
	if k != nil {
		tags = k.Tags
	}
	return cache.Scope(s.cfg.Cache.Scope, presentedKeyID(r), tags, d.Namespace)
}
