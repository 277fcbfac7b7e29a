package anthropic

import (
	"context"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// apiToolID is the pattern the Messages API holds tool_use.id and
// tool_result.tool_use_id to; anything else is a 400.
var apiToolID = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// Tool ids a conversation can carry when it fails over from another
// provider: Gemini's (an id and a base64 thought signature), a long one,
// and an OpenAI one the API accepts as it is.
var (
	geminiID = "abc/def+ghi=="
	longID   = "call_" + strings.Repeat("x", 95)
	openaiID = "call_Ab3dE5fG7hI9"
)

// checkToolIDs checks that the body the upstream got names tool calls
// only with ids the API accepts, that each tool_result names the tool_use
// it answers, and that the OpenAI id went through unchanged.
func checkToolIDs(t *testing.T, body []byte) {
	t.Helper()
	var uses, results []string
	for _, m := range gjson.GetBytes(body, "messages").Array() {
		for _, b := range m.Get("content").Array() {
			switch b.Get("type").Str {
			case "tool_use":
				uses = append(uses, b.Get("id").Str)
			case "tool_result":
				results = append(results, b.Get("tool_use_id").Str)
			}
		}
	}
	if len(uses) != 3 || len(results) != 3 {
		t.Fatalf("upstream got %d tool_use and %d tool_result blocks, want 3 of each: %s", len(uses), len(results), body)
	}
	for i := range uses {
		if !apiToolID.MatchString(uses[i]) || !apiToolID.MatchString(results[i]) {
			t.Errorf("call %d: tool_use.id %q, tool_result.tool_use_id %q: the API refuses these", i, uses[i], results[i])
		}
		if uses[i] != results[i] {
			t.Errorf("call %d: tool_use.id %q but tool_result.tool_use_id %q", i, uses[i], results[i])
		}
	}
	if uses[2] != openaiID {
		t.Errorf("an id the API accepts became %q, want %q unchanged", uses[2], openaiID)
	}
	if uses[0] == uses[1] {
		t.Errorf("two calls got one id %q", uses[0])
	}
}

// TestToolIDsFromOtherProviders: an OpenAI request whose tool calls were
// named by another provider reaches the Messages API with ids it accepts,
// each tool_use paired with its tool_result.
func TestToolIDsFromOtherProviders(t *testing.T) {
	up := &nativeUpstream{file: "responses/text_cached.json"}
	srv := httptest.NewServer(up)
	defer srv.Close()
	body := `{"model":"m","messages":[
		{"role":"user","content":"Weather in Paris, Tokyo and Oslo?"},
		{"role":"assistant","content":null,"tool_calls":[
			{"id":"` + geminiID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			{"id":"` + longID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}},
			{"id":"` + openaiID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
		{"role":"tool","tool_call_id":"` + geminiID + `","content":"18C"},
		{"role":"tool","tool_call_id":"` + longID + `","content":"22C"},
		{"role":"tool","tool_call_id":"` + openaiID + `","content":"3C"}]}`
	if _, err := newTestClient(t, srv.URL).Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "claude-sonnet-4-5", Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	got, _ := up.got()
	checkToolIDs(t, got)
}

// TestNativeToolIDsFromOtherProviders: an Anthropic client's own body
// holding ids Lumen gave it from another provider's answers is sent with
// ids the API accepts, each tool_use paired with its tool_result.
func TestNativeToolIDsFromOtherProviders(t *testing.T) {
	up := &nativeUpstream{file: "responses/text_cached.json"}
	srv := httptest.NewServer(up)
	defer srv.Close()
	body := `{"model":"m","max_tokens":100,"messages":[
		{"role":"user","content":"Weather in Paris, Tokyo and Oslo?"},
		{"role":"assistant","content":[
			{"type":"text","text":"Checking."},
			{"type":"tool_use","id":"` + geminiID + `","name":"get_weather","input":{"city":"Paris"}},
			{"type":"tool_use","id":"` + longID + `","name":"get_weather","input":{"city":"Tokyo"}},
			{"type":"tool_use","id":"` + openaiID + `","name":"get_weather","input":{"city":"Oslo"}}]},
		{"role":"user","content":[
			{"type":"tool_result","tool_use_id":"` + geminiID + `","content":"18C"},
			{"type":"tool_result","tool_use_id":"` + longID + `","content":"22C"},
			{"type":"tool_result","tool_use_id":"` + openaiID + `","content":"3C"}]}]}`
	resp, err := newTestClient(t, srv.URL).Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "claude-sonnet-4-5",
		Native: []byte(body), Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if !IsMessage(resp.Body) {
		t.Errorf("answer is not a Message: %s", resp.Body)
	}
	got, _ := up.got()
	checkToolIDs(t, got)
	if gjson.GetBytes(got, "messages.1.content.0.text").Str != "Checking." || gjson.GetBytes(got, "messages.1.content.1.input.city").Str != "Paris" {
		t.Errorf("the rest of the body changed: %s", got)
	}
}
