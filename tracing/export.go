package tracing

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lumengw/lumen/internal/credentials"
)

// exporter sends spans to an OTLP/HTTP collector in OTLP's JSON encoding
// (opentelemetry.io/docs/specs/otlp: POST /v1/traces, Content-Type
// application/json, ids as hex, 64-bit integers as strings), which the
// OpenTelemetry Collector's OTLP receiver takes. The SDK's own OTLP
// exporter speaks protobuf and brings gRPC with it: 17.5 MB more binary
// for the same spans.
type exporter struct {
	url     string
	headers map[string]string
	client  *http.Client
	// scrub replaces the credentials the export sends (secrets) in a
	// collector's answer, which the error that quotes it is logged with.
	scrub *strings.Replacer
}

// secrets are what an export to endpoint with headers authenticates with:
// every header value (tracing.headers holds a vendor's key), also without
// its scheme ("Bearer "), and the password of the endpoint's userinfo with
// the basic auth net/http makes of it. Longest first, for a Replacer.
func secrets(endpoint string, headers map[string]string) []string {
	var out []string
	add := func(v string) {
		if v = strings.TrimSpace(v); len(v) >= 6 && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	for _, v := range headers {
		add(v)
		if _, cred, ok := strings.Cut(strings.TrimSpace(v), " "); ok {
			add(cred)
		}
	}
	for _, v := range credentials.SentFor(endpoint) {
		add(v)
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return out
}

var _ sdktrace.SpanExporter = (*exporter)(nil)

// The OTLP JSON shapes, as much of them as Lumen's spans use.
type (
	otlpRequest struct {
		ResourceSpans []otlpResourceSpans `json:"resourceSpans"`
	}
	otlpResourceSpans struct {
		Resource   otlpResource     `json:"resource"`
		ScopeSpans []otlpScopeSpans `json:"scopeSpans"`
	}
	otlpResource struct {
		Attributes []otlpKeyValue `json:"attributes"`
	}
	otlpScopeSpans struct {
		Scope otlpScope  `json:"scope"`
		Spans []otlpSpan `json:"spans"`
	}
	otlpScope struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
	}
	otlpSpan struct {
		TraceID           string         `json:"traceId"`
		SpanID            string         `json:"spanId"`
		ParentSpanID      string         `json:"parentSpanId,omitempty"`
		Name              string         `json:"name"`
		Kind              int            `json:"kind"`
		StartTimeUnixNano string         `json:"startTimeUnixNano"`
		EndTimeUnixNano   string         `json:"endTimeUnixNano"`
		Attributes        []otlpKeyValue `json:"attributes,omitempty"`
		Status            *otlpStatus    `json:"status,omitempty"`
	}
	otlpStatus struct {
		Code    int    `json:"code"` // 1 ok, 2 error
		Message string `json:"message,omitempty"`
	}
	otlpKeyValue struct {
		Key   string    `json:"key"`
		Value otlpValue `json:"value"`
	}
	otlpValue struct {
		StringValue *string  `json:"stringValue,omitempty"`
		IntValue    *string  `json:"intValue,omitempty"`
		DoubleValue *float64 `json:"doubleValue,omitempty"`
		BoolValue   *bool    `json:"boolValue,omitempty"`
	}
)

func keyValues(attrs []attribute.KeyValue) []otlpKeyValue {
	out := make([]otlpKeyValue, 0, len(attrs))
	for _, a := range attrs {
		var v otlpValue
		switch a.Value.Type() {
		case attribute.BOOL:
			b := a.Value.AsBool()
			v.BoolValue = &b
		case attribute.INT64:
			s := strconv.FormatInt(a.Value.AsInt64(), 10)
			v.IntValue = &s
		case attribute.FLOAT64:
			f := a.Value.AsFloat64()
			v.DoubleValue = &f
		default:
			s := a.Value.Emit()
			v.StringValue = &s
		}
		out = append(out, otlpKeyValue{Key: string(a.Key), Value: v})
	}
	return out
}

func nanos(t interface{ UnixNano() int64 }) string { return strconv.FormatInt(t.UnixNano(), 10) }

// ExportSpans sends spans in one request.
func (e *exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	ss := otlpScopeSpans{Scope: otlpScope{Name: spans[0].InstrumentationScope().Name, Version: spans[0].InstrumentationScope().Version}}
	for _, s := range spans {
		sc := s.SpanContext()
		o := otlpSpan{
			TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(),
			Name: s.Name(), Kind: int(s.SpanKind()),
			StartTimeUnixNano: nanos(s.StartTime()), EndTimeUnixNano: nanos(s.EndTime()),
			Attributes: keyValues(s.Attributes()),
		}
		if p := s.Parent(); p.IsValid() {
			o.ParentSpanID = p.SpanID().String()
		}
		switch st := s.Status(); st.Code {
		case codes.Error:
			o.Status = &otlpStatus{Code: 2, Message: st.Description}
		case codes.Ok:
			o.Status = &otlpStatus{Code: 1}
		}
		ss.Spans = append(ss.Spans, o)
	}
	body, err := json.Marshal(otlpRequest{ResourceSpans: []otlpResourceSpans{{
		Resource:   otlpResource{Attributes: keyValues(spans[0].Resource().Attributes())},
		ScopeSpans: []otlpScopeSpans{ss},
	}}})
	if err != nil {
		return fmt.Errorf("encoding spans: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("exporting spans: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("exporting spans: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("exporting spans: the collector answered %s: %s", resp.Status,
			credentials.Redact(e.scrub.Replace(string(bytes.TrimSpace(msg)))))
	}
	return nil
}

// Shutdown implements sdktrace.SpanExporter; there is nothing to release.
func (e *exporter) Shutdown(context.Context) error { return nil }
