package providertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/lumengw/lumen/providers"
)

// Caps are the differences between providers that the suite allows.
type Caps struct {
	// ImageURL: http(s) images reach the upstream as URLs (Anthropic);
	// otherwise the provider must fetch them and send the bytes.
	ImageURL bool
	// CacheWrite: the upstream reports prompt-cache writes in its usage.
	CacheWrite bool
	// ToolCallIDs: the upstream names its tool calls, so the ids the fake
	// picks must reach the client; otherwise the provider makes ids up.
	ToolCallIDs bool
	// RetryAfter: the upstream's rate-limit answer carries a delay the
	// provider must report as UpstreamError.RetryAfter.
	RetryAfter bool
	// Status is the HTTP status the provider reports for each ErrorKind.
	Status map[ErrorKind]int
}

// Factory returns a provider that talks to a wire fake backed by f. It
// must give the provider f.Images as its image fetcher.
type Factory func(t *testing.T, f *Fake) providers.Provider

// Model is the upstream model id the suite's requests carry.
const Model = "test-model"

// PNG is a 1×1 PNG image, served by the suite's image server and sent as a
// data URL.
var PNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" +
	"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

// JPEG stands in for a second image type; only its bytes matter.
var JPEG = []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9")

// Run runs every scenario against providers made by newProvider.
func Run(t *testing.T, caps Caps, newProvider Factory) {
	if caps.Status == nil {
		t.Fatal("providertest: Caps.Status must map every ErrorKind")
	}
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cat.jpg":
			w.Header().Set("Content-Type", "image/jpeg")
			_, _ = w.Write(JPEG)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(images.Close)
	s := &suite{caps: caps, newProvider: newProvider, images: images}
	for _, sc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"plain chat", s.plainChat},
		{"system prompt and parameters", s.systemPrompt},
		{"consecutive same-role messages merged", s.merged},
		{"images", s.imageParts},
		{"images over a request's total", s.imagesTotal},
		{"tools with a tool-result round trip", s.toolRoundTrip},
		{"parallel tool calls", s.parallelToolCalls},
		{"stream", s.stream},
		{"stream with tools", s.streamTools},
		{"stream error in band", s.streamError},
		{"stream cut without its end", s.streamTruncated},
		{"error mapping", s.errors},
		{"usage with cached tokens", s.usage},
		{"client cancel reaches the upstream", s.cancel},
		{"bad input", s.badInput},
	} {
		t.Run(sc.name, sc.run)
	}
}

type suite struct {
	caps        Caps
	newProvider Factory
	images      *httptest.Server
}

func (s *suite) setup(t *testing.T) (*Fake, providers.Provider) {
	f := NewFake(s.images.Client())
	return f, s.newProvider(t, f)
}

func request(body string, stream bool) *providers.Request {
	return &providers.Request{Op: providers.OpChat, Model: Model, Body: []byte(body), Stream: stream}
}

// do runs a non-streaming request and checks the answer parses as an
// OpenAI chat.completion with the official SDK's types.
func do(t *testing.T, p providers.Provider, body string) (*providers.Response, openai.ChatCompletion) {
	t.Helper()
	resp, err := p.Do(context.Background(), request(body, false))
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(resp.Body, &cc); err != nil {
		t.Fatalf("the answer does not parse as openai.ChatCompletion: %v\n%s", err, resp.Body)
	}
	if cc.Object != "chat.completion" || cc.ID == "" || cc.Created == 0 || len(cc.Choices) != 1 || cc.Choices[0].Message.Role != "assistant" {
		t.Fatalf("not a complete chat.completion: %s", resp.Body)
	}
	return resp, cc
}

// collect reads a whole stream. It returns the payloads and the error that
// ended it (nil for a clean io.EOF).
func collect(t *testing.T, p providers.Provider, body string) ([][]byte, error) {
	t.Helper()
	st, err := p.DoStream(context.Background(), request(body, true))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}()
	var out [][]byte
	for {
		data, err := st.Recv()
		if err == io.EOF {
			if _, err := st.Recv(); err != io.EOF {
				t.Errorf("Recv after EOF = %v, want io.EOF", err)
			}
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(data))
	}
}

