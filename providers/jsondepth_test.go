package providers

import (
	"strings"
	"testing"
)

func TestJSONTooDeep(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tt := range []struct {
		name string
		body string
		want bool
	}{
		{"flat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, false},
		{"at the limit", `{"x":` + nest(MaxJSONDepth-1) + `}`, false},
		{"over the limit", `{"x":` + nest(MaxJSONDepth) + `}`, true},
		{"objects count too", strings.Repeat(`{"a":`, MaxJSONDepth+1) + "1" + strings.Repeat("}", MaxJSONDepth+1), true},
		{"brackets in strings do not", `{"s":"` + strings.Repeat("[", 1000) + `\"[[["}`, false},
		{"an escaped backslash ends no string early", `{"s":"a\\\\","x":` + nest(MaxJSONDepth) + `}`, true},
		{"stray closers buy no room", strings.Repeat("]", 1000) + `{"x":` + nest(MaxJSONDepth) + `}`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := JSONTooDeep([]byte(tt.body), MaxJSONDepth); got != tt.want {
				t.Errorf("jsonTooDeep = %t, want %t", got, tt.want)
			}
		})
	}
}
