package tracing

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// A span reaches the collector in OTLP's JSON encoding; a collector that
// refuses is an error naming its answer; a bad endpoint is refused; the
// propagating transport leaves the caller's request alone.
func TestExport(t *testing.T) {
	var got []byte
	status := http.StatusOK
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(status)
		io.WriteString(w, `{"error":"quota"}`)
	}))
	defer col.Close()
	tr, err := New(Options{Endpoint: col.URL + "/", ServiceName: "svc", Version: "v9"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	ctx, span := tr.Start(req, "chat")
	span.End(Done{Model: "m", Status: 500, InputTokens: 3, CostUSD: 0.5, ErrorType: "api_error", ErrorMessage: "upstream failed"})

	// The transport adds the span's context upstream, on a copy.
	var seen string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Get("traceparent") }))
	defer up.Close()
	out, _ := http.NewRequestWithContext(ctx, "GET", up.URL, nil)
	resp, err := (&http.Client{Transport: tr.Transport(nil)}).Do(out)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(seen, "00-") || out.Header.Get("traceparent") != "" {
		t.Errorf("upstream saw %q; the caller's request got %q", seen, out.Header.Get("traceparent"))
	}

	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The OpenTelemetry Collector's own decoder of OTLP/HTTP JSON (what its
	// OTLP receiver runs on a JSON body) reads the export as sent.
	traces, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(got)
	if err != nil || traces.SpanCount() != 1 {
		t.Fatalf("the collector's decoder: %v, %d spans\n%s", err, traces.SpanCount(), got)
	}
	cs := traces.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	if cs.Name() != "chat m" || cs.Kind() != ptrace.SpanKindServer || cs.Status().Code() != ptrace.StatusCodeError ||
		cs.TraceID().String() == "" || cs.EndTimestamp() < cs.StartTimestamp() {
		t.Errorf("decoded by the collector: %s kind %v status %v", cs.Name(), cs.Kind(), cs.Status().Code())
	}
	if v, ok := cs.Attributes().Get("gen_ai.usage.input_tokens"); !ok || v.Int() != 3 {
		t.Errorf("input tokens as the collector reads them: %v %v", v.AsString(), ok)
	}
	if v, ok := traces.ResourceSpans().At(0).Resource().Attributes().Get("service.name"); !ok || v.Str() != "svc" {
		t.Errorf("service.name as the collector reads it: %v", v.AsString())
	}
	var body struct {
		ResourceSpans []struct {
			Resource   struct{ Attributes []map[string]any }
			ScopeSpans []struct {
				Spans []struct {
					TraceID, SpanID, Name string
					Kind                  int
					Attributes            []struct {
						Key   string
						Value map[string]any
					}
					Status struct {
						Code    int
						Message string
					}
				}
			}
		}
	}
	if err := json.Unmarshal(got, &body); err != nil || len(body.ResourceSpans) != 1 {
		t.Fatalf("export %s: %v", got, err)
	}
	s := body.ResourceSpans[0].ScopeSpans[0].Spans[0]
	if s.Name != "chat m" || len(s.TraceID) != 32 || len(s.SpanID) != 16 || s.Kind != 2 || s.Status.Code != 2 || s.Status.Message != "upstream failed" {
		t.Errorf("span %+v", s)
	}
	attrs := map[string]any{}
	for _, a := range s.Attributes {
		for _, v := range a.Value {
			attrs[a.Key] = v
		}
	}
	if attrs["gen_ai.usage.input_tokens"] != "3" || attrs["lumen.cost_usd"] != 0.5 || attrs["error.type"] != "api_error" || attrs["lumen.stream"] != false {
		t.Errorf("attributes %v", attrs)
	}
	if !strings.Contains(string(got), `"service.name"`) || !strings.Contains(string(got), `"svc"`) {
		t.Errorf("resource: %s", got)
	}

	status = http.StatusTooManyRequests
	var failures []error
	tr2, _ := New(Options{Endpoint: col.URL, OnError: func(err error) { failures = append(failures, err) }})
	_, sp := tr2.Start(req, "chat")
	sp.End(Done{Model: "m"})
	tr2.Shutdown(context.Background()) // the last export happens here, on this goroutine's watch
	if len(failures) != 1 || !strings.Contains(failures[0].Error(), "429") || !strings.Contains(failures[0].Error(), "quota") {
		t.Errorf("a refusing collector: %v", failures)
	}

	for _, bad := range []string{"localhost:4318", "ftp://x", ""} {
		if _, err := New(Options{Endpoint: bad}); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
	// The error names the endpoint without its password.
	if _, err := New(Options{Endpoint: "grpc://tenant:s3cret@collector:4317"}); err == nil ||
		!strings.Contains(err.Error(), `"grpc://tenant:xxxxx@collector:4317"`) {
		t.Errorf("New with a password in a bad endpoint: %v", err)
	}
}

// A collector that refuses the export's credentials and quotes them back
// (a vendor's key in tracing.headers, the basic auth of the endpoint's
// userinfo) is logged without them.
func TestExportErrorHidesCredentials(t *testing.T) {
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pw, _ := r.BasicAuth()
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"unknown team `+r.Header.Get("X-Honeycomb-Team")+`, bearer `+r.Header.Get("X-Token")+
			`; `+r.Header.Get("Authorization")+` (password `+pw+`)"}`)
	}))
	defer col.Close()
	var failures []error
	tr, err := New(Options{Endpoint: strings.Replace(col.URL, "http://", "http://tenant:otlp-pass-99@", 1),
		Headers: map[string]string{"X-Honeycomb-Team": "hc-team-key-123456", "X-Token": "Bearer vendor-token-42"},
		OnError: func(err error) { failures = append(failures, err) }})
	if err != nil {
		t.Fatal(err)
	}
	_, sp := tr.Start(httptest.NewRequest("POST", "/v1/chat/completions", nil), "chat")
	sp.End(Done{Model: "m"})
	tr.Shutdown(context.Background())
	if len(failures) != 1 || !strings.Contains(failures[0].Error(), "unknown team [redacted], bearer [redacted]; Basic [redacted] (password [redacted])") {
		t.Fatalf("export failures: %v", failures)
	}
	for _, s := range []string{"hc-team-key-123456", "vendor-token-42", "otlp-pass-99", "dGVuYW50Om90bHAtcGFzcy05OQ=="} {
		if strings.Contains(failures[0].Error(), s) {
			t.Errorf("the error holds %q: %v", s, failures[0])
		}
	}
}
