package router

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tokens"
)

// Deployment a (cheaper, so cost-based-routing tries it first) breaks
// mid-stream; b, or the fallback group's c, continues.
const failoverConfig = `
model_list:
  - {model_name: g, params: {model: openai/a, api_base: "http://a"}, model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}
  - {model_name: g, params: {model: openai/b, api_base: "http://b"}, model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}}
  - {model_name: solo, params: {model: openai/a, api_base: "http://a"}}
  - {model_name: h, params: {model: openai/c, api_base: "http://c"}}
router_settings: {routing_strategy: cost-based-routing, num_retries: 1, fallbacks: [{solo: [h]}]`

func TestStreamFailover(t *testing.T) {
	tests := []struct {
		name     string
		group    string
		settings string // appended to router_settings
		a, b     []string
		aEnd     error
		wantText string
		wantErr  bool
		bCalls   int
		bPrefill bool // b is asked to continue (partial + instruction), not restarted
	}{
		{name: "continued and spliced", group: "g",
			a: []string{"<role>", "Hello", " from", " fake"}, aEnd: reset,
			b:        []string{"<role>", " stream", "!", "<stop>", "<usage>"},
			wantText: "Hello from fake stream!", bCalls: 1, bPrefill: true},
		{name: "continuation that restarts the answer is cut", group: "g",
			a: []string{"<role>", "Hello", " from", " fake"}, aEnd: reset,
			b:        []string{"<role>", "Hello from", " fake", " stream!", "<stop>"},
			wantText: "Hello from fake stream!", bCalls: 1, bPrefill: true},
		{name: "a repeated last word is cut", group: "g",
			a: []string{"<role>", "Hello", " from", " fake"}, aEnd: reset,
			b:        []string{"<role>", " fake", " stream!", "<stop>"},
			wantText: "Hello from fake stream!", bCalls: 1, bPrefill: true},
		{name: "only a role chunk sent: restarted", group: "g",
			a: []string{"<role>"}, aEnd: reset,
			b:        []string{"<role>", "Hi", "<stop>"},
			wantText: "Hi", bCalls: 1},
		{name: "a tool call broken mid-arguments: restarted, not spliced", group: "g",
			a: []string{"<role>", "<tool>"}, aEnd: reset,
			b:        []string{"<role>", "Hi", "<stop>"},
			wantText: "Hi", bCalls: 1},
		{name: "continued by a fallback group", group: "solo",
			a: []string{"<role>", "Hello", " from", " fake"}, aEnd: reset,
			b:        []string{"<role>", " stream!", "<stop>"},
			wantText: "Hello from fake stream!", bCalls: 1, bPrefill: true},
		{name: "stream_failover off", group: "g", settings: ", stream_failover: false",
			a: []string{"<role>", "Hello"}, aEnd: reset,
			b:       []string{"<role>", "Hi", "<stop>"},
			wantErr: true, bCalls: 0},
		{name: "nobody can continue: an error, not a silent end", group: "g",
			a: []string{"<role>", "Hello", " from", " fake"}, aEnd: reset,
			b:       nil, // b breaks before its first event
			wantErr: true, bCalls: 1},
		{name: "break after the finish ends normally", group: "g",
			a: []string{"<role>", "Hello", "<stop>"}, aEnd: reset,
			b:        []string{"<role>", "Hi", "<stop>"},
			wantText: "Hello", bCalls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := streams("a", tt.aEnd, tt.a...)
			b := streams("b", io.EOF, tt.b...)
			if tt.b == nil {
				b = streams("b", reset)
			}
			fakes := map[string]providers.Provider{"a": a, "b": b, "c": b}
			r, _ := newTestRouter(t, failoverConfig+tt.settings+"}\n", fakes)
			res, err := r.Do(context.Background(), chat(tt.group, true, ""))
			if err != nil {
				t.Fatal(err)
			}
			text, ids, events, err := drainText(t, res.Stream)
			if (err != nil) != tt.wantErr {
				t.Fatalf("stream error %v, want error %v (text %q)", err, tt.wantErr, text)
			}
			if b.Calls() != tt.bCalls {
				t.Fatalf("b called %d times, want %d", b.Calls(), tt.bCalls)
			}
			if tt.wantErr {
				return
			}
			if text != tt.wantText {
				t.Fatalf("client text %q, want %q", text, tt.wantText)
			}
			roles := 0
			for i, ev := range events {
				if ids[i] != "a" || jsonStr([]byte(ev), "model") != "m-a" {
					t.Fatalf("event %d has id %q model %q, want a's: %s", i, ids[i], jsonStr([]byte(ev), "model"), ev)
				}
				if gjson.Get(ev, "choices.0.delta.role").Exists() {
					roles++
				}
			}
			if roles != 1 {
				t.Fatalf("%d role chunks reached the client, want 1", roles)
			}
			if tt.bCalls == 0 {
				return
			}
			msgs := gjson.Get(b.Body(0), "messages").Array()
			last := msgs[len(msgs)-1]
			switch {
			case tt.bPrefill && (len(msgs) != 3 || msgs[1].Get("role").Str != "assistant" ||
				msgs[1].Get("content").Str != "Hello from fake" || last.Get("content").Str != continueInstruction):
				t.Fatalf("continuation request %s", b.Body(0))
			case !tt.bPrefill && len(msgs) != 1:
				t.Fatalf("restart request %s, want the original", b.Body(0))
			}
			if st := r.Stats(); st.Failovers != 1 {
				t.Fatalf("failovers counted %d", st.Failovers)
			}
		})
	}
}

