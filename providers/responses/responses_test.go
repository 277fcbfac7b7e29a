package responses

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
	"github.com/lumengw/lumen/providers/sse"
)

// testEcho is what Translate reads of a request for its Response.
func testEcho(t *testing.T, body []byte) Echo {
	t.Helper()
	_, e, err := Translate(body)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestGoldenTranslate pins the chat body made from what Codex CLI 0.171 sends
// (testdata/codex.json, trimmed from a captured request): developer
// messages, a reasoning item, an answer's text and two calls (one in a
// namespace) with their outputs, a namespace of functions and a built-in
// web_search tool.
func TestGoldenTranslate(t *testing.T) {
	in := readFixture(t, "codex.json")
	out, e, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := providers.DecodeChatRequest(out); err != nil {
		t.Errorf("the translated request does not decode as a chat request: %v", err)
	}
	pt.Golden(t, filepath.Join("testdata", "codex.chat.json"), out)

	var roles []string
	for _, m := range gjson.GetBytes(out, "messages").Array() {
		roles = append(roles, m.Get("role").Str)
	}
	if got, want := strings.Join(roles, " "), "system system user user assistant tool tool assistant tool"; got != want {
		t.Errorf("roles %q, want %q", got, want)
	}
	calls := gjson.GetBytes(out, `messages.#(role=="assistant")#.tool_calls.#.function.name`).String()
	if calls != `[["exec_command","multi_agent_v1__wait_agent"],["apply_patch"]]` {
		t.Errorf("assistant tool calls %s", calls)
	}
	if a := gjson.GetBytes(out, `messages.7.tool_calls.0.function.arguments`).Str; a != `{"input":"*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"}` {
		t.Errorf("custom call arguments %s", a)
	}
	patch := gjson.GetBytes(out, `tools.#(function.name=="apply_patch").function`)
	if patch.Get("parameters.required.0").Str != "input" || !strings.Contains(patch.Get("description").Str, "lark grammar:\nstart: begin_patch") {
		t.Errorf("custom tool as a function: %s", patch.Raw)
	}
	if d := strings.Join(e.Dropped(), ","); d != "tool_search,web_search" {
		t.Errorf("dropped %s, want tool_search,web_search", d)
	}
	if name, ns := e.function("multi_agent_v1__spawn_agent"); name != "spawn_agent" || ns != "multi_agent_v1" {
		t.Errorf("namespaced function maps back to %q in %q", name, ns)
	}
	if name, ns := e.function("exec_command"); name != "exec_command" || ns != "" {
		t.Errorf("plain function maps back to %q in %q", name, ns)
	}
}

func TestTranslateRejects(t *testing.T) {
	const msg = `"input":"hi"`
	tests := []struct {
		name, body, param, msg string
	}{
		{"no model", `{` + msg + `}`, "model", "provide a model"},
		{"no input", `{"model":"m"}`, "input", "Missing required parameter: 'input'"},
		{"previous response", `{"model":"m",` + msg + `,"previous_response_id":"resp_1"}`, "previous_response_id", "does not store responses"},
		{"conversation", `{"model":"m",` + msg + `,"conversation":"conv_1"}`, "conversation", "does not store responses"},
		{"background", `{"model":"m",` + msg + `,"background":true}`, "background", "not supported"},
		{"stored prompt", `{"model":"m",` + msg + `,"prompt":{"id":"pmpt_1"}}`, "prompt", "stored prompt templates"},
		{"item reference", `{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}`, "input[0].type", "item_reference needs stored items"},
		{"unknown item", `{"model":"m","input":[{"type":"computer_call_output","call_id":"c"}]}`, "input[0].type", `unsupported input item "computer_call_output"`},
		{"role", `{"model":"m","input":[{"role":"tool","content":"x"}]}`, "input[0].role", `unsupported role "tool"`},
		{"part", `{"model":"m","input":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`, "input[0].content[0].type", `unsupported content part "input_audio"`},
		{"file by url", `{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_url":"https://x/y.pdf"}]}]}`, "input[0].content[0].file_url", "cannot fetch a file_url"},
		{"file in a system message", `{"model":"m","input":[{"role":"system","content":[{"type":"input_text","text":"read"},{"type":"input_file","file_data":"data:application/pdf;base64,JVBERg=="}]}]}`, "input[0].content[1].type", "carries text only"},
		{"image by file id", `{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}`, "input[0].content[0].image_url", "file_id needs OpenAI's file store"},
		{"call without id", `{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}`, "input[0]", "needs call_id and name"},
		{"output without id", `{"model":"m","input":[{"type":"function_call_output","output":"x"}]}`, "input[0].call_id", "needs the call_id"},
		{"nameless custom tool", `{"model":"m",` + msg + `,"tools":[{"type":"custom","description":"x"}]}`, "tools[0].name", "a custom tool needs a name"},
		{"custom call without id", `{"model":"m","input":[{"type":"custom_tool_call","name":"apply_patch","input":"x"}]}`, "input[0]", "needs call_id and name"},
		{"namespace custom", `{"model":"m",` + msg + `,"tools":[{"type":"namespace","name":"n","tools":[{"type":"custom","name":"c"}]}]}`, "tools[0].tools[0].type", `unsupported tool "custom" in a namespace`},
		{"nameless function", `{"model":"m",` + msg + `,"tools":[{"type":"function","parameters":{}}]}`, "tools[0].name", "needs a name"},
		{"tool choice", `{"model":"m",` + msg + `,"tool_choice":{"type":"web_search"}}`, "tool_choice", "built-in tools are not available"},
		{"tool choice mode", `{"model":"m",` + msg + `,"tool_choice":"sometimes"}`, "tool_choice", `unsupported tool_choice "sometimes"`},
		{"format", `{"model":"m",` + msg + `,"text":{"format":{"type":"grammar"}}}`, "text.format.type", `unsupported text format "grammar"`},
		{"schema", `{"model":"m",` + msg + `,"text":{"format":{"type":"json_schema","name":"x","schema":[]}}}`, "text.format.schema", "JSON object schema"},
		{"wrong type", `{"model":"m",` + msg + `,"max_output_tokens":"many"}`, "max_output_tokens", "expected int"},
		{"not json", `{"model":`, "", "not a valid Responses API request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Translate([]byte(tt.body))
			var ie *providers.InvalidRequestError
			if !errors.As(err, &ie) || ie.Param != tt.param || !strings.Contains(ie.Message, tt.msg) {
				t.Fatalf("err = %v, want param %q message containing %q", err, tt.param, tt.msg)
			}
		})
	}
}

