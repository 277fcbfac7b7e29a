package providers

import (
	"encoding/json"
	"testing"
)

// AppendJSONString writes what encoding/json reads back as the same text
// (invalid UTF-8 as U+FFFD, as encoding/json writes it), leaving <, > and
// & as they are.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\rcr", "\x00\x01\x1f ctl",
		"<b>&amp;</b>", "héllo ✓ 😀", "line\u2028sep\u2029para", "bad \xff utf8 \xc3"} {
		out := AppendJSONString([]byte("x"), s)
		if out[0] != 'x' {
			t.Fatalf("%q: dst prefix lost", s)
		}
		var back string
		if err := json.Unmarshal(out[1:], &back); err != nil {
			t.Fatalf("%q: %s is not a JSON string: %v", s, out[1:], err)
		}
		want, _ := json.Marshal(s) // encoding/json's reading of s (U+FFFD for bad bytes)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: read back %q, want %q", s, back, wantBack)
		}
	}
	if got := string(AppendJSONString(nil, "<a&b>")); got != `"<a&b>"` {
		t.Errorf("HTML characters escaped: %s", got)
	}
}
