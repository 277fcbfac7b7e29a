// Package providertest is the test suite every translating provider runs:
// the same OpenAI-format scenarios (plain chat, system prompt, images,
// tools with a tool-result round trip, parallel tool calls, streams with
// text and tools, error mapping, usage with cached tokens, client cancel)
// against the provider's fake upstream.
//
// A fake upstream has two halves. Fake, here, is the provider-neutral half:
// the suite sets the Reply the upstream gives and reads back what it
// Received. The provider package's test supplies the wire half, an
// http.Handler that parses the provider's request format into a Received
// and writes a Reply in the provider's documented response format. The
// wire half is written from the provider's API reference, independently of
// the translator under test, so a scenario passes only when both agree.
package providertest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
)

// Reply is what the fake upstream answers, in provider-neutral terms.
type Reply struct {
	// Text is the answer's text; a stream sends it in several pieces.
	Text string
	// ToolCalls are the calls the answer makes, in order.
	ToolCalls []ToolCall
	// Finish is the finish reason as OpenAI names it (providers.Finish*);
	// the fake sends its own equivalent.
	Finish string
	// Usage is the answer's usage; the fake sends it in its own terms
	// (for Anthropic: input_tokens excluding cache reads and writes).
	Usage providers.Usage
	// Err, when set, is answered instead, with an error status.
	Err *ErrorReply
	// StreamErr, when set on a stream, is sent in-band after the first
	// piece of Text.
	StreamErr *ErrorReply
	// Truncate, on a stream, cuts the connection after the first piece of
	// Text, without the provider's end-of-stream event.
	Truncate bool
	// Hang holds the request until the client goes away.
	Hang bool
}

// ToolCall is a tool call in an answer or a request's history. Args is
// JSON.
type ToolCall struct {
	ID, Name, Args string
}

// ErrorKind is the kind of failure a fake reports.
type ErrorKind int

// The failures the suite checks.
const (
	RateLimited  ErrorKind = iota // 429-class: retryable, with Retry-After
	Overloaded                    // 529/503-class: retryable
	BadRequest                    // 400: not retryable
	Unauthorized                  // bad key: not retryable
)

func (k ErrorKind) String() string {
	return [...]string{"rate limited", "overloaded", "bad request", "unauthorized"}[k]
}

// ErrorReply is an error the fake answers with.
type ErrorReply struct {
	Kind    ErrorKind
	Message string
	// RetryAfter is sent the provider's way (header, RetryInfo) when set.
	RetryAfter time.Duration
}

// Received is the request a fake upstream got, in provider-neutral terms.
type Received struct {
	Path   string
	Header http.Header
	// Model is the model the request addressed (body field or URL).
	Model    string
	Stream   bool
	System   string
	Messages []Msg
	Tools    []Tool
	// ToolChoice is "", "auto", "none", "required" or "function:NAME".
	ToolChoice  string
	MaxTokens   int
	Temperature *float64
	TopP        *float64
	Stop        []string
}

// Msg is one conversation turn: Role is "user" or "assistant".
type Msg struct {
	Role  string
	Parts []Part
}

// Part is one element of a turn; exactly one field is set.
type Part struct {
	Text       string
	Image      *Image
	ToolCall   *ToolCall
	ToolResult *ToolResult
}

// Image is an image as the upstream got it: inline bytes or a URL.
type Image struct {
	MediaType string
	Data      []byte
	URL       string
}

// ToolResult is a tool's answer as the upstream got it. A provider that
// keys results by name (Gemini) fills Name; one that keys them by call id
// fills ID.
type ToolResult struct {
	ID, Name, Content string
}

// Tool is a tool declaration as the upstream got it.
type Tool struct {
	Name, Description string
	Schema            json.RawMessage
}

// Fake is the provider-neutral half of a fake upstream. Its methods are
// safe for concurrent use by the handler and the test.
type Fake struct {
	// Images is the image fetcher the provider must use: it may read the
	// suite's loopback image server.
	Images *providers.ImageFetcher

	mu       sync.Mutex
	reply    Reply
	received []Received
	arrived  chan struct{}
	canceled chan struct{}
}

// NewFake returns a Fake whose Images fetcher uses client (which must be
// able to reach loopback test servers).
func NewFake(client *http.Client) *Fake {
	return &Fake{Images: &providers.ImageFetcher{Client: client}, arrived: make(chan struct{}, 16), canceled: make(chan struct{}, 16)}
}

// SetReply sets what the upstream answers next.
func (f *Fake) SetReply(r Reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply = r
}

// Reply returns the answer to give; the wire half calls it per request.
func (f *Fake) Reply() Reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reply
}

// Record stores what a request asked; the wire half calls it once per
// request, before answering.
func (f *Fake) Record(r Received) {
	f.mu.Lock()
	f.received = append(f.received, r)
	f.mu.Unlock()
	select {
	case f.arrived <- struct{}{}:
	default:
	}
}

// Canceled tells the suite that a held request saw its client go away;
// the wire half calls it when Reply.Hang's request context ends.
func (f *Fake) Canceled() {
	select {
	case f.canceled <- struct{}{}:
	default:
	}
}

// Hold blocks until the request ends, then reports it canceled. The wire
// half calls it for Reply.Hang.
func (f *Fake) Hold(r *http.Request) {
	<-r.Context().Done()
	f.Canceled()
}

// Last returns the last recorded request; ok is false when none came.
func (f *Fake) Last() (Received, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.received) == 0 {
		return Received{}, false
	}
	return f.received[len(f.received)-1], true
}

// Count returns how many requests arrived.
func (f *Fake) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.received)
}

// Pieces splits s into pieces of about n bytes, the way the fakes stream
// text.
func Pieces(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	if s != "" || len(out) == 0 {
		out = append(out, s)
	}
	return out
}

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// Golden compares got with the golden file at path, or rewrites the file
// when the test runs with -update. JSON is compared indented, so the files
// read well and diffs point at fields.
func Golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if json.Valid(got) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, got, "", "  "); err == nil {
			buf.WriteByte('\n')
			got = buf.Bytes()
		}
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update if the change is intended):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// waitFor waits for a signal on ch; the bound only keeps a broken
// provider from hanging the test binary, it measures nothing.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen", what)
	}
}

func ctxWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}
