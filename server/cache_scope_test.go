package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/ledger"
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

// TestCacheScopeByKeyTags: under the default (global) scope, virtual keys
// tagged with the same tenant share cached answers, and a key of another
// tenant, an untagged key or a key tagged cache_scope=key does not reach
// them: each request there goes upstream.
func TestCacheScopeByKeyTags(t *testing.T) {
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-u","object":"chat.completion","created":1,"model":"demo","choices":[{"index":0,"message":{"role":"assistant","content":"cached answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`)
	}))
	defer up.Close()
	cfg, r := routed(t, `model_list: [{model_name: demo, params: {model: openai/demo, api_base: "`+up.URL+`/v1", api_key: sk-x}}]
cache: {type: local}
general_settings: {master_key: `+testMaster+`}
`)
	ctx := context.Background()
	db, err := ledger.Open(ctx, t.TempDir()+"/lumen.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := ledger.NewKeyring(ctx, db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret := map[string]string{}
	for name, tags := range map[string]map[string]string{
		"acme-1":   {"tenant": "acme"},
		"acme-2":   {"tenant": "acme", "team": "search"},
		"acme-own": {"tenant": "acme", "cache_scope": "key"},
		"globex":   {"tenant": "globex"},
		"untagged": nil,
	} {
		raw, _, err := keys.Create(ctx, ledger.KeySpec{Name: name, Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		secret[name] = raw
	}
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Keys: keys,
		Cache: cache.New(cache.NewLocal(1<<20, time.Minute), cache.Options{})}))
	defer srv.Close()
	steps := []struct {
		key       string
		wantCache string
		wantCalls int32 // upstream calls so far
	}{
		{"acme-1", "miss", 1},
		{"acme-2", "hit", 1},    // same tenant: shared
		{"globex", "miss", 2},   // another tenant: isolated
		{"untagged", "miss", 3}, // no tenant: not a tenant's namespace
		{"acme-own", "miss", 4}, // cache_scope=key: its own
		{"globex", "hit", 4},
		{"acme-1", "hit", 4},
	}
	for i, st := range steps {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"demo","messages":[{"role":"user","content":"cache me"}]}`))
		req.Header.Set("Authorization", "Bearer "+secret[st.key])
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d (%s): %d %s", i, st.key, resp.StatusCode, body)
		}
		if got := resp.Header.Get("x-lumen-cache"); got != st.wantCache || calls.Load() != st.wantCalls {
			t.Errorf("request %d (%s): x-lumen-cache %q, %d upstream calls; want %q, %d",
				i, st.key, got, calls.Load(), st.wantCache, st.wantCalls)
		}
	}
}