// streamed checks the shape of a complete translated stream and returns
// it accumulated by the official SDK, with the usage of its last chunk.
func streamed(t *testing.T, chunks [][]byte) (openai.ChatCompletionAccumulator, providers.Usage) {
	t.Helper()
	if len(chunks) < 3 {
		t.Fatalf("want at least role, finish and usage chunks, got %d: %s", len(chunks), bytes.Join(chunks, []byte("\n")))
	}
	var acc openai.ChatCompletionAccumulator
	finishes := 0
	var id string
	for i, data := range chunks {
		var c openai.ChatCompletionChunk
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("chunk %d does not parse as openai.ChatCompletionChunk: %v\n%s", i, err, data)
		}
		if c.Object != "chat.completion.chunk" || c.ID == "" {
			t.Fatalf("chunk %d is not a chat.completion.chunk: %s", i, data)
		}
		if id == "" {
			id = c.ID
		} else if c.ID != id {
			t.Fatalf("chunk %d has id %q, the stream's is %q", i, c.ID, id)
		}
		if i == 0 && (len(c.Choices) != 1 || c.Choices[0].Delta.Role != "assistant") {
			t.Fatalf("the first chunk must carry the assistant role: %s", data)
		}
		if last := i == len(chunks)-1; last != (len(c.Choices) == 0) {
			t.Fatalf("only the last chunk, the usage chunk, has no choices: chunk %d of %d: %s", i, len(chunks), data)
		}
		for _, ch := range c.Choices {
			if ch.FinishReason != "" {
				finishes++
			}
		}
		if !acc.AddChunk(c) {
			t.Fatalf("the SDK accumulator refused chunk %d: %s", i, data)
		}
	}
	if finishes != 1 {
		t.Fatalf("want exactly one finish_reason, got %d", finishes)
	}
	var last struct {
		Usage *providers.ChatUsage `json:"usage"`
	}
	if err := json.Unmarshal(chunks[len(chunks)-1], &last); err != nil || last.Usage == nil {
		t.Fatalf("the last chunk carries no usage: %s", chunks[len(chunks)-1])
	}
	return acc, last.Usage.Normalized()
}

func (s *suite) plainChat(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "Hi there! How can I help?", Finish: providers.FinishStop, Usage: providers.Usage{PromptTokens: 12, CompletionTokens: 7}})
	resp, cc := do(t, p, `{"model":"alias","messages":[{"role":"user","content":"Hello"}]}`)
	if got := cc.Choices[0].Message.Content; got != "Hi there! How can I help?" {
		t.Errorf("content = %q", got)
	}
	if got := cc.Choices[0].FinishReason; got != "stop" {
		t.Errorf("finish_reason = %q, want stop", got)
	}
	if want := (providers.Usage{PromptTokens: 12, CompletionTokens: 7}); resp.Usage != want {
		t.Errorf("Usage = %+v, want %+v", resp.Usage, want)
	}
	if cc.Usage.PromptTokens != 12 || cc.Usage.CompletionTokens != 7 || cc.Usage.TotalTokens != 19 {
		t.Errorf("body usage = %+v", cc.Usage)
	}
	got := last(t, f)
	if got.Model != Model || got.Stream {
		t.Errorf("upstream got model %q stream %v, want %q, false", got.Model, got.Stream, Model)
	}
	sameMsgs(t, got.Messages, []Msg{{Role: "user", Parts: []Part{{Text: "Hello"}}}})
}

func (s *suite) systemPrompt(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "Yes.", Finish: providers.FinishStop})
	do(t, p, `{"model":"alias","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Ready?"}],
		"max_tokens":50,"temperature":0.25,"top_p":0.5,"stop":["END","STOP"]}`)
	got := last(t, f)
	if got.System != "Be terse." {
		t.Errorf("system = %q, want %q", got.System, "Be terse.")
	}
	sameMsgs(t, got.Messages, []Msg{{Role: "user", Parts: []Part{{Text: "Ready?"}}}})
	if got.MaxTokens != 50 {
		t.Errorf("max tokens = %d, want 50", got.MaxTokens)
	}
	if got.Temperature == nil || *got.Temperature != 0.25 || got.TopP == nil || *got.TopP != 0.5 {
		t.Errorf("temperature %v top_p %v, want 0.25 0.5", deref(got.Temperature), deref(got.TopP))
	}
	if !reflect.DeepEqual(got.Stop, []string{"END", "STOP"}) {
		t.Errorf("stop = %q", got.Stop)
	}

	f.SetReply(Reply{Text: "ok", Finish: providers.FinishStop})
	do(t, p, `{"model":"alias","max_completion_tokens":70,"messages":[{"role":"developer","content":"Rule one."},{"role":"system","content":[{"type":"text","text":"Rule two."}]},{"role":"user","content":"Go"}]}`)
	got = last(t, f)
	if !strings.Contains(got.System, "Rule one.") || !strings.Contains(got.System, "Rule two.") {
		t.Errorf("developer and system messages must both reach the system prompt: %q", got.System)
	}
	if got.MaxTokens != 70 {
		t.Errorf("max_completion_tokens: max tokens = %d, want 70", got.MaxTokens)
	}
}

