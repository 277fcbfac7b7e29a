package providers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecodeChatRequestRejects(t *testing.T) {
	tests := []struct {
		name, body, param, msg string
	}{
		{"not json", `{"messages":`, "", "not a valid chat completions request"},
		{"wrong type", `{"messages":"hi"}`, "messages", "expected []providers.Message"},
		{"no messages", `{"model":"m","messages":[]}`, "messages", "at least one message"},
		{"n > 1", `{"messages":[{"role":"user","content":"hi"}],"n":2}`, "n", "only n=1"},
		{"unknown role", `{"messages":[{"role":"function","content":"x"}]}`, "messages[0].role", `unsupported role "function"`},
		{"tool without id", `{"messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id", "needs the id"},
		{"unknown part", `{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"input_audio","input_audio":{}}]}]}`,
			"messages[0].content[1].type", `unsupported content part type "input_audio" (supported: text, image_url, file)`},
		{"image without url", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`,
			"messages[0].content[0].image_url.url", "needs a url"},
		{"image in assistant", `{"messages":[{"role":"assistant","content":[{"type":"image_url","image_url":"http://x/a.png"}]}]}`,
			"messages[0].content[0]", "only supported in user messages"},
		{"args not json", `{"messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{city: Paris}"}}]}]}`,
			"messages[0].tool_calls[0].function.arguments", `tool call "c1" are not valid JSON`},
		{"args not object", `{"messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`,
			"messages[0].tool_calls[0].function.arguments", `tool call "c1" must be a JSON object`},
		{"call without name", `{"messages":[{"role":"assistant","tool_calls":[{"id":"c1","function":{"arguments":"{}"}}]}]}`,
			"messages[0].tool_calls[0].function.name", "needs a function name"},
		{"tool type", `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","function":{"name":"f"}}]}`,
			"tools[0].type", `unsupported tool type "custom"`},
		{"tool_choice mode", `{"messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}`, "tool_choice", `unsupported tool_choice "sometimes"`},
		{"tool_choice object type", `{"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"allowed_tools"}}`, "", `tool_choice type "allowed_tools" is not supported`},
		{"schema missing", `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a"}}}`,
			"response_format.json_schema.schema", "needs a schema"},
		{"format type", `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}`, "response_format.type", `unsupported response format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeChatRequest([]byte(tt.body))
			var ie *InvalidRequestError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v (%T), want *InvalidRequestError", err, err)
			}
			if ie.Param != tt.param || !strings.Contains(ie.Message, tt.msg) {
				t.Fatalf("got param %q message %q, want param %q message containing %q", ie.Param, ie.Message, tt.param, tt.msg)
			}
		})
	}
}

func TestDecodeChatRequestShapes(t *testing.T) {
	body := `{"model":"m","messages":[
		{"role":"system","content":"be brief"},
		{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":"https://x/cat.png"}]},
		{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":""}}]},
		{"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"ok"}]}],
		"stop":"END","tool_choice":{"type":"function","function":{"name":"f"}},"max_tokens":10,"max_completion_tokens":20}`
	req, err := DecodeChatRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Messages[1].Content.Parts[1].ImageURL.URL; got != "https://x/cat.png" {
		t.Errorf("bare image_url string: got %q", got)
	}
	if !req.Messages[2].Content.IsZero() || req.Messages[2].Content.Parts != nil {
		t.Errorf("null content: got %+v", req.Messages[2].Content)
	}
	if got := string(req.Messages[2].ToolCalls[0].Function.ArgumentsJSON()); got != "{}" {
		t.Errorf("empty arguments: got %q, want {}", got)
	}
	if got := req.Messages[3].Content.String(); got != "ok" {
		t.Errorf("text of parts: got %q", got)
	}
	if len(req.Stop) != 1 || req.Stop[0] != "END" {
		t.Errorf("stop string: got %q", req.Stop)
	}
	if req.ToolChoice.Mode != ToolChoiceFunction || req.ToolChoice.Name != "f" {
		t.Errorf("tool_choice: got %+v", req.ToolChoice)
	}
	if req.OutputLimit() != 20 {
		t.Errorf("OutputLimit prefers max_completion_tokens: got %d", req.OutputLimit())
	}
	out, err := MarshalJSON(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","messages":[{"role":"system","content":"be brief"},` +
		`{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/cat.png"}}]},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":""}}]},` +
		`{"role":"tool","content":[{"type":"text","text":"ok"}],"tool_call_id":"c1"}],` +
		`"max_tokens":10,"max_completion_tokens":20,"stop":["END"],"tool_choice":{"function":{"name":"f"},"type":"function"}}`
	if string(out) != want {
		t.Errorf("re-marshaled:\n got %s\nwant %s", out, want)
	}
}

func TestParseDataURL(t *testing.T) {
	tests := []struct {
		in, mt, data string
		ok           bool
	}{
		{"data:image/png;base64,iVBO", "image/png", "iVBO", true},
		{"data:IMAGE/JPEG;BASE64,/9j/", "image/jpeg", "/9j/", true},
		{"data:text/plain,hello", "", "", false},
		{"https://x/a.png", "", "", false},
		{"data:image/png;base64", "", "", false},
	}
	for _, tt := range tests {
		mt, data, ok := ParseDataURL(tt.in)
		if mt != tt.mt || data != tt.data || ok != tt.ok {
			t.Errorf("ParseDataURL(%q) = %q, %q, %v; want %q, %q, %v", tt.in, mt, data, ok, tt.mt, tt.data, tt.ok)
		}
	}
}

var png1x1 = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")

func TestImageFetcher(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cat.png":
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(png1x1)
		case "/sniff":
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(png1x1)
		case "/page":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html></html>"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	loopback := &ImageFetcher{Client: srv.Client(), MaxBytes: 1 << 10}
	tests := []struct {
		name    string
		f       *ImageFetcher
		url     string
		wantMT  string
		wantErr string
	}{
		{"png", loopback, srv.URL + "/cat.png", "image/png", ""},
		{"sniffed", loopback, srv.URL + "/sniff", "image/png", ""},
		{"data url", loopback, "data:image/gif;base64,R0lG", "image/gif", ""},
		{"data url not image", loopback, "data:application/pdf;base64,JVBE", "", `holds "application/pdf", not an image`},
		{"not found", loopback, srv.URL + "/nope", "", "404 Not Found"},
		{"html", loopback, srv.URL + "/page", "", `"text/html", not an image`},
		{"too large", &ImageFetcher{Client: srv.Client(), MaxBytes: 8}, srv.URL + "/cat.png", "", "larger than 8 bytes"},
		{"over the total", &ImageFetcher{Client: srv.Client(), MaxTotalBytes: 8}, srv.URL + "/cat.png", "", "come to more than 8 bytes"},
		{"scheme", loopback, "ftp://x/a.png", "", "must be http(s)"},
		{"default refuses loopback", &ImageFetcher{}, srv.URL + "/cat.png", "", "not a public address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := tt.f.Load(context.Background(), "messages[0].content[0].image_url.url", tt.url)
			if tt.wantErr != "" {
				var ie *InvalidRequestError
				if !errors.As(err, &ie) || !strings.Contains(ie.Message, tt.wantErr) || ie.Param != "messages[0].content[0].image_url.url" {
					t.Fatalf("err = %v, want InvalidRequestError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.MediaType != tt.wantMT || img.Base64 == "" {
				t.Fatalf("got %q %q", img.MediaType, img.Base64)
			}
		})
	}
}

func TestChunkBuilder(t *testing.T) {
	b := &ChunkBuilder{ID: "chatcmpl-1", Model: "m", Created: 7}
	tests := []struct {
		got  []byte
		want string
	}{
		{b.Role(), `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`},
		{b.Content("a<b"), `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"a<b"},"finish_reason":null}]}`},
		{b.ToolCallStart(1, "c1", "f", ""), `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}`},
		{b.ToolCallArgs(1, `{"a":`), `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"a\":"}}]},"finish_reason":null}]}`},
		{b.Finish(FinishToolCalls), `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`},
		{b.Usage(Usage{PromptTokens: 10, CompletionTokens: 2, CachedTokens: 4, CacheWriteTokens: 3}),
			`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4},"cache_creation_input_tokens":3}}`},
	}
	for i, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("chunk %d:\n got %s\nwant %s", i, tt.got, tt.want)
		}
	}
	var u struct {
		Usage *ChatUsage `json:"usage"`
	}
	if err := json.Unmarshal(tests[5].got, &u); err != nil {
		t.Fatal(err)
	}
	if n := u.Usage.Normalized(); n != (Usage{PromptTokens: 10, CompletionTokens: 2, CachedTokens: 4, CacheWriteTokens: 3}) {
		t.Errorf("Normalized round trip: %+v", n)
	}
}

func TestInjectCacheControl(t *testing.T) {
	decode := func(body string) *ChatRequest {
		req, err := DecodeChatRequest([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	marks := func(req *ChatRequest) string {
		var b strings.Builder
		for _, m := range req.Messages {
			if len(m.CacheControl) > 0 {
				b.WriteString("*")
			} else {
				b.WriteString(".")
			}
		}
		return b.String()
	}
	last := -1
	points := []CachePoint{{Role: "system"}, {Index: &last}}
	req := decode(`{"messages":[{"role":"developer","content":"rules"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}`)
	InjectCacheControl(req, points)
	if got := marks(req); got != "*..*" || string(req.Messages[0].CacheControl) != `{"type":"ephemeral"}` {
		t.Errorf("system and last: %s %s", got, req.Messages[0].CacheControl)
	}
	// A request with marks of its own is left as it is.
	req = decode(`{"messages":[{"role":"system","content":"rules"},{"role":"user","content":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}}]},{"role":"user","content":"c"}]}`)
	InjectCacheControl(req, points)
	if got := marks(req); got != "..." {
		t.Errorf("own marks: %s", got)
	}
	// At most four: the first selected and the last three.
	req = decode(`{"messages":[{"role":"user","content":"1"},{"role":"assistant","content":"x"},{"role":"user","content":"2"},{"role":"assistant","content":"x"},
		{"role":"user","content":"3"},{"role":"assistant","content":"x"},{"role":"user","content":"4"},{"role":"assistant","content":"x"},{"role":"user","content":"5"}]}`)
	InjectCacheControl(req, []CachePoint{{Role: "user"}})
	if got := marks(req); got != "*...*.*.*" {
		t.Errorf("five user messages: %s", got)
	}
	out := -20
	req = decode(`{"messages":[{"role":"user","content":"1"}]}`)
	InjectCacheControl(req, []CachePoint{{Index: &out}})
	if got := marks(req); got != "." {
		t.Errorf("index out of range: %s", got)
	}
}

// A long end-user id goes upstream as its SHA-256 hex digest, the same
// every time.
func TestUpstreamUser(t *testing.T) {
	tests := []struct{ name, id, want string }{
		{"empty", "", ""},
		{"short", "u-42", "u-42"},
		{"64 bytes", strings.Repeat("x", 64), strings.Repeat("x", 64)},
		{"65 bytes", strings.Repeat("x", 65), "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := UpstreamUser(tt.id); got != tt.want {
				t.Errorf("UpstreamUser(%q) = %q, want %q", tt.id, got, tt.want)
			}
		})
	}
}
