// Package tracing exports a span per request to an OpenTelemetry collector
// over OTLP/HTTP (JSON), named and attributed after the OpenTelemetry GenAI
// conventions ("chat gpt-4o", gen_ai.usage.input_tokens, …), and carries
// the W3C trace context in (a client's traceparent becomes the parent) and
// out (upstream requests carry it), with a client span per upstream call.
// Off unless configured: then the request path only finds no tracer in its
// context.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/lumengw/lumen/internal/credentials"
	"github.com/lumengw/lumen/providers"
)

// Options configure New.
type Options struct {
	// Endpoint is the collector's OTLP/HTTP base URL
	// ("http://localhost:4318"); spans go to Endpoint + "/v1/traces".
	Endpoint string
	// Headers go with every export (a vendor's API key).
	Headers map[string]string
	// ServiceName names this service in the traces (default "lumen").
	ServiceName string
	// SampleRatio is the share of new traces recorded (0..1; default 1). A
	// request whose client sampled its trace is always recorded.
	SampleRatio float64
	// Version is this build's version, as service.version.
	Version string
	// OnError receives export failures (a collector down or refusing),
	// one per failed batch. The SDK reports them through OpenTelemetry's
	// process-wide error handler, which New sets to it; nil leaves that
	// handler as it is (it logs to stderr).
	OnError func(error)
}

// Tracer starts request spans and exports them in batches from the SDK's
// own goroutine, which Shutdown stops after a last export.
type Tracer struct {
	tracer   trace.Tracer
	provider *sdktrace.TracerProvider
	prop     propagation.TextMapPropagator
}

// New starts exporting to o.Endpoint. It does not connect until the first
// export.
func New(o Options) (*Tracer, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid OTLP endpoint %q: want http(s)://host:4318", credentials.Redact(o.Endpoint))
	}
	pairs := []string{}
	for _, s := range secrets(o.Endpoint, o.Headers) {
		pairs = append(pairs, s, "[redacted]")
	}
	exp := &exporter{url: strings.TrimSuffix(o.Endpoint, "/") + "/v1/traces", headers: o.Headers,
		client: &http.Client{Timeout: 10 * time.Second}, scrub: strings.NewReplacer(pairs...)}
	name := o.ServiceName
	if name == "" {
		name = "lumen"
	}
	ratio := o.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	if o.OnError != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(o.OnError))
	}
	res := resource.NewSchemaless(semconv.ServiceName(name), semconv.ServiceVersion(o.Version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	return &Tracer{
		tracer:   tp.Tracer("github.com/lumengw/lumen"),
		provider: tp,
		prop:     propagation.TraceContext{},
	}, nil
}

// Shutdown exports what is buffered and stops the exporter, within ctx.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("flushing traces: %w", err)
	}
	return nil
}

// Start starts the server span of request r for operation ("chat",
// "embeddings"…; End adds the model to the name), a child of the client's
// span when r has a traceparent, and returns the context that carries it
// (and t, for StartAttempt).
func (t *Tracer) Start(r *http.Request, operation string) (context.Context, *Span) {
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, operation, trace.WithSpanKind(trace.SpanKindServer))
	return context.WithValue(ctx, tracerKey{}, t), &Span{span: span, operation: operation}
}

type tracerKey struct{}

// Attempt is one call to one deployment, for StartAttempt.
type Attempt struct {
	Operation, Model, Provider, Deployment string
	N                                      int  // 1 for the first call of the request, 2 for the next…
	Hedged                                 bool // a hedge racing another attempt
}

// noEnd ends no span.
func noEnd(error) {}

// StartAttempt starts a client span for a call to an upstream under the
// request's span, when the request is traced (ctx comes from Start), and
// returns the context to call with (its trace context goes upstream) and
// the func that ends the span with the call's error. Untraced, it returns
// ctx and a no-op at the cost of a context lookup.
func StartAttempt(ctx context.Context, a Attempt) (context.Context, func(err error)) {
	t, _ := ctx.Value(tracerKey{}).(*Tracer)
	if t == nil {
		return ctx, noEnd
	}
	ctx, span := t.tracer.Start(ctx, a.Operation+" "+a.Model, trace.WithSpanKind(trace.SpanKindClient))
	span.SetAttributes(
		attribute.String("gen_ai.operation.name", a.Operation),
		attribute.String("gen_ai.request.model", a.Model),
		attribute.String("gen_ai.provider.name", a.Provider),
		attribute.String("lumen.deployment", a.Deployment),
		attribute.Int("lumen.attempt", a.N),
		attribute.Bool("lumen.hedged", a.Hedged),
	)
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(attribute.String("error.type", fmt.Sprintf("%T", err)))
			span.SetStatus(codes.Error, providers.Redact(err.Error()))
		}
		span.End()
	}
}

// Span is a request's span.
type Span struct {
	span      trace.Span
	operation string
}

// Done is what a finished request was, for its span.
type Done struct {
	Model, ResponseModel, Provider, Deployment  string
	RequestID, KeyID, Cache                     string
	Status, InputTokens, OutputTokens, Attempts int
	CostUSD                                     float64
	Stream                                      bool
	// ErrorType is the OpenAI error type of a failed request ("" if none).
	ErrorType, ErrorMessage string
}

// End names the span "{operation} {model}", records d and ends it.
func (s *Span) End(d Done) {
	if d.Model != "" {
		s.span.SetName(s.operation + " " + d.Model)
	}
	attrs := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", s.operation),
		attribute.Int("http.response.status_code", d.Status),
		attribute.String("lumen.request_id", d.RequestID),
		attribute.Bool("lumen.stream", d.Stream),
		attribute.Int("lumen.attempts", d.Attempts),
		attribute.Float64("lumen.cost_usd", d.CostUSD),
	}
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	add("gen_ai.request.model", d.Model)
	add("gen_ai.response.model", d.ResponseModel)
	add("gen_ai.provider.name", d.Provider)
	add("lumen.deployment", d.Deployment)
	add("lumen.key_id", d.KeyID)
	add("lumen.cache", d.Cache)
	if d.InputTokens > 0 || d.OutputTokens > 0 {
		attrs = append(attrs, attribute.Int("gen_ai.usage.input_tokens", d.InputTokens),
			attribute.Int("gen_ai.usage.output_tokens", d.OutputTokens))
	}
	if d.ErrorType != "" {
		attrs = append(attrs, attribute.String("error.type", d.ErrorType))
		s.span.SetStatus(codes.Error, d.ErrorMessage)
	}
	s.span.SetAttributes(attrs...)
	s.span.End()
}

// Transport returns base (http.DefaultTransport when nil) with the trace
// context of each request's context added as a traceparent header, so an
// upstream that traces joins the request's trace.
func (t *Tracer) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return propagating{base: base, prop: t.prop}
}

type propagating struct {
	base http.RoundTripper
	prop propagation.TextMapPropagator
}

func (p propagating) RoundTrip(req *http.Request) (*http.Response, error) {
	if !trace.SpanContextFromContext(req.Context()).IsValid() {
		return p.base.RoundTrip(req)
	}
	r := req.Clone(req.Context()) // a RoundTripper must not change the caller's request
	p.prop.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
	return p.base.RoundTrip(r)
}
