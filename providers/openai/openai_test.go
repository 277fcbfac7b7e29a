package openai

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

func TestPassThroughBodyAndAuth(t *testing.T) {
	tests := []struct {
		name, provider, wantPath, wantHeader, wantValue string
	}{
		{"openai", "openai", "/v1/chat/completions", "Authorization", "Bearer sk-x"},
		{"azure", "azure", "/openai/deployments/gpt-4o/chat/completions", "api-key", "sk-x"},
		{"ollama root api_base gets /v1", "ollama", "/v1/chat/completions", "Authorization", "Bearer sk-x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *http.Request
			var body []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, body = r, must(io.ReadAll(r.Body))
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}`)
			}))
			defer srv.Close()
			base := srv.URL
			if tt.provider == "openai" {
				base += "/v1"
			}
			c, err := New(providers.Config{Provider: tt.provider, Model: "gpt-4o", APIBase: base, APIKey: "sk-x"})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(context.Background(), &providers.Request{Model: "gpt-4o", Body: []byte(`{"model":"alias","messages":[],"logprobs":true,"x_custom":{"a":1}}`)})
			if err != nil {
				t.Fatal(err)
			}
			if got.URL.Path != tt.wantPath || got.Header.Get(tt.wantHeader) != tt.wantValue {
				t.Fatalf("path %s header %s=%q", got.URL.Path, tt.wantHeader, got.Header.Get(tt.wantHeader))
			}
			if tt.provider == "azure" && got.URL.Query().Get("api-version") != DefaultAzureAPIVersion {
				t.Fatalf("api-version = %q", got.URL.Query().Get("api-version"))
			}
			if string(body) != `{"model":"gpt-4o","messages":[],"logprobs":true,"x_custom":{"a":1}}` {
				t.Fatalf("upstream body %s", body)
			}
			if resp.Usage != (providers.Usage{PromptTokens: 7, CompletionTokens: 3, CachedTokens: 2}) {
				t.Fatalf("usage %+v", resp.Usage)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		header    map[string]string
		retryable bool
		message   string
		code      string
		after     time.Duration
	}{
		{"rate limited", 429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, map[string]string{"Retry-After": "2"}, true, "Rate limit reached", "rate_limit_exceeded", 2 * time.Second},
		{"bad request", 400, `{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","param":"messages"}}`, nil, false, "This model's maximum context length is 8192 tokens", "context_length_exceeded", 0},
		{"plain text 503", 503, `upstream connect error`, nil, true, "upstream connect error", "", 0},
		{"200 invalid JSON", 200, `{"id":`, nil, true, "upstream answered with invalid JSON", "", 0},
		{"200 null", 200, `null`, nil, true, "upstream answered with JSON that is not an object", "", 0},
		{"200 array", 200, ` [1]`, nil, true, "upstream answered with JSON that is not an object", "", 0},
		// vLLM: its code is the HTTP status, a number, not an OpenAI code.
		{"vllm context length", 400, `{"error":{"message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}}`, nil, false,
			"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.", "context_length_exceeded", 0},
		// Older vLLM, FastChat, TensorRT-LLM: the error's fields at the top.
		{"flat error object", 404, `{"object":"error","message":"The model ` + "`llama`" + ` does not exist.","type":"NotFoundError","param":null,"code":404}`, nil, false, "The model `llama` does not exist.", "", 0},
		{"vllm max model length", 400, `{"error":{"message":"The decoder prompt (length 5000) is longer than the maximum model length of 4096. Make sure that ` + "`max_model_len`" + ` is no smaller than the number of text tokens.","type":"BadRequestError","param":null,"code":400}}`, nil, false,
			"The decoder prompt (length 5000) is longer than the maximum model length of 4096. Make sure that `max_model_len` is no smaller than the number of text tokens.", "context_length_exceeded", 0},
		{"unauthorized", 401, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`, nil, false, "Incorrect API key provided", "invalid_api_key", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, _ := New(providers.Config{Provider: "openai", Model: "m", APIBase: srv.URL + "/v1"})
			_, err := c.Do(context.Background(), &providers.Request{Model: "m", Body: []byte(`{}`)})
			var ue *providers.UpstreamError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v", err)
			}
			status := tt.status
			if status == 200 {
				status = 502 // a 200 that is no answer is a bad gateway
			}
			if ue.Status != status || ue.Retryable != tt.retryable || ue.Message != tt.message || ue.Code != tt.code || ue.RetryAfter != tt.after {
				t.Fatalf("got %+v", ue)
			}
		})
	}
}

func TestUnreachableAndTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	url := srv.URL
	srv.Close()
	c, _ := New(providers.Config{Provider: "openai", Model: "m", APIBase: url + "/v1"})
	_, err := c.Do(context.Background(), &providers.Request{Body: []byte(`{}`)})
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 0 || !ue.Retryable || ue.Message != "unreachable" {
		t.Fatalf("unreachable: %v", err)
	}

	// The fake reads the body first: net/http notices a client hang-up only
	// once the request body is consumed.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); <-r.Context().Done() }))
	defer hang.Close()
	c, _ = New(providers.Config{Provider: "openai", Model: "m", APIBase: hang.URL + "/v1", Timeout: 20 * time.Millisecond})
	_, err = c.Do(context.Background(), &providers.Request{Body: []byte(`{}`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	_, err = c.DoStream(context.Background(), &providers.Request{Body: []byte(`{}`), Stream: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stream first-byte timeout: %v", err)
	}
}

func TestStream(t *testing.T) {
	tests := []struct {
		name    string
		events  string
		hang    bool
		wantN   int
		wantErr string
	}{
		{"done", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", false, 2, ""},
		{"error event mid-stream", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n", false, 1, "overloaded"},
		{"spaced finish, no [DONE]", "data: {\"choices\": [{\"delta\": {\"content\": \"a\"}}]}\n\ndata: {\"choices\": [{\"delta\": {}, \"finish_reason\": \"stop\"}]}\n\n", false, 2, ""},
		{"cut without finish", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", false, 1, "connection closed mid-response"},
		{"gap timeout", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", true, 1, "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reqBody []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reqBody = must(io.ReadAll(r.Body))
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, tt.events)
				w.(http.Flusher).Flush()
				if tt.hang {
					<-r.Context().Done()
				}
			}))
			defer srv.Close()
			c, _ := New(providers.Config{Provider: "openai", Model: "m", APIBase: srv.URL + "/v1", StreamTimeout: 30 * time.Millisecond})
			s, err := c.DoStream(context.Background(), &providers.Request{Model: "m", Stream: true, Body: []byte(`{"stream":true}`)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !gjson.GetBytes(reqBody, "stream_options.include_usage").Bool() {
				t.Fatalf("include_usage not forced: %s", reqBody)
			}
			n := 0
			for {
				_, err = s.Recv()
				if err != nil {
					break
				}
				n++
			}
			if n != tt.wantN {
				t.Fatalf("events = %d, want %d", n, tt.wantN)
			}
			if tt.wantErr == "" && err != io.EOF || tt.wantErr != "" && (err == io.EOF || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// An answer over providers.MaxAnswerBytes is a 502, not retried, whether
// its Content-Length says so or it just goes on; memory stays bounded.
func TestAnswerTooLarge(t *testing.T) {
	for _, declared := range []bool{true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if declared {
				w.Header().Set("Content-Length", strconv.Itoa(providers.MaxAnswerBytes+10))
			}
			io.WriteString(w, `{"id":"`)
			chunk := strings.Repeat("a", 1<<20)
			for i := 0; i <= providers.MaxAnswerBytes>>20; i++ {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
			io.WriteString(w, `"}`)
		}))
		c, _ := New(providers.Config{Provider: "openai", Model: "m", APIBase: srv.URL + "/v1"})
		_, err := c.Do(context.Background(), &providers.Request{Model: "m", Body: []byte(`{}`)})
		srv.Close()
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Status != 502 || ue.Retryable || ue.Message != "answered with more than 64 MiB" {
			t.Fatalf("declared %t: %v", declared, err)
		}
	}
}

// An answer nested millions of levels deep is a 502: gjson's validator
// recursed once per level, and the goroutine stack overflow that followed
// was fatal, so one upstream could end the whole gateway.
func TestAnswerNestedTooDeep(t *testing.T) {
	const depth = 20_000_000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","choices":`+strings.Repeat("[", depth)+strings.Repeat("]", depth)+`}`)
	}))
	defer srv.Close()
	c, _ := New(providers.Config{Provider: "openai", Model: "m", APIBase: srv.URL + "/v1"})
	_, err := c.Do(context.Background(), &providers.Request{Model: "m", Body: []byte(`{}`)})
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 502 || !strings.Contains(ue.Message, "levels deep") {
		t.Fatalf("got %v, want a 502 naming the nesting", err)
	}
}
