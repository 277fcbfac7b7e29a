package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/metrics"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/tracing"
)

// benchUpstream answers instantly: a chat completion, or a 20-chunk stream.
func benchUpstream(b *testing.B) *httptest.Server {
	chat := []byte(`{"id":"chatcmpl-b","object":"chat.completion","created":1,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":5,"total_tokens":19}}`)
	chunk := []byte("data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"},\"finish_reason\":null}]}\n\n")
	tail := []byte("data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":20,\"total_tokens\":34}}\n\ndata: [DONE]\n\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(chat)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 20; i++ {
			w.Write(chunk)
			w.(http.Flusher).Flush()
		}
		w.Write(tail)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchLumen(b *testing.B, upstream string) *httptest.Server {
	return benchLumenWith(b, upstream, "")
}

// benchLumenWith is benchLumen with more config (guardrails).
func benchLumenWith(b *testing.B, upstream, extra string) *httptest.Server {
	cfg, _, err := config.Parse([]byte(`model_list: [{model_name: bench, params: {model: openai/bench, api_base: "` + upstream + `/v1", api_key: sk-x}}]` + "\n" + extra))
	if err != nil {
		b.Fatal(err)
	}
	r, err := router.New(cfg, router.Build)
	if err != nil {
		b.Fatal(err)
	}
	guards, err := guardrail.NewSet(cfg.Guardrails)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.New(io.Discard), Guardrails: guards}))
	b.Cleanup(srv.Close)
	return srv
}

// benchGuardrails is the example config's pii guardrail, on for every
// request, on the request and the answer.
const benchGuardrails = `
guardrails:
  - guardrail_name: pii
    litellm_params:
      guardrail: litellm_content_filter
      mode: [pre_call, post_call]
      default_on: true
      patterns:
        - {pattern_type: prebuilt, pattern_name: pii, action: MASK}
        - {pattern_type: prebuilt, pattern_name: credentials, action: BLOCK}
`

// benchLumenTraced is benchLumen with tracing on: every request a sampled
// span, exported in batches to a collector that discards them, and the
// trace context sent upstream.
func benchLumenTraced(b *testing.B, upstream string) *httptest.Server {
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(col.Close)
	tr, err := tracing.New(tracing.Options{Endpoint: col.URL})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Shutdown(context.Background()) })
	cfg, _, err := config.Parse([]byte(`model_list: [{model_name: bench, params: {model: openai/bench, api_base: "` + upstream + `/v1", api_key: sk-x}}]`))
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: tr.Transport(providers.DefaultClient.Transport)}
	r, err := router.New(cfg, func(pc providers.Config) (providers.Provider, error) {
		pc.Client = client
		return router.Build(pc)
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.New(io.Discard), Tracer: tr}))
	b.Cleanup(srv.Close)
	return srv
}