func (s *suite) merged(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "ok", Finish: providers.FinishStop})
	do(t, p, `{"model":"alias","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},
		{"role":"assistant","content":"c"},{"role":"assistant","content":"d"},{"role":"user","content":"e"}]}`)
	sameMsgs(t, last(t, f).Messages, []Msg{
		{Role: "user", Parts: []Part{{Text: "a"}, {Text: "b"}}},
		{Role: "assistant", Parts: []Part{{Text: "c"}, {Text: "d"}}},
		{Role: "user", Parts: []Part{{Text: "e"}}},
	})
}

func (s *suite) imageParts(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "A cat.", Finish: providers.FinishStop})
	url := s.images.URL + "/cat.jpg"
	do(t, p, fmt.Sprintf(`{"model":"alias","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},
		{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}},{"type":"image_url","image_url":{"url":%q,"detail":"low"}}]}]}`,
		base64.StdEncoding.EncodeToString(PNG), url))
	remote := &Image{MediaType: "image/jpeg", Data: JPEG}
	if s.caps.ImageURL {
		remote = &Image{URL: url}
	}
	sameMsgs(t, last(t, f).Messages, []Msg{{Role: "user", Parts: []Part{
		{Text: "What is this?"}, {Image: &Image{MediaType: "image/png", Data: PNG}}, {Image: remote},
	}}})
}

// imagesTotal: the images a provider fetches for one request are bounded
// together (ImageFetcher.MaxTotalBytes); the image that would pass the
// bound is a 400 naming it, and nothing reaches the upstream. Data URLs
// do not count.
func (s *suite) imagesTotal(t *testing.T) {
	if s.caps.ImageURL {
		t.Skip("the upstream fetches images itself")
	}
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "Cats.", Finish: providers.FinishStop})
	f.Images.MaxTotalBytes = int64(2 * len(JPEG))
	data := fmt.Sprintf(`{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}}`, base64.StdEncoding.EncodeToString(PNG))
	remote := fmt.Sprintf(`{"type":"image_url","image_url":{"url":%q}}`, s.images.URL+"/cat.jpg")
	body := func(parts ...string) string {
		return `{"model":"alias","messages":[{"role":"user","content":[` + strings.Join(parts, ",") + `]}]}`
	}
	do(t, p, body(data, remote, data, remote)) // exactly the total
	if n := f.Count(); n != 1 {
		t.Fatalf("two images within the total: %d requests reached the upstream, want 1", n)
	}
	_, err := p.Do(context.Background(), request(body(data, remote, remote, remote), false))
	var ie *providers.InvalidRequestError
	if !errors.As(err, &ie) || ie.Param != "messages[0].content[3].image_url.url" || !strings.Contains(ie.Message, fmt.Sprintf("more than %d bytes", 2*len(JPEG))) {
		t.Fatalf("err = %v, want *providers.InvalidRequestError for messages[0].content[3].image_url.url over %d bytes", err, 2*len(JPEG))
	}
	if n := f.Count(); n != 1 {
		t.Errorf("a request over the images' total reached the upstream")
	}
}

const weatherTool = `{"type":"function","function":{"name":"get_weather","description":"Current weather in a city",
	"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}`
const timeTool = `{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"tz":{"type":"string"}}}}}`

