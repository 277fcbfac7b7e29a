package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/providers"
)

func TestDuplicateKey(t *testing.T) {
	many := func(dup bool) string {
		var b strings.Builder
		b.WriteString(`{"model":"m","logit_bias":{`)
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&b, `"%d":1,`, i)
		}
		if dup {
			b.WriteString(`"7":2,`)
		}
		b.WriteString(`"100":0}}`)
		return b.String()
	}
	for _, tt := range []struct {
		body, want string
	}{
		{`{"model":"a","messages":[],"model":"b"}`, "model"},
		{`{"model":"a","mod\u0065l":"b"}`, "model"},
		{`{"model":"a","messages":[{"role":"user","content":"x","content":"y"}]}`, "content"},
		{`{"a":{"b":1},"c":{"b":2},"b":[{"b":1},{"b":2}]}`, ""},                   // the same key in different objects
		{`{"s":"\"model\":1,\"model\":2","t":["model","model"],"model":"x"}`, ""}, // strings, not keys
		{`{"":1,"":2}`, ""},
		{`{"a":{"x":1,"y":{"x":2}},"a":3}`, "a"},
		{many(false), ""},
		{many(true), "7"},
		{`{}`, ""},
	} {
		got, dup := duplicateKey([]byte(tt.body))
		if tt.body == `{"":1,"":2}` {
			tt.want = ""
			if !dup {
				t.Errorf("%s: the empty key twice not found", tt.body)
			}
			continue
		}
		if got != tt.want || dup != (tt.want != "") {
			t.Errorf("%.60s: got %q %t, want %q", tt.body, got, dup, tt.want)
		}
	}
}

func BenchmarkDuplicateKey(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","temperature":0.2,"stream":true,"stream_options":{"include_usage":true},"messages":[` +
		strings.Repeat(`{"role":"user","content":[{"type":"text","text":"`+strings.Repeat("word ", 200)+`"}]},`, 10) +
		`{"role":"user","content":"last"}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, dup := duplicateKey(body); dup {
			b.Fatal("dup")
		}
	}
}

// A body nested millions of levels deep is refused before anything parses
// it: gjson's validator recurses once per level, and a goroutine stack
// overflow is fatal, so such a body used to end the whole gateway. The
// response cache is on: its key's canonical form recursed too, and spent
// minutes of CPU on a few megabytes.
func TestDeeplyNestedBodyIsRefused(t *testing.T) {
	cfg, r := routed(t, "model_list:\n  - {model_name: demo, params: {model: mock/demo}}\ncache: {type: local}\n")
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Cache: cache.New(cache.NewLocal(1<<20, time.Minute), cache.Options{})}))
	t.Cleanup(srv.Close)

	const depth = 15_000_000 // under the default 32 MiB body limit
	deep := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	for _, tt := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"hi"}],"x":` + deep + `}`},
		{"/v1/messages", `{"model":"demo","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"x":` + deep + `}`},
		{"/v1/messages/count_tokens", `{"model":"demo","messages":[{"role":"user","content":"hi"}],"x":` + deep + `}`},
		{"/v1/responses", `{"model":"demo","input":"hi","x":` + deep + `}`},
		{"/v1/embeddings", `{"model":"demo","input":"hi","x":` + deep + `}`},
		// Fine-grained: just over the limit, on the cached path.
		{"/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"hi"}],"x":` +
			strings.Repeat("[", providers.MaxJSONDepth) + strings.Repeat("]", providers.MaxJSONDepth) + `}`},
	} {
		status, body := postJSON(t, srv.URL+tt.path, tt.body)
		if status != http.StatusBadRequest || !strings.Contains(body, "levels deep") {
			t.Errorf("%s, %d bytes: %d %.200s; want 400 naming the nesting", tt.path, len(tt.body), status, body)
		}
	}
	// Nesting up to the limit is served.
	ok := `{"model":"demo","messages":[{"role":"user","content":"hi"}],"x":` +
		strings.Repeat("[", providers.MaxJSONDepth-2) + strings.Repeat("]", providers.MaxJSONDepth-2) + `}`
	if status, body := postJSON(t, srv.URL+"/v1/chat/completions", ok); status != http.StatusOK {
		t.Errorf("nested %d levels: %d %.200s", providers.MaxJSONDepth, status, body)
	}
}