// The fields a chat upstream takes: instructions first, sampling, the
// output limit, a json_schema format, a forced function, an image.
func TestTranslateFields(t *testing.T) {
	out, _, err := Translate([]byte(`{"model":"m","instructions":"Be brief.","input":[{"role":"user","content":[
		{"type":"input_text","text":"What is in it?"},{"type":"input_image","image_url":"data:image/png;base64,iVBO","detail":"low"}]}],
		"max_output_tokens":50,"temperature":0.2,"top_p":0.9,"user":"u-1","parallel_tool_calls":false,
		"tools":[{"type":"function","name":"f","parameters":{"type":"object"},"strict":true}],"tool_choice":{"type":"function","name":"f"},
		"text":{"format":{"type":"json_schema","name":"answer","schema":{"type":"object"},"strict":true}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"messages.0.role": "system", "messages.0.content": "Be brief.", "messages.1.role": "user",
		"messages.1.content.1.image_url.url": "data:image/png;base64,iVBO", "messages.1.content.1.image_url.detail": "low",
		"max_tokens": "50", "temperature": "0.2", "top_p": "0.9", "user": "u-1", "parallel_tool_calls": "false",
		"tools.0.function.strict": "true", "tool_choice.function.name": "f",
		"response_format.type": "json_schema", "response_format.json_schema.name": "answer",
	}
	for path, v := range want {
		if got := gjson.GetBytes(out, path).String(); got != v {
			t.Errorf("%s = %q, want %q (%s)", path, got, v, out)
		}
	}
	if gjson.GetBytes(out, "stream_options").Exists() {
		t.Error("stream_options on a non-streamed request")
	}
	// tool_choice and parallel_tool_calls go up only with tools: OpenAI
	// refuses them alone (here the only tool was a built-in one).
	out, _, err = Translate([]byte(`{"model":"m","input":"hi","tools":[{"type":"web_search"}],"tool_choice":"auto","parallel_tool_calls":true}`))
	if err != nil || gjson.GetBytes(out, "tool_choice").Exists() || gjson.GetBytes(out, "parallel_tool_calls").Exists() {
		t.Errorf("tool settings without tools: %s %v", out, err)
	}
	// A developer message is a system message upstream, as a string too.
	out, _, err = Translate([]byte(`{"model":"m","input":[{"role":"developer","content":"Be terse."},{"role":"user","content":"hi"}]}`))
	if err != nil || gjson.GetBytes(out, "messages.0.role").Str != "system" {
		t.Errorf("developer string message: %s %v", out, err)
	}
	// input_file: file_data (a data URL, or bare base64 typed by the file
	// name) and file_id become chat file parts, with a name OpenAI wants.
	out, _, err = Translate([]byte(`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"Summarise."},
		{"type":"input_file","filename":"q3.pdf","file_data":"data:application/pdf;base64,JVBERi0x"},
		{"type":"input_file","file_data":"data:text/plain;base64,aGk="},
		{"type":"input_file","filename":"notes.pdf","file_data":"JVBERi0y"},
		{"type":"input_file","file_id":"file-abc"}]}]}`))
	files := map[string]string{
		"messages.0.content.1.type": "file", "messages.0.content.1.file.filename": "q3.pdf",
		"messages.0.content.1.file.file_data": "data:application/pdf;base64,JVBERi0x",
		"messages.0.content.2.file.filename":  "document.txt", "messages.0.content.2.file.file_data": "data:text/plain;base64,aGk=",
		"messages.0.content.3.file.file_data": "data:application/pdf;base64,JVBERi0y",
		"messages.0.content.4.file.file_id":   "file-abc",
	}
	for path, v := range files {
		if got := gjson.GetBytes(out, path).String(); err != nil || got != v {
			t.Errorf("input_file: %s = %q, want %q (%s %v)", path, got, v, out, err)
		}
	}
	// reasoning.effort is the chat reasoning_effort; the summary setting
	// has no chat form.
	out, _, err = Translate([]byte(`{"model":"m","input":"think","reasoning":{"effort":"high","summary":"auto"}}`))
	if err != nil || gjson.GetBytes(out, "reasoning_effort").Str != "high" || gjson.GetBytes(out, "reasoning").Exists() {
		t.Errorf("reasoning effort: %s %v", out, err)
	}
	// Forcing a custom tool forces its function.
	out, _, err = Translate([]byte(`{"model":"m","input":"patch it","tools":[{"type":"custom","name":"apply_patch"}],"tool_choice":{"type":"custom","name":"apply_patch"}}`))
	if err != nil || gjson.GetBytes(out, "tool_choice.function.name").Str != "apply_patch" {
		t.Errorf("custom tool_choice: %s %v", out, err)
	}
}

// An empty function output (a command that printed nothing) is a tool
// message with "" content: OpenAI refuses content null.
func TestTranslateEmptyOutput(t *testing.T) {
	for _, output := range []string{`,"output":""`, `,"output":[]`, `,"output":null`, ``} {
		out, _, err := Translate([]byte(`{"model":"m","input":[{"role":"user","content":"run it"},
			{"type":"function_call","call_id":"c1","name":"shell","arguments":"{}"},{"type":"function_call_output","call_id":"c1"` + output + `}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if c := gjson.GetBytes(out, `messages.#(role=="tool").content`); c.Type != gjson.String || c.Str != "" {
			t.Errorf("function_call_output%s: tool message content %s, want \"\" (%s)", output, c.Raw, out)
		}
	}
}

