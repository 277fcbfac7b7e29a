package openai

import "testing"

func TestChunkMembers(t *testing.T) {
	tests := []struct {
		name                         string
		chunk                        string
		usage, noChoices, finish, ok bool
	}{
		{"compact usage chunk", `{"id":"c","choices":[],"usage":{"prompt_tokens":1}}`, true, true, false, false},
		{"json.dumps usage chunk", `{"id": "c", "choices": [], "usage": {"prompt_tokens": 1}}`, true, true, false, false},
		{"newlines and tabs", "{\"choices\"\n:\t[ \r\n ],\n\"usage\" :\n{}}", true, true, false, false},
		{"usage null", `{"choices": [{"delta": {"content": "a"}, "finish_reason": null}], "usage": null}`, false, false, false, false},
		{"finish compact", `{"choices":[{"delta":{},"finish_reason":"stop"}]}`, false, false, true, false},
		{"finish spaced", `{"choices": [{"delta": {}, "finish_reason": "stop"}]}`, false, false, true, false},
		{"usage as text", `{"choices": [{"delta": {"content": "\"usage\": {\"choices\": []} usage"}}]}`, false, false, false, false},
		{"value named usage", `{"choices":[{"delta":{"content":"usage"}}],"x":{}}`, false, false, false, false},
		{"error first", `{"error":{"message":"x"}}`, false, false, false, true},
		{"error spaced", ` { "error": {"message": "x"}}`, false, false, false, true},
		{"error later", `{"choices":[],"error":{}}`, false, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := []byte(tt.chunk)
			if HasUsage(c) != tt.usage || NoChoices(c) != tt.noChoices || hasFinish(c) != tt.finish || isErrorObject(c) != tt.ok {
				t.Fatalf("HasUsage %v NoChoices %v hasFinish %v isErrorObject %v", HasUsage(c), NoChoices(c), hasFinish(c), isErrorObject(c))
			}
		})
	}
}

// The stream asks these of every chunk: they must not allocate.
func TestChunkMembersDoNotAllocate(t *testing.T) {
	c := []byte(`{"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}], "usage": null}`)
	if n := testing.AllocsPerRun(100, func() { HasUsage(c); NoChoices(c); hasFinish(c); isErrorObject(c) }); n != 0 {
		t.Fatalf("%v allocations per chunk", n)
	}
}
