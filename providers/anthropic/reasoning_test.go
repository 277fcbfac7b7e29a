package anthropic

import (
	"errors"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// reasoning_effort becomes each model's thinking, and is left off where
// Anthropic would refuse it.
func TestReasoningEffort(t *testing.T) {
	const weather = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`
	for _, tt := range []struct {
		name, model, body string
		want              map[string]string // gjson path → value; "" means absent
	}{
		{"adaptive", "claude-opus-4-6", `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"high","temperature":0.3}`,
			map[string]string{"thinking.type": "adaptive", "output_config.effort": "high", "temperature": ""}},
		{"adaptive xhigh", "claude-sonnet-4-6", `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"xhigh"}`,
			map[string]string{"thinking.type": "adaptive", "output_config.effort": "high"}},
		{"budget within max_tokens", "claude-sonnet-4-5-20250929", `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"medium","max_tokens":4096,"temperature":0.3,"top_p":0.5}`,
			map[string]string{"thinking.type": "enabled", "thinking.budget_tokens": "2048", "temperature": "", "top_p": ""}},
		{"budget", "claude-opus-4-1", `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"low","max_tokens":20000}`,
			map[string]string{"thinking.budget_tokens": "2048", "max_tokens": "20000"}},
		{"no room to think", "claude-haiku-4-5", `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"low","max_tokens":1500,"temperature":0.3}`,
			map[string]string{"thinking": "", "temperature": "0.3"}},
		{"model without thinking", "claude-3-5-sonnet-20241022", `{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high"}`,
			map[string]string{"thinking": "", "output_config": ""}},
		{"none", "claude-opus-4-6", `{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"none"}`,
			map[string]string{"thinking": "", "output_config": ""}},
		{"tool loop continues without thinking", "claude-opus-4-6", `{"messages":[{"role":"user","content":"Weather?"},
			{"role":"assistant","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
			{"role":"tool","tool_call_id":"toolu_1","content":"sunny"}],"reasoning_effort":"high",` + weather + `}`,
			map[string]string{"thinking": "", "output_config.effort": "high"}},
		{"forced tool", "claude-sonnet-4-5", `{"messages":[{"role":"user","content":"Weather?"}],"reasoning_effort":"high","tool_choice":"required",` + weather + `}`,
			map[string]string{"thinking": ""}},
		{"json output is a forced tool", "claude-sonnet-4-5", `{"messages":[{"role":"user","content":"JSON"}],"reasoning_effort":"high","response_format":{"type":"json_object"}}`,
			map[string]string{"thinking": "", "tool_choice.type": "tool"}},
		{"fixed sampling", "claude-sonnet-5", `{"messages":[{"role":"user","content":"hi"}],"temperature":0.2,"top_p":0.9}`,
			map[string]string{"temperature": "", "top_p": "", "thinking": ""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := providers.DecodeChatRequest([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := fromChat(req, tt.model, false)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := providers.MarshalJSON(&tr.body)
			for path, want := range tt.want {
				got := gjson.GetBytes(body, path)
				if want == "" && got.Exists() || want != "" && got.String() != want {
					t.Errorf("%s = %s, want %q\n%s", path, got.Raw, want, body)
				}
			}
		})
	}
	req, _ := providers.DecodeChatRequest([]byte(`{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"extreme"}`))
	_, err := fromChat(req, "claude-opus-4-6", false)
	var ie *providers.InvalidRequestError
	if !errors.As(err, &ie) || ie.Param != "reasoning_effort" {
		t.Errorf("unknown effort: %v", err)
	}
}

// cache_control_injection_points mark the system prompt and the last
// message; the marks land on their last blocks, where Anthropic reads them.
func TestCacheInjection(t *testing.T) {
	last := -1
	c, err := New(providers.Config{Provider: "anthropic", Model: "claude-sonnet-4-5", APIKey: "k",
		CacheInjection: []providers.CachePoint{{Role: "system"}, {Index: &last}}})
	if err != nil {
		t.Fatal(err)
	}
	_, body, err := c.translate(&providers.Request{Op: providers.OpChat, Model: "claude-sonnet-4-5", Body: []byte(
		`{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"a"},{"role":"assistant","content":"b"},
		{"role":"user","content":[{"type":"text","text":"c"},{"type":"text","text":"d"}]}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"system.0.cache_control.type":             "ephemeral",
		"messages.0.content.0.cache_control":      "",
		"messages.2.content.1.cache_control.type": "ephemeral",
		"messages.2.content.0.cache_control":      "",
	} {
		got := gjson.GetBytes(body, path)
		if want == "" && got.Exists() || want != "" && got.String() != want {
			t.Errorf("%s = %s, want %q\n%s", path, got.Raw, want, body)
		}
	}
}
