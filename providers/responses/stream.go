package responses

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
	"github.com/lumengw/lumen/providers/sse"
)

// Event is one Responses stream event.
type Event = providers.TranslatedEvent

// StreamTranslator turns a stream of OpenAI chat.completion.chunk payloads
// into the Responses event sequence: response.created and
// response.in_progress; then, for each run of reasoning, text, refusal (a
// message whose part is a refusal, with response.refusal.delta and .done)
// or one tool call, an output item (response.output_item.added, its part and delta
// events, their .done events, response.output_item.done); then
// response.completed (response.incomplete when the output limit or a
// content filter stopped it) with the whole Response and its usage. Every
// event carries its sequence_number.
//
// Items follow one another: an item is done before the next is added, so
// tool calls must arrive one after the other, as OpenAI streams them. A
// custom tool's input arrives in one delta when its call is done.
//
// A StreamTranslator is not safe for concurrent use.
type StreamTranslator struct {
	echo     Echo
	id       string
	created  int64
	seq      int
	started  bool
	finished bool
	runs     providers.Runs  // the open item (see itemRuns)
	item     outputItem      // the open item
	refusal  bool            // the open item is a message holding a refusal
	text     strings.Builder // its text, summary or arguments so far
	output   []outputItem
	finish   string
	usage    *providers.ChatUsage
	estimate providers.ChatUsage // reported when the upstream sends no usage
	out      []Event
}

// NewStreamTranslator returns a translator for one answer to the request
// e was read from. id is the upstream completion id (a resp_ id is made
// from it, or made up when empty).
func NewStreamTranslator(e Echo, id string) *StreamTranslator {
	return &StreamTranslator{echo: e, id: responseID(id), created: time.Now().Unix()}
}

// SetEstimate sets the usage response.completed reports when the
// upstream sent none: the gateway's estimate of the prompt's and the
// answer's tokens (what the ledger records then).
func (t *StreamTranslator) SetEstimate(input, output int) {
	t.estimate = providers.ChatUsage{PromptTokens: input, CompletionTokens: output}
}

// Chunk translates one OpenAI chunk payload. The returned events are valid
// until the next call.
func (t *StreamTranslator) Chunk(payload []byte) ([]Event, error) {
	t.out = t.out[:0]
	if t.finished || bytes.Equal(payload, sse.Done) {
		return nil, nil
	}
	var c providers.ChatChunk
	if err := providers.DecodeChatChunk(payload, &c); err != nil {
		return nil, err
	}
	t.start()
	if c.Usage != nil {
		t.usage = c.Usage
	}
	if len(c.Choices) == 0 {
		return t.out, nil
	}
	ch := c.Choices[0]
	if err := t.runs.Choice(ch, (*itemRuns)(t)); err != nil {
		return nil, err
	}
	if ch.FinishReason != nil && *ch.FinishReason != "" {
		t.finish = *ch.FinishReason
	}
	return t.out, nil
}

// Finish ends the answer: it closes the open item and sends
// response.completed (or response.incomplete) with the whole Response. Call
// it once the upstream stream ended cleanly; later calls return nothing.
func (t *StreamTranslator) Finish() []Event {
	t.out = t.out[:0]
	if t.finished {
		return nil
	}
	t.start()
	t.runs.Close((*itemRuns)(t))
	t.finished = true
	r := t.response()
	r.Status, r.IncompleteDetails = finish(t.finish)
	r.Output = append(r.Output, t.output...) // [] when no item was made: output is always an array
	if t.usage != nil {
		r.Usage = fromUsage(t.usage)
	} else if t.estimate != (providers.ChatUsage{}) {
		r.Usage = fromUsage(&t.estimate)
	}
	typ := "response.completed"
	if r.Status == "incomplete" {
		typ = "response.incomplete"
	}
	t.emit(typ, map[string]any{"response": r})
	return t.out
}

// Fail ends a stream that broke after it started: an error event, then
// response.failed. Later calls return nothing.
func (t *StreamTranslator) Fail(code, message string) []Event {
	t.out = t.out[:0]
	if t.finished {
		return nil
	}
	t.finished = true
	t.emit("error", map[string]any{"code": code, "message": message, "param": nil})
	r := t.response()
	r.Status = "failed"
	r.Error = &responseError{Code: code, Message: message}
	r.Output = append(r.Output, t.output...) // [] when no item was made: output is always an array
	t.emit("response.failed", map[string]any{"response": r})
	return t.out
}

