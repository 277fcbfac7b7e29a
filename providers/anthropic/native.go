package anthropic

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/sse"
)

// doNative sends an Anthropic client's own request (req.Native) and
// returns the Message as the upstream wrote it.
func (c *Client) doNative(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	resp, err := c.DoMessages(ctx, nativeBody(req), req.NativeHeader)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := providers.ReadAnswer(resp)
	if err != nil {
		return nil, c.transportError(ctx, err, false)
	}
	if gjson.GetBytes(raw, "type").Str != "message" {
		return nil, c.badGateway("upstream answered with something other than a message")
	}
	return &providers.Response{Body: raw, Usage: ParseUsage(raw)}, nil
}

// doNativeStream streams an Anthropic client's own request: the payloads
// are the upstream's event data, unchanged.
func (c *Client) doNativeStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	resp, err := c.DoMessages(ctx, nativeBody(req), req.NativeHeader)
	if err != nil {
		return nil, err
	}
	s := &nativeStream{c: c, ctx: ctx, body: resp.Body, r: sse.NewReader(resp.Body)}
	if b, ok := resp.Body.(*watchedBody); ok {
		s.wd = b.wd // its stream_timeout cancels the body's reads
	}
	return s, nil
}

// nativeBody is the client's body with stream set as the router asks.
func nativeBody(req *providers.Request) []byte {
	if gjson.GetBytes(req.Native, "stream").Bool() == req.Stream {
		return req.Native
	}
	b, err := sjson.SetBytes(req.Native, "stream", req.Stream)
	if err != nil {
		return req.Native
	}
	return b
}

// toolUseKey starts the "tool_use" block type and the tool_use_id key:
// a body with neither has no tool id to map.
var toolUseKey = []byte(`"tool_use`)

// fixToolIDs maps, with providers.ClaudeToolID, every tool_use id and
// tool_result tool_use_id in body's messages that the Messages API would
// refuse. An Anthropic client can hold such ids when Lumen served its
// earlier turns from another provider (Gemini's carry a base64 thought
// signature). body is not modified; a body with nothing to map is
// returned as it is.
func fixToolIDs(body []byte) []byte {
	if !bytes.Contains(body, toolUseKey) {
		return body // no tool_use block nor tool_use_id: nothing to read
	}
	out := body
	// A string view of body, not a copy: sjson.SetBytes writes a new
	// slice, so body and the ids read from it stay intact.
	gjson.Get(unsafe.String(unsafe.SliceData(body), len(body)), "messages").ForEach(func(i, m gjson.Result) bool {
		m.Get("content").ForEach(func(j, b gjson.Result) bool {
			field := ""
			switch b.Get("type").Str {
			case "tool_use":
				field = "id"
			case "tool_result":
				field = "tool_use_id"
			default:
				return true
			}
			id := b.Get(field)
			if id.Type != gjson.String {
				return true
			}
			if fixed := providers.ClaudeToolID(id.Str); fixed != id.Str {
				path := fmt.Sprintf("messages.%d.content.%d.%s", i.Int(), j.Int(), field)
				if s, err := sjson.SetBytes(out, path, fixed); err == nil {
					out = s
				}
			}
			return true
		})
		return true
	})
	return out
}

// nativeStream relays Messages API events. An error event, or an end
// before message_stop, is returned as an error so the router and server
// treat a broken native stream like any other.
type nativeStream struct {
	c    *Client
	ctx  context.Context
	body io.ReadCloser
	r    *sse.Reader
	wd   *providers.Watchdog // nil when the body is not DoMessages' own
	done bool
}

// Recv implements providers.Stream.
func (s *nativeStream) Recv() ([]byte, error) {
	if s.done {
		return nil, io.EOF
	}
	for {
		ev, err := s.r.Next()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // no message_stop: the answer is cut
			}
			// A read the watchdog cancelled is a timeout, not a lost
			// upstream.
			return nil, s.c.transportError(s.ctx, err, s.wd != nil && s.wd.Fired())
		}
		if len(ev.Data) == 0 {
			continue
		}
		switch gjson.GetBytes(ev.Data, "type").Str {
		case "error":
			return nil, s.c.errorFromBody(0, ev.Data)
		case "message_stop":
			s.done = true
		}
		return ev.Data, nil
	}
}

// Buffered implements providers.Buffered.
func (s *nativeStream) Buffered() int { return s.r.Buffered() }

// Close implements providers.Stream.
func (s *nativeStream) Close() error { return s.body.Close() }

var _ providers.Buffered = (*nativeStream)(nil)

// IsNativeEvent reports whether a stream payload is a Messages API event
// (a native pass-through) rather than an OpenAI chunk.
func IsNativeEvent(data []byte) bool {
	switch gjson.GetBytes(data, "type").Str {
	case "message_start", "content_block_start", "content_block_delta", "content_block_stop",
		"message_delta", "message_stop", "ping", "error":
		return true
	}
	return false
}

// IsMessage reports whether a response body is a Messages API Message.
func IsMessage(body []byte) bool { return gjson.GetBytes(body, "type").Str == "message" }
