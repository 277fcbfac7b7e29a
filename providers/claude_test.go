package providers

import (
	"regexp"
	"strings"
	"testing"
)

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

func TestClaudeToolID(t *testing.T) {
	valid := regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	for _, id := range []string{"toolu_01A09q90qw90lq917835lq9", "call_abc123XYZ", "a", "x-y_z", strings.Repeat("a", 64)} {
		if got := ClaudeToolID(id); got != id {
			t.Errorf("ClaudeToolID(%q) = %q, want it unchanged", id, got)
		}
	}
	for _, id := range []string{
		"", "abc/def+ghi==", "call.1", "has space", "tool:1", "é", strings.Repeat("a", 65), strings.Repeat("b", 100),
		"fc_1|CiQBcsjafhd8+/RsmA2dC0Vf3ZqGvLpQW2xN7sK9eT4uYhJ1oIw==",
	} {
		got := ClaudeToolID(id)
		if !valid.MatchString(got) || len(got) > 64 {
			t.Errorf("ClaudeToolID(%q) = %q, which the Messages API refuses", id, got)
		}
		if !strings.HasPrefix(got, "toolu_lumen_") || len(got) != len("toolu_lumen_")+40 {
			t.Errorf("ClaudeToolID(%q) = %q, want toolu_lumen_ and 40 hex digits", id, got)
		}
		if again := ClaudeToolID(id); again != got {
			t.Errorf("ClaudeToolID(%q) = %q then %q, want the same", id, got, again)
		}
		if ClaudeToolID(got) != got {
			t.Errorf("ClaudeToolID(%q) is not stable under a second mapping", got)
		}
	}
	if a, b := ClaudeToolID("abc/def+ghi=="), ClaudeToolID("abc/def+ghi="); a == b {
		t.Errorf("two ids mapped to one: %q", a)
	}
}