func (s *suite) toolRoundTrip(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "It is 18°C and sunny in Paris.", Finish: providers.FinishStop})
	do(t, p, `{"model":"alias","tools":[`+weatherTool+`],"tool_choice":"auto","messages":[
		{"role":"user","content":"Weather in Paris?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"18°C, sunny"}]}`)
	got := last(t, f)
	if len(got.Tools) != 1 || got.Tools[0].Name != "get_weather" || got.Tools[0].Description != "Current weather in a city" ||
		!sameJSON(got.Tools[0].Schema, `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`) {
		t.Errorf("tools = %+v", got.Tools)
	}
	if got.ToolChoice != "auto" {
		t.Errorf("tool choice = %q, want auto", got.ToolChoice)
	}
	sameMsgs(t, got.Messages, []Msg{
		{Role: "user", Parts: []Part{{Text: "Weather in Paris?"}}},
		{Role: "assistant", Parts: []Part{{ToolCall: &ToolCall{ID: "call_1", Name: "get_weather", Args: `{"city":"Paris"}`}}}},
		{Role: "user", Parts: []Part{{ToolResult: &ToolResult{ID: "call_1", Name: "get_weather", Content: "18°C, sunny"}}}},
	})

	for _, tc := range []struct{ choice, want string }{
		{`"required"`, "required"}, {`"none"`, "none"}, {`{"type":"function","function":{"name":"get_time"}}`, "function:get_time"},
	} {
		do(t, p, `{"model":"alias","tools":[`+weatherTool+`,`+timeTool+`],"tool_choice":`+tc.choice+`,"messages":[{"role":"user","content":"hi"}]}`)
		if got := last(t, f).ToolChoice; got != tc.want && !(tc.want == "none" && got == "") {
			t.Errorf("tool_choice %s reached the upstream as %q, want %q", tc.choice, got, tc.want)
		}
	}
}

var twoCalls = []ToolCall{
	{ID: "call_a1", Name: "get_weather", Args: `{"city":"Paris"}`},
	{ID: "call_b2", Name: "get_time", Args: `{"tz":"Europe/Paris"}`},
}

func (s *suite) checkCalls(t *testing.T, got []openai.ChatCompletionMessageToolCallUnion) {
	t.Helper()
	if len(got) != len(twoCalls) {
		t.Fatalf("got %d tool calls, want %d: %+v", len(got), len(twoCalls), got)
	}
	seen := map[string]bool{}
	for i, want := range twoCalls {
		g := got[i]
		if g.Type != "function" || g.Function.Name != want.Name || !sameJSON([]byte(g.Function.Arguments), want.Args) {
			t.Errorf("tool call %d = %s %s(%s), want function %s(%s)", i, g.Type, g.Function.Name, g.Function.Arguments, want.Name, want.Args)
		}
		switch {
		case s.caps.ToolCallIDs && g.ID != want.ID:
			t.Errorf("tool call %d id = %q, want the upstream's %q", i, g.ID, want.ID)
		case g.ID == "" || seen[g.ID]:
			t.Errorf("tool call %d id %q is empty or repeated", i, g.ID)
		}
		seen[g.ID] = true
	}
}

