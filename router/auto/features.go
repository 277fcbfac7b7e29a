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
	headBytes    = 768
	tailBytes    = 1280
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
	f.dense(p, &st)
}

// textStats counts what the dense features need during the word pass.
type textStats struct {
	bytes, words, digits, upper, punct, nonASCII, newlines, numbers int
	longWords, wordBytes                                            int
	cjk, cyrillic, arabic, indic, otherScript                       int
	m                                                               markers
}

// words hashes the words of s into namespace ns; with grams it also adds
// bigrams and in-word character 4-grams. Digits are folded to '0' so that
// numbers hash by shape, not value. With st it also gathers the statistics
// and task cues of the dense features, in the same pass.
func (f *Features) words(s string, ns int, grams bool, st *textStats) {
	var prev uint32
	havePrev := false
	lineStart := true
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
					if lineStart && c == '(' && i+2 < len(s) && s[i+1] >= 'A' && s[i+1] <= 'H' && s[i+2] == ')' {
						st.m.options++
					}
					st.m.symbol(c)
				}
			}
			if c == '\n' {
				lineStart = true
			} else if c != ' ' && c != '\t' {
				lineStart = false
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
		n, digits, upper := 0, 0, 0
		for i < len(s) && wordByte(s[i]) {
			b := s[i]
			switch {
			case b >= 'A' && b <= 'Z':
				upper++
				b += 32
			case b >= '0' && b <= '9':
				b = '0'
				digits++
			}
			h = (h ^ uint32(b)) * fnvPrime
			c4 = c4<<8 | uint32(b)
			n++
			if grams && n >= 3 && digits == 0 && n&1 == 1 {
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
			st.digits += digits
			st.upper += upper
			if n >= 10 {
				st.longWords++
			}
			if digits == n {
				st.numbers++
			}
			if lineStart && n == 1 && upper == 1 && s[start] <= 'H' && i < len(s) && (s[i] == '.' || s[i] == ')' || s[i] == ':') {
				st.m.options++
			}
			st.m.word(h, upper == n && n > 1)
			if havePrev {
				st.m.word(prev*31+h, false)
			}
			if s[start] >= 0x80 {
				st.script(s[start:i])
			}
		}
		lineStart = false
		f.add(ns, h)
		if grams {
			if havePrev {
				f.add(nsBigram, prev*31+h)
			}
			prev, havePrev = h, true
		} else {
			prev, havePrev = h, true
		}
	}
	if st != nil {
		st.bytes += len(s)
	}
}

// script counts the script of a word that starts with a non-ASCII rune.
func (st *textStats) script(w string) {
	for _, c := range []byte(w) {
		if c >= 0x80 {
			st.nonASCII++
		}
	}
	r, _ := utf8.DecodeRuneInString(w)
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

func log1p(x int, scale float64) float32 {
	return float32(math.Log1p(float64(x)) / scale)
}

func frac(a, b int) float32 {
	if b == 0 {
		return 0
	}
	return float32(a) / float32(b)
}

func (f *Features) dense(p Prompt, st *textStats) {
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

	m := &st.m
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

// markers counts task-type cues, gathered during the word pass.
type markers struct {
	code, math, latex, options, answers, negation, which, reasoning, statements, generate int
}

const (
	cCode = iota + 1
	cMath
	cLatex
	cAnswers
	cNegation
	cWhich
	cReasoning
	cStatements
	cGenerate
)

// cueWords are single words (or two-word phrases, matched as bigrams) that
// signal a task type. Upper-case entries only match words written in
// capitals ("NOT", "EXCEPT"): the emphasis of a negated question.
var cueWords = []struct {
	text  string
	field uint8
}{
	{"def", cCode}, {"return", cCode}, {"import", cCode}, {"function", cCode}, {"python", cCode},
	{"javascript", cCode}, {"sql", cCode}, {"print", cCode}, {"class", cCode}, {"public", cCode},
	{"const", cCode}, {"regex", cCode}, {"include", cCode}, {"code", cCode}, {"array", cCode},
	{"string", cCode}, {"list", cCode}, {"int", cCode}, {"self", cCode}, {"null", cCode},
	{"calculate", cMath}, {"solve", cMath}, {"probability", cMath}, {"equation", cMath},
	{"integer", cMath}, {"total", cMath}, {"how many", cMath}, {"how much", cMath}, {"sum of", cMath},
	{"compute", cMath}, {"percent", cMath}, {"average", cMath},
	{"frac", cLatex}, {"sqrt", cLatex}, {"cdot", cLatex}, {"pi", cLatex}, {"le", cLatex}, {"times", cLatex},
	{"answer", cAnswers}, {"question", cAnswers},
	{"NOT", cNegation}, {"EXCEPT", cNegation}, {"LEAST", cNegation}, {"FALSE", cNegation}, {"NEVER", cNegation},
	{"the following", cWhich},
	{"by step", cReasoning}, {"prove", cReasoning}, {"explain", cReasoning}, {"justify", cReasoning},
	{"derive", cReasoning}, {"reason", cReasoning}, {"clue", cReasoning}, {"deduce", cReasoning},
	{"therefore", cReasoning}, {"why", cReasoning},
	{"statement 0", cStatements}, {"scenario 0", cStatements},
	{"write a", cGenerate}, {"generate", cGenerate}, {"compose", cGenerate}, {"translate", cGenerate},
	{"summarize", cGenerate}, {"create a", cGenerate}, {"draft", cGenerate}, {"essay", cGenerate},
}

// cueSlot is an open-addressing table of cue hashes; hash 0 marks empty.
type cueSlot struct {
	h     uint32
	upper bool
	field uint8
}

const cueBits = 9

var cueTable = func() (t [1 << cueBits]cueSlot) {
	for _, c := range cueWords {
		var h, prev uint32
		words := 0
		upper := c.text[0] >= 'A' && c.text[0] <= 'Z'
		for _, w := range splitSpace(c.text) {
			x := uint32(fnvOffset)
			for i := 0; i < len(w); i++ {
				x = (x ^ uint32(lower(w[i]))) * fnvPrime
			}
			if words > 0 {
				h = prev*31 + x
			} else {
				h = x
			}
			prev = x
			words++
		}
		for j := mix(h) & (1<<cueBits - 1); ; j = (j + 1) & (1<<cueBits - 1) {
			if t[j].h == 0 {
				t[j] = cueSlot{h, upper, c.field}
				break
			}
		}
	}
	return t
}()

func splitSpace(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ' ' {
			i++
		}
		out = append(out, s[:i])
		for i < len(s) && s[i] == ' ' {
			i++
		}
		s = s[i:]
	}
	return out
}

// word counts the cue, if any, of a word (or bigram) hash.
func (m *markers) word(h uint32, allUpper bool) {
	for j := mix(h) & (1<<cueBits - 1); ; j = (j + 1) & (1<<cueBits - 1) {
		e := &cueTable[j]
		if e.h == 0 {
			return
		}
		if e.h == h {
			if e.upper && !allUpper {
				return
			}
			m.count(e.field)
			return
		}
	}
}

// symbol counts the cue of a punctuation byte.
func (m *markers) symbol(c byte) {
	switch c {
	case '{', '}', ';':
		m.code++
	case '^', '=', '+', '*', '%', '/':
		m.math++
	case '$', '\\':
		m.latex++
	}
}

func (m *markers) count(field uint8) {
	switch field {
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
