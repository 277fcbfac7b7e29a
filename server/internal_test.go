package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/internal/syncbuf"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
)

// brokenProvider fails with an error of no known kind, which classify
// calls Lumen's own: Do at once, a stream after its first chunk.
type brokenProvider struct{}

func (brokenProvider) Name() string { return "openai" }

func (brokenProvider) Do(context.Context, *providers.Request) (*providers.Response, error) {
	return nil, errors.New("boom: the cause")
}

func (brokenProvider) DoStream(context.Context, *providers.Request) (providers.Stream, error) {
	return &brokenStream{}, nil
}

type brokenStream struct{ n int }

func (s *brokenStream) Recv() ([]byte, error) {
	s.n++
	if s.n == 1 {
		return []byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}`), nil
	}
	return nil, errors.New("boom: the cause")
}

func (s *brokenStream) Close() error { return nil }

// An internal error's cause is logged with the request id the client is
// pointed to, streamed (after the first byte) or not, on every endpoint.
func TestInternalErrorLoggedWithRequestID(t *testing.T) {
	cfg, _, err := config.Parse([]byte(`model_list: [{model_name: m, params: {model: openai/m, api_base: "http://127.0.0.1:1/v1", api_key: sk-x}}]
router_settings: {num_retries: 0, stream_failover: false}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(cfg, func(providers.Config) (providers.Provider, error) { return brokenProvider{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.New(logs)}))
	defer srv.Close()
	for _, tt := range []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`},
		{"chat stream", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`},
		{"messages", "/v1/messages", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`},
		{"messages stream", "/v1/messages", `{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`},
		{"responses", "/v1/responses", `{"model":"m","input":"x"}`},
		{"responses stream", "/v1/responses", `{"model":"m","input":"x","stream":true}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+tt.path, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "internal error in Lumen") {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			want := `"error":"boom: the cause","request_id":"` + resp.Header.Get("x-lumen-request-id") + `","message":"internal error"`
			if !strings.Contains(logs.String(), want) {
				t.Fatalf("the log lacks %s:\n%s", want, logs)
			}
		})
	}
}