func (s *suite) parallelToolCalls(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{ToolCalls: twoCalls, Finish: providers.FinishToolCalls, Usage: providers.Usage{PromptTokens: 30, CompletionTokens: 12}})
	resp, cc := do(t, p, `{"model":"alias","tools":[`+weatherTool+`,`+timeTool+`],"messages":[{"role":"user","content":"Weather and time in Paris?"}]}`)
	if cc.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("finish_reason = %q, want tool_calls", cc.Choices[0].FinishReason)
	}
	s.checkCalls(t, cc.Choices[0].Message.ToolCalls)
	var raw struct {
		Choices []struct {
			Message struct {
				Content *string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(resp.Body, &raw); err != nil || raw.Choices[0].Message.Content != nil {
		t.Errorf("an answer of only tool calls has content null: %s", resp.Body)
	}

	// The calls go back as history, with both results, in one round trip.
	var history []string
	for _, c := range cc.Choices[0].Message.ToolCalls {
		history = append(history, fmt.Sprintf(`{"id":%q,"type":"function","function":{"name":%q,"arguments":%q}}`, c.ID, c.Function.Name, c.Function.Arguments))
	}
	c0, c1 := cc.Choices[0].Message.ToolCalls[0].ID, cc.Choices[0].Message.ToolCalls[1].ID
	f.SetReply(Reply{Text: "Sunny, 14:00.", Finish: providers.FinishStop})
	do(t, p, `{"model":"alias","tools":[`+weatherTool+`,`+timeTool+`],"messages":[{"role":"user","content":"Weather and time in Paris?"},
		{"role":"assistant","tool_calls":[`+strings.Join(history, ",")+`]},
		{"role":"tool","tool_call_id":"`+c0+`","content":"sunny"},{"role":"tool","tool_call_id":"`+c1+`","content":"14:00"}]}`)
	sameMsgs(t, last(t, f).Messages, []Msg{
		{Role: "user", Parts: []Part{{Text: "Weather and time in Paris?"}}},
		{Role: "assistant", Parts: []Part{
			{ToolCall: &ToolCall{ID: c0, Name: "get_weather", Args: twoCalls[0].Args}},
			{ToolCall: &ToolCall{ID: c1, Name: "get_time", Args: twoCalls[1].Args}}}},
		{Role: "user", Parts: []Part{
			{ToolResult: &ToolResult{ID: c0, Name: "get_weather", Content: "sunny"}},
			{ToolResult: &ToolResult{ID: c1, Name: "get_time", Content: "14:00"}}}},
	})
}

func (s *suite) stream(t *testing.T) {
	f, p := s.setup(t)
	text := "Hello, streaming world: one, two, three."
	usage := providers.Usage{PromptTokens: 21, CompletionTokens: 9}
	f.SetReply(Reply{Text: text, Finish: providers.FinishStop, Usage: usage})
	chunks, err := collect(t, p, `{"model":"alias","stream":true,"messages":[{"role":"user","content":"Count"}]}`)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	acc, u := streamed(t, chunks)
	if got := acc.Choices[0].Message.Content; got != text {
		t.Errorf("streamed content = %q, want %q", got, text)
	}
	if got := acc.Choices[0].FinishReason; got != "stop" {
		t.Errorf("finish_reason = %q", got)
	}
	if len(chunks) < 5 {
		t.Errorf("the text came in %d chunks; the fake sent it in pieces, each must leave as it arrives", len(chunks))
	}
	if u != usage {
		t.Errorf("usage chunk = %+v, want %+v", u, usage)
	}
	if got := last(t, f); !got.Stream || got.Model != Model {
		t.Errorf("upstream got stream %v model %q", got.Stream, got.Model)
	}
}

func (s *suite) streamTools(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "Let me check.", ToolCalls: twoCalls, Finish: providers.FinishToolCalls, Usage: providers.Usage{PromptTokens: 40, CompletionTokens: 30}})
	chunks, err := collect(t, p, `{"model":"alias","stream":true,"tools":[`+weatherTool+`,`+timeTool+`],"messages":[{"role":"user","content":"Weather and time?"}]}`)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	acc, _ := streamed(t, chunks)
	if got := acc.Choices[0].Message.Content; got != "Let me check." {
		t.Errorf("content = %q", got)
	}
	if got := acc.Choices[0].FinishReason; got != "tool_calls" {
		t.Errorf("finish_reason = %q, want tool_calls", got)
	}
	s.checkCalls(t, acc.Choices[0].Message.ToolCalls)
	// Each call's first chunk names it; later chunks only add arguments.
	named := map[int64]bool{}
	for _, data := range chunks {
		var c openai.ChatCompletionChunk
		_ = json.Unmarshal(data, &c)
		for _, ch := range c.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				first := !named[tc.Index]
				if first != (tc.ID != "" && tc.Function.Name != "") {
					t.Errorf("tool call %d: id and name belong on its first chunk only: %s", tc.Index, data)
				}
				named[tc.Index] = true
			}
		}
	}
	if len(named) != 2 || !named[0] || !named[1] {
		t.Errorf("tool call indices = %v, want 0 and 1", named)
	}
}

func (s *suite) streamError(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "partial answer that breaks", StreamErr: &ErrorReply{Kind: Overloaded, Message: "upstream is overloaded"}})
	chunks, err := collect(t, p, `{"model":"alias","stream":true,"messages":[{"role":"user","content":"Go"}]}`)
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("stream ended with %v after %d chunks, want an *UpstreamError", err, len(chunks))
	}
	if !ue.Retryable || !strings.Contains(ue.Message, "upstream is overloaded") {
		t.Errorf("in-band error = %+v, want retryable with the upstream's message", ue)
	}
	if text := contentOf(chunks); text == "" {
		t.Errorf("the text before the error must reach the client first")
	}
}