var ids = regexp.MustCompile(`"(resp|msg|fc|ctc|rs|call)_[0-9a-f]{24}"`)

// FromChat: reasoning, text and a namespaced call become output items; a
// length stop is an incomplete response; usage is the Responses way.
func TestFromChat(t *testing.T) {
	e := testEcho(t, readFixture(t, "codex.json"))
	chat := `{"id":"chatcmpl-9","object":"chat.completion","created":1700000000,"model":"gpt-4o","choices":[{"index":0,
		"message":{"role":"assistant","reasoning_content":"Think.","content":"Spawning.","tool_calls":[
		{"id":"call_7","type":"function","function":{"name":"multi_agent_v1__spawn_agent","arguments":"{\"message\":\"go\"}"}},
		{"id":"call_8","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin Patch\\n*** End Patch\\n\"}"}}]},
		"finish_reason":"length"}],"usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,
		"prompt_tokens_details":{"cached_tokens":40},"completion_tokens_details":{"reasoning_tokens":5}}}`
	out, err := FromChat([]byte(chat), e)
	if err != nil {
		t.Fatal(err)
	}
	pt.Golden(t, filepath.Join("testdata", "from_chat.response.json"), ids.ReplaceAll(out, []byte(`"${1}_X"`)))
	r := gjson.ParseBytes(out)
	if r.Get("id").Str != "resp_9" || r.Get("status").Str != "incomplete" || r.Get("incomplete_details.reason").Str != "max_output_tokens" {
		t.Errorf("head: %s", out)
	}
	if got := r.Get("output.#.type").String(); got != `["reasoning","message","function_call","custom_tool_call"]` {
		t.Errorf("output types %s", got)
	}
	if ct := r.Get("output.3"); ct.Get("name").Str != "apply_patch" || ct.Get("input").Str != "*** Begin Patch\n*** End Patch\n" || ct.Get("call_id").Str != "call_8" {
		t.Errorf("custom tool call %s", ct.Raw)
	}
	if fc := r.Get("output.2"); fc.Get("name").Str != "spawn_agent" || fc.Get("namespace").Str != "multi_agent_v1" || fc.Get("call_id").Str != "call_7" {
		t.Errorf("function call %s", fc.Raw)
	}
	if r.Get("usage.input_tokens").Int() != 100 || r.Get("usage.input_tokens_details.cached_tokens").Int() != 40 ||
		r.Get("usage.output_tokens_details.reasoning_tokens").Int() != 5 || r.Get("usage.total_tokens").Int() != 120 {
		t.Errorf("usage %s", r.Get("usage").Raw)
	}
	if _, err := FromChat([]byte(`{"id":"x","choices":[]}`), e); err == nil {
		t.Error("an answer without choices must be an error")
	}
	var ue *providers.UpstreamError
	if _, err := FromChat([]byte(`{"id":"x","choices":[{"message":{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]},"finish_reason":"tool_calls"}]}`), e); !errors.As(err, &ue) || ue.Status != 502 {
		t.Errorf("bad arguments: %v", err)
	}
}