// The continuation's usage covers what the broken attempt cost too: its
// prompt, and all it generated, relayed or held back: text, reasoning and
// a tool call in progress.
func TestStreamFailoverUsage(t *testing.T) {
	for _, broken := range [][]string{
		{"<role>", "Hello", " from", " fake"},
		{"<role>", "<think>", "Hello"},
		{"<role>", "Hello", "<tool>"},
	} {
		t.Run(strings.Join(broken, ""), func(t *testing.T) {
			a := streams("a", reset, broken...)
			b := streams("b", io.EOF, "<role>", " stream!", "<stop>", "<usage>")
			r, _ := newTestRouter(t, failoverConfig+"}\n", map[string]providers.Provider{"a": a, "b": b})
			call := chat("g", true, "")
			res, err := r.Do(context.Background(), call)
			if err != nil {
				t.Fatal(err)
			}
			_, _, events, err := drainText(t, res.Stream)
			if err != nil {
				t.Fatal(err)
			}
			if b.Calls() != 1 {
				t.Fatalf("b called %d times, want 1", b.Calls())
			}
			u := gjson.Get(events[len(events)-1], "usage")
			wantPrompt := 10 + int64(tokens.Prompt(call.Body))
			wantCompletion := int64(4)
			for _, c := range broken {
				wantCompletion += int64(tokens.Chunk([]byte(chatChunk("a", c))))
			}
			if u.Get("prompt_tokens").Int() != wantPrompt || u.Get("completion_tokens").Int() != wantCompletion ||
				u.Get("total_tokens").Int() != wantPrompt+wantCompletion {
				t.Fatalf("usage %s, want prompt %d completion %d", u.Raw, wantPrompt, wantCompletion)
			}
		})
	}
}

