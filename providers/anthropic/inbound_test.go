package anthropic

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
	"github.com/lumengw/lumen/providers/sse"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "inbound", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestGoldenToOpenAI pins the OpenAI body made from Messages API requests.
func TestGoldenToOpenAI(t *testing.T) {
	for _, name := range []string{"claude_code", "claude_code_2026", "documents", "images", "plain"} {
		t.Run(name, func(t *testing.T) {
			out, err := ToOpenAI(readFixture(t, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := providers.DecodeChatRequest(out); err != nil {
				t.Errorf("the translated request does not decode as a chat request: %v", err)
			}
			pt.Golden(t, filepath.Join("testdata", "inbound", name+".openai.json"), out)
		})
	}
}

func TestToOpenAIRejects(t *testing.T) {
	tests := []struct {
		name, body, param, msg string
	}{
		{"no max_tokens", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "max_tokens", "Field required"},
		{"no model", `{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "model", "Field required"},
		{"no messages", `{"model":"m","max_tokens":5,"messages":[]}`, "messages", "at least one"},
		{"not json", `{"model":`, "", "not a valid Messages API request"},
		{"wrong type", `{"model":"m","max_tokens":"many","messages":[]}`, "max_tokens", "expected int"},
		{"server tool", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`,
			"tools[0].type", `server tool "web_search_20250305"`},
		{"document by url", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x/y.pdf"}}]}]}`,
			"messages[0].content[0].source", `must be a base64 PDF or text, not a url source`},
		{"unknown block", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"search_result","source":"s","title":"t","content":[]}]}]}`,
			"messages[0].content[0].type", `unsupported content block "search_result"`},
		{"image source", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f_1"}}]}]}`,
			"messages[0].content[0].source.type", `unsupported image source "file"`},
		{"role", `{"model":"m","max_tokens":5,"messages":[{"role":"tool","content":"x"}]}`, "messages[0].role", `unsupported role "tool"`},
		{"system turn image", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"system","content":[{"type":"image","source":{"type":"url","url":"http://x/a.png"}}]}]}`,
			"messages[1].content[0].type", `unsupported content block "image" in a system message`},
		{"output format type", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"output_config":{"format":{"type":"regex","pattern":"a+"}}}`,
			"output_config.format.type", `unsupported output format "regex"`},
		{"output format schema", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"output_format":{"type":"json_schema","schema":"an object"}}`,
			"output_format.schema", "JSON object schema"},
		{"tool_result block", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"search_result","source":"s","title":"t","content":[]}]}]}]}`,
			"messages[0].content[0].content[0].type", `unsupported tool_result content block "search_result"`},
		{"tool_choice", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"sometimes"}}`,
			"tool_choice.type", `unsupported tool_choice type "sometimes"`},
		{"tool_use input", `{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":[1]}]}]}`,
			"messages[0].content[0].input", "must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ToOpenAI([]byte(tt.body))
			var ie *providers.InvalidRequestError
			if !errors.As(err, &ie) || ie.Param != tt.param || !strings.Contains(ie.Message, tt.msg) {
				t.Fatalf("err = %v, want param %q message containing %q", err, tt.param, tt.msg)
			}
		})
	}
}

// An empty tool result (a command that printed nothing) is a tool message
// with "" content: OpenAI refuses content null.
func TestToOpenAIEmptyToolResult(t *testing.T) {
	for _, content := range []string{`,"content":""`, `,"content":[]`, ``} {
		body := `{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"bash","input":{}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1"` + content + `}]}]}`
		out, err := ToOpenAI([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if c := gjson.GetBytes(out, `messages.#(role=="tool").content`); c.Type != gjson.String || c.Str != "" {
			t.Errorf("tool_result%s: tool message content %s, want \"\" (%s)", content, c.Raw, out)
		}
	}
}

// A structured output format, as output_config.format or as the beta's
// output_format, reaches an OpenAI-form upstream as response_format.
func TestToOpenAIStructuredOutput(t *testing.T) {
	schema := `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}`
	for _, field := range []string{`"output_config":{"effort":"low","format":{"type":"json_schema","schema":` + schema + `}}`,
		`"output_format":{"type":"json_schema","schema":` + schema + `}`} {
		out, err := ToOpenAI([]byte(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"Where?"}],` + field + `}`))
		if err != nil {
			t.Fatal(err)
		}
		req, err := providers.DecodeChatRequest(out)
		if err != nil {
			t.Fatal(err)
		}
		rf := req.ResponseFormat
		if rf == nil || rf.Type != "json_schema" || rf.JSONSchema == nil || string(rf.JSONSchema.Schema) != schema ||
			rf.JSONSchema.Strict == nil || !*rf.JSONSchema.Strict {
			t.Errorf("%s: response_format = %s", field, out)
		}
	}
	out, err := ToOpenAI([]byte(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"output_config":{"effort":"high"}}`))
	if err != nil || strings.Contains(string(out), "response_format") || strings.Contains(string(out), "effort") {
		t.Errorf("effort alone: %s %v", out, err)
	}
}

