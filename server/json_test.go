package server

import (
	"fmt"
	"strings"
	"testing"
)

func TestDuplicateKey(t *testing.T) {
	many := func(dup bool) string {
		var b strings.Builder
		b.WriteString(`{"model":"m","logit_bias":{`)
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&b, `"%d":1,`, i)
		}
		if dup {
			b.WriteString(`"7":2,`)
		}
		b.WriteString(`"100":0}}`)
		return b.String()
	}
	for _, tt := range []struct {
		body, want string
	}{
		{`{"model":"a","messages":[],"model":"b"}`, "model"},
		{`{"model":"a","mod\u0065l":"b"}`, "model"},
		{`{"model":"a","messages":[{"role":"user","content":"x","content":"y"}]}`, "content"},
		{`{"a":{"b":1},"c":{"b":2},"b":[{"b":1},{"b":2}]}`, ""},                   // the same key in different objects
		{`{"s":"\"model\":1,\"model\":2","t":["model","model"],"model":"x"}`, ""}, // strings, not keys
		{`{"":1,"":2}`, ""},
		{`{"a":{"x":1,"y":{"x":2}},"a":3}`, "a"},
		{many(false), ""},
		{many(true), "7"},
		{`{}`, ""},
	} {
		got, dup := duplicateKey([]byte(tt.body))
		if tt.body == `{"":1,"":2}` {
			tt.want = ""
			if !dup {
				t.Errorf("%s: the empty key twice not found", tt.body)
			}
			continue
		}
		if got != tt.want || dup != (tt.want != "") {
			t.Errorf("%.60s: got %q %t, want %q", tt.body, got, dup, tt.want)
		}
	}
}

func BenchmarkDuplicateKey(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","temperature":0.2,"stream":true,"stream_options":{"include_usage":true},"messages":[` +
		strings.Repeat(`{"role":"user","content":[{"type":"text","text":"`+strings.Repeat("word ", 200)+`"}]},`, 10) +
		`{"role":"user","content":"last"}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, dup := duplicateKey(body); dup {
			b.Fatal("dup")
		}
	}
}
