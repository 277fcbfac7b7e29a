package cache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
)

// fakeOpenAI is an OpenAI-compatible upstream on loopback that counts the
// calls it gets and answers each with behave.
type fakeOpenAI struct {
	srv    *httptest.Server
	calls  atomic.Int32
	client *openai.Client
}

func newFakeOpenAI(t *testing.T, behave func(w http.ResponseWriter, r *http.Request)) *fakeOpenAI {
	t.Helper()
	f := &fakeOpenAI{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		behave(w, r)
	}))
	t.Cleanup(f.srv.Close)
	c, err := openai.New(providers.Config{Provider: "openai", Model: "gpt-test", APIBase: f.srv.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	f.client = c
	return f
}

func (f *fakeOpenAI) fetch(body string) Fetch {
	return func(ctx context.Context) (*providers.Response, any, error) {
		resp, err := f.client.Do(ctx, &providers.Request{Op: providers.OpChat, Model: "gpt-test", Body: []byte(body)})
		return resp, "openai/gpt-test", err
	}
}

func (f *fakeOpenAI) open(body string) Open {
	return func(ctx context.Context) (providers.Stream, any, error) {
		st, err := f.client.DoStream(ctx, &providers.Request{Op: providers.OpChat, Model: "gpt-test", Body: []byte(body), Stream: true})
		return st, "openai/gpt-test", err
	}
}

// sseChunks writes chunks as a flushed SSE stream, then [DONE] if done.
func sseChunks(w http.ResponseWriter, chunks []string, done bool) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	for _, c := range chunks {
		io.WriteString(w, "data: "+c+"\n\n")
		rc.Flush()
	}
	if done {
		io.WriteString(w, "data: [DONE]\n\n")
	}
}

// dieMidStream sends chunks, then drops the connection.
func dieMidStream(w http.ResponseWriter, chunks []string) {
	sseChunks(w, chunks, false)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

const streamReq = `{"model":"gpt","stream":true,"messages":[{"role":"user","content":"say hello"}]}`
const plainReq = `{"model":"gpt","messages":[{"role":"user","content":"say hello"}]}`

func drain(t *testing.T, st providers.Stream) ([]string, error) {
	t.Helper()
	defer st.Close()
	var out []string
	for {
		b, err := st.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, string(b))
	}
}

func TestCacheStreamCoalescesAndStores(t *testing.T) {
	release := make(chan struct{})
	up := newFakeOpenAI(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		sseChunks(w, textStream, true)
	})
	c := New(NewLocal(0, 0), Options{})
	k, _ := NewKey("gpt", "", []byte(streamReq))
	d := ParseDirective(nil, nil)
	if _, ok := c.Lookup(context.Background(), k, d, true); ok {
		t.Fatal("hit on an empty cache")
	}

	const n = 50
	got := make([][]string, n)
	shared := make([]bool, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Stream(context.Background(), k, d, nil, up.open(streamReq))
			if err != nil {
				t.Errorf("Stream: %v", err)
				return
			}
			shared[i] = res.Shared
			if got[i], err = drain(t, res.Stream); err != nil {
				t.Errorf("waiter %d: %v", i, err)
			}
		}()
	}
	eventually(t, "50 waiters on one flight", func() bool { return streamWaiters(&c.group, k) == n })
	close(release)
	wg.Wait()

	if calls := up.calls.Load(); calls != 1 {
		t.Fatalf("%d upstream calls for %d identical stream requests, want 1", calls, n)
	}
	nShared := 0
	for i := range got {
		if !reflect.DeepEqual(got[i], textStream) {
			t.Fatalf("waiter %d got a different chunk sequence:\n%q", i, got[i])
		}
		if shared[i] {
			nShared++
		}
	}
	if nShared != n-1 {
		t.Errorf("%d shared waiters, want %d", nShared, n-1)
	}

	// Stored once complete; a stream hit replays the same text, a
	// non-stream hit answers with the assembled body.
	eventually(t, "the entry to be stored", func() bool { return c.Store().(*Local).Stats().Sets == 1 })
	e, ok := c.Lookup(context.Background(), k, d, true)
	if !ok {
		t.Fatal("no stream hit after the flight")
	}
	replayed := collect(t, e.Stream("", 0))
	if text, want := streamText(replayed), streamText(textStream); text != want || len(replayed) != len(textStream) {
		t.Errorf("replay text %q (%d chunks), want %q (%d)", text, len(replayed), want, len(textStream))
	}
	kPlain, _ := NewKey("gpt", "", []byte(plainReq))
	e, ok = c.Lookup(context.Background(), kPlain, Directive{}, false)
	if !ok {
		t.Fatal("a non-stream request misses the streamed answer")
	}
	if content := gjson.GetBytes(e.Body("", 0), "choices.0.message.content").Str; content != streamText(textStream) {
		t.Errorf("assembled content %q", content)
	}
	if up.calls.Load() != 1 {
		t.Error("a hit called upstream")
	}
}

