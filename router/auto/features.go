package auto

import (
	"math"
	"unicode"
	"unicode/utf8"
)

// Prompt is what the scorer reads from a request: the system prompt, the
// last user turn and how many messages the conversation has.
type Prompt struct {
	System string
	User   string
	// Turns is the number of messages in the conversation; 0 counts as 1.
	Turns int
}

// Namespaces of hashed features. A feature is stored as ns<<28 | hash&hashMask
// so that the extractor does not depend on the bucket count of the weights.
const (
	nsWord   = 1 // word unigrams over the read window
	nsBigram = 2 // word bigrams over the read window
	nsTail   = 3 // word unigrams of the last tailQuestion bytes: the question of a few-shot prompt
	nsChar   = 4 // character 4-grams inside words (with word-boundary padding)
	nsSystem = 5 // word unigrams of the system prompt
	numNS    = 6

	hashMask = 1<<28 - 1
)

// Read windows. Long prompts are read at the head and the tail only: the
// instructions sit at the start, the actual question at the end, and reading
// a fixed number of bytes keeps scoring time flat whatever the prompt size.
const (
	headBytes    = 1536
	tailBytes    = 2560
	tailQuestion = 400
	systemBytes  = 1024
)

// Dense feature indices. Each is scaled to roughly 0..1.
const (
	dBias = iota
	dLogChars
	dLogWords
	dTurns
	dHasSystem
	dDigitFrac
	dUpperFrac
	dPunctFrac
	dNonASCIIFrac
	dCJK
	dCyrillic
	dArabic
	dIndic
	dOtherScript
	dCode
	dMath
	dOptions
	dEndsAnswer
	dEndsQuestion
	dFewShot
	dNegation
	dWhichOfFollowing
	dReasoning
	dStatements
	dNumbers
	dNewlines
	dLongWords
	dAvgWordLen
	dWhQuestion
	dGenerate
	dLatex
	dLowerStart
	// NumDense is the number of dense features.
	NumDense
)

// Features are the extracted features of one prompt. The zero value is ready
// to use; Extract reuses its buffers, so a Features kept by the caller (or
// taken from a pool) makes extraction allocation-free in steady state.
type Features struct {
	// Hashed holds ns<<28 | hash entries, duplicates included.
	Hashed []uint32
	// Count is how many entries each namespace has (for normalisation).
	Count [numNS]int32
	// Dense are the dense features.
	Dense [NumDense]float32
}

// Scale returns the value of one entry of namespace ns: entries of a
// namespace sum to a vector of norm ~1 whatever the prompt's length.
func (f *Features) Scale(ns int) float32 {
	if f.Count[ns] == 0 {
		return 0
	}
	return float32(1 / math.Sqrt(float64(f.Count[ns])))
}