// TestGoldenFromOpenAI pins the Message made from OpenAI answers.
func TestGoldenFromOpenAI(t *testing.T) {
	for _, name := range []string{"text", "tool_calls", "reasoning_length"} {
		t.Run(name, func(t *testing.T) {
			out, err := FromOpenAI(readFixture(t, name+".openai-response.json"), "claude-sonnet-4-5")
			if err != nil {
				t.Fatal(err)
			}
			pt.Golden(t, filepath.Join("testdata", "inbound", name+".anthropic.json"), out)
		})
	}
}

func TestFromOpenAIRejectsBadArguments(t *testing.T) {
	_, err := FromOpenAI([]byte(`{"id":"x","choices":[{"message":{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]},"finish_reason":"tool_calls"}]}`), "m")
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 502 || !strings.Contains(ue.Message, "called f with arguments that are not a JSON object") {
		t.Fatalf("err = %v", err)
	}
	if _, err := FromOpenAI([]byte(`{"id":"x","choices":[]}`), "m"); err == nil {
		t.Fatal("an answer without choices must be an error")
	}
}

// TestGoldenStreamTranslator pins the Anthropic event stream made from
// OpenAI chunk streams (fixtures: one payload per line).
func TestGoldenStreamTranslator(t *testing.T) {
	for _, name := range []string{"text_and_tools", "reasoning"} {
		t.Run(name, func(t *testing.T) {
			tr := NewStreamTranslator("claude-sonnet-4-5", "chatcmpl-123")
			tr.SetInputTokens(88)
			var out []byte
			for _, line := range bytes.Split(bytes.TrimSpace(readFixture(t, name+".openai-stream.txt")), []byte("\n")) {
				evs, err := tr.Chunk(line)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range evs {
					out = sse.AppendEvent(out, e.Type, e.Data)
				}
			}
			for _, e := range tr.Finish() {
				out = sse.AppendEvent(out, e.Type, e.Data)
			}
			if tr.Finish() != nil {
				t.Error("a second Finish must return nothing")
			}
			pt.Golden(t, filepath.Join("testdata", "inbound", name+".anthropic.sse"), out)
		})
	}
}