// streamText concatenates the content deltas of chunk payloads.
func streamText(chunks []string) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString(gjson.Get(c, "choices.0.delta.content").Str)
	}
	return b.String()
}

func TestCacheDoCoalescesAndStores(t *testing.T) {
	release := make(chan struct{})
	up := newFakeOpenAI(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, chatBody)
	})
	c := New(NewLocal(0, 0), Options{})
	k, _ := NewKey("gpt", "", []byte(plainReq))
	const n = 50
	bodies := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Do(context.Background(), k, Directive{}, nil, up.fetch(plainReq))
			if err != nil {
				t.Errorf("Do: %v", err)
				return
			}
			bodies[i] = string(res.Response.Body)
		}()
	}
	eventually(t, "50 waiters on one call", func() bool { return callWaiters(&c.group, k) == n })
	close(release)
	wg.Wait()
	if calls := up.calls.Load(); calls != 1 {
		t.Fatalf("%d upstream calls for %d identical requests, want 1", calls, n)
	}
	for i, b := range bodies {
		if b != chatBody {
			t.Fatalf("waiter %d got %q", i, b)
		}
	}
	// Waiters are released before the answer is stored.
	eventually(t, "the entry to be stored", func() bool { return c.Store().(*Local).Stats().Sets == 1 })
	kStream, _ := NewKey("gpt", "", []byte(streamReq))
	e, ok := c.Lookup(context.Background(), kStream, Directive{}, true)
	if !ok {
		t.Fatal("a stream request misses the stored answer")
	}
	want := gjson.Get(chatBody, "choices.0.message.content").Str
	if got := streamText(collect(t, e.Stream("", 0))); got != want {
		t.Errorf("synthesized stream text %q, want %q", got, want)
	}
}

// TestCacheStoresOnlyCompleteAnswers runs each bad upstream answer through
// the cache and checks that nothing is stored.
func TestCacheStoresOnlyCompleteAnswers(t *testing.T) {
	filtered := []string{textStream[0], textStream[1], hdr + `{"index":0,"delta":{},"finish_reason":"content_filter"}]}`}
	tests := []struct {
		name   string
		stream bool
		behave func(w http.ResponseWriter, r *http.Request)
		errors bool // the caller sees an error
	}{
		{"upstream 500", false, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":{"message":"boom"}}`, 500)
		}, true},
		{"upstream 429 on a stream", true, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"message":"slow down"}}`, 429)
		}, true},
		{"non-stream content filter", false, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]}`)
		}, false},
		{"stream dies mid-way", true, func(w http.ResponseWriter, r *http.Request) { dieMidStream(w, textStream[:3]) }, true},
		{"stream ends without finish_reason or [DONE]", true, func(w http.ResponseWriter, r *http.Request) {
			sseChunks(w, textStream[:3], false)
		}, true},
		{"stream content filter", true, func(w http.ResponseWriter, r *http.Request) { sseChunks(w, filtered, true) }, false},
		{"stream error event", true, func(w http.ResponseWriter, r *http.Request) {
			sseChunks(w, []string{textStream[0], `{"error":{"message":"overloaded"}}`}, true)
		}, true},
	}
	for _, tt := range tests {
		for _, bypass := range []bool{false, true} {
			name := tt.name
			d := Directive{}
			if bypass {
				name += " (no-cache)"
				d.NoCache = true
			}
			t.Run(name, func(t *testing.T) {
				up := newFakeOpenAI(t, tt.behave)
				local := NewLocal(0, 0)
				c := New(local, Options{})
				body := plainReq
				if tt.stream {
					body = streamReq
				}
				k, _ := NewKey("gpt", "", []byte(body))
				var err error
				if tt.stream {
					var res StreamResult
					if res, err = c.Stream(context.Background(), k, d, nil, up.open(body)); err == nil {
						_, err = drain(t, res.Stream)
					}
				} else {
					_, err = c.Do(context.Background(), k, d, nil, up.fetch(body))
				}
				if (err != nil) != tt.errors {
					t.Errorf("caller error = %v, want error: %v", err, tt.errors)
				}
				if st := local.Stats(); st.Sets != 0 {
					t.Errorf("stored a bad answer: %+v", st)
				}
			})
		}
	}
}

