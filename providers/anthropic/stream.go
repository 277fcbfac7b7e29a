package anthropic

import (
	"context"
	"encoding/json"
	"io"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/sse"
)

// stream translates a Messages API event stream into OpenAI chunks, one
// upstream event at a time: message_start gives the role chunk, text and
// input_json deltas give content and tool-call chunks (tool_use blocks are
// numbered in order of appearance), message_delta gives the finish chunk
// and message_stop the usage chunk.
type stream struct {
	c      *Client
	tr     *translation
	ctx    context.Context
	body   io.ReadCloser
	r      *sse.Reader
	wd     *providers.Watchdog
	cancel context.CancelFunc

	b        providers.ChunkBuilder
	queue    [][]byte
	blocks   map[int]blockState
	tools    int // tool calls started
	answered bool
	usage    usage
	finished bool // message_stop arrived
	closed   bool
}

// blockState is what an open content block translates to.
type blockState struct {
	kind  byte // 't' text, 'u' tool_use, 'j' response tool, 'r' thinking, 0 ignored
	index int  // OpenAI tool call index for 'u'
}

func newStream(c *Client, tr *translation, ctx context.Context, body io.ReadCloser, wd *providers.Watchdog, cancel context.CancelFunc) *stream {
	return &stream{c: c, tr: tr, ctx: ctx, body: body, r: sse.NewReader(body), wd: wd, cancel: cancel,
		blocks: map[int]blockState{}, b: providers.ChunkBuilder{Created: c.now().Unix()}}
}

// event is the union of the stream events' fields.
type event struct {
	Type         string           `json:"type"`
	Message      *messageResponse `json:"message"`
	Index        int              `json:"index"`
	ContentBlock *block           `json:"content_block"`
	Delta        *struct {
		Type        string  `json:"type"`
		Text        string  `json:"text"`
		PartialJSON string  `json:"partial_json"`
		Thinking    string  `json:"thinking"`
		StopReason  *string `json:"stop_reason"`
	} `json:"delta"`
	Usage *struct {
		InputTokens              *int `json:"input_tokens"`
		CacheCreationInputTokens *int `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     *int `json:"cache_read_input_tokens"`
		OutputTokens             *int `json:"output_tokens"`
	} `json:"usage"`
	Error *errorDetail `json:"error"`
}

// Recv implements providers.Stream.
func (s *stream) Recv() ([]byte, error) {
	for len(s.queue) == 0 {
		if s.finished {
			return nil, io.EOF
		}
		ev, err := s.r.Next()
		if err != nil {
			// The stream ended without message_stop: the answer is cut.
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, s.c.transportError(s.ctx, err, s.wd.Fired())
		}
		s.wd.Kick()
		if err := s.translate(ev.Data); err != nil {
			return nil, err
		}
	}
	data := s.queue[0]
	s.queue = s.queue[1:]
	return data, nil
}

func (s *stream) emit(chunk []byte) { s.queue = append(s.queue, chunk) }

func (s *stream) translate(data []byte) error {
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		return s.c.badGateway("upstream sent an event that is not JSON")
	}
	switch ev.Type {
	case "message_start":
		if ev.Message == nil {
			return s.c.badGateway("upstream sent message_start without a message")
		}
		s.b.ID, s.b.Model = ev.Message.ID, ev.Message.Model
		s.usage = ev.Message.Usage
		s.emit(s.b.Role())
	case "content_block_start":
		cb := ev.ContentBlock
		if cb == nil {
			return s.c.badGateway("upstream sent content_block_start without a block")
		}
		switch cb.Type {
		case "text":
			s.blocks[ev.Index] = blockState{kind: 't'}
			if cb.Text != "" {
				s.emit(s.b.Content(cb.Text))
			}
		case "thinking":
			s.blocks[ev.Index] = blockState{kind: 'r'}
		case "tool_use":
			if s.tr.jsonTool && cb.Name == responseTool {
				s.blocks[ev.Index] = blockState{kind: 'j'}
				s.answered = true
				break
			}
			s.blocks[ev.Index] = blockState{kind: 'u', index: s.tools}
			s.emit(s.b.ToolCallStart(s.tools, cb.ID, cb.Name, ""))
			s.tools++
		}
	case "content_block_delta":
		if ev.Delta == nil {
			return nil
		}
		st := s.blocks[ev.Index]
		switch {
		case ev.Delta.Type == "text_delta" && st.kind == 't':
			s.emit(s.b.Content(ev.Delta.Text))
		case ev.Delta.Type == "thinking_delta" && st.kind == 'r':
			s.emit(s.b.Reasoning(ev.Delta.Thinking))
		case ev.Delta.Type == "input_json_delta" && ev.Delta.PartialJSON != "":
			switch st.kind {
			case 'u':
				s.emit(s.b.ToolCallArgs(st.index, ev.Delta.PartialJSON))
			case 'j':
				s.emit(s.b.Content(ev.Delta.PartialJSON))
			}
		}
	case "content_block_stop":
		delete(s.blocks, ev.Index)
	case "message_delta":
		if u := ev.Usage; u != nil {
			// The counts are cumulative; input counts appear here only in
			// newer API versions, and override message_start's when they do.
			set(&s.usage.OutputTokens, u.OutputTokens)
			set(&s.usage.InputTokens, u.InputTokens)
			set(&s.usage.CacheCreationInputTokens, u.CacheCreationInputTokens)
			set(&s.usage.CacheReadInputTokens, u.CacheReadInputTokens)
		}
		if ev.Delta != nil && ev.Delta.StopReason != nil {
			finish := finishReason(*ev.Delta.StopReason)
			if finish == providers.FinishToolCalls && s.tools == 0 && s.answered {
				finish = providers.FinishStop
			}
			s.emit(s.b.Finish(finish))
		}
	case "message_stop":
		s.emit(s.b.Usage(s.usage.normalize()))
		s.finished = true
	case "error":
		// Status 0: errorFromBody takes it from the error type.
		return s.c.errorFromBody(0, data)
	default:
		// ping, and event types added after this was written, which the
		// API versioning policy allows.
	}
	return nil
}

func set(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

// Buffered implements providers.Buffered.
func (s *stream) Buffered() int {
	if len(s.queue) > 0 {
		return 1
	}
	return s.r.Buffered()
}

// Close implements providers.Stream.
func (s *stream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.wd.Stop()
	s.cancel()
	_ = s.body.Close() // after cancel the only possible error is ours
	return nil
}
