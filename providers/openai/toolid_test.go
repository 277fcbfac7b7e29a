package openai

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

func TestToolID(t *testing.T) {
	for _, id := range []string{"call_abc123XYZ", "toolu_01A09q90qw90lq917835lq9", "a", "", "abc/def+ghi==", strings.Repeat("a", 40), strings.Repeat("é", 40)} {
		if got := ToolID(id, MaxChatToolID); got != id {
			t.Errorf("ToolID(%q, 40) = %q, want it unchanged", id, got)
		}
	}
	if id := strings.Repeat("x", 64); ToolID(id, MaxResponsesCallID) != id {
		t.Errorf("ToolID(64 characters, 64) changed the id")
	}
	for _, id := range []string{strings.Repeat("a", 41), strings.Repeat("é", 41), "toolu_lumen_" + strings.Repeat("0", 40), geminiStyleID(300)} {
		for _, max := range []int{MaxChatToolID, MaxResponsesCallID} {
			if max == MaxResponsesCallID && utf8.RuneCountInString(id) <= max {
				continue
			}
			got := ToolID(id, max)
			if len(got) != 40 || !strings.HasPrefix(got, "call_") || strings.Trim(got[len("call_"):], "0123456789abcdef") != "" {
				t.Errorf("ToolID(%q, %d) = %q, want call_ and 35 hex digits", id, max, got)
			}
			if again := ToolID(id, max); again != got {
				t.Errorf("ToolID(%q, %d) = %q then %q, want the same", id, max, got, again)
			}
			if ToolID(got, max) != got {
				t.Errorf("ToolID(%q, %d) is not stable under a second mapping", got, max)
			}
		}
	}
	if a, b := ToolID(geminiStyleID(300), 40), ToolID(geminiStyleID(300)+"x", 40); a == b {
		t.Errorf("two ids mapped to one: %q", a)
	}
}

// geminiStyleID is a tool call id as Lumen hands one out for a Gemini
// call: an id, "__thought__" and the base64 thought signature (+, /, =),
// n characters in all.
func geminiStyleID(n int) string {
	id := "call_4f0c2a9e1b7d3c5a8e6f0b2d__thought__"
	sig := "CiQBcsjafhd8+/RsmA2dC0Vf3ZqGvLpQW2xN7sK9eT4uYhJ1oIw"
	for len(id) < n-2 {
		id += sig
	}
	return id[:n-2] + "=="
}

// chatUpstream is an OpenAI Chat Completions API as strict about tool
// call ids as api.openai.com and Azure OpenAI: an id longer than 40 is
// refused with the API's own 400, and so is a tool message that answers
// no earlier tool call.
type chatUpstream struct {
	bodies [][]byte
}

func (u *chatUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.bodies = append(u.bodies, body)
	w.Header().Set("Content-Type", "application/json")
	called := map[string]bool{}
	for i, m := range gjson.GetBytes(body, "messages").Array() {
		for j, tc := range m.Get("tool_calls").Array() {
			if id := tc.Get("id").Str; len(id) > MaxChatToolID {
				tooLong(w, fmt.Sprintf("messages[%d].tool_calls[%d].id", i, j), MaxChatToolID, len(id))
				return
			}
			called[tc.Get("id").Str] = true
		}
		if m.Get("role").Str != "tool" {
			continue
		}
		if id := m.Get("tool_call_id").Str; len(id) > MaxChatToolID {
			tooLong(w, fmt.Sprintf("messages[%d].tool_call_id", i), MaxChatToolID, len(id))
			return
		} else if !called[id] {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"message":"Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.","type":"invalid_request_error","param":"messages.[`+fmt.Sprint(i)+`].role","code":null}}`)
			return
		}
	}
	io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Paris 18C, Tokyo 22C, Oslo 3C."},"finish_reason":"stop"}],"usage":{"prompt_tokens":60,"completion_tokens":12,"total_tokens":72}}`)
}

// tooLong answers OpenAI's 400 for a string above its maximum length.
func tooLong(w http.ResponseWriter, param string, max, got int) {
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, `{"error":{"message":"Invalid '%s': string too long. Expected a string with maximum length %d, but got a string with length %d instead.","type":"invalid_request_error","param":"%s","code":"string_above_max_length"}}`,
		param, max, got, param)
}