func TestCacheDirectives(t *testing.T) {
	up := newFakeOpenAI(t, func(w http.ResponseWriter, r *http.Request) {
		if gjson.GetBytes(readAll(r), "stream").Bool() {
			sseChunks(w, textStream, true)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, chatBody)
	})
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	local := NewLocal(0, time.Hour)
	local.now = clk.now
	c := New(local, Options{MaxTTL: 10 * time.Minute})
	k, _ := NewKey("gpt", "", []byte(plainReq))

	// no-store: neither looked up, nor stored, nor shared.
	for i := 0; i < 2; i++ {
		if _, err := c.Do(ctx, k, Directive{NoStore: true}, nil, up.fetch(plainReq)); err != nil {
			t.Fatal(err)
		}
		res, err := c.Stream(ctx, k, Directive{NoStore: true}, nil, up.open(streamReq))
		if err != nil {
			t.Fatal(err)
		}
		drain(t, res.Stream)
	}
	if up.calls.Load() != 4 || local.Stats().Sets != 0 {
		t.Fatalf("no-store: %d calls, %+v", up.calls.Load(), local.Stats())
	}

	// no-cache on a stream: fetched fresh, stored all the same.
	res, err := c.Stream(ctx, k, Directive{NoCache: true}, nil, up.open(streamReq))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Lookup(ctx, k, Directive{NoCache: true}, true); ok {
		t.Error("no-cache looked up")
	}
	drain(t, res.Stream)
	if _, ok := c.Lookup(ctx, k, Directive{}, true); !ok {
		t.Fatal("no-cache did not store")
	}

	// s-maxage: an entry older than asked is a miss, a younger one a hit.
	stored, _ := c.Lookup(ctx, k, Directive{}, false)
	if _, ok := c.Lookup(ctx, k, Directive{MaxAge: time.Hour}, false); !ok {
		t.Error("fresh entry missed with s-maxage 1h")
	}
	if age := stored.Age(time.Now()); age <= 0 {
		t.Fatalf("age %v", age)
	}
	if _, ok := c.Lookup(ctx, k, Directive{MaxAge: time.Nanosecond}, false); ok {
		t.Error("entry older than s-maxage served")
	}

	// A request's ttl is capped by MaxTTL.
	k2, _ := NewKey("gpt", "", []byte(`{"model":"gpt","messages":[{"role":"user","content":"other"}]}`))
	sets := local.Stats().Sets
	if _, err := c.Do(ctx, k2, Directive{TTL: 24 * time.Hour}, nil, up.fetch(plainReq)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the entry to be stored", func() bool { return local.Stats().Sets == sets+1 })
	if _, ok := c.Lookup(ctx, k2, Directive{}, false); !ok {
		t.Fatal("entry missing")
	}
	clk.add(11 * time.Minute)
	if _, ok := c.Lookup(ctx, k2, Directive{}, false); ok {
		t.Error("ttl not capped at MaxTTL")
	}
}

func readAll(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	return b
}

func TestCacheStreamLookupNeedsStreamable(t *testing.T) {
	ctx := context.Background()
	c := New(NewLocal(0, 0), Options{})
	emb := `{"model":"e","input":"hello"}`
	k, _ := NewKey("e", "", []byte(emb))
	e, err := NewEntry([]byte(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1]}]}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Store().Set(ctx, k, e, 0)
	if _, ok := c.Lookup(ctx, k, Directive{}, false); !ok {
		t.Error("non-stream lookup missed")
	}
	if _, ok := c.Lookup(ctx, k, Directive{}, true); ok {
		t.Error("a stream request hit an entry that cannot stream")
	}
}

