package server

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unsafe"

	"github.com/lumengw/lumen/providers"
)

// jsonMarshal encodes v without HTML escaping and without a newline.
func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// duplicateKey returns a key that one object of b, valid JSON, holds twice
// (decoded, so "mod\u0065l" is "model"), and whether there is one. JSON
// parsers disagree about duplicates: gjson, which Lumen reads requests
// with, takes the first, Python and Go's encoding/json the last. A body
// with {"model": "cheap", …, "model": "dear"} would be admitted, priced
// and guarded on one value and answered on the other, so Lumen refuses it.
// One pass, no allocation unless an object has many keys or an escaped
// one.
func duplicateKey(b []byte) (string, bool) {
	type frame struct {
		obj       bool
		expectKey bool
		start     int                 // the object's first key in keys
		many      map[string]struct{} // its keys, once it has more than few
	}
	const few = 32
	var stackBuf [16]frame
	var keysBuf [64]string
	stack, keys := stackBuf[:0], keysBuf[:0]
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{':
			stack = append(stack, frame{obj: true, expectKey: true, start: len(keys)})
		case '[':
			stack = append(stack, frame{start: len(keys)})
		case '}', ']':
			if n := len(stack); n > 0 {
				keys = keys[:stack[n-1].start]
				stack = stack[:n-1]
			}
		case ',':
			if n := len(stack); n > 0 && stack[n-1].obj {
				stack[n-1].expectKey = true
			}
		case '"':
			end, escaped := stringEnd(b, i+1)
			if n := len(stack); n > 0 && stack[n-1].expectKey {
				f := &stack[n-1]
				f.expectKey = false
				key := unsafe.String(&b[i+1], end-i-1)
				if end == i+1 {
					key = ""
				}
				if escaped {
					var s string
					if err := json.Unmarshal(b[i:end+1], &s); err == nil {
						key = s
					}
				}
				if f.many != nil {
					if _, dup := f.many[key]; dup {
						return strings.Clone(key), true
					}
					f.many[key] = struct{}{}
				} else {
					if slices.Contains(keys[f.start:], key) {
						return strings.Clone(key), true
					}
					keys = append(keys, key)
					if len(keys)-f.start > few {
						f.many = make(map[string]struct{}, 2*few)
						for _, k := range keys[f.start:] {
							f.many[k] = struct{}{}
						}
						keys = keys[:f.start]
					}
				}
			}
			i = end
		}
	}
	return "", false
}

// stringEnd returns the index of the quote closing the JSON string that
// starts at b[i] (just after its opening quote), and whether it holds an
// escape.
func stringEnd(b []byte, i int) (int, bool) {
	if q := bytes.IndexByte(b[i:], '"'); q >= 0 && bytes.IndexByte(b[i:i+q], '\\') < 0 {
		return i + q, false // the usual string: no escape before its quote
	}
	escaped := false
	for ; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i, escaped
		}
	}
	return len(b), escaped
}

// refuseDeepJSON is a 400 for a JSON body that nests deeper than
// providers.MaxJSONDepth. It runs before anything parses the body.
func refuseDeepJSON(b []byte) error {
	if providers.JSONTooDeep(b, providers.MaxJSONDepth) {
		return invalid("", "the request body nests arrays and objects more than %d levels deep; Lumen refuses such a body", providers.MaxJSONDepth)
	}
	return nil
}