func TestStreamTranslatorEdges(t *testing.T) {
	t.Run("empty stream", func(t *testing.T) {
		tr := NewStreamTranslator("m", "")
		var types []string
		for _, e := range tr.Finish() {
			types = append(types, e.Type)
		}
		if got := strings.Join(types, ","); got != "message_start,ping,message_delta,message_stop" {
			t.Errorf("events = %s", got)
		}
	})
	t.Run("late arguments", func(t *testing.T) {
		tr := NewStreamTranslator("m", "")
		for _, c := range []string{
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}`,
		} {
			if _, err := tr.Chunk([]byte(c)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := tr.Chunk([]byte(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"}"}}]}}]}`))
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Status != 502 || !strings.Contains(err.Error(), "tool call 0 after its block was closed") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("tool calls without index", func(t *testing.T) {
		// Some OpenAI-compatible servers leave index out: a new id is a
		// new call, deltas without an id add to the open one.
		tr := NewStreamTranslator("m", "")
		var out []Event
		for _, c := range []string{
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_X","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"\"Rome\"}"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_Y","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_Y","function":{"arguments":""}}]}}]}`,
			`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		} {
			evs, err := tr.Chunk([]byte(c))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				out = append(out, Event{Type: e.Type, Data: bytes.Clone(e.Data)})
			}
		}
		out = append(out, tr.Finish()...)
		var calls []string
		inputs := map[int64]string{}
		for _, e := range out {
			switch e.Type {
			case "content_block_start":
				b := gjson.GetBytes(e.Data, "content_block")
				calls = append(calls, b.Get("id").Str+" "+b.Get("name").Str)
			case "content_block_delta":
				inputs[gjson.GetBytes(e.Data, "index").Int()] += gjson.GetBytes(e.Data, "delta.partial_json").Str
			}
		}
		if got := strings.Join(calls, ", "); got != "call_X get_weather, call_Y get_time" {
			t.Errorf("tool_use blocks %s", got)
		}
		if inputs[0] != `{"city":"Rome"}` || inputs[1] != `{}` {
			t.Errorf("inputs %v", inputs)
		}
	})
	t.Run("not json", func(t *testing.T) {
		// The upstream's fault, not Lumen's: an upstream error (502).
		for _, c := range []string{"{", "{not json", "null", "[]"} {
			_, err := NewStreamTranslator("m", "").Chunk([]byte(c))
			var ue *providers.UpstreamError
			if !errors.As(err, &ue) || ue.Status != 502 || ue.Type != "api_error" {
				t.Fatalf("%s: err = %v", c, err)
			}
		}
	})
}

// A refusal ends the stream with stop_reason "refusal", also when text
// came before it; an answer that stopped at max_tokens keeps saying so.
func TestStreamTranslatorRefusal(t *testing.T) {
	tests := []struct {
		name, finish, want string
	}{
		{"stop", "stop", "refusal"},
		{"length", "length", "max_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewStreamTranslator("m", "")
			var out []Event
			for _, c := range []string{
				`{"choices":[{"index":0,"delta":{"content":"Well. "}}]}`,
				`{"choices":[{"index":0,"delta":{"refusal":"I can't help with that."}}]}`,
				`{"choices":[{"index":0,"delta":{},"finish_reason":"` + tt.finish + `"}]}`,
			} {
				evs, err := tr.Chunk([]byte(c))
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range evs {
					out = append(out, Event{Type: e.Type, Data: bytes.Clone(e.Data)})
				}
			}
			out = append(out, tr.Finish()...)
			var text strings.Builder
			var stop string
			for _, e := range out {
				switch e.Type {
				case "content_block_start":
					if typ := gjson.GetBytes(e.Data, "content_block.type").Str; typ != "text" {
						t.Errorf("block of type %s", typ)
					}
				case "content_block_delta":
					text.WriteString(gjson.GetBytes(e.Data, "delta.text").Str)
				case "message_delta":
					stop = gjson.GetBytes(e.Data, "delta.stop_reason").Str
				}
			}
			if text.String() != "Well. I can't help with that." || stop != tt.want {
				t.Errorf("text %q, stop_reason %q; want stop_reason %q", text.String(), stop, tt.want)
			}
		})
	}
}

// Reasoning text named "reasoning" (OpenRouter, newer vLLM) is thinking
// as reasoning_content is; a server that sends both is read once.
func TestReasoningField(t *testing.T) {
	for _, msg := range []string{`"reasoning":"Think."`, `"reasoning_content":"Think.","reasoning":"Think."`} {
		out, err := FromOpenAI([]byte(`{"id":"x","choices":[{"index":0,"message":{"role":"assistant",`+msg+`,"content":"Done."},"finish_reason":"stop"}]}`), "m")
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(out, "content.#.type").Raw; got != `["thinking","text"]` || gjson.GetBytes(out, "content.0.thinking").Str != "Think." {
			t.Errorf("%s: %s", msg, out)
		}
		tr := NewStreamTranslator("m", "")
		var thinking strings.Builder
		for _, c := range []string{
			`{"choices":[{"index":0,"delta":{` + msg + `}}]}`,
			`{"choices":[{"index":0,"delta":{"content":"Done."},"finish_reason":"stop"}]}`,
		} {
			evs, err := tr.Chunk([]byte(c))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				thinking.WriteString(gjson.GetBytes(e.Data, "delta.thinking").Str)
			}
		}
		if thinking.String() != "Think." {
			t.Errorf("%s: streamed thinking %q", msg, thinking.String())
		}
	}
}

func TestCountTokens(t *testing.T) {
	n, err := CountTokens(readFixture(t, "claude_code.json"))
	if err != nil {
		t.Fatal(err)
	}
	small, err := CountTokens([]byte(`{"model":"m","messages":[{"role":"user","content":"Hello, Claude"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	// The endpoint does not require max_tokens; more content, more tokens.
	if small < 4 || n < 4*small {
		t.Errorf("estimates: %d for a hello, %d for a tool conversation", small, n)
	}
	withImage, _ := CountTokens([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Hello, Claude"},{"type":"image","source":{"type":"url","url":"https://x/a.png"}}]}]}`))
	if withImage <= small+500 {
		t.Errorf("an image must count: %d vs %d", withImage, small)
	}
	if _, err := CountTokens([]byte(`{"messages":[]}`)); !providers.IsInvalidRequest(err) {
		t.Errorf("err = %v, want InvalidRequestError", err)
	}
}

func TestErrorJSON(t *testing.T) {
	tests := []struct {
		status int
		typ    string
	}{
		{400, "invalid_request_error"}, {401, "authentication_error"}, {402, "permission_error"}, {403, "permission_error"},
		{404, "not_found_error"}, {413, "request_too_large"}, {429, "rate_limit_error"}, {499, "invalid_request_error"},
		{500, "api_error"}, {502, "api_error"}, {503, "overloaded_error"}, {504, "timeout_error"}, {529, "overloaded_error"},
	}
	for _, tt := range tests {
		got := string(ErrorJSON(tt.status, "budget <team-a> exceeded"))
		want := `{"type":"error","error":{"type":"` + tt.typ + `","message":"budget <team-a> exceeded"}}`
		if got != want {
			t.Errorf("ErrorJSON(%d) = %s, want %s", tt.status, got, want)
		}
	}
	if e := ErrorEvent(529, "Overloaded"); e.Type != "error" || !bytes.Contains(e.Data, []byte(`"overloaded_error"`)) {
		t.Errorf("ErrorEvent = %+v", e)
	}
}

func TestUsageCounter(t *testing.T) {
	var c UsageCounter
	for _, ev := range []string{
		`{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"usage"}}`,
		`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":42}}`,
	} {
		c.Event([]byte(ev))
	}
	if want := (providers.Usage{PromptTokens: 115, CompletionTokens: 42, CachedTokens: 100, CacheWriteTokens: 5}); c.Usage() != want {
		t.Errorf("usage = %+v, want %+v", c.Usage(), want)
	}
}