// benchLumenAccounted is Lumen with everything a request with a virtual
// key goes through: the key (budget, rpm, tpm), the ledger writer, metrics
// and the audit log, on SQLite in a temp dir. extra is more config (the
// key carries the tag team=bench).
func benchLumenAccounted(b *testing.B, upstream, extra string) (*httptest.Server, string) {
	ctx := context.Background()
	dir := b.TempDir()
	cfg, _, err := config.Parse([]byte(`model_list: [{model_name: bench, params: {model: openai/bench, api_base: "` + upstream + `/v1", api_key: sk-x},
  model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}]
general_settings: {master_key: sk-bench-master}
` + extra))
	if err != nil {
		b.Fatal(err)
	}
	r, err := router.New(cfg, router.Build)
	if err != nil {
		b.Fatal(err)
	}
	db, err := ledger.Open(ctx, filepath.Join(dir, "lumen.db"))
	if err != nil {
		b.Fatal(err)
	}
	kr, err := ledger.NewKeyring(ctx, db, ledger.KeyringOptions{})
	if err != nil {
		b.Fatal(err)
	}
	raw, _, err := kr.Create(ctx, ledger.KeySpec{Name: "bench", BudgetUSD: 1e9, RPM: 1e9, TPM: 1e12, Tags: map[string]string{"team": "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	w := ledger.NewWriter(db, ledger.WriterOptions{QueueSize: 1 << 20})
	al, err := audit.Open(ctx, audit.Options{Path: filepath.Join(dir, "lumen.db"), QueueSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.New(io.Discard),
		Keys: kr, Budgets: limits.NewMemoryBudgets(limits.BudgetOptions{}), Limiter: limits.NewMemoryLimiter(limits.LimiterOptions{}),
		Ledger: w, Reports: db, Metrics: metrics.New(metrics.Options{NoProcessMetrics: true}), Audit: al}))
	b.Cleanup(func() {
		srv.Close()
		w.Close()
		al.Close()
		db.Close()
	})
	return srv, raw
}

// BenchmarkProxy compares a request sent to the upstream directly with the
// same request through Lumen, over real loopback HTTP: the difference is
// what Lumen adds.
func BenchmarkProxy(b *testing.B) {
	up := benchUpstream(b)
	lumen := benchLumen(b, up.URL)
	traced := benchLumenTraced(b, up.URL)
	guarded := benchLumenWith(b, up.URL, benchGuardrails)
	full, key := benchLumenAccounted(b, up.URL, "")
	// Every shared limit a request can meet: the key's tag, its end user,
	// the model group and the gateway, each with a budget and rpm/tpm.
	scoped, scopedKey := benchLumenAccounted(b, up.URL, `limits:
  global: {rpm: 1000000000, tpm: 1000000000000, budget_usd: 1000000000}
  model_groups: {bench: {rpm: 1000000000, tpm: 1000000000000, budget_usd: 1000000000}}
  tags: {"team=bench": {rpm: 1000000000, tpm: 1000000000000, budget_usd: 1000000000}}
  users: {rpm: 1000000000, tpm: 1000000000000, budget_usd: 1000000000, budget_period: daily}
`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, mode := range []struct {
		name string
		body string
	}{
		{"chat", `{"model":"bench","user":"u-1","messages":[{"role":"user","content":"Say hello in one short sentence."}]}`},
		{"stream", `{"model":"bench","user":"u-1","stream":true,"messages":[{"role":"user","content":"Say hello in one short sentence."}]}`},
	} {
		for _, target := range []struct{ name, url, key string }{
			{"direct", up.URL, ""}, {"lumen", lumen.URL, ""}, {"lumen+tracing", traced.URL, ""}, {"lumen+guardrails", guarded.URL, ""},
			{"lumen+key", full.URL, key}, {"lumen+key+limits", scoped.URL, scopedKey},
		} {
			b.Run(mode.name+"/"+target.name, func(b *testing.B) {
				body := []byte(mode.body)
				b.ReportAllocs()
				for b.Loop() {
					req, _ := http.NewRequest("POST", target.url+"/v1/chat/completions", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					if target.key != "" {
						req.Header.Set("Authorization", "Bearer "+target.key)
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		}
	}
}

// BenchmarkProxyAPIs is the same request through Lumen in each client API
// it serves, to the same chat upstream: chat completions pass through, the
// Messages and Responses APIs are translated there and back. The
// difference from chat is what the translation costs.
func BenchmarkProxyAPIs(b *testing.B) {
	up := benchUpstream(b)
	lumen := benchLumen(b, up.URL)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	const prompt = `"Say hello in one short sentence."`
	for _, api := range []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", `{"model":"bench","messages":[{"role":"user","content":` + prompt + `}]}`},
		{"messages", "/v1/messages", `{"model":"bench","max_tokens":100,"messages":[{"role":"user","content":` + prompt + `}]}`},
		{"responses", "/v1/responses", `{"model":"bench","input":` + prompt + `}`},
	} {
		for _, stream := range []bool{false, true} {
			body := api.body
			name := api.name
			if stream {
				body = body[:len(body)-1] + `,"stream":true}`
				name += "/stream"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					resp, err := client.Post(lumen.URL+api.path, "application/json", bytes.NewReader([]byte(body)))
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		}
	}
}
