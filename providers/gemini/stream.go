package gemini

import (
	"context"
	"encoding/json"
	"io"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/sse"
)

// stream translates a streamGenerateContent?alt=sse answer into OpenAI
// chunks, one event at a time. Every event is a GenerateContentResponse
// with the next parts of the candidate: text parts become content chunks,
// thought parts reasoning chunks, and each functionCall part (Gemini sends
// a call whole) a tool-call chunk numbered in order of appearance. The
// event with finishReason gives the finish chunk. Gemini has no end event:
// the body ending after a finishReason is a complete answer, and then the
// usage chunk (from the last usageMetadata) ends the stream; the body
// ending before one is a cut stream.
type stream struct {
	c      *Client
	ctx    context.Context
	body   io.ReadCloser
	r      *sse.Reader
	wd     *providers.Watchdog
	cancel context.CancelFunc

	b        providers.ChunkBuilder
	queue    [][]byte
	started  bool
	tools    int
	finish   string // OpenAI finish reason, once the upstream gave one
	usage    *usageMetadata
	finished bool
	closed   bool
}

func newStream(c *Client, ctx context.Context, body io.ReadCloser, wd *providers.Watchdog, cancel context.CancelFunc) *stream {
	return &stream{c: c, ctx: ctx, body: body, r: sse.NewReader(body), wd: wd, cancel: cancel,
		b: providers.ChunkBuilder{Created: c.now().Unix(), Model: c.model}}
}

// Recv implements providers.Stream.
func (s *stream) Recv() ([]byte, error) {
	for len(s.queue) == 0 {
		if s.finished {
			return nil, io.EOF
		}
		ev, err := s.r.Next()
		if err == io.EOF && s.finish != "" {
			s.emit(s.b.Usage(s.usage.normalize()))
			s.finished = true
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // no finishReason: the answer is cut
			}
			return nil, providers.TransportError(s.ctx, s.c.provider, s.c.name, err, s.wd.Fired())
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
	var g generateResponse
	if err := json.Unmarshal(data, &g); err != nil {
		return s.c.badGateway("upstream sent an event that is not JSON")
	}
	if g.Error != nil {
		return s.c.apiError(0, g.Error)
	}
	if !s.started {
		s.started = true
		s.b.ID = s.c.responseID(&g)
		s.b.Model = s.c.modelOf(&g)
		s.emit(s.b.Role())
	}
	if g.UsageMetadata != nil {
		s.usage = g.UsageMetadata
	}
	if len(g.Candidates) == 0 {
		if g.PromptFeedback != nil && g.PromptFeedback.BlockReason != "" && s.finish == "" {
			s.finish = providers.FinishContentFilter
			s.emit(s.b.Finish(s.finish))
		}
		return nil
	}
	cand := g.Candidates[0]
	for _, p := range cand.Content.Parts {
		switch {
		case p.FunctionCall != nil:
			tc := s.c.toolCall(p)
			s.emit(s.b.ToolCallStart(s.tools, tc.ID, tc.Function.Name, tc.Function.Arguments))
			s.tools++
		case p.Thought:
			if p.Text != "" {
				s.emit(s.b.Reasoning(p.Text))
			}
		case p.Text != "":
			s.emit(s.b.Content(p.Text))
		}
	}
	if cand.FinishReason != "" && s.finish == "" {
		s.finish = finishReason(cand.FinishReason, s.tools > 0)
		s.emit(s.b.Finish(s.finish))
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
