package tokens

import (
	"encoding/json"
	"testing"
)

// Every kind of generated text a chunk carries counts, as Count counts
// its decoded text; what was not generated (ids, roles, usage) does not.
func TestChunk(t *testing.T) {
	args := `{"city": "Paris", "units": "celsius", "days": 3}`
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	tests := []struct {
		name  string
		chunk string
		want  int
	}{
		{"content", `{"id":"c","choices":[{"index":0,"delta":{"content":"Hello there, friend."}}]}`, Count("Hello there, friend.")},
		{"completion text", `{"choices":[{"index":0,"text":"once upon a time"}]}`, Count("once upon a time")},
		{"tool call start", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}`, Count("get_weather")},
		{"tool call arguments", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":` + q(args) + `}}]}}]}`, Count(args)},
		{"parallel tool calls", `{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}},{"index":1,"function":{"arguments":"{\"b\":2}"}}]}}]}`, Count(`{"a":1}`) + Count(`{"b":2}`)},
		{"legacy function_call", `{"choices":[{"delta":{"function_call":{"name":"f","arguments":"{\"x\":\"y\"}"}}}]}`, Count("f") + Count(`{"x":"y"}`)},
		{"reasoning_content", `{"choices":[{"delta":{"reasoning_content":"First, consider the units."}}]}`, Count("First, consider the units.")},
		{"reasoning", `{"choices":[{"delta":{"reasoning":"Think step by step"}}]}`, Count("Think step by step")},
		{"refusal", `{"choices":[{"delta":{"refusal":"I can't help with that."}}]}`, Count("I can't help with that.")},
		{"pieces do not join words", `{"choices":[{"delta":{"reasoning_content":"abc","content":"def"}}]}`, Count("abc") + Count("def")},
		{"every choice", `{"choices":[{"index":0,"delta":{"content":"yes"}},{"index":1,"delta":{"content":"no"}}]}`, Count("yes") + Count("no")},
		{"escapes decoded", `{"choices":[{"delta":{"content":"line\none \"q\" \\ \/ \u00e9t\u00e9 \ud83d\ude00 \u4f60\u597d"}}]}`, Count("line\none \"q\" \\ / été 😀 你好")},
		{"malformed escapes", `{"choices":[{"delta":{"content":"a\uZZZZb \ud83d c\"}}]}`, Count("a\uFFFDZZZZb \uFFFD c\"}}]}")},
		{"role and nulls", `{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":null},"finish_reason":null}]}`, 0},
		{"usage chunk", `{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}`, 0},
		{"names inside strings", `{"id":"\"choices\":[{\"text\":\"no\"}]","choices":[{"delta":{"content":"{\"content\":\"x\"}"}}]}`, Count(`{"content":"x"}`)},
		{"whitespace", " { \"choices\" : [ { \"delta\" : { \"content\" : \"spaced out\" } } ] } ", Count("spaced out")},
		{"not JSON", `data: [DONE]`, 0},
		{"cut", `{"choices":[{"delta":{"content":"half a sent`, Count("half a sent")},
		{"empty", ``, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Chunk([]byte(tt.chunk)); got != tt.want {
				t.Errorf("Chunk(%s) = %d, want %d", tt.chunk, got, tt.want)
			}
		})
	}
}

// Chunk runs on every event of a stream without usage: it must not
// allocate, escapes (every tool call's arguments have them) included.
func TestChunkAllocatesNothing(t *testing.T) {
	chunk := []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"reasoning_content":"caf\u00e9 \ud83d\ude00","tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Paris\"}"}}]}}]}`)
	if n := testing.AllocsPerRun(100, func() { Chunk(chunk) }); n != 0 {
		t.Fatalf("Chunk allocates %v times per call, want 0", n)
	}
}

func BenchmarkChunk(b *testing.B) {
	chunk := []byte(`{"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"bench","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\": \"Paris, France\", \"unit\": \"celsius\"}"}}]},"finish_reason":null}]}`)
	b.ReportAllocs()
	for b.Loop() {
		Chunk(chunk)
	}
}
