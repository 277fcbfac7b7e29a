package providers

// MaxJSONDepth is how deeply the JSON Lumen reads, a client's request or
// an upstream's answer, may nest arrays and objects. gjson's validator and
// the response cache's canonical form recurse once per level, and a
// goroutine stack overflow is a fatal error that no recover catches: a
// body of millions of '[' would end the whole gateway. Real requests and
// answers nest a handful of levels, JSON schemas a few dozen.
const MaxJSONDepth = 128

// JSONTooDeep reports whether b, JSON or not, nests arrays and objects
// more than max levels deep. One pass, strings skipped, no recursion.
func JSONTooDeep[T []byte | string](b T, max int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			if depth++; depth > max {
				return true
			}
		case '}', ']':
			if depth > 0 { // a stray closer must not buy room for more openers
				depth--
			}
		case '"':
			i = jsonStringEnd(b, i+1)
		}
	}
	return false
}

// jsonStringEnd returns the index of the quote closing the JSON string
// whose contents start at b[i], or len(b).
func jsonStringEnd[T []byte | string](b T, i int) int {
	for ; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++ // the escaped character
		case '"':
			return i
		}
	}
	return len(b)
}
