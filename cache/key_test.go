package cache

import (
	"errors"
	"testing"
)

const baseReq = `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.5}`

func mustKey(t *testing.T, group, scope, body string) Key {
	t.Helper()
	k, err := NewKey(group, scope, []byte(body))
	if err != nil {
		t.Fatalf("NewKey(%s): %v", body, err)
	}
	return k
}

func TestKeySame(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"identical", baseReq},
		{"key order and whitespace", `{ "temperature" : 0.5,
			"messages" : [ {"content":"be brief","role":"system"}, { "content" : "hi", "role" : "user" } ],
			"model":"gpt" }`},
		{"string escapes", `{"model":"gpt","messages":[{"role":"system","content":"be\u0020brief"},{"role":"\u0075ser","content":"hi"}],"temperature":0.5}`},
		{"number spelling", `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":5e-1}`},
		{"stream flag", `{"model":"gpt","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.5}`},
		{"attribution and controls", `{"model":"gpt","user":"u1","metadata":{"a":"b"},"store":true,"cache":{"no-cache":true},"lumen":{"x":1},"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.5}`},
		{"model alias of the same group", `{"model":"gpt-alias","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.5}`},
		{"top-level null is absent", `{"model":"gpt","seed":null,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.5}`},
	}
	want := mustKey(t, "g", "", baseReq)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustKey(t, "g", "", tt.body); got.Hash != want.Hash {
				t.Errorf("hash differs from the base request")
			}
		})
	}
	k1 := mustKey(t, "g", "", `{"model":"m","seed":1,"temperature":1,"messages":[{"role":"user","content":"x"}]}`)
	k2 := mustKey(t, "g", "", `{"model":"m","seed":1.0,"temperature":1.0,"messages":[{"role":"user","content":"x"}]}`)
	if k1.Hash != k2.Hash {
		t.Errorf("1 and 1.0 hash differently")
	}
}

func TestKeyDiffers(t *testing.T) {
	msgs := `"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]`
	tests := []struct {
		name, group, scope, body string
	}{
		{"group", "other", "", baseReq},
		{"scope", "g", "key:\"k1\"", baseReq},
		{"temperature", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.6}`},
		{"temperature absent", "g", "", `{"model":"gpt",` + msgs + `}`},
		{"top_p", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"top_p":0.9}`},
		{"n", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"n":2}`},
		{"stop", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"stop":["\n"]}`},
		{"max_tokens", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"max_tokens":10}`},
		{"max_completion_tokens", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"max_completion_tokens":10}`},
		{"seed", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"seed":42}`},
		{"big seed", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"seed":9007199254740993}`},
		{"presence_penalty", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"presence_penalty":1}`},
		{"frequency_penalty", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"frequency_penalty":1}`},
		{"logit_bias", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"logit_bias":{"50256":-100}}`},
		{"logprobs", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"logprobs":true,"top_logprobs":2}`},
		{"reasoning_effort", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"reasoning_effort":"low"}`},
		{"response_format", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"response_format":{"type":"json_object"}}`},
		{"tools", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"tools":[{"type":"function","function":{"name":"f"}}]}`},
		{"tool_choice", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"tool_choice":"none"}`},
		{"unknown parameter", "g", "", `{"model":"gpt",` + msgs + `,"temperature":0.5,"top_k":3}`},
		{"last user message", "g", "", `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi!"}],"temperature":0.5}`},
		{"system prompt", "g", "", `{"model":"gpt","messages":[{"role":"system","content":"be long"},{"role":"user","content":"hi"}],"temperature":0.5}`},
		{"message order", "g", "", `{"model":"gpt","messages":[{"role":"user","content":"hi"},{"role":"system","content":"be brief"}],"temperature":0.5}`},
		{"message name", "g", "", `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi","name":"bob"}],"temperature":0.5}`},
		{"string vs number", "g", "", `{"model":"gpt",` + msgs + `,"temperature":"0.5"}`},
	}
	base := mustKey(t, "g", "", baseReq)
	seen := map[[32]byte]string{base.Hash: "base"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := mustKey(t, tt.group, tt.scope, tt.body)
			if other, dup := seen[k.Hash]; dup {
				t.Errorf("hash equals that of %q", other)
			}
			seen[k.Hash] = tt.name
		})
	}
}

