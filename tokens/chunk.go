package tokens

import (
	"iter"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Chunk estimates the output tokens an OpenAI-format stream chunk (a
// chat.completion.chunk, or a text completion's chunk) brings: every
// choice's generated text, whatever kind of output it is. That is a
// delta's content, refusal and reasoning (reasoning_content, or reasoning
// as OpenRouter and vLLM name it), each tool call's function name and
// arguments, a legacy function_call's, and a completion's text. Each
// piece counts as Count counts it.
//
// Chunk runs on every event of a stream whose upstream reports no usage,
// so it reads chunk in place and allocates nothing: escapes in the
// strings are decoded as they are counted. Member names are matched as
// written (an escaped name is not recognised); a chunk that is not JSON,
// or is cut, counts what could be read of it.
func Chunk(chunk []byte) int {
	var c counter
	for k, v := range members(unsafe.String(unsafe.SliceData(chunk), len(chunk))) {
		if k != "choices" {
			continue
		}
		for choice := range elements(v) {
			for k, v := range members(choice) {
				switch k {
				case "text":
					c.literal(v)
				case "delta":
					c.delta(v)
				}
			}
		}
		break // what follows (usage, system_fingerprint) is not output
	}
	return c.total()
}

// delta counts a chat chunk's delta.
func (c *counter) delta(v string) {
	for k, v := range members(v) {
		switch k {
		case "content", "refusal", "reasoning_content", "reasoning":
			c.literal(v)
		case "tool_calls":
			for call := range elements(v) {
				for k, v := range members(call) {
					if k == "function" {
						c.function(v)
					}
				}
			}
		case "function_call":
			c.function(v)
		}
	}
}

// function counts a tool call's (or a legacy function_call's) name and
// arguments.
func (c *counter) function(v string) {
	for k, v := range members(v) {
		if k == "name" || k == "arguments" {
			c.literal(v)
		}
	}
}

// literal counts the text of a JSON string literal (quotes included),
// decoding its escapes piece by piece, as one piece of text: the word it
// ends in is not continued by the next. A value that is not a string
// (null) counts nothing.
func (c *counter) literal(v string) {
	if len(v) < 2 || v[0] != '"' {
		return
	}
	v = strings.TrimSuffix(v[1:], `"`)
	for {
		j := strings.IndexByte(v, '\\')
		if j < 0 {
			c.text(v)
			break
		}
		c.text(v[:j])
		if j+1 == len(v) {
			break
		}
		n := 2 // the escape's length
		switch v[j+1] {
		case 'n':
			c.text("\n")
		case 't':
			c.text("\t")
		case 'r':
			c.text("\r")
		case 'b':
			c.text("\b")
		case 'f':
			c.text("\f")
		case 'u':
			var r rune
			r, n = unicodeEscape(v[j:])
			var buf [utf8.UTFMax]byte
			size := utf8.EncodeRune(buf[:], r)
			c.text(unsafe.String(&buf[0], size))
		default: // \" \\ \/
			c.text(v[j+1 : j+2])
		}
		v = v[j+n:]
	}
	c.total()
}

// unicodeEscape decodes the \uXXXX escape (or surrogate pair of them) s
// starts with, and how many bytes it is; a malformed one is U+FFFD, two
// bytes long.
func unicodeEscape(s string) (rune, int) {
	r, ok := hex4(s)
	if !ok {
		return utf8.RuneError, 2
	}
	if !utf16.IsSurrogate(r) {
		return r, 6
	}
	if r2, ok := hex4(s[6:]); ok {
		if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
			return d, 12
		}
	}
	return utf8.RuneError, 6
}

// hex4 reads the code unit of the \uXXXX escape s starts with.
func hex4(s string) (rune, bool) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, b := range []byte(s[2:6]) {
		switch {
		case b >= '0' && b <= '9':
			b -= '0'
		case b >= 'a' && b <= 'f':
			b -= 'a' - 10
		case b >= 'A' && b <= 'F':
			b -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(b)
	}
	return r, true
}

// members yields the members of the JSON object whose text is obj: each
// name as written between its quotes and the text of its value. It stops
// at the first thing that is not JSON.
func members(obj string) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		i := skipSpace(obj, 0)
		if i == len(obj) || obj[i] != '{' {
			return
		}
		for {
			i = skipSpace(obj, i+1) // past the '{' or ','
			if i == len(obj) || obj[i] != '"' {
				return // the '}', or not JSON
			}
			end := valueEnd(obj, i)
			if end-i < 2 || obj[end-1] != '"' {
				return
			}
			name := obj[i+1 : end-1]
			i = skipSpace(obj, end)
			if i == len(obj) || obj[i] != ':' {
				return
			}
			i = skipSpace(obj, i+1)
			end = valueEnd(obj, i)
			if !yield(name, obj[i:end]) {
				return
			}
			if i = skipSpace(obj, end); i == len(obj) || obj[i] != ',' {
				return
			}
		}
	}
}

// elements yields the text of each element of the JSON array whose text
// is arr. It stops at the first thing that is not JSON.
func elements(arr string) iter.Seq[string] {
	return func(yield func(string) bool) {
		i := skipSpace(arr, 0)
		if i == len(arr) || arr[i] != '[' {
			return
		}
		for {
			i = skipSpace(arr, i+1) // past the '[' or ','
			if i == len(arr) || arr[i] == ']' {
				return
			}
			end := valueEnd(arr, i)
			if end == i || !yield(arr[i:end]) {
				return
			}
			if i = skipSpace(arr, end); i == len(arr) || arr[i] != ',' {
				return
			}
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns where the JSON value that starts at s[i] ends (the
// index after it), or len(s) when s ends first.
func valueEnd(s string, i int) int {
	if i == len(s) {
		return i
	}
	switch s[i] {
	case '"':
		for i++; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return len(s)
	case '{', '[':
		depth := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			case '"':
				i = valueEnd(s, i) - 1
			}
		}
		return len(s)
	}
	for ; i < len(s); i++ { // a number, true, false or null
		switch s[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}