// An OpenAI refusal (content null, the words in refusal) is a message
// item with a refusal part, streamed with response.refusal.delta and
// .done.
func TestRefusal(t *testing.T) {
	e := testEcho(t, []byte(`{"model":"m","input":"something forbidden"}`))
	const refusal = "I can't help with that."
	out, err := FromChat([]byte(`{"id":"chatcmpl-r","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,
		"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}`), e)
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(out)
	if r.Get("status").Str != "completed" || r.Get("output.#").Int() != 1 || r.Get("output.0.type").Str != "message" ||
		r.Get("output.0.content.0.type").Str != "refusal" || r.Get("output.0.content.0.refusal").Str != refusal ||
		r.Get("output.0.content.0.text").Exists() {
		t.Errorf("response %s", out)
	}

	tr := NewStreamTranslator(e, "chatcmpl-r")
	var events []gjson.Result
	for _, c := range []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}`,
		`{"choices":[{"index":0,"delta":{"refusal":"I can't "}}]}`,
		`{"choices":[{"index":0,"delta":{"refusal":"help with that."}}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
	} {
		evs, err := tr.Chunk([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			events = append(events, gjson.ParseBytes(bytes.Clone(ev.Data)))
		}
	}
	for _, ev := range tr.Finish() {
		events = append(events, gjson.ParseBytes(bytes.Clone(ev.Data)))
	}
	var types []string
	var deltas strings.Builder
	for _, ev := range events {
		types = append(types, ev.Get("type").Str)
		if ev.Get("type").Str == "response.refusal.delta" {
			deltas.WriteString(ev.Get("delta").Str)
		}
	}
	want := "response.created response.in_progress response.output_item.added response.content_part.added " +
		"response.refusal.delta response.refusal.delta response.refusal.done response.content_part.done " +
		"response.output_item.done response.completed"
	if got := strings.Join(types, " "); got != want || deltas.String() != refusal {
		t.Fatalf("events %s (deltas %q)", got, deltas.String())
	}
	if p := events[3].Get("part"); p.Raw != `{"type":"refusal","refusal":""}` {
		t.Errorf("content_part.added part %s", p.Raw)
	}
	if d := events[6]; d.Get("refusal").Str != refusal || d.Get("content_index").Int() != 0 {
		t.Errorf("refusal.done %s", d.Raw)
	}
	final := events[len(events)-1].Get("response.output.0")
	if final.Get("content.0.type").Str != "refusal" || final.Get("content.0.refusal").Str != refusal {
		t.Errorf("final output %s", final.Raw)
	}
}

// TestGoldenStream pins the event sequence made from a chunk stream with
// reasoning, text and two tool calls (one namespaced), and checks what a
// client relies on: sequence numbers, one item done before the next is
// added, and a final Response holding every item.
func TestGoldenStream(t *testing.T) {
	chunks := []string{
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"Let me "}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"reasoning_content":"check."}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"content":"Checking "}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"content":"now."}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"exec_command","arguments":""}}]}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"cmd\":"}}]}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"ls\"}"}}]}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"multi_agent_v1__wait_agent","arguments":"{}"}}]}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"id":"call_c","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin"}}]}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"function":{"arguments":" Patch\\n\"}"}}]}}]}`,
		`{"id":"chatcmpl-s","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		`{"id":"chatcmpl-s","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}`,
		`[DONE]`,
	}
	tr := NewStreamTranslator(testEcho(t, readFixture(t, "codex.json")), "chatcmpl-s")
	tr.created = 1700000000
	var out []byte
	var events []gjson.Result
	add := func(evs []Event) {
		for _, e := range evs {
			out = sse.AppendEvent(out, e.Type, e.Data)
			if gjson.GetBytes(e.Data, "type").Str != e.Type {
				t.Errorf("event %s carries type %s", e.Type, gjson.GetBytes(e.Data, "type").Str)
			}
			events = append(events, gjson.ParseBytes(bytes.Clone(e.Data)))
		}
	}
	for _, c := range chunks {
		evs, err := tr.Chunk([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		add(evs)
	}
	add(tr.Finish())
	if tr.Finish() != nil {
		t.Error("a second Finish must return nothing")
	}
	pt.Golden(t, filepath.Join("testdata", "stream.sse"), ids.ReplaceAll(out, []byte(`"${1}_X"`)))

	open := -1
	for i, e := range events {
		if e.Get("sequence_number").Int() != int64(i) {
			t.Fatalf("event %d has sequence_number %d", i, e.Get("sequence_number").Int())
		}
		switch e.Get("type").Str {
		case "response.output_item.added":
			if open >= 0 {
				t.Fatalf("item %d added while item %d is open", e.Get("output_index").Int(), open)
			}
			open = int(e.Get("output_index").Int())
		case "response.output_item.done":
			open = -1
		}
	}
	last := events[len(events)-1]
	if last.Get("type").Str != "response.completed" || last.Get("response.status").Str != "completed" {
		t.Fatalf("last event %s", last.Raw)
	}
	resp := last.Get("response")
	if got := resp.Get("output.#.type").String(); got != `["reasoning","message","function_call","function_call","custom_tool_call"]` {
		t.Errorf("final output %s", got)
	}
	if resp.Get("output.4.input").Str != "*** Begin Patch\n" {
		t.Errorf("custom tool input %q", resp.Get("output.4.input").Str)
	}
	for _, e := range events {
		if e.Get("type").Str == "response.function_call_arguments.delta" && e.Get("output_index").Int() == 4 {
			t.Errorf("a custom call's JSON wrapping leaked as arguments: %s", e.Raw)
		}
	}
	if resp.Get("output.1.content.0.text").Str != "Checking now." || resp.Get("output.2.arguments").Str != `{"cmd":"ls"}` ||
		resp.Get("output.3.name").Str != "wait_agent" || resp.Get("output.3.namespace").Str != "multi_agent_v1" ||
		resp.Get("output.0.summary.0.text").Str != "Let me check." || resp.Get("usage.total_tokens").Int() != 42 {
		t.Errorf("final response %s", resp.Raw)
	}
}

// Reasoning text named "reasoning" (OpenRouter, newer vLLM) is a reasoning
// item as reasoning_content is, streamed or not.
func TestReasoningField(t *testing.T) {
	e := testEcho(t, []byte(`{"model":"m","input":"hi"}`))
	out, err := FromChat([]byte(`{"id":"x","choices":[{"index":0,"message":{"role":"assistant","reasoning":"Think.","content":"Done."},"finish_reason":"stop"}]}`), e)
	if err != nil || gjson.GetBytes(out, "output.#.type").Raw != `["reasoning","message"]` || gjson.GetBytes(out, "output.0.summary.0.text").Str != "Think." {
		t.Errorf("response %s %v", out, err)
	}
	tr := NewStreamTranslator(e, "")
	for _, c := range []string{`{"choices":[{"index":0,"delta":{"reasoning":"Think."}}]}`, `{"choices":[{"index":0,"delta":{"content":"Done."},"finish_reason":"stop"}]}`} {
		if _, err := tr.Chunk([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	evs := tr.Finish()
	if r := gjson.GetBytes(evs[len(evs)-1].Data, "response"); r.Get("output.#.type").Raw != `["reasoning","message"]` || r.Get("output.0.summary.0.text").Str != "Think." {
		t.Errorf("streamed response %s", r.Raw)
	}
}

// A Response repeats the request's store, true when it said nothing (the
// API's default).
func TestEchoStore(t *testing.T) {
	chat := []byte(`{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
	for _, tt := range []struct{ field, want string }{{"", "true"}, {`,"store":true`, "true"}, {`,"store":false`, "false"}} {
		e := testEcho(t, []byte(`{"model":"m","input":"hi"`+tt.field+`}`))
		out, err := FromChat(chat, e)
		if err != nil {
			t.Fatal(err)
		}
		evs := NewStreamTranslator(e, "").Finish()
		if got, streamed := gjson.GetBytes(out, "store").Raw, gjson.GetBytes(evs[0].Data, "response.store").Raw; got != tt.want || streamed != tt.want {
			t.Errorf("store%s: Response says %s, stream %s; want %s", tt.field, got, streamed, tt.want)
		}
	}
}

