package server

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/router"
)

// BenchmarkCacheHit measures a cache hit through the real server over
// loopback HTTP, non-streaming and streaming, and reports p50/p99.
func BenchmarkCacheHit(b *testing.B) {
	up := benchUpstream(b)
	cfg, _, err := config.Parse([]byte(`model_list: [{model_name: bench, params: {model: openai/bench, api_base: "` + up.URL + `/v1", api_key: sk-x}}]
cache: {type: local}`))
	if err != nil {
		b.Fatal(err)
	}
	r, err := router.New(cfg, router.Build)
	if err != nil {
		b.Fatal(err)
	}
	c := cache.New(cache.NewLocal(64<<20, time.Hour), cache.Options{})
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.New(io.Discard), Cache: c}))
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, mode := range []struct{ name, body string }{
		{"chat", `{"model":"bench","messages":[{"role":"user","content":"Say hello in one short sentence."}]}`},
		{"stream", `{"model":"bench","stream":true,"messages":[{"role":"user","content":"Say hello in one short sentence."}]}`},
	} {
		b.Run(mode.name, func(b *testing.B) {
			body := []byte(mode.body)
			post := func() {
				resp, err := client.Post(srv.URL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.Header.Get("x-lumen-cache") == "miss" {
					return
				}
				if resp.Header.Get("x-lumen-cache") != "hit" {
					b.Fatalf("x-lumen-cache = %q", resp.Header.Get("x-lumen-cache"))
				}
			}
			post() // fill the cache
			time.Sleep(10 * time.Millisecond)
			lat := make([]time.Duration, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				post()
				lat = append(lat, time.Since(t0))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