// TestLongToolIDsFromOtherProviders: a conversation that reaches OpenAI
// or Azure holding tool call ids another provider made (a Gemini call's
// carries its thought signature; Lumen's mapped Anthropic ids are 52
// characters) is accepted, each call paired with its result, ids OpenAI
// takes unchanged; an ordinary body still reaches the upstream byte for
// byte.
func TestLongToolIDsFromOtherProviders(t *testing.T) {
	geminiID := geminiStyleID(300)
	tooluID := "toolu_lumen_" + strings.Repeat("3f9a", 10) // 52 characters
	shortToolu, openaiID := "toolu_01A09q90qw90lq917835lq9", "call_Ab3dE5fG7hI9"
	conversation := `{"model":"gpt-4o","messages":[
		{"role":"user","content":"Weather in Paris, Tokyo, Oslo and Rome?"},
		{"role":"assistant","content":null,"tool_calls":[
			{"id":"` + geminiID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			{"id":"` + tooluID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}}]},
		{"role":"tool","tool_call_id":"` + geminiID + `","content":"18C"},
		{"role":"tool","tool_call_id":"` + tooluID + `","content":"22C"},
		{"role":"assistant","content":null,"tool_calls":[
			{"id":"` + shortToolu + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}},
			{"id":"` + openaiID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
		{"role":"tool","tool_call_id":"` + shortToolu + `","content":"3C"},
		{"role":"tool","tool_call_id":"` + openaiID + `","content":"25C"}]}`
	// Short ids, odd spacing, escapes and a field Lumen does not know: the
	// fast path must leave every byte where it was.
	ordinary := "{\"model\":\"gpt-4o\",  \"messages\":[\n\t{\"role\":\"user\",\"content\":\"Caf\\u00e9 \\\"hours\\\"?\"},\n" +
		"\t{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"" + strings.Repeat("c", 40) + "\",\"type\":\"function\",\"function\":{\"name\":\"hours\",\"arguments\":\"{}\"}}]},\n" +
		"\t{\"role\":\"tool\",\"tool_call_id\":\"" + strings.Repeat("c", 40) + "\",\"content\":\"9-17\"}],\"x_custom\":{\"a\":[1,2.50]}}"

	for _, provider := range []string{"openai", "azure"} {
		t.Run(provider, func(t *testing.T) {
			up := &chatUpstream{}
			srv := httptest.NewServer(up)
			defer srv.Close()
			c, err := New(providers.Config{Provider: provider, Model: "gpt-4o", APIBase: srv.URL + "/v1", APIKey: "sk-x"})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gpt-4o", Body: []byte(conversation)})
			if err != nil {
				t.Fatalf("upstream refused the conversation: %v", err)
			}
			if gjson.GetBytes(resp.Body, "choices.0.message.content").Str == "" {
				t.Errorf("answer %s", resp.Body)
			}
			got := up.bodies[0]
			ms := gjson.GetBytes(got, "messages").Array()
			for _, p := range []struct{ msg, call, result int }{{1, 0, 2}, {1, 1, 3}, {4, 0, 5}, {4, 1, 6}} {
				call := ms[p.msg].Get(fmt.Sprintf("tool_calls.%d.id", p.call)).Str
				if result := ms[p.result].Get("tool_call_id").Str; call != result {
					t.Errorf("messages[%d] answers %q, but the call is %q", p.result, result, call)
				}
			}
			if id := ms[1].Get("tool_calls.0.id").Str; id != ToolID(geminiID, MaxChatToolID) {
				t.Errorf("the Gemini id became %q, want %q", id, ToolID(geminiID, MaxChatToolID))
			}
			if a, b := ms[1].Get("tool_calls.0.id").Str, ms[1].Get("tool_calls.1.id").Str; a == b {
				t.Errorf("two calls got one id %q", a)
			}
			if a, b := ms[4].Get("tool_calls.0.id").Str, ms[4].Get("tool_calls.1.id").Str; a != shortToolu || b != openaiID {
				t.Errorf("ids OpenAI accepts became %q and %q", a, b)
			}
			if gjson.GetBytes(got, "messages.1.tool_calls.0.function.arguments").Str != `{"city":"Paris"}` || len(ms) != 7 {
				t.Errorf("the rest of the body changed: %s", got)
			}

			if _, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gpt-4o", Body: []byte(ordinary)}); err != nil {
				t.Fatal(err)
			}
			if got := string(up.bodies[1]); got != ordinary {
				t.Errorf("an ordinary body reached the upstream changed:\n got %s\nwant %s", got, ordinary)
			}
		})
	}
}

// TestLongCallIDsResponses: a Responses client's own request, sent to a
// deployment that speaks the Responses API, has call_ids longer than the
// API's 64 mapped, each function_call paired with its output; ids of up
// to 64 (which may name calls the upstream stored) go unchanged.
func TestLongCallIDsResponses(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		for i, it := range gjson.GetBytes(got, "input").Array() {
			if id := it.Get("call_id").Str; len(id) > MaxResponsesCallID {
				tooLong(w, fmt.Sprintf("input[%d].call_id", i), MaxResponsesCallID, len(id))
				return
			}
		}
		io.WriteString(w, `{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":20,"output_tokens":5,"total_tokens":25}}`)
	}))
	defer srv.Close()
	on := true
	c, err := New(providers.Config{Provider: "openai", Model: "gpt-5", APIBase: srv.URL + "/v1", APIKey: "sk-x", ResponsesAPI: &on})
	if err != nil {
		t.Fatal(err)
	}
	geminiID, midID := geminiStyleID(300), "call_"+strings.Repeat("m", 50)
	body := `{"model":"alias","input":[
		{"role":"user","content":"Weather in Paris and Tokyo?"},
		{"type":"function_call","call_id":"` + geminiID + `","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
		{"type":"function_call","call_id":"` + midID + `","name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"},
		{"type":"function_call_output","call_id":"` + geminiID + `","output":"18C"},
		{"type":"function_call_output","call_id":"` + midID + `","output":"22C"}]}`
	if _, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gpt-5", Body: []byte(`{}`), Responses: []byte(body)}); err != nil {
		t.Fatalf("upstream refused the input: %v", err)
	}
	in := gjson.GetBytes(got, "input").Array()
	if a, b := in[1].Get("call_id").Str, in[3].Get("call_id").Str; a != b || a != ToolID(geminiID, MaxResponsesCallID) {
		t.Errorf("function_call %q, its output %q, want both %q", a, b, ToolID(geminiID, MaxResponsesCallID))
	}
	if a, b := in[2].Get("call_id").Str, in[4].Get("call_id").Str; a != midID || b != midID {
		t.Errorf("a 55-character call_id became %q and %q, want it unchanged", a, b)
	}
}

