package gemini

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

// TestGoldenRequests pins the exact generateContent body Lumen sends for
// each shared request.
func TestGoldenRequests(t *testing.T) {
	c := newTestClient(t, "")
	c.SetImageFetcher(&providers.ImageFetcher{Client: pt.ExampleImageClient})
	for _, r := range pt.Requests {
		t.Run(r.Name, func(t *testing.T) {
			_, body, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-flash",
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
		_, _, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-flash", Body: body})
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

// TestGoldenResponses pins the OpenAI translation of documented
// GenerateContentResponse answers.
func TestGoldenResponses(t *testing.T) {
	for _, tt := range []struct{ fixture, request string }{
		{"text_cached", "plain"},
		{"function_calls", "tool_round_trip"},
		{"thoughts_max_tokens", "plain"},
		{"safety", "plain"},
		{"prompt_blocked", "plain"},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			c := serveFile(t, filepath.Join("testdata", "responses", tt.fixture+".json"), "application/json; charset=UTF-8")
			resp, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-flash", Body: []byte(requestBody(t, tt.request))})
			if err != nil {
				t.Fatal(err)
			}
			pt.Golden(t, filepath.Join("testdata", "responses", tt.fixture+".openai.json"), resp.Body)
		})
	}
}

// TestGoldenStreams pins the OpenAI chunks for documented SSE streams.
func TestGoldenStreams(t *testing.T) {
	for _, tt := range []struct{ fixture, request string }{
		{"text", "stream"},
		{"tools", "tool_round_trip"},
		{"overloaded", "stream"},
		{"cut", "stream"},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			c := serveFile(t, filepath.Join("testdata", "streams", tt.fixture+".sse"), "text/event-stream")
			st, err := c.DoStream(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-flash", Body: []byte(requestBody(t, tt.request)), Stream: true})
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

// TestThoughtSignatureRoundTrip checks that a call's thoughtSignature,
// carried in the tool-call id, goes back on the functionCall part.
func TestThoughtSignatureRoundTrip(t *testing.T) {
	c := serveFile(t, filepath.Join("testdata", "responses", "function_calls.json"), "application/json")
	resp, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-pro", Body: []byte(requestBody(t, "plain"))})
	if err != nil {
		t.Fatal(err)
	}
	calls := gjson.GetBytes(resp.Body, "choices.0.message.tool_calls").Raw
	body := `{"messages":[{"role":"user","content":"Weather?"},{"role":"assistant","tool_calls":` + calls + `},
		{"role":"tool","tool_call_id":` + gjson.GetBytes(resp.Body, "choices.0.message.tool_calls.0.id").Raw + `,"content":"sunny"},
		{"role":"tool","tool_call_id":` + gjson.GetBytes(resp.Body, "choices.0.message.tool_calls.1.id").Raw + `,"content":"rain"}]}`
	_, out, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-pro", Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	parts := gjson.GetBytes(out, "contents.1.parts")
	if got := parts.Get("0.thoughtSignature").Str; got != "CiQB0e2Kb8Xk3a7/Yw==" {
		t.Errorf("first call's thoughtSignature = %q, want the upstream's: %s", got, out)
	}
	if parts.Get("1.thoughtSignature").Exists() || strings.Contains(parts.Get("0.functionCall").Raw, thoughtSep) {
		t.Errorf("the signature belongs on its own part only: %s", out)
	}
	if got := gjson.GetBytes(out, "contents.2.parts.#.functionResponse.name").Raw; got != `["get_weather","get_weather"]` {
		t.Errorf("function responses = %s", got)
	}
}

// TestToolResultWithoutCall checks that a tool result Lumen cannot name is
// a clear 400 rather than a request Gemini would reject.
func TestToolResultWithoutCall(t *testing.T) {
	c := newTestClient(t, "")
	_, _, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Body: []byte(
		`{"messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"call_9","content":"y"}]}`)})
	var ie *providers.InvalidRequestError
	if !errors.As(err, &ie) || ie.Param != "messages[1].tool_call_id" {
		t.Fatalf("err = %v, want an InvalidRequestError for messages[1].tool_call_id", err)
	}
}