// mix is the murmur3 finaliser: a cheap, well-spread 32-bit mix.
func mix(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func (f *Features) add(ns int, h uint32) {
	f.Hashed = append(f.Hashed, uint32(ns)<<28|(mix(h^uint32(ns)*0x9e3779b9)&hashMask))
	f.Count[ns]++
}

// lower maps an ASCII byte to its lower case and classifies it: 1 letter or
// digit (word byte), 0 separator. Bytes >= 0x80 (UTF-8) are word bytes.
func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c >= 0x80
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// Extract fills f with the features of p. It resets f first.
func Extract(p Prompt, f *Features) {
	f.Hashed = f.Hashed[:0]
	f.Count = [numNS]int32{}
	f.Dense = [NumDense]float32{}
	u := p.User
	// Read window: head and tail of the user turn.
	head, tail := u, ""
	if len(u) > headBytes+tailBytes {
		head = u[:headBytes]
		tail = u[len(u)-tailBytes:]
	}
	var st textStats
	f.words(head, nsWord, true, &st)
	if tail != "" {
		f.words(tail, nsWord, true, &st)
	}
	q := u
	if len(q) > tailQuestion {
		q = q[len(q)-tailQuestion:]
	}
	f.words(q, nsTail, false, nil)
	if s := p.System; s != "" {
		if len(s) > systemBytes {
			s = s[:systemBytes]
		}
		f.words(s, nsSystem, false, nil)
	}
	f.dense(p, head, tail, &st)
}

// textStats counts what the dense features need during the word pass.
type textStats struct {
	bytes, words, digits, upper, punct, nonASCII, newlines, numbers int
	longWords, wordBytes                                            int
	cjk, cyrillic, arabic, indic, otherScript                       int
}

// words hashes the words of s into namespace ns; with grams it also adds
// bigrams and in-word character 4-grams. Digits are folded to '0' so that
// numbers hash by shape, not value.
func (f *Features) words(s string, ns int, grams bool, st *textStats) {
	var prev uint32
	havePrev := false
	i := 0
	for i < len(s) {
		c := s[i]
		if !wordByte(c) {
			if st != nil {
				switch {
				case c == '\n':
					st.newlines++
				case c != ' ' && c != '\t' && c != '\r':
					st.punct++
				}
			}
			// Punctuation that matters for the task type is a token too.
			switch c {
			case '?', '$', '=', '{', '}', '(', ')', '\\', '^', '#', '*', '+', '<', '>', ':', ';', '|', '[', ']', '"':
				h := (fnvOffset ^ uint32(c)) * fnvPrime
				f.add(ns, h)
				if grams {
					if havePrev {
						f.add(nsBigram, prev*31+h)
					}
					prev, havePrev = h, true
				}
			}
			i++
			continue
		}
		start := i
		h := uint32(fnvOffset)
		var c4 uint32 = ' ' // rolling 4-gram of lower-cased bytes, padded
		n := 0
		digits := 0
		for i < len(s) && wordByte(s[i]) {
			b := lower(s[i])
			if st != nil {
				switch {
				case s[i] >= '0' && s[i] <= '9':
					st.digits++
				case s[i] >= 'A' && s[i] <= 'Z':
					st.upper++
				case s[i] >= 0x80:
					st.nonASCII++
				}
			}
			if b >= '0' && b <= '9' {
				b = '0'
				digits++
			}
			h = (h ^ uint32(b)) * fnvPrime
			c4 = c4<<8 | uint32(b)
			n++
			if grams && n >= 3 && digits == 0 {
				f.add(nsChar, c4)
			}
			i++
		}
		if grams && n >= 3 && digits == 0 && n < 24 {
			f.add(nsChar, c4<<8|' ')
		}
		if st != nil {
			st.words++
			st.wordBytes += n
			if n >= 10 {
				st.longWords++
			}
			if digits == n {
				st.numbers++
			}
			if s[start] >= 0x80 {
				r, _ := utf8.DecodeRuneInString(s[start:])
				switch {
				case unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r) || unicode.Is(unicode.Hangul, r):
					st.cjk++
				case unicode.Is(unicode.Cyrillic, r):
					st.cyrillic++
				case unicode.Is(unicode.Arabic, r) || unicode.Is(unicode.Hebrew, r):
					st.arabic++
				case unicode.Is(unicode.Devanagari, r) || unicode.Is(unicode.Bengali, r) || unicode.Is(unicode.Tamil, r) || unicode.Is(unicode.Telugu, r) || unicode.Is(unicode.Thai, r):
					st.indic++
				case unicode.IsLetter(r) && !unicode.Is(unicode.Latin, r):
					st.otherScript++
				}
			}
		}
		f.add(ns, h)
		if grams {
			if havePrev {
				f.add(nsBigram, prev*31+h)
			}
			prev, havePrev = h, true
		}
	}
	if st != nil {
		st.bytes += len(s)
	}
}

func log1p(x int, scale float64) float32 {
	return float32(math.Log1p(float64(x)) / scale)
}

func frac(a, b int) float32 {
	if b == 0 {
		return 0
	}
	return float32(a) / float32(b)
}

