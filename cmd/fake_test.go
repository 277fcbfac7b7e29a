package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lumengw/lumen/internal/syncbuf"
)

// fakeOpenAI is an OpenAI-shaped upstream on loopback. What it does
// depends on the upstream model Lumen sends:
//
//	gpt-4o      answers "Hello from fake" (stream: 3 chunks, then waits for release, then the rest)
//	hang        never answers until the client goes away
//	fail-429    429 rate_limit_exceeded with Retry-After: 7
//	fail-500    500 server_error
//	bad-key     401 whose message echoes the key and header it got
//	cut         streams 2 chunks then drops the connection
//	stall       streams 1 chunk, then blocks until the client cancels (reports it)
//	text-embedding-3-small  an embedding
//	429-once    the first call gets 429 with Retry-After: 1, later calls the gpt-4o answer
//	always-500  500 every time (a dead deployment)
//	cut-3       streams "Hello", " from", " fake", then drops the connection
//	weather-tool  calls get_weather({"city":"Paris"}), or answers "Sunny, 21C" once the history holds the tool result; streams too
//	continue    streams " stream", "!", a finish and usage (the rest of gpt-4o's answer)
//	spaced      answers "Hello spaced" with usage 1000/500 in Python json.dumps spacing ("usage": {…}, "choices": []);
//	            its stream ends without [DONE] after the usage chunk, as some Python servers do
//	no-choices  200 with a chat completion whose "choices": [] is empty
//	null-body   200 with the JSON literal null
//	no-usage    streams "Hello from fake stream!" and a finish, but no usage chunk, as some servers do
//	bad-chunk   streams "Hello", then a malformed event (data: {not json), then " again", a finish, usage 11/2 and [DONE]
type fakeOpenAI struct {
	*httptest.Server
	mu        sync.Mutex
	bodies    [][]byte
	seen      map[string]int // calls per upstream model
	release   chan struct{}  // gpt-4o streams pause until it is closed
	cancelled chan struct{}  // stall reports its request context ending
}

func newFakeOpenAI(t *testing.T) *fakeOpenAI {
	f := &fakeOpenAI{release: make(chan struct{}), cancelled: make(chan struct{}, 1)}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.releaseAll()
		f.Close()
	})
	return f
}

func (f *fakeOpenAI) releaseAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

func (f *fakeOpenAI) callsTo(model string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[model]
}

func (f *fakeOpenAI) lastBody() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var m map[string]any
	_ = json.Unmarshal(f.bodies[len(f.bodies)-1], &m)
	return m
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal(body, &req)
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	if f.seen == nil {
		f.seen = map[string]int{}
	}
	f.seen[req.Model]++
	n := f.seen[req.Model]
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer sk-upstream-secret-123456" && req.Model != "bad-key" {
		writeFakeError(w, 401, "invalid_request_error", "invalid_api_key", "fake: wrong upstream key")
		return
	}
	switch req.Model {
	case "hang":
		<-r.Context().Done()
	case "fail-429":
		w.Header().Set("Retry-After", "7")
		writeFakeError(w, 429, "requests", "rate_limit_exceeded", "Rate limit reached for gpt-4o")
	case "429-once":
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			writeFakeError(w, 429, "requests", "rate_limit_exceeded", "Rate limit reached, retry after 1s")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-fake","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello after retry"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}`)
	case "fail-500", "always-500":
		writeFakeError(w, 500, "server_error", "", "The server had an error while processing your request.")
	case "bad-key":
		// Echoes the key it was sent, and an extra header's value, as some
		// OpenAI-compatible servers do.
		auth := r.Header.Get("Authorization")
		writeFakeError(w, 401, "invalid_request_error", "invalid_api_key",
			"Incorrect API key provided: "+strings.TrimPrefix(auth, "Bearer ")+". Header was "+auth+"; x-tenant-token was "+r.Header.Get("X-Tenant-Token"))
	case "weather-tool":
		weatherTool(w, body, req.Stream)
	case "no-choices":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id": "chatcmpl-empty", "object": "chat.completion", "created": 1, "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 0, "total_tokens": 11}}`)
	case "null-body":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "null")
	case "spaced":
		spaced(w, req.Stream)
	case "text-embedding-3-small":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}`)
	default:
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"chatcmpl-fake","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from fake"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}`)
			return
		}
		f.stream(w, r, req.Model)
	}
}

func (f *fakeOpenAI) stream(w http.ResponseWriter, r *http.Request, model string) {
	w.Header().Set("Content-Type", "text/event-stream")
	words := []string{"Hello", " from", " fake", " stream", "!"}
	send := func(i int) {
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", words[i])
		w.(http.Flusher).Flush()
	}
	switch model {
	case "cut":
		send(0)
		send(1)
		panic(http.ErrAbortHandler) // drop the connection mid-stream
	case "stall":
		send(0)
		<-r.Context().Done()
		f.cancelled <- struct{}{}
		return
	case "cut-3":
		send(0)
		send(1)
		send(2)
		panic(http.ErrAbortHandler)
	case "bad-chunk":
		send(0)
		io.WriteString(w, "data: {not json\n\n")
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" again\"},\"finish_reason\":null}]}\n\n")
		io.WriteString(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
		io.WriteString(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13}}\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
		return
	case "no-usage":
		for i := range words {
			send(i)
		}
		io.WriteString(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
		return
	case "continue":
		for _, word := range words[3:] { // its own id: Lumen must splice it into the client's
			fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", word)
		}
		io.WriteString(w, "data: {\"id\":\"chatcmpl-c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
		io.WriteString(w, "data: {\"id\":\"chatcmpl-c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":2,\"total_tokens\":32}}\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
		return
	}
	for i := 0; i < 3; i++ {
		send(i)
	}
	select {
	case <-f.release:
	case <-r.Context().Done():
		return
	}
	for i := 3; i < len(words); i++ {
		send(i)
	}
	io.WriteString(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	io.WriteString(w, "data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":5,\"total_tokens\":16}}\n\n")
	io.WriteString(w, "data: [DONE]\n\n")
}

// spaced answers as a Python server does with json.dumps' default
// separators (", " and ": "): the usage chunk is "choices": [] and
// "usage": {…}, and the stream ends after it without [DONE].
func spaced(w http.ResponseWriter, stream bool) {
	usage := `{"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}`
	if !stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id": "chatcmpl-sp", "object": "chat.completion", "created": 1, "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello spaced"}, "finish_reason": "stop"}], "usage": %s}`, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, c := range []string{
		`[{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": null}]`,
		`[{"index": 0, "delta": {"content": " spaced"}, "finish_reason": null}]`,
		`[{"index": 0, "delta": {}, "finish_reason": "stop"}]`,
	} {
		fmt.Fprintf(w, "data: {\"id\": \"chatcmpl-sp\", \"object\": \"chat.completion.chunk\", \"created\": 1, \"model\": \"gpt-4o\", \"choices\": %s}\n\n", c)
	}
	fmt.Fprintf(w, "data: {\"id\": \"chatcmpl-sp\", \"object\": \"chat.completion.chunk\", \"created\": 1, \"model\": \"gpt-4o\", \"choices\": [], \"usage\": %s}\n\n", usage)
	w.(http.Flusher).Flush()
}

