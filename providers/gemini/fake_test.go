package gemini

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
const fakeKey = "AIza-test-key"

// fakeUpstream is the wire half of a fake Gemini API: it reads requests as
// https://ai.google.dev/api/generate-content documents them and answers in
// the documented GenerateContentResponse, SSE and google.rpc.Status error
// formats. It shares no code with the translator.
func fakeUpstream(t *testing.T, f *pt.Fake) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		model, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1beta/models/"), ":")
		stream := method == "streamGenerateContent"
		if r.Method != http.MethodPost || !ok || !strings.HasPrefix(r.URL.Path, "/v1beta/models/") ||
			(method != "generateContent" && !stream) || (stream && r.URL.Query().Get("alt") != "sse") {
			t.Errorf("fake gemini: %s %s", r.Method, r.URL)
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("X-Goog-Api-Key") != fakeKey || r.Header.Get("Content-Type") != "application/json" || r.URL.Query().Has("key") {
			t.Errorf("fake gemini: headers x-goog-api-key=%q content-type=%q", r.Header.Get("X-Goog-Api-Key"), r.Header.Get("Content-Type"))
		}
		body, _ := io.ReadAll(r.Body)
		if !gjson.ValidBytes(body) {
			t.Errorf("fake gemini: body is not JSON: %s", body)
		}
		got := parseRequest(t, body)
		got.Path, got.Header, got.Model, got.Stream = r.URL.Path, r.Header.Clone(), model, stream
		f.Record(got)
		writeReply(w, r, f, stream)
	})
}

func parseRequest(t *testing.T, body []byte) pt.Received {
	req := gjson.ParseBytes(body)
	var got pt.Received
	var sys []string
	for _, p := range req.Get("systemInstruction.parts").Array() {
		sys = append(sys, p.Get("text").Str)
	}
	got.System = strings.Join(sys, "\n\n")
	gc := req.Get("generationConfig")
	got.MaxTokens = int(gc.Get("maxOutputTokens").Int())
	if v := gc.Get("temperature"); v.Exists() {
		f := v.Float()
		got.Temperature = &f
	}
	if v := gc.Get("topP"); v.Exists() {
		f := v.Float()
		got.TopP = &f
	}
	for _, s := range gc.Get("stopSequences").Array() {
		got.Stop = append(got.Stop, s.Str)
	}
	for _, tl := range req.Get("tools").Array() {
		for _, fd := range tl.Get("functionDeclarations").Array() {
			got.Tools = append(got.Tools, pt.Tool{Name: fd.Get("name").Str, Description: fd.Get("description").Str, Schema: []byte(fd.Get("parametersJsonSchema").Raw)})
		}
	}
	fc := req.Get("toolConfig.functionCallingConfig")
	switch fc.Get("mode").Str {
	case "AUTO":
		got.ToolChoice = "auto"
	case "NONE":
		got.ToolChoice = "none"
	case "ANY":
		got.ToolChoice = "required"
		if names := fc.Get("allowedFunctionNames").Array(); len(names) == 1 {
			got.ToolChoice = "function:" + names[0].Str
		}
	}
	prev := ""
	for i, c := range req.Get("contents").Array() {
		role := c.Get("role").Str
		if role != "user" && role != "model" {
			t.Errorf("fake gemini: contents[%d] role %q", i, role)
		}
		if role == prev {
			t.Errorf("fake gemini: contents[%d] repeats role %q", i, role)
		}
		prev = role
		msg := pt.Msg{Role: map[string]string{"user": "user", "model": "assistant"}[role]}
		if len(c.Get("parts").Array()) == 0 {
			t.Errorf("fake gemini: contents[%d] has no parts", i)
		}
		for _, p := range c.Get("parts").Array() {
			switch {
			case p.Get("text").Exists():
				if p.Get("text").Str == "" {
					t.Errorf("fake gemini: empty text part")
				}
				msg.Parts = append(msg.Parts, pt.Part{Text: p.Get("text").Str})
			case p.Get("inlineData").Exists():
				data, err := base64.StdEncoding.DecodeString(p.Get("inlineData.data").Str)
				if err != nil {
					t.Errorf("fake gemini: inlineData: %v", err)
				}
				msg.Parts = append(msg.Parts, pt.Part{Image: &pt.Image{MediaType: p.Get("inlineData.mimeType").Str, Data: data}})
			case p.Get("functionCall").Exists():
				if role != "model" || !p.Get("functionCall.args").IsObject() {
					t.Errorf("fake gemini: functionCall %s in a %s turn", p.Raw, role)
				}
				msg.Parts = append(msg.Parts, pt.Part{ToolCall: &pt.ToolCall{ID: p.Get("functionCall.id").Str, Name: p.Get("functionCall.name").Str, Args: p.Get("functionCall.args").Raw}})
			case p.Get("functionResponse").Exists():
				resp := p.Get("functionResponse.response")
				if role != "user" || !resp.IsObject() {
					t.Errorf("fake gemini: functionResponse %s in a %s turn", p.Raw, role)
				}
				content := resp.Raw
				if out := resp.Get("output"); out.Type == gjson.String && len(resp.Map()) == 1 {
					content = out.Str
				}
				msg.Parts = append(msg.Parts, pt.Part{ToolResult: &pt.ToolResult{ID: p.Get("functionResponse.id").Str, Name: p.Get("functionResponse.name").Str, Content: content}})
			default:
				t.Errorf("fake gemini: unexpected part %s", p.Raw)
			}
		}
		got.Messages = append(got.Messages, msg)
	}
	return got
}

