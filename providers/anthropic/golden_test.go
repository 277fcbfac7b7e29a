package anthropic

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
)

func requestBody(t *testing.T, name string) string {
	t.Helper()
	for _, r := range pt.Requests {
		if r.Name == name {
			return r.Body
		}
	}
	t.Fatalf("no request %q in providertest.Requests", name)
	return ""
}

// TestGoldenRequests pins the exact Messages API body Lumen sends for each
// shared request.
func TestGoldenRequests(t *testing.T) {
	c := newTestClient(t, "")
	for _, r := range pt.Requests {
		t.Run(r.Name, func(t *testing.T) {
			_, body, err := c.translate(&providers.Request{Op: providers.OpChat, Model: "claude-sonnet-4-5",
				Body: []byte(r.Body), Stream: gjson.Get(r.Body, "stream").Bool()})
			if err != nil {
				t.Fatal(err)
			}
			pt.Golden(t, filepath.Join("testdata", "requests", r.Name+".json"), body)
		})
	}
}

// TestFileRejects: a file the provider cannot read is a 400, not a
// request sent without it.
func TestFileRejects(t *testing.T) {
	c := newTestClient(t, "")
	pt.CheckFileRejects(t, func(body []byte) error {
		_, _, err := c.translate(&providers.Request{Op: providers.OpChat, Model: "claude-sonnet-4-5", Body: body})
		return err
	})
}

// serveFile answers every request with a fixture file.
func serveFile(t *testing.T, path, contentType string) *Client {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return newTestClient(t, srv.URL)
}

// TestGoldenResponses pins the OpenAI translation of documented Messages
// API answers.
func TestGoldenResponses(t *testing.T) {
	for _, tt := range []struct{ fixture, request string }{
		{"text_cached", "plain"},
		{"tool_use", "tool_round_trip"},
		{"thinking_max_tokens", "plain"},
		{"json_response", "json_schema"},
		{"refusal", "plain"},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			c := serveFile(t, filepath.Join("testdata", "responses", tt.fixture+".json"), "application/json")
			resp, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "claude-sonnet-4-5", Body: []byte(requestBody(t, tt.request))})
			if err != nil {
				t.Fatal(err)
			}
			pt.Golden(t, filepath.Join("testdata", "responses", tt.fixture+".openai.json"), resp.Body)
		})
	}
}

// TestGoldenStreams pins the OpenAI chunks for documented event streams.
func TestGoldenStreams(t *testing.T) {
	for _, tt := range []struct{ fixture, request string }{
		{"text", "stream"},
		{"tools", "tool_round_trip"},
		{"thinking", "stream"},
		{"json_response", "json_schema"},
		{"overloaded", "stream"},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			c := serveFile(t, filepath.Join("testdata", "streams", tt.fixture+".sse"), "text/event-stream")
			st, err := c.DoStream(context.Background(), &providers.Request{Op: providers.OpChat, Model: "claude-sonnet-4-5", Body: []byte(requestBody(t, tt.request)), Stream: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var chunks [][]byte
			for {
				data, err := st.Recv()
				if err != nil {
					if err == io.EOF {
						err = nil
					}
					pt.Golden(t, filepath.Join("testdata", "streams", tt.fixture+".openai.txt"), pt.StreamGolden(chunks, err))
					return
				}
				chunks = append(chunks, bytes.Clone(data))
			}
		})
	}
}
