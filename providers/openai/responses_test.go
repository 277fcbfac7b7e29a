package openai

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// A deployment that speaks the Responses API gets a Responses client's
// own request at /v1/responses (model replaced, stream as asked), answers
// with a Response whose usage is read, and streams events that pass as
// they are, ending with the connection after response.completed.
func TestResponsesNative(t *testing.T) {
	var paths []string
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		paths, bodies = append(paths, r.URL.Path), append(bodies, string(b))
		if !gjson.GetBytes(b, "stream").Bool() {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":8},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":25}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_2\"}}\n\n")
		io.WriteString(w, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n")
		io.WriteString(w, "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_2\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n")
	}))
	defer srv.Close()
	on := true
	c, err := New(providers.Config{Provider: "openai", Model: "gpt-5", APIBase: srv.URL + "/v1", APIKey: "sk-x", ResponsesAPI: &on})
	if err != nil {
		t.Fatal(err)
	}
	req := &providers.Request{Op: providers.OpChat, Model: "gpt-5", Body: []byte(`{"model":"alias","messages":[{"role":"user","content":"hi"}]}`),
		Responses: []byte(`{"model":"alias","input":"hi","store":false,"include":["reasoning.encrypted_content"]}`)}
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if paths[0] != "/v1/responses" || bodies[0] != `{"model":"gpt-5","input":"hi","store":false,"include":["reasoning.encrypted_content"]}` {
		t.Fatalf("upstream got %s %s", paths[0], bodies[0])
	}
	if resp.Usage != (providers.Usage{PromptTokens: 20, CompletionTokens: 5, CachedTokens: 8}) {
		t.Errorf("usage %+v", resp.Usage)
	}

	req.Stream = true
	st, err := c.DoStream(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var types []string
	for {
		data, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		types = append(types, gjson.GetBytes(data, "type").Str)
	}
	if strings.Join(types, " ") != "response.created response.output_text.delta response.completed" {
		t.Errorf("events %v", types)
	}
	if !gjson.Get(bodies[1], "stream").Bool() || gjson.Get(bodies[1], "stream_options").Exists() {
		t.Errorf("stream body %s", bodies[1])
	}

	// Without the Responses body (a chat client), or with the API off, the
	// request is chat completions as before.
	req.Responses, req.Stream = nil, false
	if _, err := c.Do(context.Background(), req); err != nil || paths[2] != "/v1/chat/completions" {
		t.Errorf("chat request went to %s: %v", paths[2], err)
	}
	off := false
	c2, _ := New(providers.Config{Provider: "openai", Model: "gpt-5", APIBase: srv.URL + "/v1", APIKey: "sk-x", ResponsesAPI: &off})
	req.Responses = []byte(`{"model":"alias","input":"hi"}`)
	_, _ = c2.Do(context.Background(), req)
	if paths[3] != "/v1/chat/completions" {
		t.Errorf("responses_api false: request went to %s", paths[3])
	}
}

// On by default only for OpenAI itself.
func TestResponsesDefault(t *testing.T) {
	for _, tt := range []struct {
		provider, base string
		want           bool
	}{
		{"openai", "", true},
		{"openai", "https://api.openai.com/v1", true},
		{"openai", "http://127.0.0.1:8000/v1", false},
		{"groq", "", false},
		{"azure", "https://x.openai.azure.com", false},
	} {
		c, err := New(providers.Config{Provider: tt.provider, Model: "m", APIBase: tt.base})
		if err != nil {
			t.Fatal(err)
		}
		if c.responses != tt.want {
			t.Errorf("%s at %q: responses = %v, want %v", tt.provider, tt.base, c.responses, tt.want)
		}
	}
}

// An error event mid-stream is an upstream error with its message.
func TestResponsesStreamError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n")
		io.WriteString(w, "event: error\ndata: {\"type\":\"error\",\"sequence_number\":1,\"code\":\"server_error\",\"message\":\"The model crashed\",\"param\":null}\n\n")
	}))
	defer srv.Close()
	on := true
	c, _ := New(providers.Config{Provider: "openai", Model: "gpt-5", APIBase: srv.URL + "/v1", ResponsesAPI: &on})
	st, err := c.DoStream(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gpt-5", Stream: true,
		Body: []byte(`{"messages":[]}`), Responses: []byte(`{"input":"hi","stream":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Message != "The model crashed" || ue.Code != "server_error" {
		t.Fatalf("err = %v", err)
	}
}

// An image generation goes to {api_base}/images/generations and counts the
// images it made, for pricing per image.
func TestImages(t *testing.T) {
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"created":1,"data":[{"url":"https://x/1.png"},{"url":"https://x/2.png"},{"url":"https://x/3.png"}]}`)
	}))
	defer srv.Close()
	c, _ := New(providers.Config{Provider: "openai", Model: "dall-e-3", APIBase: srv.URL + "/v1"})
	resp, err := c.Do(context.Background(), &providers.Request{Op: providers.OpImage, Model: "dall-e-3", Body: []byte(`{"prompt":"x","n":3}`)})
	if err != nil || path != "/v1/images/generations" || resp.Usage.Images != 3 {
		t.Fatalf("path %s, usage %+v, err %v", path, resp.Usage, err)
	}
}

// Speech relays the audio and its media type as they come, and counts the
// characters read out, for pricing per character.
func TestSpeech(t *testing.T) {
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		w.Header().Set("Content-Type", "audio/mpeg")
		w.Write([]byte{0xff, 0xfb, 0x90, 0x00}) // not JSON
	}))
	defer srv.Close()
	c, _ := New(providers.Config{Provider: "openai", Model: "tts-1", APIBase: srv.URL + "/v1"})
	resp, err := c.Do(context.Background(), &providers.Request{Op: providers.OpSpeech, Model: "tts-1", Body: []byte(`{"input":"héllo","voice":"alloy"}`)})
	if err != nil || path != "/v1/audio/speech" || resp.ContentType != "audio/mpeg" || len(resp.Body) != 4 || resp.Usage.Characters != 5 {
		t.Fatalf("path %s, response %+v, err %v", path, resp, err)
	}
}