func (s *suite) streamTruncated(t *testing.T) {
	f, p := s.setup(t)
	f.SetReply(Reply{Text: "this answer never ends properly", Truncate: true})
	chunks, err := collect(t, p, `{"model":"alias","stream":true,"messages":[{"role":"user","content":"Go"}]}`)
	if err == nil {
		t.Fatalf("a stream cut before its end event ended cleanly after %d chunks; it must end with an error", len(chunks))
	}
	if !providers.IsRetryable(err) {
		t.Errorf("cut stream error %v is not retryable", err)
	}
}

func (s *suite) errors(t *testing.T) {
	for _, kind := range []ErrorKind{RateLimited, Overloaded, BadRequest, Unauthorized} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v stream=%v", kind, stream), func(t *testing.T) {
				f, p := s.setup(t)
				er := &ErrorReply{Kind: kind, Message: "the fake says " + kind.String()}
				if kind == RateLimited {
					er.RetryAfter = 7 * time.Second
				}
				f.SetReply(Reply{Err: er})
				var err error
				if stream {
					var st providers.Stream
					st, err = p.DoStream(context.Background(), request(`{"model":"alias","stream":true,"messages":[{"role":"user","content":"x"}]}`, true))
					if st != nil {
						st.Close()
					}
				} else {
					_, err = p.Do(context.Background(), request(`{"model":"alias","messages":[{"role":"user","content":"x"}]}`, false))
				}
				var ue *providers.UpstreamError
				if !errors.As(err, &ue) {
					t.Fatalf("err = %v (%T), want *providers.UpstreamError", err, err)
				}
				wantRetry := kind == RateLimited || kind == Overloaded
				if ue.Status != s.caps.Status[kind] || ue.Retryable != wantRetry {
					t.Errorf("status %d retryable %v, want %d %v", ue.Status, ue.Retryable, s.caps.Status[kind], wantRetry)
				}
				if !strings.Contains(ue.Message, er.Message) {
					t.Errorf("message %q lost the upstream's %q", ue.Message, er.Message)
				}
				if ue.Type == "" || ue.Provider == "" {
					t.Errorf("type %q provider %q: both must be set", ue.Type, ue.Provider)
				}
				if kind == RateLimited && s.caps.RetryAfter && ue.RetryAfter != 7*time.Second {
					t.Errorf("RetryAfter = %v, want 7s", ue.RetryAfter)
				}
			})
		}
	}
}

