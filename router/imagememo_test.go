package router

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/gemini"
)

var png1x1 = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")

// An http(s) image in a request to Gemini deployments is downloaded once
// per client request, not once per attempt: the first attempt's upstream
// is overloaded (503, retryable), and the retry on the same deployment, or
// the fallback to another Gemini group, sends the image it already has.
func TestImageFetchedOncePerRequest(t *testing.T) {
	tests := []struct {
		name string
		yaml string
	}{
		{"retry", `
model_list:
  - model_name: g
    litellm_params: {model: gemini/gemini-2.5-flash, api_base: "{{GEMINI}}", api_key: gemini-test-key}
router_settings: {num_retries: 1, allowed_fails: 100}
`},
		{"fallback", `
model_list:
  - model_name: g
    litellm_params: {model: gemini/gemini-2.5-flash, api_base: "{{GEMINI}}", api_key: gemini-test-key}
  - model_name: other
    litellm_params: {model: gemini/gemini-2.5-pro, api_base: "{{GEMINI}}", api_key: gemini-test-key}
router_settings: {num_retries: 0, allowed_fails: 100, fallbacks: [{g: [other]}]}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var imageHits atomic.Int64
			images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				imageHits.Add(1)
				w.Header().Set("Content-Type", "image/png")
				_, _ = w.Write(png1x1)
			}))
			t.Cleanup(images.Close)

			var mu sync.Mutex
			var bodies []string
			gem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, string(b))
				n := len(bodies)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				if n == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = io.WriteString(w, `{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}`)
					return
				}
				_, _ = io.WriteString(w, `{"candidates":[{"content":{"role":"model","parts":[{"text":"a cat"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":260,"candidatesTokenCount":2}}`)
			}))
			t.Cleanup(gem.Close)

			// The default fetcher refuses loopback addresses; the test's
			// image host is one.
			fetcher := &providers.ImageFetcher{Client: images.Client()}
			r, _ := newRouterWith(t, strings.ReplaceAll(tt.yaml, "{{GEMINI}}", gem.URL), func(pc providers.Config) (providers.Provider, error) {
				p, err := Build(pc)
				if c, ok := p.(*gemini.Client); ok {
					c.SetImageFetcher(fetcher)
				}
				return p, err
			})
			body := `{"model":"g","messages":[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"` + images.URL + `/cat.png"}}]}]}`
			res, err := r.Do(context.Background(), &Call{Group: "g", Op: providers.OpChat, Body: []byte(body)})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(res.Response.Body), "a cat") {
				t.Fatalf("answer %s", res.Response.Body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != 2 {
				t.Fatalf("gemini called %d times, want 2 (the 503, then the answer)", len(bodies))
			}
			data := base64.StdEncoding.EncodeToString(png1x1)
			for i, b := range bodies {
				if !strings.Contains(b, `"data":"`+data+`"`) {
					t.Errorf("attempt %d sent no inline image: %s", i+1, b)
				}
			}
			if n := imageHits.Load(); n != 1 {
				t.Fatalf("image downloaded %d times for one request, want 1", n)
			}
		})
	}
}
