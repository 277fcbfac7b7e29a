package cache

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/rs/zerolog"
)

// Embedder turns text into a vector. The server backs it with the
// configured embedding model group. Implementations are safe for concurrent
// use and return vectors of one dimension. An error wrapping
// ErrEmbeddingSkipped says the embedder chose not to embed.
type Embedder interface {
	Embed(ctx context.Context, text string) ([]float32, error)
}

// ErrEmbeddingSkipped is wrapped by an Embedder's error when it declines
// to embed rather than fails (the embedding model group's rate limit
// window is full): the prompt is matched exactly only, and nothing is
// counted as an error or logged.
var ErrEmbeddingSkipped = errors.New("embedding skipped")

// Semantic is an opt-in Store that also serves a request whose last user
// message means nearly the same as a cached one's. It wraps an exact store
// (which holds the entries) with an in-memory vector index per
// Key.Partition, i.e. per scope, model group, system prompt, earlier
// conversation and parameters: only the last user message may differ.
//
// Get tries the exact key first; on a miss it embeds Key.Prompt and serves
// the entry of the nearest indexed prompt in the partition if their cosine
// similarity is at least the threshold. Requests whose last user message is
// not plain text are only matched exactly.
//
// See the package documentation for the false-hit risk.
type Semantic struct {
	emb       Embedder
	inner     Store
	o         SemanticOptions
	threshold float32
	now       func() time.Time

	mu    sync.Mutex
	parts map[[32]byte][]vector
	n     int

	// pending keeps the embedding a missed Get computed, so that the Set
	// which follows the upstream call need not embed again.
	pending *lru.Cache[[32]byte, []float32]

	c          counters
	similarHit atomic.Int64
	lastLog    atomic.Int64
}

var (
	_ Store         = (*Semantic)(nil)
	_ StatsReporter = (*Semantic)(nil)
)

type vector struct {
	hash    [32]byte
	v       []float32 // unit length
	expires int64     // unix nanoseconds
}

// SemanticOptions tune a Semantic store. Zero fields take the defaults.
type SemanticOptions struct {
	// Threshold is the cosine similarity a hit needs, in (0, 1] (default
	// 0.95). Lower values serve more answers to different questions.
	Threshold float64
	// TTL is how long a prompt stays indexed when Set gets no TTL
	// (default 1h). Keep it equal to the inner store's.
	TTL time.Duration
	// MaxVectors bounds the index (default 100,000 prompts); beyond it the
	// oldest prompts of the largest partition are dropped.
	MaxVectors int
	// Logger receives embedder failures, at most one line a minute.
	Logger zerolog.Logger
}

// DefaultSimilarityThreshold is the cosine similarity a semantic hit needs
// when the config does not say.
const DefaultSimilarityThreshold = 0.95

// NewSemantic returns a Semantic store over inner.
func NewSemantic(emb Embedder, inner Store, o SemanticOptions) *Semantic {
	if o.Threshold <= 0 || o.Threshold > 1 {
		o.Threshold = DefaultSimilarityThreshold
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.MaxVectors <= 0 {
		o.MaxVectors = 100_000
	}
	pending, _ := lru.New[[32]byte, []float32](1024)
	return &Semantic{emb: emb, inner: inner, o: o, threshold: float32(o.Threshold), now: time.Now,
		parts: make(map[[32]byte][]vector), pending: pending}
}

// embed returns the unit vector of text, or nil after counting and logging
// the failure (an embedder that skipped is no failure).
func (s *Semantic) embed(ctx context.Context, text string) []float32 {
	v, err := s.emb.Embed(ctx, text)
	if err == nil && len(v) == 0 {
		err = errEmptyEmbedding
	}
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrEmbeddingSkipped) {
			s.c.errors.Add(1)
			now := s.now().UnixNano()
			if last := s.lastLog.Load(); now-last >= int64(time.Minute) && s.lastLog.CompareAndSwap(last, now) {
				s.o.Logger.Warn().Err(err).Msg("cache: embedding the prompt failed; semantic lookup skipped")
			}
		}
		return nil
	}
	return normalize(v)
}

var errEmptyEmbedding = errors.New("embedder returned an empty vector")

