package openai

import "bytes"

// The stream's hot path asks a few questions of every chunk. They are
// answered by scanning the bytes for a member, in any valid JSON spacing
// ("usage":{ as Go and Node write it, "usage": { as Python's json.dumps
// does, a newline between), without parsing the chunk or allocating.

var (
	usageKey   = []byte(`"usage"`)
	choicesKey = []byte(`"choices"`)
	finishKey  = []byte(`"finish_reason"`)
	errorKey   = []byte(`"error"`)
)

// HasUsage reports whether a chunk has a "usage" member whose value is an
// object: the usage chunk stream_options.include_usage asks for (on
// other chunks usage is absent or null). Read it with ParseUsage.
func HasUsage(chunk []byte) bool {
	return hasMember(chunk, usageKey, func(v []byte) bool { return len(v) > 0 && v[0] == '{' })
}

// NoChoices reports whether a chunk's "choices" is an empty array, as in
// the usage chunk.
func NoChoices(chunk []byte) bool {
	return hasMember(chunk, choicesKey, func(v []byte) bool {
		if len(v) == 0 || v[0] != '[' {
			return false
		}
		v = trimSpace(v[1:])
		return len(v) > 0 && v[0] == ']'
	})
}

// hasFinish reports whether a chunk has a "finish_reason" that is a
// string (not null).
func hasFinish(chunk []byte) bool {
	return hasMember(chunk, finishKey, func(v []byte) bool { return len(v) > 0 && v[0] == '"' })
}

// hasMember reports whether data, a JSON object's text, has a member
// named key (quoted) whose value, from its first byte to the end of data,
// satisfies value. Any nesting level counts. A key's text inside a string
// value cannot match: its quotes are escaped there, and a quoted string
// followed by a colon is a member name.
func hasMember(data, key []byte, value func([]byte) bool) bool {
	for {
		i := bytes.Index(data, key)
		if i < 0 {
			return false
		}
		data = trimSpace(data[i+len(key):])
		if len(data) > 0 && data[0] == ':' && value(trimSpace(data[1:])) {
			return true
		}
	}
}

// trimSpace drops JSON whitespace from the front of b.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// isErrorObject reports whether data is a JSON object whose first member
// is "error": the error event OpenAI-shaped servers send mid-stream.
func isErrorObject(data []byte) bool {
	data = trimSpace(data)
	return len(data) > 0 && data[0] == '{' && bytes.HasPrefix(trimSpace(data[1:]), errorKey)
}