func (f *Features) dense(p Prompt, head, tail string, st *textStats) {
	d := &f.Dense
	u := p.User
	d[dBias] = 1
	d[dLogChars] = log1p(len(u), 9)
	words := st.words
	if len(u) > st.bytes && st.bytes > 0 {
		words = int(float64(st.words) * float64(len(u)) / float64(st.bytes))
	}
	d[dLogWords] = log1p(words, 7)
	turns := p.Turns
	if turns < 1 {
		turns = 1
	}
	d[dTurns] = log1p(turns-1, 3)
	if p.System != "" {
		d[dHasSystem] = 1
	}
	d[dDigitFrac] = frac(st.digits, st.bytes) * 4
	d[dUpperFrac] = frac(st.upper, st.bytes) * 4
	d[dPunctFrac] = frac(st.punct, st.bytes) * 4
	d[dNonASCIIFrac] = frac(st.nonASCII, st.bytes)
	d[dCJK] = frac(st.cjk, st.words)
	d[dCyrillic] = frac(st.cyrillic, st.words)
	d[dArabic] = frac(st.arabic, st.words)
	d[dIndic] = frac(st.indic, st.words)
	d[dOtherScript] = frac(st.otherScript, st.words)
	d[dNewlines] = log1p(st.newlines, 5)
	d[dNumbers] = log1p(st.numbers, 5)
	d[dLongWords] = frac(st.longWords, st.words) * 4
	d[dAvgWordLen] = frac(st.wordBytes, st.words) / 10

	var m markers
	m.scan(head)
	if tail != "" {
		m.scan(tail)
	}
	d[dCode] = log1p(m.code, 3)
	d[dMath] = log1p(m.math, 3)
	d[dLatex] = log1p(m.latex, 3)
	d[dOptions] = float32(min(m.options, 8)) / 4
	d[dFewShot] = log1p(m.answers, 3)
	d[dNegation] = log1p(m.negation, 2)
	d[dWhichOfFollowing] = log1p(m.which, 2)
	d[dReasoning] = log1p(m.reasoning, 2)
	d[dStatements] = log1p(m.statements, 2)
	d[dGenerate] = log1p(m.generate, 2)
	end := trimRight(u)
	if hasSuffixFold(end, "answer:") {
		d[dEndsAnswer] = 1
	}
	if len(end) > 0 && end[len(end)-1] == '?' {
		d[dEndsQuestion] = 1
	}
	start := trimLeft(u)
	if len(start) > 0 && start[0] >= 'a' && start[0] <= 'z' {
		d[dLowerStart] = 1
	}
	for _, w := range whWords {
		if hasPrefixFold(start, w) {
			d[dWhQuestion] = 1
			break
		}
	}
}

var whWords = []string{"what ", "who ", "whom ", "when ", "where ", "which ", "why ", "how ", "is ", "are ", "does ", "do ", "can "}

func trimRight(s string) string {
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\n' || s[len(s)-1] == '\t' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

func trimLeft(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r') {
		s = s[1:]
	}
	return s
}

func hasSuffixFold(s, suffix string) bool {
	if len(s) < len(suffix) {
		return false
	}
	return equalFoldASCII(s[len(s)-len(suffix):], suffix)
}

func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	return equalFoldASCII(s[:len(prefix)], prefix)
}

// equalFoldASCII compares s with a lower-case ASCII pattern.
func equalFoldASCII(s, pattern string) bool {
	for i := 0; i < len(pattern); i++ {
		if lower(s[i]) != pattern[i] {
			return false
		}
	}
	return true
}

// markers counts task-type cues in one scan of the text.
type markers struct {
	code, math, latex, options, answers, negation, which, reasoning, statements, generate int
}

// cue is a marker pattern (lower-case; matched case-insensitively unless
// exact) and the counter it feeds.
type cue struct {
	pat   string
	exact bool
	field int
}

const (
	cCode = iota
	cMath
	cLatex
	cAnswers
	cNegation
	cWhich
	cReasoning
	cStatements
	cGenerate
)

