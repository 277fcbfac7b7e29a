package anthropic

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
)

// fakeKey is the API key the fake expects.
const fakeKey = "sk-ant-test-key"

// fakeUpstream is the wire half of a fake Anthropic API: it reads requests
// as https://docs.anthropic.com/en/api/messages documents them and answers
// in the documented response, streaming and error formats. It shares no
// code with the translator.
func fakeUpstream(t *testing.T, f *pt.Fake) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
			t.Errorf("fake anthropic: %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("X-Api-Key") != fakeKey || r.Header.Get("Anthropic-Version") == "" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("fake anthropic: headers x-api-key=%q anthropic-version=%q content-type=%q",
				r.Header.Get("X-Api-Key"), r.Header.Get("Anthropic-Version"), r.Header.Get("Content-Type"))
		}
		body, _ := io.ReadAll(r.Body)
		if !gjson.ValidBytes(body) {
			t.Errorf("fake anthropic: body is not JSON: %s", body)
		}
		f.Record(parseRequest(t, r, body))
		writeReply(w, r, f, gjson.GetBytes(body, "stream").Bool())
	})
}

func parseRequest(t *testing.T, r *http.Request, body []byte) pt.Received {
	req := gjson.ParseBytes(body)
	got := pt.Received{Path: r.URL.Path, Header: r.Header.Clone(), Model: req.Get("model").Str, Stream: req.Get("stream").Bool(),
		MaxTokens: int(req.Get("max_tokens").Int())}
	if !req.Get("max_tokens").Exists() {
		t.Errorf("fake anthropic: max_tokens is required")
	}
	if sys := req.Get("system"); sys.IsArray() {
		var parts []string
		for _, b := range sys.Array() {
			parts = append(parts, b.Get("text").Str)
		}
		got.System = strings.Join(parts, "\n\n")
	} else {
		got.System = sys.Str
	}
	if v := req.Get("temperature"); v.Exists() {
		f := v.Float()
		got.Temperature = &f
	}
	if v := req.Get("top_p"); v.Exists() {
		f := v.Float()
		got.TopP = &f
	}
	for _, s := range req.Get("stop_sequences").Array() {
		got.Stop = append(got.Stop, s.Str)
	}
	for _, tl := range req.Get("tools").Array() {
		got.Tools = append(got.Tools, pt.Tool{Name: tl.Get("name").Str, Description: tl.Get("description").Str, Schema: []byte(tl.Get("input_schema").Raw)})
	}
	switch tc := req.Get("tool_choice"); tc.Get("type").Str {
	case "auto", "none":
		got.ToolChoice = tc.Get("type").Str
	case "any":
		got.ToolChoice = "required"
	case "tool":
		got.ToolChoice = "function:" + tc.Get("name").Str
	}
	prev := ""
	for i, m := range req.Get("messages").Array() {
		role := m.Get("role").Str
		if role == prev {
			t.Errorf("fake anthropic: messages[%d] repeats role %q; the API requires alternation", i, role)
		}
		prev = role
		msg := pt.Msg{Role: role}
		content := m.Get("content")
		if content.Type == gjson.String {
			msg.Parts = append(msg.Parts, pt.Part{Text: content.Str})
		}
		for _, b := range content.Array() {
			switch b.Get("type").Str {
			case "text":
				if b.Get("text").Str == "" {
					t.Errorf("fake anthropic: empty text block")
				}
				msg.Parts = append(msg.Parts, pt.Part{Text: b.Get("text").Str})
			case "image":
				src := b.Get("source")
				switch src.Get("type").Str {
				case "base64":
					data, err := base64.StdEncoding.DecodeString(src.Get("data").Str)
					if err != nil {
						t.Errorf("fake anthropic: image data: %v", err)
					}
					msg.Parts = append(msg.Parts, pt.Part{Image: &pt.Image{MediaType: src.Get("media_type").Str, Data: data}})
				case "url":
					msg.Parts = append(msg.Parts, pt.Part{Image: &pt.Image{URL: src.Get("url").Str}})
				default:
					t.Errorf("fake anthropic: image source %s", src.Raw)
				}
			case "tool_use":
				if !b.Get("input").IsObject() {
					t.Errorf("fake anthropic: tool_use input must be an object: %s", b.Raw)
				}
				msg.Parts = append(msg.Parts, pt.Part{ToolCall: &pt.ToolCall{ID: b.Get("id").Str, Name: b.Get("name").Str, Args: b.Get("input").Raw}})
			case "tool_result":
				if role != "user" {
					t.Errorf("fake anthropic: tool_result in a %s turn", role)
				}
				c := b.Get("content")
				text := c.Str
				if c.IsArray() {
					for _, cb := range c.Array() {
						text += cb.Get("text").Str
					}
				}
				msg.Parts = append(msg.Parts, pt.Part{ToolResult: &pt.ToolResult{ID: b.Get("tool_use_id").Str, Content: text}})
			default:
				t.Errorf("fake anthropic: unexpected block %s", b.Raw)
			}
		}
		got.Messages = append(got.Messages, msg)
	}
	return got
}

