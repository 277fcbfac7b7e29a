package gemini

import (
	"context"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// reasoning_effort becomes a thinking budget on Gemini 2.5 and a thinking
// level on Gemini 3, with thought summaries asked for.
func TestReasoningEffort(t *testing.T) {
	for _, tt := range []struct {
		model, effort string
		want          map[string]string // gjson path → value; "" means absent
	}{
		{"gemini-2.5-flash", "medium", map[string]string{"thinkingBudget": "8192", "includeThoughts": "true"}},
		{"gemini-2.5-flash", "none", map[string]string{"thinkingBudget": "0", "includeThoughts": ""}},
		{"gemini-2.5-flash-lite", "xhigh", map[string]string{"thinkingBudget": "24576"}},
		{"gemini-2.5-pro", "none", map[string]string{"thinkingBudget": "128"}},
		{"gemini-2.5-pro", "xhigh", map[string]string{"thinkingBudget": "32768"}},
		{"models/gemini-3-pro-preview", "low", map[string]string{"thinkingLevel": "low", "includeThoughts": "true", "thinkingBudget": ""}},
		{"gemini-3.1-pro-preview", "medium", map[string]string{"thinkingLevel": "high"}},
	} {
		req, err := providers.DecodeChatRequest([]byte(`{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"` + tt.effort + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := fromChat(context.Background(), req, tt.model, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := providers.MarshalJSON(&tr.body)
		tc := gjson.GetBytes(body, "generationConfig.thinkingConfig")
		for path, want := range tt.want {
			got := tc.Get(path)
			if want == "" && got.Exists() || want != "" && got.String() != want {
				t.Errorf("%s %s: %s = %s, want %q (%s)", tt.model, tt.effort, path, got.Raw, want, body)
			}
		}
	}
	// A model that does not think gets nothing; an unknown effort is a 400.
	req, _ := providers.DecodeChatRequest([]byte(`{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high"}`))
	if tr, err := fromChat(context.Background(), req, "gemini-2.0-flash", nil); err != nil || tr.body.GenerationConfig != nil {
		t.Errorf("gemini-2.0-flash: %+v %v", tr.body.GenerationConfig, err)
	}
	req, _ = providers.DecodeChatRequest([]byte(`{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"max"}`))
	if _, err := fromChat(context.Background(), req, "gemini-2.5-pro", nil); !providers.IsInvalidRequest(err) {
		t.Errorf("unknown effort: %v", err)
	}
}
