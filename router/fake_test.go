package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers"
)

// fake is a provider whose behaviour is a function of the call number and
// request; it records every request body.
type fake struct {
	mu     sync.Mutex
	bodies [][]byte
	do     func(ctx context.Context, n int, req *providers.Request) (*providers.Response, error)
	stream func(ctx context.Context, n int, req *providers.Request) (providers.Stream, error)
}

func (f *fake) Name() string { return "fake" }

func (f *fake) record(req *providers.Request) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies = append(f.bodies, append([]byte(nil), req.Body...))
	return len(f.bodies)
}

func (f *fake) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

func (f *fake) Body(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.bodies[i])
}

func (f *fake) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	n := f.record(req)
	if f.do == nil {
		return &providers.Response{Body: []byte(`{"ok":true}`)}, nil
	}
	return f.do(ctx, n, req)
}

func (f *fake) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	n := f.record(req)
	if f.stream == nil {
		return nil, errors.New("fake: no stream")
	}
	return f.stream(ctx, n, req)
}

// answers returns a fake that always answers with body.
func answers(body string) *fake {
	return &fake{do: func(context.Context, int, *providers.Request) (*providers.Response, error) {
		return &providers.Response{Body: []byte(body)}, nil
	}}
}

// failing returns a fake that always fails with err.
func failing(err error) *fake {
	return &fake{
		do: func(context.Context, int, *providers.Request) (*providers.Response, error) { return nil, err },
		stream: func(context.Context, int, *providers.Request) (providers.Stream, error) {
			return nil, err
		},
	}
}

// hangs returns a fake that answers only when its context ends, and then
// reports on cancelled.
func hangs(cancelled chan<- struct{}) *fake {
	wait := func(ctx context.Context) error {
		<-ctx.Done()
		cancelled <- struct{}{}
		return ctx.Err()
	}
	return &fake{
		do: func(ctx context.Context, _ int, _ *providers.Request) (*providers.Response, error) {
			return nil, wait(ctx)
		},
		stream: func(ctx context.Context, _ int, _ *providers.Request) (providers.Stream, error) {
			return nil, wait(ctx)
		},
	}
}

// chunks is a Stream of fixed events that ends with err (io.EOF: cleanly).
type chunks struct {
	events []string
	err    error
	i      int
	closed bool
}

func (c *chunks) Recv() ([]byte, error) {
	if c.closed {
		return nil, errors.New("recv after close")
	}
	if c.i < len(c.events) {
		c.i++
		return []byte(c.events[c.i-1]), nil
	}
	return nil, c.err
}

func (c *chunks) Close() error { c.closed = true; return nil }

// chatChunk is an OpenAI chat.completion.chunk with a content delta (or
// a role chunk when content is "<role>", a finish chunk when "<stop>").
func chatChunk(id, content string) string {
	switch content {
	case "<role>":
		return fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1,"model":"m-%s","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`, id, id)
	case "<stop>":
		return fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1,"model":"m-%s","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`, id, id)
	case "<tool>":
		return fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1,"model":"m-%s","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]},"finish_reason":null}]}`, id, id)
	case "<think>":
		return fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1,"model":"m-%s","choices":[{"index":0,"delta":{"reasoning_content":"The user greets me, so I should greet them back politely."},"finish_reason":null}]}`, id, id)
	case "<usage>":
		return fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1,"model":"m-%s","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14}}`, id, id)
	}
	return fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1,"model":"m-%s","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`, id, id, content)
}

// streams returns a fake whose every stream is the given chat chunks of id,
// ending with end.
func streams(id string, end error, contents ...string) *fake {
	return &fake{stream: func(context.Context, int, *providers.Request) (providers.Stream, error) {
		c := &chunks{err: end}
		for _, s := range contents {
			c.events = append(c.events, chatChunk(id, s))
		}
		return c, nil
	}}
}

var reset = &providers.UpstreamError{Provider: "fake", Message: "connection closed mid-response", Retryable: true, Err: io.ErrUnexpectedEOF}

// newTestRouter builds a router from yaml whose deployments are the fakes
// named by their upstream model, with a fixed clock, sleeps recorded and
// seeded randomness.
func newTestRouter(t testing.TB, yaml string, fakes map[string]providers.Provider) (*Router, *[]time.Duration) {
	t.Helper()
	return newRouterWith(t, yaml, func(pc providers.Config) (providers.Provider, error) {
		if p, ok := fakes[pc.Model]; ok {
			return p, nil
		}
		return failing(fmt.Errorf("%s must not be called", pc.Model)), nil
	})
}

// newRouterWith is newTestRouter with a builder of its own.
func newRouterWith(t testing.TB, yaml string, build Builder) (*Router, *[]time.Duration) {
	t.Helper()
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, build)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sleeps []time.Duration
	r.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		sleeps = append(sleeps, d)
		mu.Unlock()
		return ctx.Err()
	}
	seed(r, 1)
	return r, &sleeps
}

// seed makes r's randomness deterministic (and goroutine-safe).
func seed(r *Router, s uint64) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(s, s+1))
	r.jitter = func(n int64) int64 { mu.Lock(); defer mu.Unlock(); return rng.Int64N(n) }
	r.float = func() float64 { mu.Lock(); defer mu.Unlock(); return rng.Float64() }
}

// drainText reads a stream to its end and returns the concatenated
// content deltas, the chunk ids seen and the final error (nil at EOF).
func drainText(t *testing.T, s providers.Stream) (text string, ids []string, events []string, err error) {
	t.Helper()
	defer s.Close()
	var b strings.Builder
	for range 1000 {
		data, err := s.Recv()
		if err == io.EOF {
			return b.String(), ids, events, nil
		}
		if err != nil {
			return b.String(), ids, events, err
		}
		events = append(events, string(data))
		ids = append(ids, jsonStr(data, "id"))
		b.WriteString(jsonStr(data, "choices.0.delta.content"))
	}
	t.Fatal("stream does not end")
	return
}

func chat(group string, stream bool, extra string) *Call {
	body := `{"model":"` + group + `","messages":[{"role":"user","content":"hi"}]` + extra + `}`
	return &Call{Group: group, Body: []byte(body), Stream: stream, RequestID: "req-1"}
}

func jsonStr(data []byte, path string) string { return gjson.GetBytes(data, path).Str }
