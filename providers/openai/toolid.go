package openai

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Longest tool call ids OpenAI accepts; a longer one is a 400
// string_above_max_length.
const (
	// MaxChatToolID holds messages[].tool_calls[].id and
	// messages[].tool_call_id in Chat Completions (Azure OpenAI alike).
	MaxChatToolID = 40
	// MaxResponsesCallID holds input[].call_id in the Responses API.
	MaxResponsesCallID = 64
)

// toolIDPrefix starts the tool ids ToolID makes up.
const toolIDPrefix = "call_"

// ToolID returns id as an OpenAI API that holds tool call ids to max
// characters accepts it. A conversation that failed over from another
// provider can carry longer ones: a Gemini call's id carries its base64
// thought signature, hundreds of characters long. An id of at most max
// characters is returned unchanged; a longer one becomes "call_" and the
// first 35 hex digits of its SHA-256 (40 characters), so the tool call
// and its result, mapped separately, still name the same call. max must
// be at least 40.
func ToolID(id string, max int) string {
	if utf8.RuneCountInString(id) <= max {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return toolIDPrefix + hex.EncodeToString(sum[:])[:MaxChatToolID-len(toolIDPrefix)]
}

// MistralToolID returns id as Mistral's API accepts a tool call id:
// nine ASCII letters or digits ("Tool call id was … but must be a-z,
// A-Z, 0-9, with a length of 9", a 400). Mistral's own ids are such and
// are returned unchanged; any other (OpenAI's call_…, Anthropic's
// toolu_…, Gemini's) becomes the first 9 hex digits of its SHA-256, so
// the tool call and its result, mapped separately, still name the same
// call.
func MistralToolID(id string) string {
	if len(id) == 9 {
		ok := true
		for i := 0; i < len(id) && ok; i++ {
			c := id[i]
			ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		}
		if ok {
			return id
		}
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])[:9]
}

// chatToolID is the rule a deployment's chat tool call ids go through:
// Mistral's nine letters or digits for provider mistral, else OpenAI's
// 40 characters at most.
func (c *Client) chatToolID(id string) string {
	if c.provider == "mistral" {
		return MistralToolID(id)
	}
	return ToolID(id, MaxChatToolID)
}

// fixChatToolIDs maps, with rule, every tool_calls[].id and tool_call_id
// in a chat completions body's messages that rule changes. Ids are
// opaque to the model and the request carries the whole conversation, so
// mapping them is harmless on any OpenAI-format upstream, including
// those (vLLM, Ollama) that take long ids. A body with nothing to map is
// returned as it is, not copied; body is not modified in place.
func fixChatToolIDs(body []byte, rule func(string) string) ([]byte, error) {
	if !bytes.Contains(body, toolCallKey) {
		return body, nil // no tool_calls nor tool_call_id: nothing to read
	}
	var paths, ids []string
	gjson.Get(unsafe.String(unsafe.SliceData(body), len(body)), "messages").ForEach(func(i, m gjson.Result) bool {
		if id := m.Get("tool_call_id"); id.Type == gjson.String && rule(id.Str) != id.Str {
			paths, ids = append(paths, fmt.Sprintf("messages.%d.tool_call_id", i.Int())), append(ids, id.Str)
		}
		m.Get("tool_calls").ForEach(func(j, tc gjson.Result) bool {
			if id := tc.Get("id"); id.Type == gjson.String && rule(id.Str) != id.Str {
				paths, ids = append(paths, fmt.Sprintf("messages.%d.tool_calls.%d.id", i.Int(), j.Int())), append(ids, id.Str)
			}
			return true
		})
		return true
	})
	return setIDs(body, paths, ids, rule)
}

// toolCallKey starts both keys that carry a chat tool call id: most
// bodies have neither, and a search for it spares them the parse. The
// parse reads body through a string view, not a copy (sjson.SetBytes
// writes a new slice, so the ids read stay intact).
var toolCallKey = []byte(`"tool_call`)

// fixResponsesCallIDs maps, with ToolID, every call_id in a Responses API
// body's input items longer than MaxResponsesCallID, which the API
// refuses. Only those: a shorter id may name a call the upstream stored
// (previous_response_id), and must reach it as the client sent it. A
// body with nothing to map is returned as it is.
func fixResponsesCallIDs(body []byte) ([]byte, error) {
	if !bytes.Contains(body, callIDKey) {
		return body, nil
	}
	var paths, ids []string
	gjson.Get(unsafe.String(unsafe.SliceData(body), len(body)), "input").ForEach(func(i, it gjson.Result) bool {
		switch it.Get("type").Str {
		case "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output":
			if id := it.Get("call_id"); id.Type == gjson.String && responsesCallID(id.Str) != id.Str {
				paths, ids = append(paths, fmt.Sprintf("input.%d.call_id", i.Int())), append(ids, id.Str)
			}
		}
		return true
	})
	return setIDs(body, paths, ids, responsesCallID)
}

func responsesCallID(id string) string { return ToolID(id, MaxResponsesCallID) }

var callIDKey = []byte(`"call_id"`)

// setIDs sets each of paths in body to its id mapped by rule.
func setIDs(body []byte, paths, ids []string, rule func(string) string) ([]byte, error) {
	for k, path := range paths {
		var err error
		if body, err = sjson.SetBytes(body, path, rule(ids[k])); err != nil {
			return nil, fmt.Errorf("mapping tool id at %s: %w", path, err)
		}
	}
	return body, nil
}