// fakeStopReason is the stop_reason for an OpenAI finish reason.
func fakeStopReason(finish string) string {
	switch finish {
	case providers.FinishLength:
		return "max_tokens"
	case providers.FinishToolCalls:
		return "tool_use"
	case providers.FinishContentFilter:
		return "refusal"
	default:
		return "end_turn"
	}
}

// wireUsage splits normalized usage the Anthropic way: input_tokens
// excludes cache reads and writes.
func wireUsage(u providers.Usage, output int) string {
	return fmt.Sprintf(`{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,"output_tokens":%d}`,
		u.PromptTokens-u.CachedTokens-u.CacheWriteTokens, u.CacheWriteTokens, u.CachedTokens, output)
}

func errorJSON(er *pt.ErrorReply) (int, string) {
	status, typ := 0, ""
	switch er.Kind {
	case pt.RateLimited:
		status, typ = 429, "rate_limit_error"
	case pt.Overloaded:
		status, typ = 529, "overloaded_error"
	case pt.BadRequest:
		status, typ = 400, "invalid_request_error"
	case pt.Unauthorized:
		status, typ = 401, "authentication_error"
	}
	return status, fmt.Sprintf(`{"type":"error","error":{"type":%q,"message":%q},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`, typ, er.Message)
}

func writeReply(w http.ResponseWriter, r *http.Request, f *pt.Fake, stream bool) {
	rep := f.Reply()
	w.Header().Set("Request-Id", "req_011CSHoEeqs5C35K2UUqR7Fy")
	switch {
	case rep.Hang:
		f.Hold(r)
		return
	case rep.Err != nil:
		status, body := errorJSON(rep.Err)
		if rep.Err.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(rep.Err.RetryAfter.Seconds())))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		return
	case !stream:
		var content []string
		if rep.Text != "" {
			content = append(content, fmt.Sprintf(`{"type":"text","text":%q}`, rep.Text))
		}
		for _, tc := range rep.ToolCalls {
			content = append(content, fmt.Sprintf(`{"type":"tool_use","id":%q,"name":%q,"input":%s}`, tc.ID, tc.Name, tc.Args))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",`+
			`"content":[%s],"stop_reason":%q,"stop_sequence":null,"usage":%s}`,
			strings.Join(content, ","), fakeStopReason(rep.Finish), wireUsage(rep.Usage, rep.Usage.CompletionTokens))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl := w.(http.Flusher)
	send := func(typ, data string) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
		fl.Flush()
	}
	send("message_start", `{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],`+
		`"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":`+wireUsage(rep.Usage, 1)+`}}`)
	index := 0
	if rep.Text != "" {
		send("content_block_start", fmt.Sprintf(`{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":""}}`, index))
		send("ping", `{"type": "ping"}`)
		for i, piece := range pt.Pieces(rep.Text, 5) {
			send("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":%q}}`, index, piece))
			if i == 0 && rep.StreamErr != nil {
				_, body := errorJSON(rep.StreamErr)
				send("error", body)
				return
			}
			if i == 0 && rep.Truncate {
				return
			}
		}
		send("content_block_stop", fmt.Sprintf(`{"type":"content_block_stop","index":%d}`, index))
		index++
	}
	for _, tc := range rep.ToolCalls {
		send("content_block_start", fmt.Sprintf(`{"type":"content_block_start","index":%d,"content_block":{"type":"tool_use","id":%q,"name":%q,"input":{}}}`, index, tc.ID, tc.Name))
		send("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":""}}`, index))
		for _, piece := range pt.Pieces(tc.Args, 6) {
			send("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":%q}}`, index, piece))
		}
		send("content_block_stop", fmt.Sprintf(`{"type":"content_block_stop","index":%d}`, index))
		index++
	}
	send("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":%q,"stop_sequence":null},"usage":{"output_tokens":%d}}`,
		fakeStopReason(rep.Finish), rep.Usage.CompletionTokens))
	send("message_stop", `{"type":"message_stop"}`)
}
