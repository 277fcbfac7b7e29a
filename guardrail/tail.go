package guardrail

import (
	"regexp"
	"strings"
)

// A tail function returns where, in the text of a stream so far, a match
// of its rule could still be in progress: the text before that point can
// be sent, as far as the rule is concerned, and the rest is held until
// more arrives. Each kind of pattern holds as little as it can:
//
//   - a pattern without whitespace (an e-mail address, a key, a URL, an
//     SSN) holds the word being written, however long it grows;
//   - a number written with separators (a card, a phone number, an IBAN)
//     holds the run of digits, capitals and separators at the end, up to
//     Holdback bytes, and the word it starts in;
//   - a blocked phrase of k words holds the last k words;
//   - a private key holds everything from an unclosed -----BEGIN;
//   - a generic api_key= assignment holds from its keyword while what
//     follows could still be its value;
//   - a custom regular expression holds the last Holdback bytes.
type tail func(text string) int

// Holdback is how many bytes a custom regular expression (or a number
// with separators) keeps back in a stream: a match up to Holdback+1 bytes
// long is caught whole even when it arrives split across events.
const Holdback = 64

func isSpace(b byte) bool { return b == ' ' || b == '\n' || b == '\t' || b == '\r' }

// wordStart is the start of the word that ends at i.
func wordStart(text string, i int) int {
	for i > 0 && !isSpace(text[i-1]) {
		i--
	}
	return i
}

// tailWord holds the word being written.
func tailWord(text string) int { return wordStart(text, len(text)) }

// tailFixed holds the last Holdback bytes.
func tailFixed(text string) int { return max(len(text)-Holdback, 0) }

// tailNumber holds a trailing run of digits, capitals and separators
// (from its first digit or capital) and the word it starts in.
func tailNumber(text string) int {
	i := len(text)
	for i > 0 && len(text)-i < Holdback && numberByte(text[i-1]) {
		i--
	}
	for i < len(text) && !(text[i]-'0' < 10 || text[i]-'A' < 26) {
		i++ // separators before the number are not part of it
	}
	return wordStart(text, i)
}

func numberByte(b byte) bool {
	return b-'0' < 10 || b-'A' < 26 || b == ' ' || b == '-' || b == '.' || b == '(' || b == ')' || b == '+' || b == '/'
}

// tailWords holds the last k words.
func tailWords(k int) tail {
	return func(text string) int {
		i := len(text)
		for n := 0; n < k && i > 0; n++ {
			if n > 0 {
				for i > 0 && isSpace(text[i-1]) {
					i--
				}
			}
			i = wordStart(text, i)
		}
		return i
	}
}

// tailPrivateKey holds from the last -----BEGIN that no -----END follows.
func tailPrivateKey(text string) int {
	if b := strings.LastIndex(text, "-----BEGIN"); b >= 0 && !strings.Contains(text[b:], "-----END") {
		return wordStart(text, b)
	}
	return tailWord(text)
}

// assignmentOpen matches, at the end of the text, a generic_api_key
// keyword and what could still grow into its value.
var assignmentOpen = regexp.MustCompile(`(?i)(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|password)["']?\s*[:=]?\s*["']?[A-Za-z0-9_\-./+=]*$`)

func tailAssignment(text string) int {
	i := tailWord(text)
	if !containsFold(text, "key") && !containsFold(text, "token") && !containsFold(text, "password") {
		return i
	}
	if m := assignmentOpen.FindStringIndex(text); m != nil {
		return min(i, wordStart(text, m[0]))
	}
	return i
}
