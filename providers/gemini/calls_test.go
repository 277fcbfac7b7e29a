package gemini

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// callsUpstream is a fake Gemini API for a two-turn tool conversation: a
// request without functionResponse parts gets answer (as an SSE event when
// streamed), the next one, sent to bodies, a plain text answer.
func callsUpstream(t *testing.T, answer string, bodies chan<- []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if gjson.GetBytes(body, "contents.#.parts.#.functionResponse|@flatten.#").Int() == 0 {
			if strings.HasSuffix(r.URL.Path, ":streamGenerateContent") {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprintf(w, "data: %s\r\n\r\n", answer)
				return
			}
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			io.WriteString(w, answer)
			return
		}
		bodies <- body
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		io.WriteString(w, `{"candidates":[{"content":{"role":"model","parts":[{"text":"Warmer in Paris."}]},"finishReason":"STOP","index":0}],`+
			`"usageMetadata":{"promptTokenCount":60,"candidatesTokenCount":4,"totalTokenCount":64},"modelVersion":"gemini-3-pro-preview","responseId":"r2"}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// toolCalls asks for the first turn and returns the tool calls the client
// gets, as JSON objects in OpenAI's form.
func toolCalls(t *testing.T, c *Client, stream bool) []string {
	t.Helper()
	req := &providers.Request{Op: providers.OpChat, Model: "gemini-3-pro-preview", Stream: stream,
		Body: []byte(`{"messages":[{"role":"user","content":"Weather in Paris and Tokyo?"}],"tools":[{"type":"function","function":{"name":"get_weather"}}]}`)}
	if !stream {
		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		var calls []string
		for _, tc := range gjson.GetBytes(resp.Body, "choices.0.message.tool_calls").Array() {
			calls = append(calls, tc.Raw)
		}
		return calls
	}
	st, err := c.DoStream(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var calls []string
	for {
		data, err := st.Recv()
		if err == io.EOF {
			return calls
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range gjson.GetBytes(data, "choices.0.delta.tool_calls").Array() {
			// Gemini sends each call whole: one chunk per call.
			calls = append(calls, fmt.Sprintf(`{"id":%q,"type":"function","function":{"name":%q,"arguments":%q}}`,
				tc.Get("id").Str, tc.Get("function.name").Str, tc.Get("function.arguments").Str))
		}
	}
}

// TestFunctionCallIDs: Gemini 3 names every functionCall and wants the
// name back on the functionResponse that answers it (and on the call when
// it is replayed as history), next to the thoughtSignature of the first
// call of a parallel set. A call Gemini did not name gets an id Lumen
// makes up, which Gemini never sees.
func TestFunctionCallIDs(t *testing.T) {
	const sig = "CiQB0e2Kb8Xk3a7/Yw=="
	answer := func(id1, id2 string) string {
		return `{"candidates":[{"content":{"role":"model","parts":[` +
			`{"functionCall":{` + id1 + `"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"` + sig + `"},` +
			`{"functionCall":{` + id2 + `"name":"get_weather","args":{"city":"Tokyo"}}}]},"finishReason":"STOP","index":0}],` +
			`"usageMetadata":{"promptTokenCount":40,"candidatesTokenCount":20,"totalTokenCount":60},"modelVersion":"gemini-3-pro-preview","responseId":"r1"}`
	}
	named, unnamed := answer(`"id":"8f2kq1vz",`, `"id":"p0c3xj7d",`), answer("", "")
	for _, tt := range []struct {
		name    string
		answer  string
		stream  bool
		ids     [2]string // sent back to Gemini; "" for none
		clients [2]string // the tool-call ids the client got
	}{
		{"named", named, false, [2]string{"8f2kq1vz", "p0c3xj7d"}, [2]string{"8f2kq1vz__thought__" + sig, "p0c3xj7d"}},
		{"named streamed", named, true, [2]string{"8f2kq1vz", "p0c3xj7d"}, [2]string{"8f2kq1vz__thought__" + sig, "p0c3xj7d"}},
		{"unnamed", unnamed, false, [2]string{}, [2]string{"call_000000000000000000000001__thought__" + sig, "call_000000000000000000000002"}},
		{"unnamed streamed", unnamed, true, [2]string{}, [2]string{"call_000000000000000000000001__thought__" + sig, "call_000000000000000000000002"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bodies := make(chan []byte, 1)
			c := newTestClient(t, callsUpstream(t, tt.answer, bodies).URL)
			calls := toolCalls(t, c, tt.stream)
			if len(calls) != 2 {
				t.Fatalf("tool calls = %v, want 2", calls)
			}
			for i, call := range calls {
				if got := gjson.Get(call, "id").Str; got != tt.clients[i] {
					t.Errorf("tool call %d id = %q, want %q", i, got, tt.clients[i])
				}
			}
			second := `{"messages":[{"role":"user","content":"Weather in Paris and Tokyo?"},
				{"role":"assistant","content":null,"tool_calls":[` + strings.Join(calls, ",") + `]},
				{"role":"tool","tool_call_id":` + gjson.Get(calls[0], "id").Raw + `,"content":"18C, sunny"},
				{"role":"tool","tool_call_id":` + gjson.Get(calls[1], "id").Raw + `,"content":"22C, rain"}],
				"tools":[{"type":"function","function":{"name":"get_weather"}}]}`
			if _, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gemini-3-pro-preview", Body: []byte(second)}); err != nil {
				t.Fatal(err)
			}
			body := <-bodies
			model, user := gjson.GetBytes(body, "contents.1"), gjson.GetBytes(body, "contents.2")
			if model.Get("role").Str != "model" || user.Get("role").Str != "user" {
				t.Fatalf("contents = %s", body)
			}
			for i, want := range tt.ids {
				call, resp := model.Get(fmt.Sprintf("parts.%d.functionCall", i)), user.Get(fmt.Sprintf("parts.%d.functionResponse", i))
				if got := call.Get("id"); got.Str != want || got.Exists() != (want != "") {
					t.Errorf("functionCall %d id = %s, want %q", i, got.Raw, want)
				}
				if got := resp.Get("id"); got.Str != want || got.Exists() != (want != "") {
					t.Errorf("functionResponse %d id = %s, want %q", i, got.Raw, want)
				}
			}
			if got := model.Get("parts.0.thoughtSignature").Str; got != sig {
				t.Errorf("first call's thoughtSignature = %q, want %q", got, sig)
			}
			if model.Get("parts.1.thoughtSignature").Exists() {
				t.Errorf("the second call got a signature Gemini never gave it: %s", model.Raw)
			}
		})
	}
}

// TestMissingThoughtSignature: Gemini 3 refuses, 400 INVALID_ARGUMENT, a
// model turn whose first functionCall has no thoughtSignature. Calls that
// come without one (made by another provider before a fallback, or by a
// client that dropped the "__thought__" suffix) get the value Google
// documents for them; a real signature, and the unsigned calls after it
// in a parallel set, go as they are; Gemini 2.5, which checks nothing,
// gets none.
func TestMissingThoughtSignature(t *testing.T) {
	bodies := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		if strings.HasPrefix(r.URL.Path, "/v1beta/models/gemini-3") {
			for i, c := range gjson.GetBytes(body, "contents").Array() {
				calls := c.Get("parts.#(functionCall)#").Array()
				if len(calls) > 0 && !calls[0].Get("thoughtSignature").Exists() {
					w.WriteHeader(http.StatusBadRequest)
					fmt.Fprintf(w, `{"error":{"code":400,"message":"Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `+"`%s`"+` , position %d.","status":"INVALID_ARGUMENT"}}`,
						calls[0].Get("functionCall.name").Str, i+1)
					return
				}
			}
		}
		bodies <- body
		io.WriteString(w, `{"candidates":[{"content":{"role":"model","parts":[{"text":"Warmer in Paris."}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":60,"candidatesTokenCount":4,"totalTokenCount":64}}`)
	}))
	defer srv.Close()
	const sig = "CiQB0e2Kb8Xk3a7/Yw=="
	for _, tt := range []struct {
		name, model string
		ids         [2]string
		want        [2]string // the calls' thoughtSignature; "" for none
	}{
		{"gemini 3, calls from elsewhere", "gemini-3-pro-preview", [2]string{"toolu_01A", "toolu_01B"}, [2]string{skipSignature, skipSignature}},
		{"gemini 3, parallel calls it signed", "gemini-3-flash-preview", [2]string{"8f2kq1vz__thought__" + sig, "p0c3xj7d"}, [2]string{sig, ""}},
		{"gemini 2.5", "gemini-2.5-pro", [2]string{"toolu_01A", "toolu_01B"}, [2]string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, srv.URL)
			body := `{"messages":[{"role":"user","content":"Weather in Paris and Tokyo?"},
				{"role":"assistant","content":null,"tool_calls":[
					{"id":"` + tt.ids[0] + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
					{"id":"` + tt.ids[1] + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}}]},
				{"role":"tool","tool_call_id":"` + tt.ids[0] + `","content":"18C, sunny"},
				{"role":"tool","tool_call_id":"` + tt.ids[1] + `","content":"22C, rain"}],
				"tools":[{"type":"function","function":{"name":"get_weather"}}]}`
			if _, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: tt.model, Body: []byte(body)}); err != nil {
				t.Fatal(err)
			}
			parts := gjson.GetBytes(<-bodies, "contents.1.parts")
			for i, want := range tt.want {
				if got := parts.Get(fmt.Sprintf("%d.thoughtSignature", i)); got.Str != want || got.Exists() != (want != "") {
					t.Errorf("call %d thoughtSignature = %s, want %q", i, got.Raw, want)
				}
			}
		})
	}
}

// TestFinishReasons maps every FinishReason of the API reference
// (ai.google.dev/api/generate-content#FinishReason) onto OpenAI's, in an
// answer and in a stream: a candidate stopped by a filter, text or image
// (the image models answer chat too), is content_filter.
func TestFinishReasons(t *testing.T) {
	want := map[string]string{
		"STOP": "stop", "FINISH_REASON_UNSPECIFIED": "stop", "MAX_TOKENS": "length",
		"SAFETY": "content_filter", "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
		"PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter", "IMAGE_SAFETY": "content_filter",
		"IMAGE_PROHIBITED_CONTENT": "content_filter", "IMAGE_RECITATION": "content_filter",
		"LANGUAGE": "stop", "OTHER": "stop", "MALFORMED_FUNCTION_CALL": "stop", "IMAGE_OTHER": "stop", "NO_IMAGE": "stop",
	}
	// The fake answers with the finishReason the prompt names.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reason := gjson.GetBytes(body, "contents.0.parts.0.text").Str
		answer := `{"candidates":[{"content":{"role":"model","parts":[{"text":"A picture of"}]},"finishReason":"` + reason + `","index":0}],` +
			`"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":3,"totalTokenCount":15},"modelVersion":"gemini-2.5-flash-image","responseId":"f1"}`
		if strings.HasSuffix(r.URL.Path, ":streamGenerateContent") {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: %s\r\n\r\n", answer)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		io.WriteString(w, answer)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	for r, finish := range want {
		req := &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-flash-image", Body: []byte(`{"messages":[{"role":"user","content":"` + r + `"}]}`)}
		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(resp.Body, "choices.0.finish_reason").Str; got != finish {
			t.Errorf("%s: finish_reason %q, want %q", r, got, finish)
		}
		req.Stream = true
		st, err := c.DoStream(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for {
			data, err := st.Recv()
			if err != nil {
				if err != io.EOF {
					t.Errorf("%s: stream: %v", r, err)
				}
				break
			}
			if f := gjson.GetBytes(data, "choices.0.finish_reason"); f.Type == gjson.String {
				got = f.Str
			}
		}
		st.Close()
		if got != finish {
			t.Errorf("%s: streamed finish_reason %q, want %q", r, got, finish)
		}
	}
}