// Claude up to 4.5 and Mistral continue a final assistant message
// themselves: no instruction follows it (Mistral's carries "prefix":
// true). Claude 4.6 and later refuse prefill, so they get the instruction
// like OpenAI. A Claude prefill never ends with whitespace (Anthropic
// refuses it).
func TestContinuationBodies(t *testing.T) {
	instruction := `{"role":"user","content":"` + continueInstruction + `"}`
	tests := []struct {
		provider, model, partial, wantLast string
	}{
		{"openai", "gpt-4o", "Hello from fake", instruction},
		{"anthropic", "claude-sonnet-4-5-20250929", "Hello from fake", `{"role":"assistant","content":"Hello from fake"}`},
		{"anthropic", "claude-3-5-haiku-latest", "Hello from fake", `{"role":"assistant","content":"Hello from fake"}`},
		{"anthropic", "claude-sonnet-4-20250514", "Hello from fake", `{"role":"assistant","content":"Hello from fake"}`},
		{"bedrock", "anthropic.claude-opus-4-1-20250805-v1:0", "Hello from fake", `{"role":"assistant","content":"Hello from fake"}`},
		{"anthropic", "claude-sonnet-4-5", "Hello from fake \n", `{"role":"assistant","content":"Hello from fake"}`},
		{"anthropic", "claude-opus-4-6", "Hello from fake", instruction},
		{"anthropic", "claude-sonnet-4-6", "Hello from fake", instruction},
		{"anthropic", "claude-opus-4-7", "Hello from fake", instruction},
		{"bedrock", "meta.llama3-70b-instruct-v1:0", "Hello from fake", instruction},
		{"mistral", "mistral-large-latest", "Hello from fake", `{"role":"assistant","content":"Hello from fake","prefix":true}`},
	}
	for _, tt := range tests {
		s := &stream{rs: &reqState{call: &Call{Op: providers.OpChat},
			body: []byte(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":100}`)}}
		s.text.WriteString(tt.partial)
		body, ok := s.continuation(&Deployment{ProviderName: tt.provider, Model: tt.model})
		msgs := gjson.GetBytes(body, "messages").Array()
		if !ok || msgs[len(msgs)-1].Raw != tt.wantLast {
			t.Fatalf("%s/%s: %s", tt.provider, tt.model, body)
		}
		if got := gjson.GetBytes(body, "max_tokens").Int(); got != 100-int64(tokens.Count(tt.partial)) {
			t.Fatalf("%s: max_tokens %d", tt.provider, got)
		}
	}
	// A completion continues its prompt.
	s := &stream{rs: &reqState{call: &Call{Op: providers.OpCompletion}, body: []byte(`{"prompt":"Once upon"}`)}}
	s.text.WriteString(" a time")
	body, ok := s.continuation(&Deployment{ProviderName: "openai"})
	if !ok || gjson.GetBytes(body, "prompt").Str != "Once upon a time" {
		t.Fatalf("completion continuation %s", body)
	}
}

func TestOverlap(t *testing.T) {
	tests := []struct {
		partial, cont string
		want          int
	}{
		{"Hello from fake", " stream!", 0},
		{"Hello from fake", "Hello from fake stream", 15},
		{"Hello from fake", " fake stream", 5},
		{"Hello from fake", "e stream", 0},            // one letter: chance
		{"Hello from fake", "ake stream", 0},          // mid-word, short: chance
		{"It was a very long day", "ong day, and", 0}, // mid-word, 7 bytes: below minOverlap
		{"It was a very long day", "very long day, and", 13},
		{"", "anything", 0},
		{"Hello from ", " fake", 1},  // the prefill lost its trailing space; the model wrote it again
		{"Hello.\n", "\n\nWorld", 1}, // one newline sent, the second one kept
		{"Hello from", " fake", 0},   // no whitespace was sent: nothing to cut
	}
	for _, tt := range tests {
		if got := overlap(tt.partial, tt.cont); got != tt.want {
			t.Fatalf("overlap(%q, %q) = %d, want %d", tt.partial, tt.cont, got, tt.want)
		}
	}
}

// A tool call's chunks reach the client only once it is complete, so a
// stream that breaks mid-arguments is restarted on b and the client sees
// b's tool call alone, whole, once; an unbroken tool call arrives whole
// and in order.
func TestStreamToolCallRestarted(t *testing.T) {
	toolArgs := func(id, args string) string {
		return `{"id":"` + id + `","object":"chat.completion.chunk","model":"m-` + id + `","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":` + args + `}}]},"finish_reason":null}]}`
	}
	toolStop := func(id string) string {
		return `{"id":"` + id + `","object":"chat.completion.chunk","model":"m-` + id + `","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`
	}
	stream := func(end error, events ...string) *fake {
		return &fake{stream: func(context.Context, int, *providers.Request) (providers.Stream, error) {
			return &chunks{events: events, err: end}, nil
		}}
	}
	for _, tt := range []struct {
		name     string
		a        *fake
		wantArgs string
		bCalls   int
	}{
		{"broken mid-arguments", stream(reset, chatChunk("a", "<role>"), chatChunk("a", "<tool>"), toolArgs("a", `"1"`)),
			`{"a":2}`, 1},
		{"whole", stream(io.EOF, chatChunk("a", "<role>"), chatChunk("a", "<tool>"), toolArgs("a", `"1}"`), toolStop("a")),
			`{"a":1}`, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := stream(io.EOF, chatChunk("b", "<role>"), chatChunk("b", "<tool>"), toolArgs("b", `"2}"`), toolStop("b"))
			r, _ := newTestRouter(t, failoverConfig+"}\n", map[string]providers.Provider{"a": tt.a, "b": b})
			res, err := r.Do(context.Background(), chat("g", true, ""))
			if err != nil {
				t.Fatal(err)
			}
			_, _, events, err := drainText(t, res.Stream)
			if err != nil {
				t.Fatalf("stream error %v after %q", err, events)
			}
			var args strings.Builder
			names, finishes := 0, 0
			for _, ev := range events {
				if jsonStr([]byte(ev), "id") != "a" {
					t.Fatalf("event under another id: %s", ev)
				}
				tc := gjson.Get(ev, "choices.0.delta.tool_calls.0")
				args.WriteString(tc.Get("function.arguments").Str)
				if tc.Get("function.name").Exists() {
					names++
				}
				if gjson.Get(ev, "choices.0.finish_reason").Str == "tool_calls" {
					finishes++
				}
			}
			if args.String() != tt.wantArgs || names != 1 || finishes != 1 || b.Calls() != tt.bCalls {
				t.Fatalf("client saw arguments %q, %d tool calls, %d finishes; b called %d times\n%s",
					args.String(), names, finishes, b.Calls(), strings.Join(events, "\n"))
			}
			if tt.bCalls == 1 && len(gjson.Get(b.Body(0), "messages").Array()) != 1 {
				t.Fatalf("the tool call was not restarted with the original request: %s", b.Body(0))
			}
		})
	}
}

// A stream in the client's own API (here Responses events, as a
// deployment with responses_api sends them) that breaks mid-answer ends
// with the error: chat chunks from another deployment cannot continue it.
func TestNativeStreamIsNotContinued(t *testing.T) {
	a := &fake{stream: func(context.Context, int, *providers.Request) (providers.Stream, error) {
		return &chunks{err: reset, events: []string{
			`{"type":"response.created","sequence_number":0,"response":{"id":"resp_1"}}`,
			`{"type":"response.output_text.delta","sequence_number":1,"delta":"Hel"}`,
		}}, nil
	}}
	b := streams("b", io.EOF, "<role>", "Hi", "<stop>")
	r, _ := newTestRouter(t, failoverConfig+"}\n", map[string]providers.Provider{"a": a, "b": b})
	res, err := r.Do(context.Background(), chat("g", true, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Stream.Close()
	var got []string
	for {
		data, err := res.Stream.Recv()
		if err != nil {
			if err == io.EOF {
				t.Fatalf("the stream ended cleanly after %v; want the upstream's error", got)
			}
			break
		}
		got = append(got, gjson.GetBytes(data, "type").Str)
	}
	if len(got) != 2 || b.Calls() != 0 {
		t.Fatalf("relayed %v, b called %d times; want the 2 native events and no continuation", got, b.Calls())
	}
}

// A stream that breaks mid-answer with its fallback group refused by
// Call.Admit (its window full) ends with a *FallbacksRefusedError that
// unwraps to the break and holds the refusal, as a call that fails before
// its first event does; the refused group is not called.
func TestStreamFailoverRefusedFallback(t *testing.T) {
	a := streams("a", reset, "<role>", "Hello", " from")
	c := streams("c", io.EOF, "<role>", " stream!", "<stop>")
	r, _ := newTestRouter(t, failoverConfig+"}\n", map[string]providers.Provider{"a": a, "b": c, "c": c})
	call := chat("solo", true, "")
	adm := &admitter{full: []string{"h"}}
	call.Admit = adm.admit
	res, err := r.Do(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	text, _, _, err := drainText(t, res.Stream)
	var fr *FallbacksRefusedError
	if !errors.As(err, &fr) || len(fr.Refused) != 1 || !errors.Is(fr.Refused[0], errFull) || !errors.Is(err, reset) {
		t.Fatalf("stream error %v (%T), want a FallbacksRefusedError of the break with h's refusal", err, err)
	}
	if text != "Hello from" || c.Calls() != 0 {
		t.Fatalf("client text %q, h called %d times; want a's text and h never called", text, c.Calls())
	}
	if !slices.Equal(adm.asked, []string{"solo", "h"}) {
		t.Fatalf("Admit asked for %v, want solo then h", adm.asked)
	}
}
