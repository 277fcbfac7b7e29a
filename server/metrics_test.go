package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/metrics"
)

// keyTags caches one entry per key, not per version: every reload of the
// keyring (each key change, here or in another process) makes a new
// *ledger.Key of every key, and an entry per pointer kept each old version
// for the life of the server.
func TestKeyTagsCacheHoldsOneEntryPerKey(t *testing.T) {
	ctx := context.Background()
	db, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "lumen.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := ledger.NewKeyring(ctx, db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, k, err := kr.Create(ctx, ledger.KeySpec{Name: "search", Tags: map[string]string{"team": "search"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{metrics: metrics.New(metrics.Options{NoProcessMetrics: true})}

	const reloads = 50
	for range reloads {
		if err := kr.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if k, err = kr.Get(k.ID); err != nil {
			t.Fatal(err)
		}
		if got := s.keyTags(k); !slices.Equal(got, []string{"team=search"}) {
			t.Fatalf("keyTags = %q, want [team=search]", got)
		}
	}
	entries := 0
	s.tagCache.Range(func(any, any) bool { entries++; return true })
	if entries != 1 {
		t.Errorf("after %d reloads the tag cache holds %d entries, want 1 (one per key)", reloads, entries)
	}

	// A changed key's new tags are seen, not the cached ones.
	tags := map[string]string{"team": "ads"}
	if k, err = kr.Update(ctx, k.ID, ledger.KeyUpdate{Tags: &tags}); err != nil {
		t.Fatal(err)
	}
	if got := s.keyTags(k); !slices.Equal(got, []string{"team=ads"}) {
		t.Errorf("keyTags after a tag change = %q, want [team=ads]", got)
	}
}

// /metrics needs no key, master key or not. On a metrics.listen address on
// loopback, a web page on a DNS name pointed at 127.0.0.1 (DNS rebinding)
// would be same-origin with the listener and could read every model group,
// deployment, key tag and cost counter: only a loopback Host is answered.
// A listener on another address answers any Host, as the API does.
func TestMetricsListenerRefusesReboundHosts(t *testing.T) {
	cfg, r := routed(t, "model_list: [{model_name: demo, params: {model: mock/demo}}]\ngeneral_settings: {master_key: sk-master-metrics}\nmetrics: {listen: \"127.0.0.1:9090\"}\n")
	s := New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Metrics: metrics.New(metrics.Options{NoProcessMetrics: true})})
	loopback4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9090}
	loopback6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 9090}
	every := &net.TCPAddr{IP: net.IPv4zero, Port: 9090}
	tests := []struct {
		name string
		addr net.Addr
		host string
		want int
	}{
		{"loopback listener, 127.0.0.1", loopback4, "127.0.0.1:9090", http.StatusOK},
		{"loopback listener, localhost", loopback4, "localhost:9090", http.StatusOK},
		{"loopback listener, IPv6 loopback", loopback6, "[::1]:9090", http.StatusOK},
		{"loopback listener, a rebound name", loopback4, "evil.example:9090", http.StatusForbidden},
		{"loopback listener, a LAN address", loopback4, "10.0.0.5:9090", http.StatusForbidden},
		{"IPv6 loopback listener, a rebound name", loopback6, "evil.example:9090", http.StatusForbidden},
		{"listener on every address, any name", every, "metrics.example.com:9090", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			s.MetricsHandler(tt.addr).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.want)
			}
			switch body := rec.Body.String(); {
			case tt.want == http.StatusOK && !strings.Contains(body, "lumen_"):
				t.Errorf("no metrics in the answer:\n%s", body)
			case tt.want == http.StatusForbidden && (strings.Contains(body, "lumen_") || gjson.Get(body, "error.code").Str != "host_not_allowed"):
				t.Errorf("refusal is not a host_not_allowed error, or carries metrics:\n%s", body)
			}
		})
	}
}