// TestCacheLeaderHangUpStillStores: the client that started a stream hangs
// up at once; the follower gets everything and the answer is stored.
func TestCacheLeaderHangUpStillStores(t *testing.T) {
	release := make(chan struct{})
	up := newFakeOpenAI(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		sseChunks(w, textStream, true)
	})
	c := New(NewLocal(0, 0), Options{})
	k, _ := NewKey("gpt", "", []byte(streamReq))
	leaderCtx, hangUp := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.Stream(leaderCtx, k, Directive{}, nil, up.open(streamReq))
		leaderErr <- err
	}()
	eventually(t, "the leader", func() bool { return streamWaiters(&c.group, k) == 1 })
	follower := make(chan []string, 1)
	go func() {
		res, err := c.Stream(context.Background(), k, Directive{}, nil, up.open(streamReq))
		if err != nil {
			t.Errorf("follower: %v", err)
			follower <- nil
			return
		}
		got, err := drain(t, res.Stream)
		if err != nil {
			t.Errorf("follower: %v", err)
		}
		follower <- got
	}()
	eventually(t, "the follower", func() bool { return streamWaiters(&c.group, k) == 2 })
	hangUp()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: %v", err)
	}
	close(release)
	if got := <-follower; !reflect.DeepEqual(got, textStream) {
		t.Errorf("follower got %q", got)
	}
	eventually(t, "the entry to be stored", func() bool { return c.Store().(*Local).Stats().Sets == 1 })
	if up.calls.Load() != 1 {
		t.Errorf("%d upstream calls", up.calls.Load())
	}
}

// TestCacheSealsWhatItStores: the entry stored for a plain and for a
// streamed miss is the sealed form of the answer, while the waiters get
// the answer as it came; a seal that refuses keeps nothing.
func TestCacheSealsWhatItStores(t *testing.T) {
	up := newFakeOpenAI(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(string(readAll(r)), `"stream":true`) {
			sseChunks(w, textStream, true)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, chatBody)
	})
	seal := func(body []byte) ([]byte, error) {
		return []byte(strings.NewReplacer("Hel", "[SEALED]", "Paris", "[SEALED]").Replace(string(body))), nil
	}
	refuse := func([]byte) ([]byte, error) { return nil, errors.New("blocked") }
	ctx := context.Background()
	for _, stream := range []bool{false, true} {
		local := NewLocal(0, 0)
		c := New(local, Options{})
		req := plainReq
		if stream {
			req = streamReq
		}
		k, _ := NewKey("gpt", "", []byte(req))
		var got string
		if stream {
			res, err := c.Stream(ctx, k, Directive{}, seal, up.open(req))
			if err != nil {
				t.Fatal(err)
			}
			chunks, err := drain(t, res.Stream)
			if err != nil {
				t.Fatal(err)
			}
			got = streamText(chunks)
			eventually(t, "the stream's entry", func() bool { return local.Stats().Sets == 1 })
		} else {
			res, err := c.Do(ctx, k, Directive{}, seal, up.fetch(req))
			if err != nil {
				t.Fatal(err)
			}
			got = gjson.GetBytes(res.Response.Body, "choices.0.message.content").Str
		}
		if got == "" || strings.Contains(got, "[SEALED]") {
			t.Errorf("stream %t: the waiter got %q, want the answer as it came", stream, got)
		}
		e, ok := c.Lookup(ctx, k, Directive{}, stream)
		if !ok {
			t.Fatalf("stream %t: nothing stored", stream)
		}
		stored := gjson.GetBytes(e.Body("", 0), "choices.0.message.content").Str
		replayed := streamText(collect(t, e.Stream("", 0)))
		if !strings.HasPrefix(stored, "[SEALED]") || replayed != stored {
			t.Errorf("stream %t: stored %q, replayed %q; want the sealed answer in both", stream, stored, replayed)
		}

		// A refusing seal: the waiter still gets the answer, nothing is kept.
		local = NewLocal(0, 0)
		c = New(local, Options{})
		if stream {
			res, err := c.Stream(ctx, k, Directive{}, refuse, up.open(req))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := drain(t, res.Stream); err != nil {
				t.Fatal(err)
			}
		} else if _, err := c.Do(ctx, k, Directive{}, refuse, up.fetch(req)); err != nil {
			t.Fatal(err)
		}
		// A stream stores just after its waiters' EOF, before its flight
		// is forgotten.
		eventually(t, "the flight to end", func() bool { return !streamInFlight(&c.group, k) })
		if n := local.Stats().Sets; n != 0 {
			t.Errorf("stream %t: a refused answer was stored (%d sets)", stream, n)
		}
	}
}