func writeFakeError(w http.ResponseWriter, status int, typ, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	c := "null"
	if code != "" {
		c = fmt.Sprintf("%q", code)
	}
	fmt.Fprintf(w, `{"error":{"message":%q,"type":%q,"param":null,"code":%s}}`, msg, typ, c)
}

// lumen is a running `lumen serve`, in process.
type lumen struct {
	URL    string
	Logs   *syncbuf.Buffer
	Config string // the config file's path
	stop   func() error
}

// startLumen runs `lumen serve --config <yaml> --port 0` and waits until it
// listens. {{FAKE}} in the YAML is replaced by fake's URL.
func startLumen(t *testing.T, yaml string, fake *fakeOpenAI, args ...string) *lumen {
	t.Helper()
	if fake != nil {
		yaml = strings.ReplaceAll(yaml, "{{FAKE}}", fake.URL)
	}
	path := t.TempDir() + "/config.yaml"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	f := &Factory{In: strings.NewReader(""), Out: io.Discard, ErrOut: logs}
	ready := make(chan string, 1)
	cmd := NewCmdServe(f, func(ctx context.Context, o *ServeOptions) error {
		o.Ready = func(addr string) { ready <- addr }
		return serveRun(ctx, o)
	})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(append([]string{"--config", path, "--port", "0"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("lumen serve exited: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("lumen serve did not start\n%s", logs)
	}
	l := &lumen{URL: "http://" + addr, Logs: logs, Config: path}
	var once sync.Once
	var stopErr error
	l.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
		})
		return stopErr
	}
	t.Cleanup(func() { _ = l.stop() })
	return l
}

// weatherTool answers as OpenAI does with tools: a get_weather call, or,
// when the tool's result is in the messages, the final text.
func weatherTool(w http.ResponseWriter, body []byte, stream bool) {
	answered := bytes.Contains(body, []byte(`"role":"tool"`))
	usage := `{"prompt_tokens":40,"completion_tokens":12,"total_tokens":52}`
	if !stream {
		w.Header().Set("Content-Type", "application/json")
		msg, finish := `{"role":"assistant","content":null,"tool_calls":[{"id":"call_abc123","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`, "tool_calls"
		if answered {
			msg, finish = `{"role":"assistant","content":"Sunny, 21C"}`, "stop"
		}
		fmt.Fprintf(w, `{"id":"chatcmpl-tool","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":%s,"finish_reason":%q}],"usage":%s}`, msg, finish, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	send := func(choices string) {
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-tool\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[%s]}\n\n", choices)
		fl.Flush()
	}
	send(`{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}`)
	finish := "tool_calls"
	if answered {
		send(`{"index":0,"delta":{"content":"Sunny, "},"finish_reason":null}`)
		send(`{"index":0,"delta":{"content":"21C"},"finish_reason":null}`)
		finish = "stop"
	} else {
		send(`{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_abc123","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}`)
		send(`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}`)
		send(`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}`)
	}
	send(fmt.Sprintf(`{"index":0,"delta":{},"finish_reason":%q}`, finish))
	fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-tool\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", usage)
	fl.Flush()
}
