package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
	"github.com/lumengw/lumen/providers/sse"
	"github.com/lumengw/lumen/tokens"
)

var (
	doneEvent     = []byte("data: [DONE]\n\n")
	errClientGone = fmt.Errorf("writing to client: %w", context.Canceled)
)

// writeStream relays an upstream stream to the client, one flushed SSE event
// per upstream event, counting usage as it passes. An upstream failure
// before the first byte is returned (the caller answers with an error
// status); after it, the stream ends with an SSE error event, never a
// silent [DONE].
func (s *Server) writeStream(w http.ResponseWriter, r *http.Request, x *exchange, st providers.Stream) error {
	st = x.guardStream(st)
	defer st.Close()
	if s.metrics != nil {
		s.metrics.StreamStarted()
		defer s.metrics.StreamFinished()
	}
	rc := http.NewResponseController(w)
	buffered, _ := st.(providers.Buffered)
	started := false
	buf := make([]byte, 0, 1024)
	var chunkID, chunkModel string
	var chunkCreated int64
	for {
		data, err := st.Recv()
		if err == io.EOF {
			if !started {
				s.startStream(w, x)
				started = true
			}
			x.status = http.StatusOK
			if x.includeUsage && x.usage.Total() == 0 {
				// The client asked for usage and the upstream sent none
				// (it ignores stream_options, or cannot take it): the
				// estimate the ledger records stands in.
				buf = sse.AppendEvent(buf[:0], "", s.estimatedUsageChunk(x, chunkID, chunkModel, chunkCreated))
				if _, err := w.Write(buf); err != nil {
					return errClientGone
				}
			}
			if _, err := w.Write(doneEvent); err != nil {
				return errClientGone
			}
			_ = rc.Flush()
			return nil
		}
		if err != nil {
			if !started {
				return err
			}
			ae := s.classifyExchange(x, err)
			x.fail(ae)
			if ae.Status == statusClientClosed {
				return nil
			}
			payload, _ := jsonMarshal(errorJSON(ae))
			_, _ = w.Write(sse.AppendEvent(buf[:0], "error", payload))
			_ = rc.Flush()
			return nil
		}
		if openai.HasUsage(data) {
			if u := openai.ParseUsage(data); u.Total() > 0 {
				x.usage = u
				if x.usageInclude {
					data = s.withCost(x, data)
				}
			}
			if !x.includeUsage && openai.NoChoices(data) {
				continue // Lumen asked for usage; the client did not
			}
		} else if x.usage.CompletionTokens == 0 {
			x.estimated += tokens.Chunk(data)
		}
		if x.includeUsage && chunkID == "" {
			// For a usage chunk of Lumen's own, should the upstream send none.
			chunkID, chunkModel = gjson.GetBytes(data, "id").Str, gjson.GetBytes(data, "model").Str
			chunkCreated = gjson.GetBytes(data, "created").Int()
		}
		if !started {
			s.startStream(w, x)
			started = true
		}
		buf = sse.AppendEvent(buf[:0], "", data)
		if _, err := w.Write(buf); err != nil {
			return errClientGone
		}
		if buffered != nil && buffered.Buffered() > 0 {
			continue // the next event is already here: it leaves with this one
		}
		if err := rc.Flush(); err != nil {
			return errClientGone
		}
	}
}

// estimatedUsageChunk is the usage chunk that ends a stream whose upstream
// reported no usage: Lumen's estimates of the prompt and of the output the
// client received, as the ledger records them, in the stream's id and model.
func (s *Server) estimatedUsageChunk(x *exchange, id, model string, created int64) []byte {
	if x.promptEst == 0 {
		x.promptEst = tokens.Prompt(x.body)
	}
	x.usage.PromptTokens, x.usage.CompletionTokens = x.promptEst, x.estimated
	var u struct {
		ID      string   `json:"id"`
		Object  string   `json:"object"`
		Created int64    `json:"created"`
		Model   string   `json:"model"`
		Choices []string `json:"choices"`
		Usage   struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	u.ID, u.Object, u.Created, u.Model, u.Choices = id, "chat.completion.chunk", created, model, []string{}
	u.Usage.PromptTokens, u.Usage.CompletionTokens = x.promptEst, x.estimated
	u.Usage.TotalTokens = x.promptEst + x.estimated
	data, _ := jsonMarshal(u)
	if x.usageInclude {
		data = s.withCost(x, data)
	}
	return data
}

// withCost returns a usage chunk with the request's cost in usage.cost.
func (s *Server) withCost(x *exchange, data []byte) []byte {
	s.price(x)
	if b, err := sjson.SetBytes(data, "usage.cost", x.cost); err == nil {
		return b
	}
	return data
}

func (s *Server) startStream(w http.ResponseWriter, x *exchange) {
	h := w.Header()
	x.started = true
	h.Set("Trailer", costHeaderName)
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // tell nginx-style proxies not to buffer
	w.WriteHeader(http.StatusOK)
	x.ttft = time.Since(x.start)
}

// eventWriter writes a translated stream's events (Anthropic Messages or
// Responses) to the client: each batch in one write, flushed unless more of
// the upstream is already buffered, in which case it leaves with the next.
type eventWriter struct {
	s        *Server
	w        http.ResponseWriter
	x        *exchange
	rc       *http.ResponseController
	buffered providers.Buffered
	buf      []byte
}

func (s *Server) newEventWriter(w http.ResponseWriter, x *exchange, st providers.Stream) *eventWriter {
	buffered, _ := st.(providers.Buffered)
	return &eventWriter{s: s, w: w, x: x, rc: http.NewResponseController(w), buffered: buffered, buf: make([]byte, 0, 1024)}
}

// write sends events; the first write starts the stream (status and
// headers). A client that went away is errClientGone.
func (ew *eventWriter) write(events []providers.TranslatedEvent) error {
	ew.buf = ew.buf[:0]
	for _, e := range events {
		ew.buf = sse.AppendEvent(ew.buf, e.Type, e.Data)
	}
	if len(ew.buf) == 0 {
		return nil
	}
	if !ew.x.started {
		ew.s.startStream(ew.w, ew.x)
	}
	if _, err := ew.w.Write(ew.buf); err != nil {
		return errClientGone
	}
	if ew.buffered != nil && ew.buffered.Buffered() > 0 {
		return nil
	}
	if err := ew.rc.Flush(); err != nil {
		return errClientGone
	}
	return nil
}

// end starts the stream if nothing was written yet and flushes it, once
// the upstream ended cleanly.
func (ew *eventWriter) end() {
	if !ew.x.started {
		ew.s.startStream(ew.w, ew.x)
	}
	_ = ew.rc.Flush()
	ew.x.status = http.StatusOK
}

// countChunk keeps a translated stream's usage from its OpenAI chunks: the
// upstream's count when one arrives, else an estimate of the output so far
// (text, reasoning, tool calls: tokens.Chunk).
func (x *exchange) countChunk(data []byte) {
	if u := openai.ParseUsage(data); u.Total() > 0 {
		x.usage = u
	} else if x.usage.CompletionTokens == 0 {
		x.estimated += tokens.Chunk(data)
	}
}