func (t *StreamTranslator) response() response {
	return t.echo.shell(t.id, t.created)
}

func (t *StreamTranslator) start() {
	if t.started {
		return
	}
	t.started = true
	r := t.response()
	t.emit("response.created", map[string]any{"response": r})
	t.emit("response.in_progress", map[string]any{"response": r})
}

// itemRuns is the translator as the providers.RunSink of its stream: each
// run is an output item (added, its part and delta events, done).
type itemRuns StreamTranslator

// OpenRun implements providers.RunSink: it adds the item.
func (ir *itemRuns) OpenRun(kind byte, callID, name string) {
	t := (*StreamTranslator)(ir)
	t.text.Reset()
	t.refusal = kind == providers.RunRefusal
	at := len(t.output)
	switch kind {
	case providers.RunReasoning:
		t.item = outputItem{Type: "reasoning", ID: newID("rs_"), Summary: &[]summaryText{}}
		t.emit("response.output_item.added", map[string]any{"output_index": at, "item": t.item})
		t.emit("response.reasoning_summary_part.added", map[string]any{"item_id": t.item.ID, "output_index": at,
			"summary_index": 0, "part": summaryText{Type: "summary_text"}})
	case providers.RunText, providers.RunRefusal:
		part := textPart("")
		if kind == providers.RunRefusal {
			part = refusalPart("")
		}
		t.item = outputItem{Type: "message", ID: newID("msg_"), Status: "in_progress", Role: "assistant", Content: &[]outputPart{}}
		t.emit("response.output_item.added", map[string]any{"output_index": at, "item": t.item})
		t.emit("response.content_part.added", map[string]any{"item_id": t.item.ID, "output_index": at, "content_index": 0, "part": part})
	case providers.RunTool:
		if callID == "" {
			callID = newID("call_")
		}
		empty := ""
		if t.echo.custom[name] {
			t.item = outputItem{Type: "custom_tool_call", ID: newID("ctc_"), Status: "in_progress", CallID: callID, Name: name, Input: &empty}
		} else {
			name, ns := t.echo.function(name)
			t.item = outputItem{Type: "function_call", ID: newID("fc_"), Status: "in_progress", CallID: callID, Name: name, Namespace: ns, Arguments: &empty}
		}
		t.emit("response.output_item.added", map[string]any{"output_index": at, "item": t.item})
	}
}

// RunDelta implements providers.RunSink.
func (ir *itemRuns) RunDelta(kind byte, text string) {
	t := (*StreamTranslator)(ir)
	t.text.WriteString(text)
	switch {
	case kind == providers.RunReasoning:
		t.delta("response.reasoning_summary_text.delta", `,"summary_index":0`, text, "")
	case kind == providers.RunText:
		t.delta("response.output_text.delta", `,"content_index":0`, text, `,"logprobs":[]`)
	case kind == providers.RunRefusal:
		t.delta("response.refusal.delta", `,"content_index":0`, text, "")
	case t.item.Type != "custom_tool_call": // a custom tool's input is sent whole when its call is done
		t.delta("response.function_call_arguments.delta", "", text, "")
	}
}

