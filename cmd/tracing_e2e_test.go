package cmd

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// otlpCollector is an OTLP/HTTP collector on loopback that keeps the spans
// it is sent, read as a collector reads OTLP's JSON encoding (ids in hex,
// 64-bit integers as strings, enums as numbers).
type otlpCollector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []otlpSpan
	auth  []string
}

type otlpSpan struct {
	TraceID, SpanID, ParentSpanID, Name string
	Kind                                int
	StartTimeUnixNano, EndTimeUnixNano  string
	Attributes                          []struct {
		Key   string
		Value struct {
			StringValue *string
			IntValue    *string
			DoubleValue *float64
			BoolValue   *bool
		}
	}
	Status *struct {
		Code    int
		Message string
	}
}

// attr returns a span attribute's value as text ("" if absent).
func (s *otlpSpan) attr(key string) string {
	for _, kv := range s.Attributes {
		if kv.Key != key {
			continue
		}
		switch v := kv.Value; {
		case v.StringValue != nil:
			return *v.StringValue
		case v.IntValue != nil:
			return *v.IntValue
		case v.DoubleValue != nil:
			return strconv.FormatFloat(*v.DoubleValue, 'g', -1, 64)
		case v.BoolValue != nil:
			return strconv.FormatBool(*v.BoolValue)
		}
	}
	return ""
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	c := &otlpCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "not OTLP/HTTP JSON", http.StatusBadRequest)
			return
		}
		var req struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []struct{ Key string }
				}
				ScopeSpans []struct{ Spans []otlpSpan }
			}
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.auth = append(c.auth, r.Header.Get("x-api-key"))
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"partialSuccess":{}}`)
	}))
	t.Cleanup(c.Close)
	return c
}

// With tracing.otlp_endpoint, each request is a span named after the GenAI
// conventions, exported over OTLP/HTTP with its tokens and deployment; a
// client's traceparent makes it a child of the client's span; each call to
// an upstream is a client span under it (a failed one says so), whose
// trace context the upstream receives; a failed request's span says so.
func TestE2ETracing(t *testing.T) {
	col := newOTLPCollector(t)
	var mu sync.Mutex
	var upstreamTrace []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamTrace = append(upstreamTrace, r.Header.Get("traceparent"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06",
			"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
			"usage":{"prompt_tokens":17,"completion_tokens":3,"total_tokens":20}}`)
	}))
	defer up.Close()
	l := startLumen(t, `
model_list:
  - model_name: traced
    litellm_params: {model: openai/gpt-4o, api_base: "`+up.URL+`/v1", api_key: sk-up}
  - model_name: flaky
    litellm_params: {model: mock/broken, mock_failure_rate: 1}
router_settings:
  num_retries: 0
  fallbacks: [{flaky: [traced]}]
tracing:
  otlp_endpoint: "`+col.URL+`"
  headers: {x-api-key: collector-secret}
  service_name: lumen-test
ledger: {path: `+t.TempDir()+`/lumen.db}
audit: {enabled: false}
`, nil)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest("POST", l.URL+"/v1/chat/completions", strings.NewReader(chatBody("flaky", "hello", "")))
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	if r := rawDo(t, req, ""); r.status != 200 {
		t.Fatalf("traced request: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/chat/completions", "", chatBody("nope", "hello", "")); r.status != 404 {
		t.Fatalf("unknown model: %d %s", r.status, r.text)
	}
	if err := l.stop(); err != nil { // flushes the spans
		t.Fatal(err)
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	// The request, its two attempts (the broken deployment, then the
	// fallback's), and the unknown model's request.
	if len(col.spans) != 4 {
		t.Fatalf("%d spans exported, want 4", len(col.spans))
	}
	var ok, failed, broken, good *otlpSpan
	for i := range col.spans {
		switch s := &col.spans[i]; s.Name {
		case "chat flaky":
			ok = s
		case "chat nope":
			failed = s
		case "chat broken":
			broken = s
		case "chat gpt-4o":
			good = s
		}
	}
	if ok == nil || failed == nil || broken == nil || good == nil {
		t.Fatalf("span names: %+v", col.spans)
	}
	for _, a := range []*otlpSpan{broken, good} {
		if a.TraceID != traceID || a.ParentSpanID != ok.SpanID || a.Kind != 3 {
			t.Errorf("attempt %s: trace %s parent %s kind %d, want children of the request span, kind 3 (client)", a.Name, a.TraceID, a.ParentSpanID, a.Kind)
		}
	}
	if broken.Status == nil || broken.Status.Code != 2 || broken.attr("lumen.attempt") != "1" || good.Status != nil || good.attr("lumen.attempt") != "2" ||
		good.attr("gen_ai.provider.name") != "openai" || good.attr("lumen.deployment") == "" {
		t.Errorf("attempts: broken %+v, good %+v", broken, good)
	}
	if ok.TraceID != traceID || ok.ParentSpanID != parentID || ok.Kind != 2 || ok.StartTimeUnixNano == "" || ok.EndTimeUnixNano < ok.StartTimeUnixNano {
		t.Errorf("span trace %s parent %s kind %d, want the client's trace and span, kind 2 (server)", ok.TraceID, ok.ParentSpanID, ok.Kind)
	}
	for key, want := range map[string]string{
		"gen_ai.operation.name": "chat", "gen_ai.request.model": "flaky", "gen_ai.response.model": "gpt-4o",
		"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": "17", "gen_ai.usage.output_tokens": "3",
		"http.response.status_code": "200", "lumen.attempts": "2",
	} {
		if got := ok.attr(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	mu.Lock()
	sent := upstreamTrace
	mu.Unlock()
	if len(sent) != 1 || !strings.HasPrefix(sent[0], "00-"+traceID+"-"+good.SpanID) {
		t.Errorf("upstream traceparent %q, want its attempt span's (%s)", sent, good.SpanID)
	}
	if failed.ParentSpanID != "" || failed.Status == nil || failed.Status.Code != 2 ||
		failed.attr("error.type") == "" || failed.attr("http.response.status_code") != "404" {
		t.Errorf("failed request's span: parent %q status %+v attrs %+v", failed.ParentSpanID, failed.Status, failed.Attributes)
	}
	if len(col.auth) == 0 || col.auth[0] != "collector-secret" {
		t.Errorf("export headers: %q", col.auth)
	}
	if strings.Contains(l.Logs.String(), "collector-secret") {
		t.Error("the collector's key is in the log")
	}
}