func fakeFinishReason(finish string) string {
	switch finish {
	case providers.FinishLength:
		return "MAX_TOKENS"
	case providers.FinishContentFilter:
		return "SAFETY"
	default: // Gemini says STOP after function calls too
		return "STOP"
	}
}

// wireUsage is usageMetadata: promptTokenCount includes the cached tokens.
func wireUsage(u providers.Usage) string {
	s := fmt.Sprintf(`{"promptTokenCount":%d,"candidatesTokenCount":%d,"totalTokenCount":%d`, u.PromptTokens, u.CompletionTokens, u.Total())
	if u.CachedTokens > 0 {
		s += fmt.Sprintf(`,"cachedContentTokenCount":%d`, u.CachedTokens)
	}
	return s + `,"promptTokensDetails":[{"modality":"TEXT","tokenCount":` + strconv.Itoa(u.PromptTokens) + `}]}`
}

// errorJSON is the google.rpc.Status body Google sends for each failure.
func errorJSON(er *pt.ErrorReply) (int, string) {
	switch er.Kind {
	case pt.RateLimited:
		details := `{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]}`
		if er.RetryAfter > 0 {
			details += fmt.Sprintf(`,{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"%ds"}`, int(er.RetryAfter.Seconds()))
		}
		return 429, fmt.Sprintf(`{"error":{"code":429,"message":%q,"status":"RESOURCE_EXHAUSTED","details":[%s]}}`, er.Message, details)
	case pt.Overloaded:
		return 503, fmt.Sprintf(`{"error":{"code":503,"message":%q,"status":"UNAVAILABLE"}}`, er.Message)
	case pt.Unauthorized:
		return 400, fmt.Sprintf(`{"error":{"code":400,"message":%q,"status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]}}`, er.Message)
	default:
		return 400, fmt.Sprintf(`{"error":{"code":400,"message":%q,"status":"INVALID_ARGUMENT"}}`, er.Message)
	}
}

// fakeCall is a functionCall part; it names the call, as Gemini 3 does,
// when the reply gives an id.
func fakeCall(tc pt.ToolCall) string {
	if tc.ID == "" {
		return fmt.Sprintf(`{"functionCall":{"name":%q,"args":%s}}`, tc.Name, tc.Args)
	}
	return fmt.Sprintf(`{"functionCall":{"id":%q,"name":%q,"args":%s}}`, tc.ID, tc.Name, tc.Args)
}

func writeReply(w http.ResponseWriter, r *http.Request, f *pt.Fake, stream bool) {
	rep := f.Reply()
	const tail = `"modelVersion":"gemini-2.5-flash","responseId":"Xh2Qab3fKpWcz7IPs9KY8Ak"`
	switch {
	case rep.Hang:
		f.Hold(r)
		return
	case rep.Err != nil:
		status, body := errorJSON(rep.Err)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		return
	case !stream:
		var parts []string
		if rep.Text != "" {
			parts = append(parts, fmt.Sprintf(`{"text":%q}`, rep.Text))
		}
		for _, tc := range rep.ToolCalls {
			parts = append(parts, fakeCall(tc))
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		fmt.Fprintf(w, `{"candidates":[{"content":{"parts":[%s],"role":"model"},"finishReason":%q,"index":0}],"usageMetadata":%s,%s}`,
			strings.Join(parts, ","), fakeFinishReason(rep.Finish), wireUsage(rep.Usage), tail)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	send := func(data string) {
		fmt.Fprintf(w, "data: %s\r\n\r\n", data) // Google ends SSE lines with CRLF
		fl.Flush()
	}
	partial := fmt.Sprintf(`{"promptTokenCount":%d,"totalTokenCount":%d}`, rep.Usage.PromptTokens, rep.Usage.PromptTokens)
	pieces := pt.Pieces(rep.Text, 5)
	if rep.Text == "" {
		pieces = nil
	}
	for i, piece := range pieces {
		last := i == len(pieces)-1 && len(rep.ToolCalls) == 0
		if last {
			break
		}
		send(fmt.Sprintf(`{"candidates":[{"content":{"parts":[{"text":%q}],"role":"model"},"index":0}],"usageMetadata":%s,%s}`, piece, partial, tail))
		if i == 0 && rep.StreamErr != nil {
			_, body := errorJSON(rep.StreamErr)
			send(body)
			return
		}
		if i == 0 && rep.Truncate {
			return
		}
	}
	var parts []string
	if len(pieces) > 0 && len(rep.ToolCalls) == 0 {
		parts = append(parts, fmt.Sprintf(`{"text":%q}`, pieces[len(pieces)-1]))
	}
	for _, tc := range rep.ToolCalls {
		parts = append(parts, fakeCall(tc))
	}
	send(fmt.Sprintf(`{"candidates":[{"content":{"parts":[%s],"role":"model"},"finishReason":%q,"index":0}],"usageMetadata":%s,%s}`,
		strings.Join(parts, ","), fakeFinishReason(rep.Finish), wireUsage(rep.Usage), tail))
}