// Tool call deltas without index (some OpenAI-compatible servers leave it
// out): a new id is a new function_call item.
func TestStreamToolCallsWithoutIndex(t *testing.T) {
	tr := NewStreamTranslator(testEcho(t, []byte(`{"model":"m","input":"hi"}`)), "")
	for _, c := range []string{
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_X","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_Y","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
	} {
		if _, err := tr.Chunk([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	evs := tr.Finish()
	out := gjson.GetBytes(evs[len(evs)-1].Data, "response.output")
	if got := out.Get(`#.call_id`).String(); got != `["call_X","call_Y"]` ||
		out.Get("0.arguments").Str != `{"city":"Rome"}` || out.Get("1.arguments").Str != `{}` || out.Get("1.name").Str != "get_time" {
		t.Errorf("output %s", out.Raw)
	}
}

// A stream cut by the output limit ends with response.incomplete; one that
// breaks ends with an error event and response.failed; either holds an
// output array, empty when no item was made.
func TestStreamEnds(t *testing.T) {
	e := testEcho(t, []byte(`{"model":"m","input":"hi"}`))
	tr := NewStreamTranslator(e, "")
	if _, err := tr.Chunk([]byte(`{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":"length"}]}`)); err != nil {
		t.Fatal(err)
	}
	evs := tr.Finish()
	last := evs[len(evs)-1]
	if last.Type != "response.incomplete" || gjson.GetBytes(last.Data, "response.incomplete_details.reason").Str != "max_output_tokens" {
		t.Errorf("length stop ends with %s %s", last.Type, last.Data)
	}
	// The message the limit cut is incomplete too, in its done event and
	// in the Response, streamed or not.
	if done := evs[len(evs)-2]; done.Type != "response.output_item.done" || gjson.GetBytes(done.Data, "item.status").Str != "incomplete" ||
		gjson.GetBytes(last.Data, "response.output.0.status").Str != "incomplete" {
		t.Errorf("cut message: %s %s", done.Data, last.Data)
	}
	out, err := FromChat([]byte(`{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hel"},"finish_reason":"length"}]}`), e)
	if err != nil || gjson.GetBytes(out, "output.0.status").Str != "incomplete" {
		t.Errorf("cut message, not streamed: %s %v", out, err)
	}

	tr = NewStreamTranslator(e, "")
	if _, err := tr.Chunk([]byte(`{"choices":[{"index":0,"delta":{"content":"Hel"}}]}`)); err != nil {
		t.Fatal(err)
	}
	evs = tr.Fail("server_error", "upstream went away")
	if len(evs) != 2 || evs[0].Type != "error" || gjson.GetBytes(evs[0].Data, "message").Str != "upstream went away" ||
		evs[1].Type != "response.failed" || gjson.GetBytes(evs[1].Data, "response.error.code").Str != "server_error" {
		t.Errorf("failure events %v", evs)
	}
	if tr.Finish() != nil || tr.Fail("x", "y") != nil {
		t.Error("a failed stream must send nothing more")
	}
	// With no item made, output is still an array, as clients index it.
	evs = NewStreamTranslator(e, "").Finish()
	if out := gjson.GetBytes(evs[len(evs)-1].Data, "response.output"); out.Raw != "[]" {
		t.Errorf("response.completed of an empty answer has output %s", out.Raw)
	}
	evs = NewStreamTranslator(e, "").Fail("server_error", "upstream went away")
	if out := gjson.GetBytes(evs[len(evs)-1].Data, "response.output"); out.Raw != "[]" {
		t.Errorf("response.failed before any item has output %s", out.Raw)
	}
	var ue *providers.UpstreamError
	if _, err := NewStreamTranslator(e, "").Chunk([]byte(`{not json`)); !errors.As(err, &ue) || ue.Status != 502 {
		t.Errorf("a corrupt chunk must be an upstream error: %v", err)
	}
}

// Each event's data is one JSON object on one line, as SSE needs.
func TestEventsAreSingleLineJSON(t *testing.T) {
	tr := NewStreamTranslator(testEcho(t, []byte(`{"model":"m","input":"hi","instructions":"a\nb"}`)), "")
	evs, _ := tr.Chunk([]byte(`{"choices":[{"index":0,"delta":{"content":"line one\nline two"}}]}`))
	evs = append(evs, tr.Finish()...)
	for _, e := range evs {
		if bytes.ContainsRune(e.Data, '\n') || !json.Valid(e.Data) {
			t.Errorf("%s: %q", e.Type, e.Data)
		}
	}
}
