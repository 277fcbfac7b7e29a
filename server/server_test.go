package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/internal/syncbuf"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/metrics"
	"github.com/lumengw/lumen/providers"
)

// memRecorder keeps the records it is given.
type memRecorder struct {
	mu   sync.Mutex
	recs []ledger.Record
}

func (m *memRecorder) Record(r ledger.Record) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, r)
	return true
}

func (m *memRecorder) records() []ledger.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ledger.Record(nil), m.recs...)
}

// runServer runs a Server on yaml, changed by prepare unless nil, until
// the returned stop is called; stop returns Run's error once Run has
// returned.
func runServer(t *testing.T, yaml string, o Options, prepare func(*Server)) (s *Server, url string, stop func() error) {
	t.Helper()
	cfg, r := routed(t, yaml)
	o.Config, o.Router = cfg, r
	s = New(o)
	if prepare != nil {
		prepare(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return s, "http://" + ln.Addr().String(), stop
}

// Requests still running when the grace period is over are cut off by the
// gateway, not by their clients: each client that is still connected gets
// a 503 gateway_shutting_down in the OpenAI shape, and the ledger, the
// request log and the metrics have the same, before Run returns.
func TestRunRecordsRequestsCutOffByShutdown(t *testing.T) {
	rec := &memRecorder{}
	logs := &syncbuf.Buffer{}
	m := metrics.New(metrics.Options{NoProcessMetrics: true})
	s, url, stop := runServer(t, `
model_list: [{model_name: slow, params: {model: mock/slow, mock_latency: 1h}}]
server: {grace_period: 100ms}
`, Options{Logger: zerolog.New(logs), Ledger: rec, Metrics: m}, nil)
	const n = 3
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, n)
	for range n {
		go func() {
			resp, err := http.Post(url+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"slow","messages":[{"role":"user","content":"x"}]}`))
			if err != nil {
				answered <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			answered <- answer{resp.StatusCode, string(body), err}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); s.inflight.Load() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests in flight", s.inflight.Load(), n)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Run has returned: every cut-off request is recorded already.
	recs := rec.records()
	if len(recs) != n {
		t.Fatalf("%d requests cut off, %d recorded when Run returned", n, len(recs))
	}
	for _, r := range recs {
		if r.Status != http.StatusServiceUnavailable || r.ErrorType != typeShuttingDown {
			t.Errorf("cut-off request recorded as %d %q, want 503 %s", r.Status, r.ErrorType, typeShuttingDown)
		}
	}
	var logged int
	for line := range strings.Lines(logs.String()) {
		if gjson.Get(line, "message").Str == "request" {
			logged++
			if gjson.Get(line, "status").Int() != 503 || gjson.Get(line, "error_type").Str != typeShuttingDown || gjson.Get(line, "level").Str != "warn" {
				t.Errorf("cut-off request logged as %s", line)
			}
		}
	}
	if logged != n {
		t.Errorf("%d request lines for %d cut-off requests:\n%s", logged, n, logs)
	}
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `status="503"} 3`; !strings.Contains(w.Body.String(), want) {
		t.Errorf("metrics lack %s:\n%s", want, grepLines(w.Body.String(), "lumen_requests_total"))
	}
	for range n {
		a := <-answered
		if a.err != nil || a.status != http.StatusServiceUnavailable ||
			gjson.Get(a.body, "error.type").Str != typeShuttingDown || gjson.Get(a.body, "error.message").Str == "" {
			t.Errorf("a cut-off client got %d %s (%v); want 503 %s in the OpenAI error shape", a.status, a.body, a.err, typeShuttingDown)
		}
	}
}

func TestRunAbandonsHandlersThatIgnoreTheCutOff(t *testing.T) {
	logs := &syncbuf.Buffer{}
	stuck, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	_, url, stop := runServer(t, `
model_list: [{model_name: demo, params: {model: mock/demo}}]
server: {grace_period: 50ms}
`, Options{Logger: zerolog.New(logs)}, func(s *Server) {
		s.recordWait = 50 * time.Millisecond
		s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(stuck)
			<-release // ignores its context
		})
	})
	go func() {
		if resp, err := http.Get(url + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-stuck
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"handlers":1`) || !strings.Contains(logs.String(), "abandoned") {
		t.Fatalf("the abandoned handler is not logged:\n%s", logs)
	}
}

func TestHandlersWaitSeesHandlersStartedWhileWaiting(t *testing.T) {
	var h handlers
	h.add()
	waited := make(chan int)
	go func() { waited <- h.wait(context.Background()) }()
	h.add() // a late handler, while wait waits
	h.done()
	select {
	case n := <-waited:
		t.Fatalf("wait returned %d with a handler running", n)
	case <-time.After(20 * time.Millisecond):
	}
	h.done()
	if n := <-waited; n != 0 {
		t.Fatalf("wait = %d once idle", n)
	}
	h.add()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n := h.wait(ctx); n != 1 {
		t.Fatalf("wait = %d on a done context with one running, want 1", n)
	}
}

// With a drain delay, a shutting-down server fails readiness but still
// serves, until the delay is over.
func TestRunDrainDelay(t *testing.T) {
	_, url, stop := runServer(t, `
model_list: [{model_name: demo, params: {model: mock/demo}}]
server: {drain_delay: 300ms, grace_period: 1s}
`, Options{Logger: zerolog.Nop()}, nil)
	get := func(path string) int {
		resp, err := http.Get(url + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/health/readiness"); got != 200 {
		t.Fatalf("readiness before shutdown: %d", got)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	for deadline := time.Now().Add(5 * time.Second); get("/health/readiness") != http.StatusServiceUnavailable; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("readiness never failed")
		}
	}
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"demo","messages":[{"role":"user","content":"still there?"}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a request while draining: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if got := get("/health/readiness"); got != 0 {
		t.Fatalf("after shutdown the server answered %d", got)
	}
}

// A handler that panics still finishes its exchange: the client gets a
// 500 and the ledger a row for it.
func TestPanicIsRecorded(t *testing.T) {
	rec := &memRecorder{}
	s, _, _ := runServer(t, `
model_list: [{model_name: demo, params: {model: mock/demo}}]
`, Options{Logger: zerolog.Nop(), Ledger: rec}, nil)
	h := s.handle(providers.OpChat, func(w http.ResponseWriter, r *http.Request, x *exchange) error {
		x.group = "demo"
		panic("a bug")
	}, func(w http.ResponseWriter, x *exchange, err error) *apiError {
		return writeAPIError(w, s.classifyExchange(x, err))
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{}`)))
	if w.Code != 500 || !strings.Contains(w.Body.String(), "internal error") {
		t.Fatalf("client got %d %s", w.Code, w.Body)
	}
	if recs := rec.records(); len(recs) != 1 || recs[0].Status != 500 || recs[0].ModelGroup != "demo" {
		t.Fatalf("ledger %+v", recs)
	}
	if s.inflight.Load() != 0 {
		t.Fatalf("in flight %d after the panic", s.inflight.Load())
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out.WriteString(line)
		}
	}
	return out.String()
}

// A client that sends its headers and part of its body, then stalls, is
// answered 408 request_timeout and disconnected once server.read_timeout
// is over, while a stream that lasts longer than read_timeout, its body
// sent whole, runs to its end: the bound is on reading the request only.
func TestReadTimeout(t *testing.T) {
	_, url, _ := runServer(t, `
model_list: [{model_name: m, params: {model: mock/m, mock_response: "one two three four five six", mock_chunk_interval: 100ms}}]
server: {read_timeout: 200ms}
`, Options{Logger: zerolog.Nop()}, nil)

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Not a timing assertion: without a read timeout the server would
	// wait for the rest of the body forever, and so would this test.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"+`{"model":"m",`); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || gjson.GetBytes(body, "error.code").Str != "request_timeout" {
		t.Fatalf("stalled body: %d %s", resp.StatusCode, body)
	}
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the 408 the connection must close: read %d, %v", n, err)
	}

	resp, err = http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d %v\n%s", resp.StatusCode, err, raw)
	}
	var text strings.Builder
	for line := range strings.Lines(string(raw)) {
		text.WriteString(gjson.Get(strings.TrimPrefix(line, "data: "), "choices.0.delta.content").Str)
	}
	if !strings.Contains(string(raw), "data: [DONE]") || strings.Join(strings.Fields(text.String()), " ") != "one two three four five six" {
		t.Fatalf("the stream did not run to its end:\n%s", raw)
	}
}

// blockingReports answers no report until its context ends.
type blockingReports struct{ started chan struct{} }

func (b blockingReports) Spend(ctx context.Context, _ ledger.Query) ([]ledger.Row, error) {
	b.started <- struct{}{}
	<-ctx.Done()
	return nil, fmt.Errorf("spend report: %w", ctx.Err())
}

func (b blockingReports) Requests(context.Context, ledger.RequestFilter) (ledger.Page, error) {
	return ledger.Page{}, nil
}

func (b blockingReports) Totals(context.Context, ledger.Query) ([]ledger.Total, error) {
	return nil, nil
}

// An admin call still running when the grace period is over is cut off by
// the gateway as a proxied request is: its client gets a 503
// gateway_shutting_down, not a connection closed without an answer (the
// 499 of a client that left, which writes nothing).
func TestRunCutsOffAdminCallsWith503(t *testing.T) {
	reports := blockingReports{started: make(chan struct{}, 1)}
	_, url, stop := runServer(t, `
model_list: [{model_name: demo, params: {model: mock/demo}}]
general_settings: {master_key: sk-master}
server: {grace_period: 50ms}
`, Options{Logger: zerolog.Nop(), Reports: reports}, nil)
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, url+"/admin/spend?by=key", nil)
		req.Header.Set("Authorization", "Bearer sk-master")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		answered <- answer{resp.StatusCode, string(body), err}
	}()
	<-reports.started
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	a := <-answered
	if a.err != nil || a.status != http.StatusServiceUnavailable || gjson.Get(a.body, "error.type").Str != typeShuttingDown {
		t.Fatalf("a cut-off admin call got %d %s (%v); want 503 %s", a.status, a.body, a.err, typeShuttingDown)
	}
}
