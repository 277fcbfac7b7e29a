package bedrock

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/lumengw/lumen/providers"
)

// stream translates a ConverseStream answer into OpenAI chunks, one
// event-stream message at a time: messageStart gives the role chunk, text
// and reasoning deltas content and reasoning chunks, a toolUse block's
// start and input deltas tool-call chunks (numbered in order of
// appearance), messageStop the finish chunk and metadata the usage chunk
// that ends the stream. Exception messages end it with an *UpstreamError;
// the body ending before messageStop is a cut stream.
type stream struct {
	c      *Client
	tr     *translation
	ctx    context.Context
	body   io.ReadCloser
	r      *frameReader
	wd     *providers.Watchdog
	cancel context.CancelFunc

	b        providers.ChunkBuilder
	queue    [][]byte
	blocks   map[int]blockState
	tools    int
	answered bool
	started  bool
	stopped  bool // messageStop arrived
	usage    usage
	finished bool
	closed   bool
}

// blockState is what an open content block translates to.
type blockState struct {
	kind  byte // 'u' tool use, 'j' response tool
	index int
}

// Recv implements providers.Stream.
func (s *stream) Recv() ([]byte, error) {
	for len(s.queue) == 0 {
		if s.finished {
			return nil, io.EOF
		}
		f, err := s.r.next()
		if err == io.EOF && s.stopped {
			// No metadata event: end with the usage known so far.
			s.emit(s.b.Usage(s.usage.normalize()))
			s.finished = true
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if errors.Is(err, errCorrupt) {
				return nil, s.c.badGateway("upstream sent a broken event stream: " + err.Error())
			}
			return nil, providers.TransportError(s.ctx, s.c.provider, s.c.name, err, s.wd.Fired())
		}
		s.wd.Kick()
		if err := s.translate(f); err != nil {
			return nil, err
		}
	}
	data := s.queue[0]
	s.queue = s.queue[1:]
	return data, nil
}

func (s *stream) emit(chunk []byte) { s.queue = append(s.queue, chunk) }

func (s *stream) translate(f frame) error {
	switch f.headers[":message-type"] {
	case "event":
	case "exception":
		var ev streamEvent
		_ = json.Unmarshal(f.payload, &ev)
		return s.c.exception(0, f.headers[":exception-type"], ev.Message)
	case "error":
		return s.c.exception(0, f.headers[":error-code"], f.headers[":error-message"])
	default:
		return nil
	}
	var ev streamEvent
	if err := json.Unmarshal(f.payload, &ev); err != nil {
		return s.c.badGateway("upstream sent an event that is not JSON")
	}
	if !s.started {
		s.started = true
		s.emit(s.b.Role())
	}
	switch f.headers[":event-type"] {
	case "messageStart":
	case "contentBlockStart":
		if ev.Start == nil || ev.Start.ToolUse == nil {
			return nil
		}
		if s.tr.jsonTool && ev.Start.ToolUse.Name == responseTool {
			s.blocks[ev.ContentBlockIndex] = blockState{kind: 'j'}
			s.answered = true
			return nil
		}
		s.blocks[ev.ContentBlockIndex] = blockState{kind: 'u', index: s.tools}
		s.emit(s.b.ToolCallStart(s.tools, ev.Start.ToolUse.ToolUseID, ev.Start.ToolUse.Name, ""))
		s.tools++
	case "contentBlockDelta":
		d := ev.Delta
		if d == nil {
			return nil
		}
		st, open := s.blocks[ev.ContentBlockIndex]
		switch {
		case d.Text != nil && *d.Text != "":
			s.emit(s.b.Content(*d.Text))
		case d.ReasoningContent != nil && d.ReasoningContent.Text != "":
			s.emit(s.b.Reasoning(d.ReasoningContent.Text))
		case d.ToolUse != nil && d.ToolUse.Input != "" && open:
			if st.kind == 'j' {
				s.emit(s.b.Content(d.ToolUse.Input))
			} else {
				s.emit(s.b.ToolCallArgs(st.index, d.ToolUse.Input))
			}
		}
	case "contentBlockStop":
		delete(s.blocks, ev.ContentBlockIndex)
	case "messageStop":
		finish := finishReason(ev.StopReason)
		if finish == providers.FinishToolCalls && s.tools == 0 && s.answered {
			finish = providers.FinishStop
		}
		s.stopped = true
		s.emit(s.b.Finish(finish))
	case "metadata":
		if ev.Usage != nil {
			s.usage = *ev.Usage
		}
		if s.stopped {
			s.emit(s.b.Usage(s.usage.normalize()))
			s.finished = true
		}
	}
	return nil
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
