package openai

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// fakeAzure answers chat completions as Azure OpenAI does: the deployment
// in the path, the api-version in the query, the key in api-key. API
// versions before 2024-09-01-preview refuse stream_options with a 400;
// streams start with Azure's prompt_filter_results chunk (no choices),
// carry content_filter_results on each choice, and end with the usage
// chunk (when asked for) and [DONE].
func fakeAzure(t *testing.T, got *[]byte) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		*got = body
		version := r.URL.Query().Get("api-version")
		if r.URL.Path != "/openai/deployments/my-gpt-4o/chat/completions" || version == "" || r.Header.Get("api-key") != "azure-key" {
			t.Errorf("fake azure: %s %s api-key=%q", r.Method, r.URL, r.Header.Get("api-key"))
		}
		if gjson.GetBytes(body, "stream_options").Exists() && version < "2024-09-01" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error","param":null,"code":null}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}`+"\n\n")
		io.WriteString(w, `data: {"choices":[{"content_filter_results":{},"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1738686168,"id":"chatcmpl-A","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_1"}`+"\n\n")
		io.WriteString(w, `data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Hi"},"finish_reason":null,"index":0,"logprobs":null}],"created":1738686168,"id":"chatcmpl-A","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_1"}`+"\n\n")
		io.WriteString(w, `data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1738686168,"id":"chatcmpl-A","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_1"}`+"\n\n")
		if gjson.GetBytes(body, "stream_options.include_usage").Bool() {
			io.WriteString(w, `data: {"choices":[],"created":1738686168,"id":"chatcmpl-A","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_1","usage":{"completion_tokens":1,"prompt_tokens":9,"total_tokens":10}}`+"\n\n")
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
}

// Azure API versions before 2024-09-01-preview refuse stream_options, so a
// deployment pinned to one (LiteLLM configs often say 2024-02-15-preview)
// streams without it: Lumen neither adds it nor passes the client's on.
// Later versions, and the non-date ones, get include_usage as OpenAI does.
func TestAzureStreamOptionsByAPIVersion(t *testing.T) {
	tests := []struct {
		version   string
		wantUsage bool
	}{
		{"2023-05-15", false},
		{"2024-02-15-preview", false},
		{"2024-06-01", false},
		{"2024-08-01-preview", false},
		{"2024-09-01-preview", true},
		{"", true}, // DefaultAzureAPIVersion, 2024-10-21
		{"2025-04-01-preview", true},
		{"preview", true},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			var got []byte
			srv := fakeAzure(t, &got)
			defer srv.Close()
			c, err := New(providers.Config{Provider: "azure", Model: "my-gpt-4o", APIBase: srv.URL, APIKey: "azure-key", APIVersion: tt.version})
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.DoStream(context.Background(), &providers.Request{Model: "my-gpt-4o", Stream: true,
				Body: []byte(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)})
			if err != nil {
				t.Fatalf("DoStream: %v", err)
			}
			defer s.Close()
			var text strings.Builder
			var usage providers.Usage
			for {
				data, err := s.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("Recv: %v", err)
				}
				text.WriteString(gjson.GetBytes(data, "choices.0.delta.content").Str)
				if HasUsage(data) {
					usage = ParseUsage(data)
				}
			}
			if text.String() != "Hi" {
				t.Fatalf("text %q", text.String())
			}
			if has := gjson.GetBytes(got, "stream_options").Exists(); has != tt.wantUsage {
				t.Fatalf("upstream body %s: stream_options sent = %t, want %t", got, has, tt.wantUsage)
			}
			if want := (providers.Usage{}); !tt.wantUsage && usage != want || tt.wantUsage && usage.PromptTokens != 9 {
				t.Fatalf("usage %+v", usage)
			}
		})
	}
}
