package providers

import (
	"fmt"
	"net/http"
)

// Run kinds: a translator into another stream format (Anthropic Messages,
// Responses) sees a chat completion stream as a sequence of runs, each
// reasoning text, answer text, refusal text (OpenAI's refusal: the model
// declined to answer) or one tool call, one after the other.
const (
	RunReasoning byte = 'r'
	RunText      byte = 't'
	RunRefusal   byte = 'f'
	RunTool      byte = 'u'
)

// RunSink receives a chat stream as runs from Runs: OpenRun starts one
// (the previous one was closed first), RunDelta adds to the open one,
// CloseRun ends it. id and name are a tool call's as the upstream sent
// them (id may be empty).
type RunSink interface {
	OpenRun(kind byte, id, name string)
	RunDelta(kind byte, text string)
	CloseRun()
}

// Runs tracks the open run of one chat stream. Tool calls must arrive one
// after the other, as OpenAI streams them: arguments for a call whose run
// has ended are the upstream's fault (an *UpstreamError). A tool call
// delta without an index (some OpenAI-compatible servers leave it out)
// belongs to the open call, unless it carries an id other than that
// call's: then it starts the next call. The zero value is ready; it is
// not safe for concurrent use.
type Runs struct {
	open     byte   // kind of the open run; 0 none
	openTool int    // chat index of the open tool call
	openID   string // id of the open tool call, as the upstream sent it
	lastTool int    // the highest chat index started
	started  map[int]bool
}

// Choice feeds the delta of a chunk's choice to sink.
func (r *Runs) Choice(ch ChunkChoice, sink RunSink) error {
	reasoning := ch.Delta.ReasoningContent
	if reasoning == nil || *reasoning == "" {
		reasoning = ch.Delta.Reasoning // a server that sends both sends the same text twice
	}
	if reasoning != nil && *reasoning != "" {
		r.ensure(RunReasoning, 0, "", "", sink)
		sink.RunDelta(RunReasoning, *reasoning)
	}
	if t := ch.Delta.Content; t != nil && *t != "" {
		r.ensure(RunText, 0, "", "", sink)
		sink.RunDelta(RunText, *t)
	}
	if t := ch.Delta.Refusal; t != nil && *t != "" {
		r.ensure(RunRefusal, 0, "", "", sink)
		sink.RunDelta(RunRefusal, *t)
	}
	for _, tc := range ch.Delta.ToolCalls {
		idx := r.openTool
		switch {
		case tc.Index != nil:
			idx = *tc.Index
		case tc.ID != "" && r.started[idx] && tc.ID != r.openID:
			idx = r.lastTool + 1
		}
		switch {
		case !r.started[idx]:
			r.ensure(RunTool, idx, tc.ID, tc.Function.Name, sink)
			if r.started == nil {
				r.started = map[int]bool{}
			}
			r.started[idx] = true
			r.openID, r.lastTool = tc.ID, max(r.lastTool, idx)
		case r.open != RunTool || r.openTool != idx:
			return &UpstreamError{Status: http.StatusBadGateway, Type: "api_error", Retryable: true,
				Message: fmt.Sprintf("upstream streamed arguments for tool call %d after its block was closed", idx)}
		}
		if a := tc.Function.Arguments; a != "" {
			sink.RunDelta(RunTool, a)
		}
	}
	return nil
}

// ensure makes a run of kind (and tool call) the open one, closing the
// previous run and opening this one when needed.
func (r *Runs) ensure(kind byte, tool int, id, name string, sink RunSink) {
	if r.open == kind && (kind != RunTool || r.openTool == tool) {
		return
	}
	r.Close(sink)
	r.open, r.openTool = kind, tool
	sink.OpenRun(kind, id, name)
}

// Close ends the open run, if any.
func (r *Runs) Close(sink RunSink) {
	if r.open == 0 {
		return
	}
	sink.CloseRun()
	r.open = 0
}
