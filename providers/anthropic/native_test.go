package anthropic

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// nativeUpstream is an Anthropic API that answers with fixture files and
// keeps what it received, bytes and headers.
type nativeUpstream struct {
	mu     sync.Mutex
	body   []byte
	header http.Header
	file   string // fixture to answer with
	status int
	hang   chan struct{} // closed when a hanging request's client left
}

func (u *nativeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.body, u.header = body, r.Header.Clone()
	file, status, hang := u.file, u.status, u.hang
	u.mu.Unlock()
	if status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}`)
		return
	}
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	if strings.HasSuffix(file, ".sse") {
		w.Header().Set("Content-Type", "text/event-stream")
		if hang != nil {
			_, _ = w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			close(hang)
			return
		}
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	_, _ = w.Write(data)
}

func (u *nativeUpstream) got() ([]byte, http.Header) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.body, u.header
}

// passThrough is /v1/messages served natively, as the server does it for
// an Anthropic deployment: bytes in, bytes out, usage counted on the way.
func passThrough(t *testing.T, c *Client, counted *providers.Usage) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		resp, err := c.DoMessages(r.Context(), body, r.Header)
		if err != nil {
			var ue *providers.UpstreamError
			status := 500
			if errors.As(err, &ue) {
				status = ue.Status
			}
			w.WriteHeader(status)
			_, _ = w.Write(ErrorJSON(status, err.Error()))
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			data, _ := io.ReadAll(resp.Body)
			*counted = ParseUsage(data)
			_, _ = w.Write(data)
			return
		}
		var uc UsageCounter
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadBytes('\n')
			if data, ok := strings.CutPrefix(string(line), "data: "); ok {
				uc.Event([]byte(data))
			}
			_, _ = w.Write(line)
			if err != nil {
				break
			}
		}
		*counted = uc.Usage()
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSDKNativePassThrough(t *testing.T) {
	up := &nativeUpstream{file: "responses/text_cached.json"}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	var counted providers.Usage
	client := sdkClient(passThrough(t, newTestClient(t, upSrv.URL), &counted))

	msg, err := client.Messages.New(context.Background(), sdk.MessageNewParams{
		Model: "claude-group", MaxTokens: 200,
		System: []sdk.TextBlockParam{{Text: strings.Repeat("A long, cacheable system prompt. ", 20),
			CacheControl: sdk.NewCacheControlEphemeralParam()}},
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Hello"))},
		Thinking: sdk.ThinkingConfigParamOfEnabled(1024),
	}, option.WithHeader("anthropic-beta", "context-1m-2025-08-07"))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "Hello! How can I help you today?" || msg.Usage.CacheCreationInputTokens != 1800 {
		t.Errorf("message = %s", msg.RawJSON())
	}
	want := providers.Usage{PromptTokens: 12 + 2048 + 1800, CompletionTokens: 10, CachedTokens: 2048, CacheWriteTokens: 1800}
	if counted != want {
		t.Errorf("counted usage = %+v, want %+v", counted, want)
	}
	body, h := up.got()
	got := gjson.ParseBytes(body)
	if got.Get("model").Str != "claude-test" {
		t.Errorf("model = %q, want the deployment's claude-test", got.Get("model").Str)
	}
	if got.Get("system.0.cache_control.type").Str != "ephemeral" || got.Get("thinking.budget_tokens").Int() != 1024 {
		t.Errorf("cache_control or thinking lost on the native path: %s", body)
	}
	if h.Get("X-Api-Key") != fakeKey || h.Get("Anthropic-Beta") != "context-1m-2025-08-07" || h.Get("Anthropic-Version") != "2023-06-01" {
		t.Errorf("upstream headers: x-api-key %q anthropic-beta %q anthropic-version %q", h.Get("X-Api-Key"), h.Get("Anthropic-Beta"), h.Get("Anthropic-Version"))
	}
	if h.Get("Authorization") != "" {
		t.Errorf("the client's credentials must not reach the upstream: %q", h.Get("Authorization"))
	}
}

func TestSDKNativeStream(t *testing.T) {
	up := &nativeUpstream{file: "streams/tools.sse"}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	var counted providers.Usage
	client := sdkClient(passThrough(t, newTestClient(t, upSrv.URL), &counted))
	stream := client.Messages.NewStreaming(context.Background(), sdk.MessageNewParams{Model: "claude-group", MaxTokens: 200,
		Tools: []sdk.ToolUnionParam{weatherParam}, Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Weather?"))}})
	var msg sdk.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 3 || msg.Content[1].AsToolUse().Name != "get_weather" || string(msg.Content[1].AsToolUse().Input) != `{"city": "San Francisco"}` {
		t.Errorf("accumulated = %s", msg.RawJSON())
	}
	if want := (providers.Usage{PromptTokens: 472, CompletionTokens: 89}); counted != want {
		t.Errorf("counted usage = %+v, want %+v", counted, want)
	}
	if body, h := up.got(); !gjson.GetBytes(body, "stream").Bool() || h.Get("Accept") != "text/event-stream" {
		t.Errorf("upstream got stream=%v accept=%q", gjson.GetBytes(body, "stream").Bool(), h.Get("Accept"))
	}
}

func TestDoMessagesErrors(t *testing.T) {
	up := &nativeUpstream{status: 529}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	c := newTestClient(t, upSrv.URL)
	_, err := c.DoMessages(context.Background(), []byte(`{"model":"x","max_tokens":10,"messages":[]}`), nil)
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 529 || !ue.Retryable || ue.Code != "overloaded_error" || ue.Message != "Overloaded" {
		t.Fatalf("err = %#v", err)
	}
	_, err = c.DoMessages(context.Background(), []byte(`not json`), nil)
	if !providers.IsInvalidRequest(err) {
		t.Fatalf("a body that is not JSON: err = %v, want InvalidRequestError", err)
	}
}

func TestDoMessagesCloseCancelsUpstream(t *testing.T) {
	up := &nativeUpstream{file: "streams/text.sse", hang: make(chan struct{})}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	c := newTestClient(t, upSrv.URL)
	resp, err := c.DoMessages(context.Background(), []byte(`{"model":"x","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case <-up.hang:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the body did not end the upstream request")
	}
}
