package bedrock

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
)

// The fake's credentials.
var fakeCreds = Credentials{AccessKeyID: "AKIDFAKEFAKEFAKE", SecretAccessKey: "fake/secret+key", SessionToken: "fake-session"}

// fakeUpstream is the wire half of a fake Bedrock runtime: it checks the
// SigV4 signature, reads Converse requests as the API reference documents
// them and answers in the documented JSON, event-stream and exception
// formats. It shares no translation code with the provider; it re-signs
// the request as it arrived to check that what was signed is what was
// sent (the signer itself is checked against AWS's vectors).
func fakeUpstream(t *testing.T, f *pt.Fake) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/model/")
		model, op, _ := strings.Cut(rest, "/")
		if r.Method != http.MethodPost || !ok || (op != "converse" && op != "converse-stream") {
			t.Errorf("fake bedrock: %s %s", r.Method, r.URL.EscapedPath())
			http.NotFound(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("fake bedrock: reading the body: %v", err)
		}
		checkSignature(t, r, body)
		if !gjson.ValidBytes(body) {
			t.Errorf("fake bedrock: body is not JSON: %s", body)
		}
		got := parseRequest(t, body)
		got.Path, got.Header, got.Stream = r.URL.Path, r.Header.Clone(), op == "converse-stream"
		got.Model, err = url.PathUnescape(model)
		if err != nil {
			t.Errorf("fake bedrock: model id %q: %v", model, err)
		}
		f.Record(got)
		writeReply(w, r, f, got.Stream)
	})
}

func checkSignature(t *testing.T, r *http.Request, body []byte) {
	auth := r.Header.Get("Authorization")
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+fakeCreds.AccessKeyID+"/"+at.Format("20060102")+"/us-east-1/bedrock/aws4_request, ") {
		t.Errorf("fake bedrock: Authorization %q X-Amz-Date %q", auth, r.Header.Get("X-Amz-Date"))
		return
	}
	if r.Header.Get("X-Amz-Security-Token") != fakeCreds.SessionToken {
		t.Errorf("fake bedrock: no session token")
	}
	_, signed, _ := strings.Cut(auth, "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	for _, h := range []string{"content-type", "host", "x-amz-date", "x-amz-security-token"} {
		if !strings.Contains(";"+signed+";", ";"+h+";") {
			t.Errorf("fake bedrock: %s is not signed (%s)", h, signed)
		}
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.EscapedPath(), nil)
	again.URL.RawPath = r.URL.EscapedPath()
	for _, h := range strings.Split(signed, ";") {
		if h != "host" {
			again.Header.Set(h, r.Header.Get(h))
		}
	}
	sign(again, fakeCreds, "us-east-1", "bedrock", hashHex(body), at)
	if again.Header.Get("Authorization") != auth {
		t.Errorf("fake bedrock: the signature does not match the request as received:\n got %s\nwant %s", auth, again.Header.Get("Authorization"))
	}
}