// CloseRun implements providers.RunSink: it sends the open item's .done
// events and keeps it for the final Response.
func (ir *itemRuns) CloseRun() {
	t := (*StreamTranslator)(ir)
	at, text := len(t.output), t.text.String()
	it := t.item
	switch it.Type {
	case "reasoning":
		part := summaryText{Type: "summary_text", Text: text}
		t.emit("response.reasoning_summary_text.done", map[string]any{"item_id": it.ID, "output_index": at, "summary_index": 0, "text": text})
		t.emit("response.reasoning_summary_part.done", map[string]any{"item_id": it.ID, "output_index": at, "summary_index": 0, "part": part})
		it.Summary = &[]summaryText{part}
	case "message":
		part := textPart(text)
		if t.refusal {
			part = refusalPart(text)
			t.emit("response.refusal.done", map[string]any{"item_id": it.ID, "output_index": at, "content_index": 0, "refusal": text})
		} else {
			t.emit("response.output_text.done", map[string]any{"item_id": it.ID, "output_index": at, "content_index": 0, "text": text, "logprobs": []any{}})
		}
		t.emit("response.content_part.done", map[string]any{"item_id": it.ID, "output_index": at, "content_index": 0, "part": part})
		it.Status, it.Content = "completed", &[]outputPart{part}
		if status, _ := finish(t.finish); status == "incomplete" {
			// Closed by Finish after a length or content_filter stop: the
			// text it cut.
			it.Status = "incomplete"
		}
	case "custom_tool_call":
		// The chat call's arguments are {"input": "…"}: only whole can the
		// input be told from its JSON wrapping.
		input := customInputOf(text)
		t.emit("response.custom_tool_call_input.delta", map[string]any{"item_id": it.ID, "output_index": at, "delta": input})
		t.emit("response.custom_tool_call_input.done", map[string]any{"item_id": it.ID, "output_index": at, "input": input})
		it.Status, it.Input = "completed", &input
	default: // a function call
		t.emit("response.function_call_arguments.done", map[string]any{"item_id": it.ID, "output_index": at, "name": it.Name, "arguments": text})
		it.Status, it.Arguments = "completed", &text
	}
	t.emit("response.output_item.done", map[string]any{"output_index": at, "item": it})
	t.output = append(t.output, it)
}

// delta emits a delta event of the open item, the bulk of a stream,
// written directly rather than through a map: {"type", "sequence_number",
// "item_id", "output_index"} then index (a ,"…_index":0 member or
// nothing), "delta" and tail (more members or nothing).
func (t *StreamTranslator) delta(typ, index, delta, tail string) {
	data := make([]byte, 0, 128+len(typ)+len(t.item.ID)+len(delta))
	data = append(data, `{"type":"`...)
	data = append(data, typ...)
	data = append(data, `","sequence_number":`...)
	data = strconv.AppendInt(data, int64(t.seq), 10)
	data = append(data, `,"item_id":"`...)
	data = append(data, t.item.ID...)
	data = append(data, `","output_index":`...)
	data = strconv.AppendInt(data, int64(len(t.output)), 10)
	data = append(data, index...)
	data = append(data, `,"delta":`...)
	data = providers.AppendJSONString(data, delta)
	data = append(data, tail...)
	data = append(data, '}')
	t.seq++
	t.out = append(t.out, Event{Type: typ, Data: data})
}

func (t *StreamTranslator) emit(typ string, fields map[string]any) {
	fields["type"] = typ
	fields["sequence_number"] = t.seq
	t.seq++
	data, err := providers.MarshalJSON(fields)
	if err != nil {
		panic(fmt.Sprintf("responses: marshaling a %s event: %v", typ, err)) // plain maps and structs: cannot fail
	}
	t.out = append(t.out, Event{Type: typ, Data: data})
}

// NativeEvent reports whether a stream payload is a Responses API event
// (from a deployment that speaks the API) rather than a chat chunk, and
// its type and sequence_number.
func NativeEvent(data []byte) (typ string, seq int64, ok bool) {
	r := gjson.GetManyBytes(data, "choices", "type", "sequence_number")
	if r[0].Exists() {
		return "", 0, false
	}
	typ = r[1].Str
	return typ, r[2].Int(), typ == "error" || strings.HasPrefix(typ, "response.")
}

// EventUsage reads the usage of a native stream's final event
// (response.completed, .incomplete or .failed); zero for the others.
func EventUsage(data []byte) providers.Usage {
	r := gjson.GetBytes(data, "response")
	if !r.IsObject() {
		return providers.Usage{}
	}
	return openai.ParseUsage([]byte(r.Raw))
}

// IsResponse reports whether a non-streamed answer is a Response (from a
// deployment that speaks the API) rather than a chat completion.
func IsResponse(body []byte) bool { return gjson.GetBytes(body, "object").Str == "response" }

// ErrorEvent is the error event that ends a native stream that broke;
// seq is its sequence_number, one past the last event relayed.
func ErrorEvent(code, message string, seq int64) Event {
	data, _ := providers.MarshalJSON(map[string]any{"type": "error", "code": code, "message": message, "param": nil, "sequence_number": seq})
	return Event{Type: "error", Data: data}
}
