package openai

import (
	"fmt"
	"strings"
	"testing"
)

// A long conversation with no tool calls: what every ordinary chat request
// pays for the tool id check.
func BenchmarkFixChatToolIDsNoTools(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"model":"m","messages":[`)
	for i := 0; i < 200; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"role":"user","content":%q}`, strings.Repeat("hello world ", 40))
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fixChatToolIDs(body, (&Client{}).chatToolID); err != nil {
			b.Fatal(err)
		}
	}
}

// The same conversation with tool calls whose ids OpenAI accepts: the
// parse runs, and maps nothing.
func BenchmarkFixChatToolIDsShortIDs(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"model":"m","messages":[`)
	for i := 0; i < 200; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		if i%10 == 9 {
			fmt.Fprintf(&sb, `{"role":"assistant","content":null,"tool_calls":[{"id":"call_%024d","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_%024d","content":"ok"}`, i, i)
			continue
		}
		fmt.Fprintf(&sb, `{"role":"user","content":%q}`, strings.Repeat("hello world ", 40))
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fixChatToolIDs(body, (&Client{}).chatToolID); err != nil {
			b.Fatal(err)
		}
	}
}
