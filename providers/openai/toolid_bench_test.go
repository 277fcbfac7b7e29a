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
