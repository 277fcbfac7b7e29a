package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/providers"
)

const hdr = `{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[`

// textStream is an OpenAI stream as api.openai.com sends it with
// stream_options.include_usage.
var textStream = []string{
	hdr + `{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`,
	hdr + `{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}],"usage":null}`,
	hdr + `{"index":0,"delta":{"content":"lo \"wor"},"logprobs":null,"finish_reason":null}],"usage":null}`,
	hdr + `{"index":0,"delta":{"content":"ld\" \u2713 <b>\n"},"logprobs":null,"finish_reason":null}],"usage":null}`,
	hdr + `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
	hdr + `],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":2}}}`,
}

var toolStream = []string{
	hdr + `{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]}`,
	hdr + `{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}]}`,
	hdr + `{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]}`,
	hdr + `{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"logprobs":null,"finish_reason":null}]}`,
	hdr + `{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}`,
	hdr + `],"usage":{"prompt_tokens":20,"completion_tokens":30,"total_tokens":50}}`,
}

var twoChoiceStream = []string{
	hdr + `{"index":1,"delta":{"role":"assistant","content":"B"},"logprobs":{"content":[{"token":"B","logprob":-0.5,"bytes":[66],"top_logprobs":[]}],"refusal":null},"finish_reason":null}]}`,
	hdr + `{"index":0,"delta":{"role":"assistant","content":"A"},"logprobs":{"content":[{"token":"A","logprob":-0.1,"bytes":[65],"top_logprobs":[]}],"refusal":null},"finish_reason":null}]}`,
	hdr + `{"index":0,"delta":{"content":"a"},"logprobs":{"content":[{"token":"a","logprob":-0.2,"bytes":[97],"top_logprobs":[]}],"refusal":null},"finish_reason":"length"}]}`,
	hdr + `{"index":1,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
}

func record(t testing.TB, chunks []string, max int) (*Entry, error) {
	t.Helper()
	r := NewRecorder(max)
	// One buffer, overwritten after each chunk, as a stream reader reuses
	// its own: the recorder must keep nothing of a chunk's memory.
	var buf []byte
	for _, c := range chunks {
		buf = append(buf[:0], c...)
		r.Add(buf)
		for i := range buf {
			buf[i] = '#'
		}
	}
	return r.Finish()
}

func collect(t testing.TB, st providers.Stream) []string {
	t.Helper()
	defer st.Close()
	var out []string
	for {
		b, err := st.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if !gjson.ValidBytes(b) {
			t.Fatalf("replayed chunk is not valid JSON: %s", b)
		}
		out = append(out, string(b))
	}
}

// withIDs sets a document's id and created like a replay would.
func withIDs(t testing.TB, doc, id string, created int64) string {
	t.Helper()
	doc, err := sjson.Set(doc, "id", id)
	if err == nil {
		doc, err = sjson.Set(doc, "created", created)
	}
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// jsonEqual compares two JSON documents, ignoring key order, id and created.
func jsonEqual(t testing.TB, got, want string) {
	t.Helper()
	var g, w map[string]any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("got invalid JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON: %v\n%s", err, want)
	}
	for _, m := range []map[string]any{g, w} {
		delete(m, "id")
		delete(m, "created")
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON differs\n got: %s\nwant: %s", got, want)
	}
}

func TestRecorderReplaysSameChunks(t *testing.T) {
	for name, chunks := range map[string][]string{"text": textStream, "tools": toolStream, "two choices": twoChoiceStream} {
		t.Run(name, func(t *testing.T) {
			e, err := record(t, chunks, 0)
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			got := collect(t, e.Stream("chatcmpl-new", 42))
			if len(got) != len(chunks) {
				t.Fatalf("replayed %d chunks, want %d", len(got), len(chunks))
			}
			for i := range chunks {
				if want := withIDs(t, chunks[i], "chatcmpl-new", 42); got[i] != want {
					t.Errorf("chunk %d\n got: %s\nwant: %s", i, got[i], want)
				}
			}
		})
	}
}

func TestRecorderAssemblesBody(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   string
		usage  providers.Usage
	}{
		{"text", textStream, `{"object":"chat.completion","model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1",
			"choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"world\" \u2713 <b>\n"},"logprobs":null,"finish_reason":"stop"}],
			"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":2}}}`,
			providers.Usage{PromptTokens: 9, CompletionTokens: 4, CachedTokens: 2}},
		{"tool calls", toolStream, `{"object":"chat.completion","model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1",
			"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
				{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
				{"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
			"logprobs":null,"finish_reason":"tool_calls"}],
			"usage":{"prompt_tokens":20,"completion_tokens":30,"total_tokens":50}}`,
			providers.Usage{PromptTokens: 20, CompletionTokens: 30}},
		{"two choices with logprobs", twoChoiceStream, `{"object":"chat.completion","model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1",
			"choices":[
			{"index":0,"message":{"role":"assistant","content":"Aa"},"logprobs":{"content":[
				{"token":"A","logprob":-0.1,"bytes":[65],"top_logprobs":[]},{"token":"a","logprob":-0.2,"bytes":[97],"top_logprobs":[]}]},"finish_reason":"length"},
			{"index":1,"message":{"role":"assistant","content":"B"},"logprobs":{"content":[
				{"token":"B","logprob":-0.5,"bytes":[66],"top_logprobs":[]}]},"finish_reason":"stop"}]}`,
			providers.Usage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := record(t, tt.chunks, 0)
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			body := e.Body("chatcmpl-x", 7)
			if id, c := gjson.GetBytes(body, "id").Str, gjson.GetBytes(body, "created").Int(); id != "chatcmpl-x" || c != 7 {
				t.Errorf("id, created = %q, %d; want chatcmpl-x, 7", id, c)
			}
			jsonEqual(t, string(body), tt.want)
			if e.Usage() != tt.usage {
				t.Errorf("Usage() = %+v, want %+v", e.Usage(), tt.usage)
			}
			if !e.Streamable() {
				t.Error("a recorded stream is not Streamable")
			}
		})
	}
}

func TestRecorderRefuses(t *testing.T) {
	chunk := func(choice string) string { return hdr + choice + `]}` }
	tests := []struct {
		name   string
		chunks []string
		max    int
		want   string
	}{
		{"truncated: no finish_reason", textStream[:4], 0, "did not finish"},
		{"one of two choices unfinished", twoChoiceStream[:3], 0, "choice 1 did not finish"},
		{"content filter", []string{textStream[0], chunk(`{"index":0,"delta":{},"finish_reason":"content_filter"}`)}, 0, "content_filter"},
		{"error event", []string{textStream[0], `{"error":{"message":"overloaded"}}`, textStream[4]}, 0, "error"},
		{"no choices", []string{textStream[5]}, 0, "no choices"},
		{"not JSON", []string{textStream[0], `data`}, 0, "not a JSON object"},
		{"text completion", []string{`{"id":"c","object":"text_completion","choices":[{"index":0,"text":"x","finish_reason":"stop"}]}`}, 0, "not a chat completion"},
		{"too large", textStream, 200, "exceeds 200 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := record(t, tt.chunks, tt.max)
			if !errors.Is(err, ErrNotCacheable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Finish() = %v, %v; want ErrNotCacheable mentioning %q", e, err, tt.want)
			}
		})
	}
}

// TestRecorderBounded checks that a recorder that gave up holds nothing.
func TestRecorderBounded(t *testing.T) {
	r := NewRecorder(1000)
	r.Add([]byte(textStream[0]))
	big := hdr + `{"index":0,"delta":{"content":"` + strings.Repeat("x", 100) + `"},"finish_reason":null}]}`
	for i := 0; i < 100; i++ {
		r.Add([]byte(big))
	}
	if r.Err() == nil {
		t.Fatal("recorder kept going past its bound")
	}
	if r.log.buf != nil || r.choices != nil {
		t.Error("a failed recorder still holds its buffers")
	}
}

var chatBody = `{"id":"chatcmpl-B","object":"chat.completion","created":1700000001,"model":"gpt-4o-mini","choices":[
 {"index":0,"message":{"role":"assistant","content":"Paris is the capital of France.\nIt has \"2.1M\" people."},"logprobs":null,"finish_reason":"stop"}],
 "usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22},"service_tier":"default","system_fingerprint":"fp_2"}`

var toolBody = `{"id":"chatcmpl-C","object":"chat.completion","created":1700000002,"model":"gpt-4o","choices":[
 {"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
   {"id":"call_a","type":"function","function":{"name":"lookup","arguments":"{\"q\":\"x\"}"}},
   {"id":"call_b","type":"function","function":{"name":"now","arguments":""}}]},"logprobs":null,"finish_reason":"tool_calls"}],
 "usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`

var multiBody = `{"id":"chatcmpl-D","object":"chat.completion","created":1700000003,"model":"m","choices":[
 {"index":0,"message":{"role":"assistant","content":"one","reasoning_content":"think"},"logprobs":{"content":[{"token":"one","logprob":-1,"bytes":[111,110,101],"top_logprobs":[]}]},"finish_reason":"stop"},
 {"index":1,"message":{"role":"assistant","content":"","refusal":"no"},"logprobs":null,"finish_reason":"stop"}]}`

// TestEntryFromBody checks both faces of a body-recorded entry: Body
// returns it with fresh ids, and Stream synthesizes chunks that a client
// (here a Recorder) assembles back into the same body.
func TestEntryFromBody(t *testing.T) {
	for name, body := range map[string]string{"text": chatBody, "tool calls": toolBody, "choices, reasoning, refusal": multiBody} {
		t.Run(name, func(t *testing.T) {
			e, err := NewEntry([]byte(body), 0)
			if err != nil {
				t.Fatalf("NewEntry: %v", err)
			}
			if got, want := string(e.Body("chatcmpl-z", 9)), withIDs(t, body, "chatcmpl-z", 9); got != want {
				t.Errorf("Body\n got: %s\nwant: %s", got, want)
			}
			chunks := collect(t, e.Stream("chatcmpl-s", 10))
			for i, c := range chunks {
				if gjson.Get(c, "id").Str != "chatcmpl-s" || gjson.Get(c, "created").Int() != 10 ||
					gjson.Get(c, "object").Str != "chat.completion.chunk" {
					t.Errorf("chunk %d header wrong: %s", i, c)
				}
			}
			if first := gjson.Get(chunks[0], "choices.0.delta.role").Str; first != "assistant" {
				t.Errorf("first chunk has no role: %s", chunks[0])
			}
			again, err := record(t, chunks, 0)
			if err != nil {
				t.Fatalf("recording the synthesized stream: %v", err)
			}
			jsonEqual(t, string(again.Body("", 0)), body)
		})
	}
	// The usage chunk comes last, with no choices.
	e, _ := NewEntry([]byte(chatBody), 0)
	chunks := collect(t, e.Stream("", 0))
	last := chunks[len(chunks)-1]
	if !gjson.Get(last, "choices").IsArray() || len(gjson.Get(last, "choices").Array()) != 0 || gjson.Get(last, "usage.total_tokens").Int() != 22 {
		t.Errorf("last chunk is not a usage chunk: %s", last)
	}
}

func TestEntryNotCacheable(t *testing.T) {
	tests := []struct{ name, body string }{
		{"error", `{"error":{"message":"x"}}`},
		{"content filter", `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]}`},
		{"no finish reason", `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":null}]}`},
		{"no choices", `{"object":"chat.completion","choices":[]}`},
		{"unknown object", `{"object":"response"}`},
		{"empty embeddings", `{"object":"list","data":[]}`},
		{"not an object", `[1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewEntry([]byte(tt.body), 0); !errors.Is(err, ErrNotCacheable) {
				t.Errorf("NewEntry() error = %v, want ErrNotCacheable", err)
			}
		})
	}
	if _, err := NewEntry([]byte(chatBody), 300); !errors.Is(err, ErrNotCacheable) {
		t.Errorf("oversized: error = %v, want ErrNotCacheable", err)
	}
}

func TestEntryBodyOnly(t *testing.T) {
	emb := `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"e","usage":{"prompt_tokens":3,"total_tokens":3}}`
	e, err := NewEntry([]byte(emb), 0)
	if err != nil {
		t.Fatal(err)
	}
	if e.Streamable() {
		t.Error("an embeddings entry claims to be Streamable")
	}
	if got := string(e.Body("", 0)); got != emb {
		t.Errorf("Body() = %s, want it unchanged (no id or created)", got)
	}
	if _, err := e.Stream("", 0).Recv(); err != io.EOF {
		t.Errorf("Stream of a body-only entry: %v, want io.EOF", err)
	}
	txt := `{"id":"cmpl-1","object":"text_completion","created":5,"model":"m","choices":[{"text":"x","index":0,"finish_reason":"stop"}]}`
	e, err = NewEntry([]byte(txt), 0)
	if err != nil {
		t.Fatal(err)
	}
	if id := gjson.GetBytes(e.Body("", 0), "id").Str; !strings.HasPrefix(id, "cmpl-") {
		t.Errorf("fresh text completion id = %q", id)
	}
}

func TestEntryFreshIDs(t *testing.T) {
	e, _ := NewEntry([]byte(chatBody), 0)
	a, b := e.Body("", 0), e.Body("", 0)
	ida, idb := gjson.GetBytes(a, "id").Str, gjson.GetBytes(b, "id").Str
	if ida == idb || !strings.HasPrefix(ida, "chatcmpl-") || ida == "chatcmpl-B" {
		t.Errorf("fresh ids %q, %q", ida, idb)
	}
	if gjson.GetBytes(a, "created").Int() < 1700000100 {
		t.Errorf("created not refreshed: %s", a)
	}
}

func TestEntryMarshal(t *testing.T) {
	for name, mk := range map[string]func() (*Entry, error){
		"stream": func() (*Entry, error) { return record(t, toolStream, 0) },
		"body":   func() (*Entry, error) { return NewEntry([]byte(chatBody), 0) },
	} {
		t.Run(name, func(t *testing.T) {
			e, err := mk()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := e.MarshalBinary()
			var d Entry
			if err := d.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if !bytes.Equal(d.Body("i", 1), e.Body("i", 1)) || d.Usage() != e.Usage() || !d.Stored().Equal(e.Stored()) {
				t.Error("decoded entry differs")
			}
			if !reflect.DeepEqual(collect(t, d.Stream("i", 1)), collect(t, e.Stream("i", 1))) {
				t.Error("decoded entry streams differently")
			}
			for n := 0; n < len(b); n++ {
				var x Entry
				if err := x.UnmarshalBinary(b[:n]); err == nil {
					t.Fatalf("truncated to %d of %d bytes: no error", n, len(b))
				}
			}
		})
	}
}

// TestEntryOtherToolTypes: tool calls of types without a documented stream
// form are replayed whole, one chunk each, as valid JSON.
func TestEntryOtherToolTypes(t *testing.T) {
	body := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
		{"id":"call_c","type":"custom","custom":{"name":"sql","input":"select 1"}},{}]},"finish_reason":"tool_calls"}]}`
	e, err := NewEntry([]byte(body), 0)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range collect(t, e.Stream("", 0)) { // collect checks each is valid JSON
		if tc := gjson.Get(c, "choices.0.delta.tool_calls.0"); tc.Get("custom.input").Str == "select 1" && tc.Get("index").Int() == 0 {
			found = true
		}
	}
	if !found {
		t.Error("custom tool call not replayed")
	}
}