func TestKeyPartition(t *testing.T) {
	base := mustKey(t, "g", "", baseReq)
	if base.Prompt != "hi" {
		t.Errorf("Prompt = %q, want %q", base.Prompt, "hi")
	}
	tests := []struct {
		name          string
		scope, body   string
		samePartition bool
		prompt        string
	}{
		{"other last user message", "", `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}],"temperature":0.5}`, true, "hello there"},
		{"text parts", "", `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"temperature":0.5}`, true, "a\nb"},
		{"image part", "", `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}],"temperature":0.5}`, true, ""},
		{"other system prompt", "", `{"model":"gpt","messages":[{"role":"system","content":"be long"},{"role":"user","content":"hi"}],"temperature":0.5}`, false, "hi"},
		{"other parameter", "", `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.7}`, false, "hi"},
		{"other scope", "tenant:\"a\"", baseReq, false, "hi"},
		{"earlier turn differs", "", `{"model":"gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"yo"},{"role":"assistant","content":"?"},{"role":"user","content":"hi"}],"temperature":0.5}`, false, "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := mustKey(t, "g", tt.scope, tt.body)
			if got := k.Partition == base.Partition; got != tt.samePartition {
				t.Errorf("same partition = %v, want %v", got, tt.samePartition)
			}
			if k.Prompt != tt.prompt {
				t.Errorf("Prompt = %q, want %q", k.Prompt, tt.prompt)
			}
			if k.Hash == base.Hash {
				t.Errorf("Hash equals the base request's")
			}
		})
	}
	none := mustKey(t, "g", "", `{"model":"gpt","messages":[{"role":"system","content":"x"}]}`)
	if none.Prompt != "" || none.Partition != none.Hash {
		t.Errorf("a request without a user message: Prompt %q, Partition == Hash %v", none.Prompt, none.Partition == none.Hash)
	}
}

func TestKeyBadBody(t *testing.T) {
	for _, body := range []string{"", "[]", `"x"`, "{", "null"} {
		if _, err := NewKey("g", "", []byte(body)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("NewKey(%q) error = %v, want ErrBadRequest", body, err)
		}
	}
}

func TestScope(t *testing.T) {
	tests := []struct {
		name, mode, key string
		tags            map[string]string
		ns, want        string
	}{
		{"global by default", "", "k1", nil, "", ""},
		{"global ignores the key", "global", "k1", map[string]string{"team": "x"}, "", ""},
		{"scope key", "key", "k1", nil, "", `key:"k1"`},
		{"scope key without a key", "key", "", nil, "", ""},
		{"tag cache_scope=key", "", "k1", map[string]string{"cache_scope": "key"}, "", `key:"k1"`},
		{"tenant tag", "", "k1", map[string]string{"x": "", "tenant": "acme"}, "", `tenant:"acme"`},
		{"per key beats tenant", "key", "k1", map[string]string{"tenant": "acme"}, "", `key:"k1"`},
		{"namespace narrows", "", "", map[string]string{"tenant": "acme"}, "evals", `tenant:"acme" ns:"evals"`},
		{"namespace in global", "", "", nil, "evals", ` ns:"evals"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Scope(tt.mode, tt.key, tt.tags, tt.ns); got != tt.want {
				t.Errorf("Scope() = %q, want %q", got, tt.want)
			}
		})
	}
	// A tenant name cannot impersonate a key scope or another namespace.
	if Scope("", "", map[string]string{"tenant": `a" ns:"b`}, "") == Scope("", "", map[string]string{"tenant": "a"}, "b") {
		t.Error("tenant name collides with tenant+namespace")
	}
}
