package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeEmbedder maps known texts to fixed vectors; other texts get a vector
// orthogonal to all of them.
type fakeEmbedder struct {
	vecs  map[string][]float32
	calls atomic.Int32
	err   error
}

func (f *fakeEmbedder) Embed(ctx context.Context, text string) ([]float32, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	if v, ok := f.vecs[text]; ok {
		return v, nil
	}
	return []float32{0, 0, 1}, nil
}

// at returns a 3-d vector whose cosine similarity with (1, 0, 0) is sim,
// scaled by 2 to check that lengths do not matter.
func at(sim float64) []float32 {
	return []float32{float32(2 * sim), float32(2 * math.Sqrt(1-sim*sim)), 0}
}

func chatReq(system, user string) string {
	return fmt.Sprintf(`{"model":"gpt","messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`, system, user)
}

func TestSemanticThreshold(t *testing.T) {
	emb := &fakeEmbedder{vecs: map[string][]float32{
		"What is the capital of France?": at(1),
		"what's the capital of france":   at(0.97),
		"capital of France, please":      at(0.951),
		"capital of Germany?":            at(0.949),
		"how tall is Everest":            at(0.2),
	}}
	ctx := context.Background()
	s := NewSemantic(emb, NewLocal(0, 0), SemanticOptions{Threshold: 0.95})
	orig, _ := NewKey("g", "", []byte(chatReq("be brief", "What is the capital of France?")))
	e := testEntry(t, "Paris.")
	s.Set(ctx, orig, e, 0)

	tests := []struct {
		name, system, user string
		hit                bool
	}{
		{"exact", "be brief", "What is the capital of France?", true},
		{"similar 0.97", "be brief", "what's the capital of france", true},
		{"just above threshold", "be brief", "capital of France, please", true},
		{"just below threshold", "be brief", "capital of Germany?", false},
		{"unrelated", "be brief", "how tall is Everest", false},
		{"similar but another system prompt", "be verbose", "what's the capital of france", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _ := NewKey("g", "", []byte(chatReq(tt.system, tt.user)))
			got, ok := s.Get(ctx, k)
			if ok != tt.hit {
				t.Fatalf("hit = %v, want %v", ok, tt.hit)
			}
			if ok && got != e {
				t.Error("served another entry")
			}
		})
	}
	if s.SimilarHits() != 2 {
		t.Errorf("SimilarHits() = %d, want 2", s.SimilarHits())
	}
	// Another scope never sees the entry, however similar.
	k, _ := NewKey("g", `tenant:"other"`, []byte(chatReq("be brief", "What is the capital of France?")))
	if _, ok := s.Get(ctx, k); ok {
		t.Error("semantic hit across scopes")
	}
}

func TestSemanticEmbedsOncePerMiss(t *testing.T) {
	emb := &fakeEmbedder{vecs: map[string][]float32{"q": at(1)}}
	ctx := context.Background()
	s := NewSemantic(emb, NewLocal(0, 0), SemanticOptions{})
	k, _ := NewKey("g", "", []byte(chatReq("s", "q")))
	if _, ok := s.Get(ctx, k); ok {
		t.Fatal("hit on empty store")
	}
	s.Set(ctx, k, testEntry(t, "a"), 0) // reuses the Get's embedding
	if _, ok := s.Get(ctx, k); !ok {
		t.Fatal("exact miss after Set")
	}
	if n := emb.calls.Load(); n != 1 {
		t.Errorf("%d embedding calls, want 1 (the miss; Set reuses it, the exact hit needs none)", n)
	}
}

func TestSemanticNonTextPromptIsExactOnly(t *testing.T) {
	emb := &fakeEmbedder{}
	ctx := context.Background()
	s := NewSemantic(emb, NewLocal(0, 0), SemanticOptions{})
	img := `{"model":"gpt","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"%s"}}]}]}`
	k1, _ := NewKey("g", "", fmt.Appendf(nil, img, "a.png"))
	k2, _ := NewKey("g", "", fmt.Appendf(nil, img, "b.png"))
	s.Set(ctx, k1, testEntry(t, "a cat"), 0)
	if _, ok := s.Get(ctx, k2); ok {
		t.Error("semantic hit on an image prompt")
	}
	if _, ok := s.Get(ctx, k1); !ok {
		t.Error("exact miss")
	}
	if emb.calls.Load() != 0 {
		t.Errorf("embedded a non-text prompt %d times", emb.calls.Load())
	}
}

func TestSemanticEmbedderDown(t *testing.T) {
	var logs bytes.Buffer
	emb := &fakeEmbedder{err: errors.New("embedding group unavailable")}
	ctx := context.Background()
	s := NewSemantic(emb, NewLocal(0, 0), SemanticOptions{Logger: zerolog.New(&logs)})
	k, _ := NewKey("g", "", []byte(chatReq("s", "q")))
	for i := 0; i < 3; i++ {
		if _, ok := s.Get(ctx, k); ok {
			t.Fatal("hit")
		}
	}
	s.Set(ctx, k, testEntry(t, "a"), 0)
	if _, ok := s.Get(ctx, k); !ok {
		t.Error("exact hits must work without the embedder")
	}
	if st := s.Stats(); st.Errors != 4 || s.Vectors() != 0 {
		t.Errorf("stats %+v, %d vectors; want 4 errors, none indexed", st, s.Vectors())
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Errorf("%d log lines, want 1:\n%s", n, logs.String())
	}
}