// cues are indexed by their first byte (lower-cased) so the scan looks at
// only the few patterns that can start at each position.
var cues = [...]cue{
	{"```", false, cCode}, {"def ", false, cCode}, {"return ", false, cCode}, {"import ", false, cCode},
	{"#include", false, cCode}, {"function", false, cCode}, {"=>", false, cCode}, {"();", false, cCode},
	{"){", false, cCode}, {") {", false, cCode}, {"python", false, cCode}, {"javascript", false, cCode},
	{"sql", false, cCode}, {"print(", false, cCode}, {"class ", false, cCode}, {">>>", false, cCode},
	{"\"\"\"", false, cCode}, {"public ", false, cCode}, {"const ", false, cCode}, {"regex", false, cCode},
	{"\\frac", false, cLatex}, {"\\sqrt", false, cLatex}, {"\\(", false, cLatex}, {"\\[", false, cLatex},
	{"$", false, cLatex}, {"\\cdot", false, cLatex}, {"\\pi", false, cLatex}, {"\\le", false, cLatex},
	{"^", false, cMath}, {" = ", false, cMath}, {" + ", false, cMath}, {" - ", false, cMath},
	{" * ", false, cMath}, {" / ", false, cMath}, {"%", false, cMath}, {"calculate", false, cMath},
	{"solve", false, cMath}, {"how many", false, cMath}, {"how much", false, cMath}, {"probability", false, cMath},
	{"equation", false, cMath}, {"integer", false, cMath}, {"sum of", false, cMath}, {"total", false, cMath},
	{"answer:", false, cAnswers}, {"q:", false, cAnswers}, {"question:", false, cAnswers},
	{"NOT ", true, cNegation}, {"EXCEPT", true, cNegation}, {"LEAST", true, cNegation}, {"FALSE", true, cNegation},
	{"which of the following", false, cWhich},
	{"step by step", false, cReasoning}, {"prove", false, cReasoning}, {"explain", false, cReasoning},
	{"justify", false, cReasoning}, {"derive", false, cReasoning}, {"reason", false, cReasoning},
	{"clue", false, cReasoning}, {"deduce", false, cReasoning}, {"therefore", false, cReasoning},
	{"statement 1", false, cStatements}, {"scenario 1", false, cStatements},
	{"write a", false, cGenerate}, {"generate", false, cGenerate}, {"compose", false, cGenerate},
	{"translate", false, cGenerate}, {"summarize", false, cGenerate}, {"create a", false, cGenerate},
}

var cueIndex = func() (idx [256][]uint8) {
	for i, c := range cues {
		b := c.pat[0]
		idx[b] = append(idx[b], uint8(i))
		if !c.exact && b >= 'a' && b <= 'z' {
			idx[b-32] = append(idx[b-32], uint8(i))
		}
	}
	return idx
}()

func (m *markers) scan(s string) {
	lineStart := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if lineStart {
			if isOption(s[i:]) {
				m.options++
			}
		}
		lineStart = c == '\n'
		for _, ci := range cueIndex[c] {
			cu := &cues[ci]
			if len(s)-i < len(cu.pat) {
				continue
			}
			var ok bool
			if cu.exact {
				ok = s[i:i+len(cu.pat)] == cu.pat
			} else {
				ok = equalFoldASCII(s[i:i+len(cu.pat)], cu.pat)
			}
			if !ok {
				continue
			}
			switch cu.field {
			case cCode:
				m.code++
			case cMath:
				m.math++
			case cLatex:
				m.latex++
			case cAnswers:
				m.answers++
			case cNegation:
				m.negation++
			case cWhich:
				m.which++
			case cReasoning:
				m.reasoning++
			case cStatements:
				m.statements++
			case cGenerate:
				m.generate++
			}
		}
	}
}

// isOption reports whether a line starts a multiple-choice option: "A.",
// "A)", "(A)", "A:" with A..H.
func isOption(s string) bool {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	if len(s) >= 3 && s[0] == '(' && s[1] >= 'A' && s[1] <= 'H' && s[2] == ')' {
		return true
	}
	return len(s) >= 2 && s[0] >= 'A' && s[0] <= 'H' && (s[1] == '.' || s[1] == ')' || s[1] == ':')
}