func parseRequest(t *testing.T, body []byte) pt.Received {
	req := gjson.ParseBytes(body)
	var got pt.Received
	var sys []string
	for _, b := range req.Get("system").Array() {
		if b.Get("text").Exists() {
			sys = append(sys, b.Get("text").Str)
		}
	}
	got.System = strings.Join(sys, "\n\n")
	ic := req.Get("inferenceConfig")
	got.MaxTokens = int(ic.Get("maxTokens").Int())
	if v := ic.Get("temperature"); v.Exists() {
		f := v.Float()
		got.Temperature = &f
	}
	if v := ic.Get("topP"); v.Exists() {
		f := v.Float()
		got.TopP = &f
	}
	for _, s := range ic.Get("stopSequences").Array() {
		got.Stop = append(got.Stop, s.Str)
	}
	for _, tl := range req.Get("toolConfig.tools").Array() {
		spec := tl.Get("toolSpec")
		got.Tools = append(got.Tools, pt.Tool{Name: spec.Get("name").Str, Description: spec.Get("description").Str, Schema: []byte(spec.Get("inputSchema.json").Raw)})
	}
	tc := req.Get("toolConfig.toolChoice")
	switch {
	case tc.Get("auto").Exists():
		got.ToolChoice = "auto"
	case tc.Get("any").Exists():
		got.ToolChoice = "required"
	case tc.Get("tool").Exists():
		got.ToolChoice = "function:" + tc.Get("tool.name").Str
	}
	prev := ""
	for i, m := range req.Get("messages").Array() {
		role := m.Get("role").Str
		if role == prev || (role != "user" && role != "assistant") {
			t.Errorf("fake bedrock: messages[%d] role %q after %q", i, role, prev)
		}
		prev = role
		msg := pt.Msg{Role: role}
		for _, b := range m.Get("content").Array() {
			switch {
			case b.Get("text").Exists():
				if strings.TrimSpace(b.Get("text").Str) == "" {
					t.Errorf("fake bedrock: blank text block")
				}
				msg.Parts = append(msg.Parts, pt.Part{Text: b.Get("text").Str})
			case b.Get("image").Exists():
				data, err := base64.StdEncoding.DecodeString(b.Get("image.source.bytes").Str)
				if err != nil {
					t.Errorf("fake bedrock: image bytes: %v", err)
				}
				mt := map[string]string{"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}[b.Get("image.format").Str]
				msg.Parts = append(msg.Parts, pt.Part{Image: &pt.Image{MediaType: mt, Data: data}})
			case b.Get("toolUse").Exists():
				if role != "assistant" || !b.Get("toolUse.input").IsObject() {
					t.Errorf("fake bedrock: toolUse %s in a %s turn", b.Raw, role)
				}
				msg.Parts = append(msg.Parts, pt.Part{ToolCall: &pt.ToolCall{ID: b.Get("toolUse.toolUseId").Str, Name: b.Get("toolUse.name").Str, Args: b.Get("toolUse.input").Raw}})
			case b.Get("toolResult").Exists():
				if role != "user" {
					t.Errorf("fake bedrock: toolResult in a %s turn", role)
				}
				var text string
				for _, c := range b.Get("toolResult.content").Array() {
					text += c.Get("text").Str
				}
				msg.Parts = append(msg.Parts, pt.Part{ToolResult: &pt.ToolResult{ID: b.Get("toolResult.toolUseId").Str, Content: text}})
			case b.Get("cachePoint").Exists():
			default:
				t.Errorf("fake bedrock: unexpected block %s", b.Raw)
			}
		}
		got.Messages = append(got.Messages, msg)
	}
	return got
}

func fakeStopReason(finish string) string {
	switch finish {
	case providers.FinishLength:
		return "max_tokens"
	case providers.FinishToolCalls:
		return "tool_use"
	case providers.FinishContentFilter:
		return "content_filtered"
	default:
		return "end_turn"
	}
}

// wireUsage is Converse usage: inputTokens excludes cache reads and writes.
func wireUsage(u providers.Usage) string {
	return fmt.Sprintf(`{"inputTokens":%d,"outputTokens":%d,"totalTokens":%d,"cacheReadInputTokens":%d,"cacheWriteInputTokens":%d}`,
		u.PromptTokens-u.CachedTokens-u.CacheWriteTokens, u.CompletionTokens, u.Total(), u.CachedTokens, u.CacheWriteTokens)
}

// exceptionOf is the exception Bedrock raises for each failure.
func exceptionOf(k pt.ErrorKind) (int, string) {
	switch k {
	case pt.RateLimited:
		return 429, "ThrottlingException"
	case pt.Overloaded:
		return 503, "ServiceUnavailableException"
	case pt.Unauthorized:
		return 403, "UnrecognizedClientException"
	default:
		return 400, "ValidationException"
	}
}

// encodeFrame writes one event-stream message with string headers.
func encodeFrame(headers [][2]string, payload []byte) []byte {
	var hb bytes.Buffer
	for _, h := range headers {
		hb.WriteByte(byte(len(h[0])))
		hb.WriteString(h[0])
		hb.WriteByte(7)
		_ = binary.Write(&hb, binary.BigEndian, uint16(len(h[1])))
		hb.WriteString(h[1])
	}
	total := 12 + hb.Len() + len(payload) + 4
	msg := make([]byte, 0, total)
	msg = binary.BigEndian.AppendUint32(msg, uint32(total))
	msg = binary.BigEndian.AppendUint32(msg, uint32(hb.Len()))
	msg = binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg[:8]))
	msg = append(msg, hb.Bytes()...)
	msg = append(msg, payload...)
	return binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
}