// TestMistralToolIDs: Mistral's API holds every tool call id to nine
// letters or digits; a conversation carrying OpenAI's, Anthropic's and
// Gemini's ids reaches a mistral deployment with each mapped, paired with
// its result, and Mistral's own ids unchanged.
func TestMistralToolIDs(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		for _, m := range gjson.GetBytes(got, "messages").Array() {
			ids := []string{m.Get("tool_call_id").Str}
			for _, tc := range m.Get("tool_calls").Array() {
				ids = append(ids, tc.Get("id").Str)
			}
			for _, id := range ids {
				if id != "" && MistralToolID(id) != id {
					w.WriteHeader(http.StatusBadRequest)
					fmt.Fprintf(w, `{"object":"error","message":"Tool call id was %s but must be a-z, A-Z, 0-9, with a length of 9.","type":"invalid_request_error","param":null,"code":null}`, id)
					return
				}
			}
		}
		io.WriteString(w, `{"id":"cmpl-1","object":"chat.completion","model":"mistral-large-latest","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`)
	}))
	defer srv.Close()
	c, err := New(providers.Config{Provider: "mistral", Model: "mistral-large-latest", APIBase: srv.URL + "/v1", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"call_Ab3dE5fG7hI9", "toolu_01A09q90qw90lq917835lq9", geminiStyleID(300), "D681PevKs"}
	body := `{"model":"m","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[`
	for i, id := range ids {
		if i > 0 {
			body += ","
		}
		body += `{"id":"` + id + `","type":"function","function":{"name":"w","arguments":"{}"}}`
	}
	body += `]}`
	for _, id := range ids {
		body += `,{"role":"tool","tool_call_id":"` + id + `","content":"x"}`
	}
	body += `]}`
	if _, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "mistral-large-latest", Body: []byte(body)}); err != nil {
		t.Fatalf("Mistral refused the conversation: %v", err)
	}
	ms := gjson.GetBytes(got, "messages").Array()
	seen := map[string]bool{}
	for i := range ids {
		call, result := ms[1].Get(fmt.Sprintf("tool_calls.%d.id", i)).Str, ms[2+i].Get("tool_call_id").Str
		if call != result {
			t.Errorf("call %d is %q but its result answers %q", i, call, result)
		}
		if seen[call] {
			t.Errorf("two calls got one id %q", call)
		}
		seen[call] = true
	}
	if id := ms[1].Get("tool_calls.3.id").Str; id != "D681PevKs" {
		t.Errorf("Mistral's own id became %q", id)
	}
}