// normalize returns v scaled to unit length, in a new slice.
func normalize(v []float32) []float32 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if sum == 0 {
		return out
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// Get implements Store.
func (s *Semantic) Get(ctx context.Context, k Key) (*Entry, bool) {
	if e, ok := s.inner.Get(ctx, k); ok {
		s.c.hits.Add(1)
		return e, true
	}
	if k.Prompt == "" {
		s.c.misses.Add(1)
		return nil, false
	}
	v := s.embed(ctx, k.Prompt)
	if v == nil {
		s.c.misses.Add(1)
		return nil, false
	}
	s.pending.Add(k.Hash, v)
	best, ok := s.nearest(k.Partition, v)
	if ok {
		if e, hit := s.inner.Get(ctx, Key{Hash: best}); hit {
			s.c.hits.Add(1)
			s.similarHit.Add(1)
			return e, true
		}
		s.forget(k.Partition, best) // the inner store let it go
	}
	s.c.misses.Add(1)
	return nil, false
}

// nearest returns the hash of the live indexed prompt most similar to v in
// partition p, if it reaches the threshold. It drops expired prompts it
// passes.
func (s *Semantic) nearest(p [32]byte, v []float32) ([32]byte, bool) {
	now := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.parts[p]
	var best [32]byte
	bestSim := float32(-2)
	live := vs[:0]
	for _, x := range vs {
		if now >= x.expires {
			s.n--
			s.c.expired.Add(1)
			continue
		}
		live = append(live, x)
		if len(x.v) != len(v) {
			continue // the embedding model changed
		}
		if sim := dot(x.v, v); sim > bestSim {
			bestSim, best = sim, x.hash
		}
	}
	clear(vs[len(live):])
	s.setPart(p, live)
	return best, bestSim >= s.threshold
}

func (s *Semantic) setPart(p [32]byte, vs []vector) {
	if len(vs) == 0 {
		delete(s.parts, p)
		return
	}
	s.parts[p] = vs
}

func (s *Semantic) forget(p [32]byte, hash [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.parts[p]
	for i, x := range vs {
		if x.hash == hash {
			vs = append(vs[:i], vs[i+1:]...)
			vs = vs[:len(vs):len(vs)]
			s.n--
			break
		}
	}
	s.setPart(p, vs)
}

// Set implements Store: it stores e in the inner store and indexes the
// prompt.
func (s *Semantic) Set(ctx context.Context, k Key, e *Entry, ttl time.Duration) {
	s.inner.Set(ctx, k, e, ttl)
	s.c.sets.Add(1)
	if k.Prompt == "" {
		return
	}
	if ttl <= 0 {
		ttl = s.o.TTL
	}
	v, ok := s.pending.Peek(k.Hash)
	if ok {
		s.pending.Remove(k.Hash)
	} else if v = s.embed(ctx, k.Prompt); v == nil {
		return
	}
	x := vector{hash: k.Hash, v: v, expires: s.now().Add(ttl).UnixNano()}
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.parts[k.Partition]
	for i := range vs {
		if vs[i].hash == k.Hash {
			vs[i] = x
			return
		}
	}
	s.parts[k.Partition] = append(vs, x)
	s.n++
	if s.n > s.o.MaxVectors {
		s.shrink()
	}
}

// shrink brings the index back under MaxVectors: expired prompts first,
// then the oldest of the largest partition. s.mu is held.
func (s *Semantic) shrink() {
	now := s.now().UnixNano()
	for p, vs := range s.parts {
		live := vs[:0]
		for _, x := range vs {
			if now < x.expires {
				live = append(live, x)
			} else {
				s.n--
				s.c.expired.Add(1)
			}
		}
		clear(vs[len(live):])
		s.setPart(p, live)
	}
	for s.n > s.o.MaxVectors {
		var big [32]byte
		most := 0
		for p, vs := range s.parts {
			if len(vs) > most {
				big, most = p, len(vs)
			}
		}
		vs := s.parts[big]
		drop := min(s.n-s.o.MaxVectors, len(vs))
		rest := append([]vector(nil), vs[drop:]...)
		s.setPart(big, rest)
		s.n -= drop
		s.c.evictions.Add(int64(drop))
	}
}

// Stats implements StatsReporter: Hits counts exact and similar hits
// (SimilarHits only the latter), Errors counts embedder failures; Entries
// and Bytes are the inner store's.
func (s *Semantic) Stats() Stats {
	st := s.c.stats()
	if r, ok := s.inner.(StatsReporter); ok {
		in := r.Stats()
		st.Entries, st.Bytes = in.Entries, in.Bytes
		st.Errors += in.Errors
	}
	return st
}

// SimilarHits returns how many hits were served for a different, similar
// prompt.
func (s *Semantic) SimilarHits() int64 { return s.similarHit.Load() }

// Vectors returns how many prompts are indexed.
func (s *Semantic) Vectors() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