func eventFrame(typ, payload string) []byte {
	return encodeFrame([][2]string{{":event-type", typ}, {":content-type", "application/json"}, {":message-type", "event"}}, []byte(payload))
}

func exceptionFrame(typ, message string) []byte {
	return encodeFrame([][2]string{{":exception-type", typ}, {":content-type", "application/json"}, {":message-type", "exception"}},
		[]byte(fmt.Sprintf(`{"message":%q}`, message)))
}

func writeReply(w http.ResponseWriter, r *http.Request, f *pt.Fake, stream bool) {
	rep := f.Reply()
	w.Header().Set("X-Amzn-Requestid", "4d8a5e0c-2f7b-4c3e-9a51-7e1b6f0d2c11")
	switch {
	case rep.Hang:
		f.Hold(r)
		return
	case rep.Err != nil:
		status, typ := exceptionOf(rep.Err.Kind)
		w.Header().Set("X-Amzn-Errortype", typ+":http://internal.amazon.com/coral/com.amazon.bedrock/")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"message":%q}`, rep.Err.Message)
		return
	case !stream:
		var content []string
		if rep.Text != "" {
			content = append(content, fmt.Sprintf(`{"text":%q}`, rep.Text))
		}
		for _, tc := range rep.ToolCalls {
			content = append(content, fmt.Sprintf(`{"toolUse":{"toolUseId":%q,"name":%q,"input":%s}}`, tc.ID, tc.Name, tc.Args))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"output":{"message":{"role":"assistant","content":[%s]}},"stopReason":%q,"usage":%s,"metrics":{"latencyMs":412}}`,
			strings.Join(content, ","), fakeStopReason(rep.Finish), wireUsage(rep.Usage))
		return
	}
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	fl := w.(http.Flusher)
	pad := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
	n := 0
	send := func(frame []byte) {
		_, _ = w.Write(frame)
		fl.Flush()
	}
	event := func(typ, payload string) {
		n++
		// Bedrock pads each event with a "p" field of varying length.
		send(eventFrame(typ, strings.TrimSuffix(payload, "}")+fmt.Sprintf(`,"p":%q}`, pad[:n%len(pad)])))
	}
	event("messageStart", `{"role":"assistant"}`)
	index := 0
	if rep.Text != "" {
		for i, piece := range pt.Pieces(rep.Text, 5) {
			event("contentBlockDelta", fmt.Sprintf(`{"contentBlockIndex":%d,"delta":{"text":%q}}`, index, piece))
			if i == 0 && rep.StreamErr != nil {
				_, typ := exceptionOf(rep.StreamErr.Kind)
				send(exceptionFrame(strings.ToLower(typ[:1])+typ[1:], rep.StreamErr.Message))
				return
			}
			if i == 0 && rep.Truncate {
				frame := eventFrame("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"cut"}}`)
				send(frame[:len(frame)/2]) // the connection dies inside a message
				return
			}
		}
		event("contentBlockStop", fmt.Sprintf(`{"contentBlockIndex":%d}`, index))
		index++
	}
	for _, tc := range rep.ToolCalls {
		event("contentBlockStart", fmt.Sprintf(`{"contentBlockIndex":%d,"start":{"toolUse":{"toolUseId":%q,"name":%q}}}`, index, tc.ID, tc.Name))
		for _, piece := range pt.Pieces(tc.Args, 6) {
			event("contentBlockDelta", fmt.Sprintf(`{"contentBlockIndex":%d,"delta":{"toolUse":{"input":%q}}}`, index, piece))
		}
		event("contentBlockStop", fmt.Sprintf(`{"contentBlockIndex":%d}`, index))
		index++
	}
	event("messageStop", fmt.Sprintf(`{"stopReason":%q}`, fakeStopReason(rep.Finish)))
	event("metadata", fmt.Sprintf(`{"usage":%s,"metrics":{"latencyMs":388}}`, wireUsage(rep.Usage)))
}
