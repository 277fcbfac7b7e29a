package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// answerText is a typical ~1 KB chat answer.
var answerText = strings.Repeat("The quick brown fox jumps over the lazy dog, and then it rests. ", 16)

// typicalRequest is a ~1 KB chat request.
var typicalRequest = []byte(`{"model":"gpt-4o-mini","messages":[` +
	`{"role":"system","content":"You are a helpful assistant. Answer concisely and cite sources when you can. Never invent facts; say you do not know instead."},` +
	`{"role":"user","content":"I am planning a trip to Lisbon in October. What neighbourhoods should I stay in if I want good food, walkable streets and not too much noise at night? Budget is moderate."},` +
	`{"role":"assistant","content":"Consider Príncipe Real, Campo de Ourique and Estrela: quieter, central, excellent food."},` +
	`{"role":"user","content":"Which of those is closest to the river and has a market?"}],` +
	`"temperature":0.7,"top_p":1,"max_tokens":512,"presence_penalty":0,"frequency_penalty":0,"stream":false,"user":"u-123"}`)

// typicalChunks is answerText streamed as OpenAI does: role chunk, one
// chunk per ~4 characters, finish chunk, usage chunk.
func typicalChunks() []string {
	h := `{"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz01","object":"chat.completion.chunk","created":1731000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[`
	out := []string{h + `{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`}
	for i := 0; i < len(answerText); i += 4 {
		tok := answerText[i:min(i+4, len(answerText))]
		out = append(out, h+`{"index":0,"delta":{"content":"`+tok+`"},"logprobs":null,"finish_reason":null}]}`)
	}
	out = append(out, h+`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
		h+`],"usage":{"prompt_tokens":120,"completion_tokens":230,"total_tokens":350,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`)
	return out
}

func typicalBody() []byte {
	return fmt.Appendf(nil, `{"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz01","object":"chat.completion","created":1731000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":%q,"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":230,"total_tokens":350},"system_fingerprint":"fp_0ba0d124f1"}`, answerText)
}

func BenchmarkKey(b *testing.B) {
	b.SetBytes(int64(len(typicalRequest)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewKey("gpt-4o-mini", "", typicalRequest); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLocalGetHit(b *testing.B) {
	ctx := context.Background()
	l := NewLocal(0, 0)
	e, _ := NewEntry(typicalBody(), 0)
	keys := make([]Key, 10_000)
	for i := range keys {
		keys[i] = testKey(b, i)
		l.Set(ctx, keys[i], e, 0)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := l.Get(ctx, keys[i%len(keys)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := l.Get(ctx, keys[i%len(keys)]); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
	})
}

// BenchmarkHit is the cache's share of a hit: key, directive, lookup and
// building the answer.
func BenchmarkHit(b *testing.B) {
	ctx := context.Background()
	c := New(NewLocal(0, 0), Options{})
	e, _ := NewEntry(typicalBody(), 0)
	k, _ := NewKey("g", "", typicalRequest)
	c.Store().Set(ctx, k, e, 0)
	b.Run("body", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k, _ := NewKey("g", "", typicalRequest)
			e, ok := c.Lookup(ctx, k, ParseDirective(nil, nil), false)
			if !ok {
				b.Fatal("miss")
			}
			_ = e.Body("", 0)
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			st := e.Stream("", 0)
			for {
				if _, err := st.Recv(); err != nil {
					break
				}
			}
		}
	})
}

// BenchmarkRecorder reports the recording cost per chunk of a typical
// stream (ns/op and allocs/op are per chunk).
func BenchmarkRecorder(b *testing.B) {
	chunks := typicalChunks()
	raw := make([][]byte, len(chunks))
	for i, c := range chunks {
		raw[i] = []byte(c)
	}
	b.ReportAllocs()
	r := NewRecorder(0)
	i := 0
	for b.Loop() {
		r.Add(raw[i])
		i++
		if i == len(raw) {
			if _, err := r.Finish(); err != nil {
				b.Fatal(err)
			}
			r = NewRecorder(0)
			i = 0
		}
	}
}

// BenchmarkReplay reports the replay cost per chunk.
func BenchmarkReplay(b *testing.B) {
	rec := NewRecorder(0)
	for _, c := range typicalChunks() {
		rec.Add([]byte(c))
	}
	e, err := rec.Finish()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	st := e.Stream("", 0)
	for b.Loop() {
		if _, err := st.Recv(); err != nil {
			st = e.Stream("", 0)
		}
	}
}

// BenchmarkMemoryPerEntry fills a Local with 100k entries of a ~1 KB answer
// and reports the heap they take, against what the store accounts and the
// size of the answer itself. Run it with -benchtime=1x.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const n = 100_000
	body := typicalBody()
	rec := NewRecorder(0)
	for _, c := range typicalChunks() {
		rec.Add([]byte(c))
	}
	streamed, err := rec.Finish()
	if err != nil {
		b.Fatal(err)
	}
	wire := 0
	for _, c := range typicalChunks() {
		wire += len(c)
	}
	streamBin, _ := streamed.MarshalBinary()
	for _, tc := range []struct {
		name  string
		entry func() *Entry
	}{
		{"from body", func() *Entry { e, _ := NewEntry(body, 0); return e }},
		// A copy of a recorded stream's entry, as a Recorder would build it
		// (one exact allocation), without recording 100k streams.
		{"from stream", func() *Entry {
			var e Entry
			_ = e.UnmarshalBinary(bytes.Clone(streamBin))
			return &e
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				ctx := context.Background()
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				l := NewLocal(1<<40, time.Hour)
				var h Key
				for i := 0; i < n; i++ {
					h.Hash[0], h.Hash[1], h.Hash[2] = byte(i), byte(i>>8), byte(i>>16)
					l.Set(ctx, h, tc.entry(), 0)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/entry")
				b.ReportMetric(float64(l.Stats().Bytes)/n, "accounted-B/entry")
				b.ReportMetric(float64(len(answerText)), "answer-B")
				b.ReportMetric(float64(len(body)), "body-B")
				b.ReportMetric(float64(wire), "stream-wire-B")
				runtime.KeepAlive(l)
			}
		})
	}
}

// BenchmarkLoopbackHit measures a cache hit through an HTTP round trip on
// loopback with a minimal handler (key, directive, lookup, write): the
// floor under the real server's hit latency, which adds auth, routing and
// the ledger. It reports p50 and p99.
func BenchmarkLoopbackHit(b *testing.B) {
	ctx := context.Background()
	c := New(NewLocal(0, 0), Options{})
	e, _ := NewEntry(typicalBody(), 0)
	k, _ := NewKey("gpt-4o-mini", "", typicalRequest)
	c.Store().Set(ctx, k, e, 0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		k, err := NewKey("gpt-4o-mini", "", body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		e, ok := c.Lookup(r.Context(), k, ParseDirective(r.Header, nil), false)
		if !ok {
			http.Error(w, "miss", 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-lumen-cache", "hit")
		w.Write(e.Body("", 0))
	}))
	defer srv.Close()
	client := srv.Client()
	lat := make([]time.Duration, 0, 1<<16)
	for b.Loop() {
		start := time.Now()
		resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(typicalRequest))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
}
