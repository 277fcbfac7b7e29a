package bedrock

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// TestToolIDsFromOtherProviders: a conversation whose tool calls were
// named by another provider (Gemini's ids carry a base64 thought
// signature; some are longer than 64) reaches Converse with toolUseIds
// matching the pattern it holds them to, each toolUse paired with its
// toolResult, and an id it accepts unchanged.
func TestToolIDsFromOtherProviders(t *testing.T) {
	geminiID, longID, openaiID := "abc/def+ghi==", "call_"+strings.Repeat("x", 95), "call_Ab3dE5fG7hI9"
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		_, _ = io.WriteString(w, `{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn","usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}`)
	}))
	defer srv.Close()
	c, err := New(providers.Config{Model: "anthropic.claude-sonnet-4-5-20250929-v1:0", APIBase: srv.URL, AWSRegion: "us-east-1", APIKey: "bedrock-api-key-abc"})
	if err != nil {
		t.Fatal(err)
	}
	req := `{"messages":[
		{"role":"user","content":"Weather in Paris, Tokyo and Oslo?"},
		{"role":"assistant","content":null,"tool_calls":[
			{"id":"` + geminiID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			{"id":"` + longID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}},
			{"id":"` + openaiID + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
		{"role":"tool","tool_call_id":"` + geminiID + `","content":"18C"},
		{"role":"tool","tool_call_id":"` + longID + `","content":"22C"},
		{"role":"tool","tool_call_id":"` + openaiID + `","content":"3C"}]}`
	if _, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Body: []byte(req)}); err != nil {
		t.Fatal(err)
	}

	valid := regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	var uses, results []string
	for _, m := range gjson.GetBytes(body, "messages").Array() {
		for _, b := range m.Get("content").Array() {
			if id := b.Get("toolUse.toolUseId"); id.Exists() {
				uses = append(uses, id.Str)
			}
			if id := b.Get("toolResult.toolUseId"); id.Exists() {
				results = append(results, id.Str)
			}
		}
	}
	if len(uses) != 3 || len(results) != 3 {
		t.Fatalf("upstream got %d toolUse and %d toolResult blocks, want 3 of each: %s", len(uses), len(results), body)
	}
	for i := range uses {
		if !valid.MatchString(uses[i]) || !valid.MatchString(results[i]) {
			t.Errorf("call %d: toolUse.toolUseId %q, toolResult.toolUseId %q: Converse refuses these", i, uses[i], results[i])
		}
		if uses[i] != results[i] {
			t.Errorf("call %d: toolUse.toolUseId %q but toolResult.toolUseId %q", i, uses[i], results[i])
		}
	}
	if uses[2] != openaiID {
		t.Errorf("an id Converse accepts became %q, want %q unchanged", uses[2], openaiID)
	}
	if uses[0] == uses[1] {
		t.Errorf("two calls got one id %q", uses[0])
	}
}