func (s *suite) usage(t *testing.T) {
	f, p := s.setup(t)
	want := providers.Usage{PromptTokens: 1000, CompletionTokens: 20, CachedTokens: 600}
	if s.caps.CacheWrite {
		want.CacheWriteTokens = 300
	}
	f.SetReply(Reply{Text: "cached", Finish: providers.FinishStop, Usage: want})
	resp, cc := do(t, p, `{"model":"alias","messages":[{"role":"user","content":"again"}]}`)
	if resp.Usage != want {
		t.Errorf("Usage = %+v, want %+v", resp.Usage, want)
	}
	if cc.Usage.PromptTokens != 1000 || cc.Usage.PromptTokensDetails.CachedTokens != 600 || cc.Usage.TotalTokens != 1020 {
		t.Errorf("body usage = %s", cc.Usage.RawJSON())
	}
	chunks, err := collect(t, p, `{"model":"alias","stream":true,"messages":[{"role":"user","content":"again"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, u := streamed(t, chunks); u != want {
		t.Errorf("stream usage = %+v, want %+v", u, want)
	}
}

func (s *suite) cancel(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			f, p := s.setup(t)
			f.SetReply(Reply{Hang: true})
			ctx, cancel := ctxWithCancel(t)
			errc := make(chan error, 1)
			go func() {
				req := request(`{"model":"alias","messages":[{"role":"user","content":"wait"}]}`, stream)
				var err error
				if stream {
					var st providers.Stream
					if st, err = p.DoStream(ctx, req); st != nil {
						_, err = st.Recv()
						st.Close()
					}
				} else {
					_, err = p.Do(ctx, req)
				}
				errc <- err
			}()
			waitFor(t, f.arrived, "the request reaching the upstream")
			cancel()
			waitFor(t, f.canceled, "the upstream seeing the client go away")
			err := <-errc
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want one wrapping context.Canceled", err)
			}
		})
	}
}

func (s *suite) badInput(t *testing.T) {
	tests := []struct {
		name, body, param string
	}{
		{"tool call arguments not JSON", `{"model":"alias","messages":[{"role":"user","content":"x"},
			{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{city: Paris"}}]},
			{"role":"tool","tool_call_id":"c1","content":"x"}]}`, "messages[1].tool_calls[0].function.arguments"},
		{"unknown content part", `{"model":"alias","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]}`,
			"messages[0].content[0].type"},
	}
	if !s.caps.ImageURL {
		tests = append(tests, struct{ name, body, param string }{"image that cannot be fetched",
			`{"model":"alias","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"` + s.images.URL + `/missing.png"}}]}]}`,
			"messages[0].content[0].image_url.url"})
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s stream=%v", tt.name, stream), func(t *testing.T) {
				f, p := s.setup(t)
				var err error
				if stream {
					var st providers.Stream
					if st, err = p.DoStream(context.Background(), request(tt.body, true)); st != nil {
						st.Close()
					}
				} else {
					_, err = p.Do(context.Background(), request(tt.body, false))
				}
				var ie *providers.InvalidRequestError
				if !errors.As(err, &ie) || ie.Param != tt.param {
					t.Fatalf("err = %v, want *providers.InvalidRequestError for %s", err, tt.param)
				}
				if providers.IsRetryable(err) {
					t.Errorf("a bad request must not be retryable")
				}
				if n := f.Count(); n != 0 {
					t.Errorf("a bad request reached the upstream (%d requests)", n)
				}
			})
		}
	}
}

func last(t *testing.T, f *Fake) Received {
	t.Helper()
	r, ok := f.Last()
	if !ok {
		t.Fatal("no request reached the fake upstream")
	}
	return r
}

func contentOf(chunks [][]byte) string {
	var b strings.Builder
	for _, data := range chunks {
		var c openai.ChatCompletionChunk
		if json.Unmarshal(data, &c) == nil {
			for _, ch := range c.Choices {
				b.WriteString(ch.Delta.Content)
			}
		}
	}
	return b.String()
}

func sameMsgs(t *testing.T, got, want []Msg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("upstream got %d messages, want %d:\n got %s\nwant %s", len(got), len(want), dump(got), dump(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Role != w.Role || len(g.Parts) != len(w.Parts) {
			t.Fatalf("message %d:\n got %s\nwant %s", i, dump(g), dump(w))
		}
		for j := range w.Parts {
			if err := samePart(g.Parts[j], w.Parts[j]); err != nil {
				t.Errorf("message %d part %d: %v\n got %s\nwant %s", i, j, err, dump(g.Parts[j]), dump(w.Parts[j]))
			}
		}
	}
}

func samePart(g, w Part) error {
	switch {
	case w.Image != nil:
		if g.Image == nil || g.Image.URL != w.Image.URL || g.Image.MediaType != w.Image.MediaType || !bytes.Equal(g.Image.Data, w.Image.Data) {
			return errors.New("image differs")
		}
	case w.ToolCall != nil:
		if g.ToolCall == nil || g.ToolCall.Name != w.ToolCall.Name || !sameJSON([]byte(g.ToolCall.Args), w.ToolCall.Args) {
			return errors.New("tool call differs")
		}
		if g.ToolCall.ID != "" && g.ToolCall.ID != w.ToolCall.ID {
			return errors.New("tool call id differs")
		}
	case w.ToolResult != nil:
		r := g.ToolResult
		switch {
		case r == nil || r.Content != w.ToolResult.Content:
			return errors.New("tool result differs")
		case r.ID == "" && r.Name == "":
			return errors.New("a tool result must name its call (id) or its function (name)")
		case r.ID != "" && r.ID != w.ToolResult.ID, r.Name != "" && r.Name != w.ToolResult.Name:
			return errors.New("tool result answers another call")
		}
	default:
		if g.Text != w.Text || g.Image != nil || g.ToolCall != nil || g.ToolResult != nil {
			return errors.New("text differs")
		}
	}
	return nil
}

func sameJSON(a []byte, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func dump(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
