package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/router"
)

// TestCacheScope pins what the README says of cache.scope: unset (also
// under LiteLLM's litellm_settings.cache) it is global, and every caller
// shares a model group's answers; "key" gives each API key as presented
// its own namespace, and the requests without a key share one.
func TestCacheScope(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // x-lumen-cache for: key a, key b, no key, no key, key a
	}{
		{"unset", "cache: {type: local}\n", []string{"miss", "hit", "hit", "hit", "hit"}},
		{"litellm", "litellm_settings: {cache: true}\n", []string{"miss", "hit", "hit", "hit", "hit"}},
		{"key", "cache: {type: local, scope: key}\n", []string{"miss", "miss", "miss", "hit", "hit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := config.Parse([]byte("model_list:\n  - {model_name: demo, params: {model: mock/demo}}\n" + tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if tt.name != "key" && cfg.Cache.Scope != "global" {
				t.Errorf("cache.scope = %q, want global", cfg.Cache.Scope)
			}
			r, err := router.New(cfg, router.Build)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(),
				Cache: cache.New(cache.NewLocal(1<<20, time.Minute), cache.Options{})}))
			defer srv.Close()
			for i, key := range []string{"placeholder-a", "placeholder-b", "", "", "placeholder-a"} {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions",
					strings.NewReader(`{"model":"demo","messages":[{"role":"user","content":"cache me"}]}`))
				if key != "" {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.Header.Get("x-lumen-cache"); resp.StatusCode != 200 || got != tt.want[i] {
					t.Errorf("request %d (key %q): %d, x-lumen-cache %q, want %q", i, key, resp.StatusCode, got, tt.want[i])
				}
			}
		})
	}
}