// An embedder that skips (its model group's window is full) is no
// failure: the lookup is exact only, and nothing is counted or logged.
func TestSemanticEmbedderSkips(t *testing.T) {
	var logs bytes.Buffer
	emb := &fakeEmbedder{err: fmt.Errorf("embedding with e: %w: rate limit reached", ErrEmbeddingSkipped)}
	ctx := context.Background()
	s := NewSemantic(emb, NewLocal(0, 0), SemanticOptions{Logger: zerolog.New(&logs)})
	k, _ := NewKey("g", "", []byte(chatReq("s", "q")))
	if _, ok := s.Get(ctx, k); ok {
		t.Fatal("hit")
	}
	s.Set(ctx, k, testEntry(t, "a"), 0)
	if _, ok := s.Get(ctx, k); !ok {
		t.Error("exact hits must work while the embedder skips")
	}
	if st := s.Stats(); st.Errors != 0 || st.Misses != 1 || s.Vectors() != 0 || emb.calls.Load() != 2 {
		t.Errorf("stats %+v, %d vectors, %d embeds; want no errors, 1 miss, none indexed, 2 embeds", st, s.Vectors(), emb.calls.Load())
	}
	if logs.Len() != 0 {
		t.Errorf("logged: %s", logs.String())
	}
}

func TestSemanticExpiryAndEviction(t *testing.T) {
	emb := &fakeEmbedder{vecs: map[string][]float32{"q": at(1), "q2": at(0.99)}}
	ctx := context.Background()
	clk := &clock{t: time.Unix(1000, 0)}
	inner := NewLocal(0, time.Hour)
	inner.now = clk.now
	s := NewSemantic(emb, inner, SemanticOptions{TTL: time.Hour})
	s.now = clk.now
	k, _ := NewKey("g", "", []byte(chatReq("s", "q")))
	k2, _ := NewKey("g", "", []byte(chatReq("s", "q2")))
	s.Set(ctx, k, testEntry(t, "a"), 10*time.Minute)
	if _, ok := s.Get(ctx, k2); !ok {
		t.Fatal("no similar hit")
	}
	clk.add(11 * time.Minute)
	if _, ok := s.Get(ctx, k2); ok {
		t.Error("similar hit on an expired prompt")
	}
	if s.Vectors() != 0 {
		t.Errorf("%d vectors after expiry", s.Vectors())
	}

	// The inner store dropping the entry drops the prompt on the next look.
	s.Set(ctx, k, testEntry(t, "a"), 0)
	inner2 := NewLocal(0, 0)
	s.inner = inner2 // as if the LRU had evicted it
	if _, ok := s.Get(ctx, k2); ok {
		t.Error("hit for an entry the inner store no longer has")
	}
	if s.Vectors() != 0 {
		t.Errorf("%d vectors after the entry went", s.Vectors())
	}
}

func TestSemanticMaxVectors(t *testing.T) {
	emb := &fakeEmbedder{vecs: map[string][]float32{}}
	ctx := context.Background()
	s := NewSemantic(emb, NewLocal(0, 0), SemanticOptions{MaxVectors: 10})
	for i := 0; i < 25; i++ {
		q := fmt.Sprint("q", i)
		emb.vecs[q] = at(float64(i) / 25)
		k, _ := NewKey("g", "", []byte(chatReq(fmt.Sprint("s", i%3), q)))
		s.Set(ctx, k, testEntry(t, q), 0)
	}
	if n := s.Vectors(); n > 10 {
		t.Errorf("%d vectors indexed, bound 10", n)
	}
	total := 0
	s.mu.Lock()
	for _, vs := range s.parts {
		total += len(vs)
	}
	s.mu.Unlock()
	if total != s.Vectors() {
		t.Errorf("count %d disagrees with the index (%d)", s.Vectors(), total)
	}
}

func TestSemanticConcurrent(t *testing.T) {
	emb := &fakeEmbedder{vecs: map[string][]float32{}}
	for i := 0; i < 20; i++ {
		emb.vecs[fmt.Sprint("q", i)] = at(float64(i) / 20)
	}
	ctx := context.Background()
	s := NewSemantic(emb, NewLocal(0, 0), SemanticOptions{MaxVectors: 8})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k, _ := NewKey("g", "", []byte(chatReq("s", fmt.Sprint("q", (g+i)%20))))
				if _, ok := s.Get(ctx, k); !ok {
					s.Set(ctx, k, testEntry(t, "x"), 0)
				}
			}
		}()
	}
	wg.Wait()
	if n := s.Vectors(); n > 8 {
		t.Errorf("%d vectors, bound 8", n)
	}
}
