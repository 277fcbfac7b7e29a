package providers

import "testing"

func TestThinkingStyle(t *testing.T) {
	for _, tt := range []struct {
		model string
		style int
		fixed bool
	}{
		{"claude-3-5-sonnet-20241022", thinkingNone, false},
		{"claude-3-7-sonnet-20250219", thinkingBudget, false},
		{"claude-sonnet-4-20250514", thinkingBudget, false},
		{"claude-opus-4-1", thinkingBudget, false},
		{"claude-sonnet-4-5-20250929", thinkingBudget, false},
		{"claude-haiku-4-5", thinkingBudget, false},
		{"claude-opus-4-6", thinkingAdaptive, false},
		{"claude-sonnet-4-6", thinkingAdaptive, false},
		{"claude-opus-4-7", thinkingAdaptive, true},
		{"claude-sonnet-5", thinkingAdaptive, true},
		{"claude-opus-5-5", thinkingAdaptive, true},
		{"claude-haiku-5-5", thinkingAdaptive, true},
		{"claude-fable-5-2", thinkingAdaptive, true},
		{"us.anthropic.claude-sonnet-4-5-20250929-v1:0", thinkingBudget, false},
		{"gpt-4o", thinkingNone, false},
	} {
		if s, f := thinkingStyle(tt.model), FixedSampling(tt.model); s != tt.style || f != tt.fixed {
			t.Errorf("%s: style %d fixed %v, want %d %v", tt.model, s, f, tt.style, tt.fixed)
		}
	}
}
