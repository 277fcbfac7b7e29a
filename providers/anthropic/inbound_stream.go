package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/sse"
)

// Event is one Messages API stream event.
type Event = providers.TranslatedEvent

// StreamTranslator turns a stream of OpenAI chat.completion.chunk payloads
// into the Messages API event sequence: message_start (and a ping), then
// for each run of text, reasoning, refusal (a text block; stop_reason
// "refusal") or tool call a content block
// (content_block_start, _delta…, _stop), then message_delta with the
// stop_reason and the usage, and message_stop.
//
// Content blocks follow one another as Anthropic sends them: a block is
// stopped before the next starts. Tool calls must therefore arrive one
// after the other, as OpenAI streams them; arguments for a call whose
// block is already stopped are an error.
//
// Use:
//
//	t := anthropic.NewStreamTranslator(model, id)
//	for each upstream payload { events, err := t.Chunk(payload); write events }
//	write t.Finish()
//
// A StreamTranslator is not safe for concurrent use.
type StreamTranslator struct {
	model, id string
	input     int
	output    int // output tokens estimated, for an upstream that reports no usage
	started   bool
	finished  bool
	next      int            // index of the next content block
	runs      providers.Runs // the open block (see blockRuns)
	stop      string
	refused   bool // the upstream streamed a refusal
	usage     *providers.Usage
	out       []Event
}

// NewStreamTranslator returns a translator for one answer. model is the
// model name the client asked for; id is the message id (a msg_ id is
// made from it, or made up when empty).
func NewStreamTranslator(model, id string) *StreamTranslator {
	return &StreamTranslator{model: model, id: messageID(id)}
}

// SetInputTokens sets the input token estimate message_start reports,
// before the upstream's count arrives with the usage (OpenAI streams
// report usage only at the end; message_delta then carries it).
func (t *StreamTranslator) SetInputTokens(n int) { t.input = n }

// SetOutputTokens sets the output token estimate message_delta reports
// when the upstream sent no usage (some OpenAI-compatible servers do not,
// even asked with stream_options.include_usage). Call it before Finish.
func (t *StreamTranslator) SetOutputTokens(n int) { t.output = n }

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
		u := c.Usage.Normalized()
		t.usage = &u
	}
	if len(c.Choices) == 0 {
		return t.out, nil
	}
	ch := c.Choices[0]
	if err := t.runs.Choice(ch, (*blockRuns)(t)); err != nil {
		return nil, err
	}
	if ch.FinishReason != nil && *ch.FinishReason != "" {
		t.stop = stopReason(*ch.FinishReason)
	}
	return t.out, nil
}

// Finish closes the message: it stops the open block and sends
// message_delta (stop_reason, usage) and message_stop. Call it once the
// upstream stream ended cleanly; later calls return nothing.
func (t *StreamTranslator) Finish() []Event {
	t.out = t.out[:0]
	if t.finished {
		return nil
	}
	t.start()
	t.runs.Close((*blockRuns)(t))
	stop := t.stop
	if stop == "" {
		stop = "end_turn"
	}
	stop = refusalStop(stop, t.refused)
	u := fromUsage(providers.Usage{PromptTokens: t.input, CompletionTokens: t.output})
	if t.usage != nil {
		u = fromUsage(*t.usage)
	}
	md := messageDelta{Type: "message_delta", Usage: u}
	md.Delta.StopReason = stop
	t.emit("message_delta", md)
	t.emit("message_stop", typed{"message_stop"})
	t.finished = true
	return t.out
}

func (t *StreamTranslator) start() {
	if t.started {
		return
	}
	t.started = true
	t.emit("message_start", messageStart{Type: "message_start", Message: messageResponse{
		ID: t.id, Type: "message", Role: "assistant", Model: t.model, Content: []block{},
		Usage: usage{InputTokens: t.input, OutputTokens: 1}}})
	t.emit("ping", typed{"ping"})
}

// blockRuns is the translator as the providers.RunSink of its stream: each
// run is a content block (content_block_start, _delta…, _stop).
type blockRuns StreamTranslator

// OpenRun implements providers.RunSink.
func (b *blockRuns) OpenRun(kind byte, id, name string) {
	t := (*StreamTranslator)(b)
	var contentBlock any
	switch kind {
	case providers.RunReasoning:
		contentBlock = json.RawMessage(`{"type":"thinking","thinking":"","signature":""}`)
	case providers.RunText:
		contentBlock = block{Type: "text"}
	case providers.RunRefusal:
		// A text block, as in FromOpenAI; stop_reason says it refused.
		t.refused = true
		contentBlock = block{Type: "text"}
	case providers.RunTool:
		if id == "" {
			id = newToolID()
		}
		contentBlock = block{Type: "tool_use", ID: id, Name: name, Input: json.RawMessage("{}")}
	}
	t.emit("content_block_start", blockStart{Type: "content_block_start", Index: t.next, ContentBlock: contentBlock})
}

// RunDelta implements providers.RunSink.
func (b *blockRuns) RunDelta(kind byte, text string) {
	t := (*StreamTranslator)(b)
	d := blockDelta{Type: "text_delta", Text: text}
	switch kind {
	case providers.RunReasoning:
		d = blockDelta{Type: "thinking_delta", Thinking: text}
	case providers.RunTool:
		d = blockDelta{Type: "input_json_delta", PartialJSON: text}
	}
	t.emit("content_block_delta", deltaEvent{Type: "content_block_delta", Index: t.next, Delta: d})
}

// CloseRun implements providers.RunSink.
func (b *blockRuns) CloseRun() {
	t := (*StreamTranslator)(b)
	t.emit("content_block_stop", blockStop{Type: "content_block_stop", Index: t.next})
	t.next++
}

func (t *StreamTranslator) emit(typ string, v any) {
	data, err := providers.MarshalJSON(v)
	if err != nil {
		panic(fmt.Sprintf("anthropic: marshaling a %s event: %v", typ, err)) // plain maps and structs: cannot fail
	}
	t.out = append(t.out, Event{Type: typ, Data: data})
}

// The stream events, with fields in the order Anthropic sends them.
type (
	typed struct {
		Type string `json:"type"`
	}
	messageStart struct {
		Type    string          `json:"type"`
		Message messageResponse `json:"message"`
	}
	blockStart struct {
		Type         string `json:"type"`
		Index        int    `json:"index"`
		ContentBlock any    `json:"content_block"`
	}
	deltaEvent struct {
		Type  string     `json:"type"`
		Index int        `json:"index"`
		Delta blockDelta `json:"delta"`
	}
	blockDelta struct {
		Type        string `json:"type"`
		Text        string `json:"text,omitempty"`
		PartialJSON string `json:"partial_json,omitempty"`
		Thinking    string `json:"thinking,omitempty"`
	}
	blockStop struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}
	messageDelta struct {
		Type  string `json:"type"`
		Delta struct {
			StopReason   string  `json:"stop_reason"`
			StopSequence *string `json:"stop_sequence"`
		} `json:"delta"`
		Usage usage `json:"usage"`
	}
)
