// Package guardrail checks what goes to an upstream and what comes back
// against configured content filters: prebuilt detectors (e-mail
// addresses, card numbers, credentials …), regular expressions and
// blocked words, each of which blocks the request or masks what it found.
// A moderation guardrail names a model group to ask instead; the server
// makes that call (Texts, Flagged).
//
// A Guard is compiled once from the config; checking is safe for
// concurrent use and needs no I/O. A pattern's regular expression runs
// only on text that passes a cheap test first (an "@" for an e-mail
// address, enough digits for a card number, "AKIA" for an AWS key), so
// ordinary prose costs a few scans of its bytes.
package guardrail

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Action is what a guard does with a match.
type Action uint8

const (
	// Block refuses the request (or the answer).
	Block Action = iota + 1
	// Mask replaces the match with a placeholder, [EMAIL_REDACTED].
	Mask
)

func (a Action) String() string {
	if a == Mask {
		return "mask"
	}
	return "block"
}

// ParseAction reads a config action: BLOCK (also when empty) or MASK, in
// any case.
func ParseAction(s string) (Action, error) {
	switch strings.ToUpper(s) {
	case "", "BLOCK":
		return Block, nil
	case "MASK":
		return Mask, nil
	}
	return 0, fmt.Errorf("unknown action %q; use BLOCK or MASK", s)
}

// Guard is one compiled guardrail.
type Guard struct {
	Name      string
	DefaultOn bool
	// Modes are the configured modes, for GET /guardrails/list.
	Modes []string
	Info  map[string]any
	pre   bool // checks requests (pre_call, during_call)
	post  bool // checks answers (post_call)
	log   bool // masks what is recorded (logging_only)
	rules []rule
	// Moderation is the model group a moderation guardrail asks, and
	// Categories those of its categories that block (empty: any).
	Moderation string
	Categories []string
}

// rule is one pattern or word of a guard and what to do with its
// matches.
type rule struct {
	name   string
	what   string // how errors name it: `pattern "email"`, `blocked word "falcon"`
	action Action
	re     *regexp.Regexp
	// maybe is a cheap test that text could hold a match (a literal the
	// pattern needs, enough digits); nil means always run re.
	maybe  func(*profile) bool
	valid  func(string) bool
	anchor string // see detector.anchor
	tail   tail   // where a match could still be growing in a stream
	mask   string
}

// Input reports whether the guard checks requests.
func (g *Guard) Input() bool { return g.pre }

// Output reports whether the guard checks answers.
func (g *Guard) Output() bool { return g.post }

// During reports whether the guard checks requests during the upstream
// call (during_call without pre_call): a moderation guardrail's call then
// runs beside it, and the answer waits for its verdict.
func (g *Guard) During() bool {
	return slices.Contains(g.Modes, "during_call") && !slices.Contains(g.Modes, "pre_call")
}

// Compile builds a guard from its config, which Validate accepted.
func Compile(c Config) (*Guard, error) {
	g := &Guard{Name: c.Name, DefaultOn: c.Params.DefaultOn, Modes: c.Params.Mode, Info: c.Info}
	if Moderation(c.Params.Guardrail) {
		g.Moderation, g.Categories = c.Params.Model, c.Params.Categories
	}
	for _, m := range c.Params.Mode {
		switch m {
		case "pre_call", "during_call":
			g.pre = true
		case "post_call":
			g.post = true
		case "logging_only":
			g.log = true
		}
	}
	add := func(r rule, re string) error {
		cre, err := regexp.Compile(re)
		if err != nil {
			return fmt.Errorf("guardrail %q: %s: %w", c.Name, r.what, err)
		}
		r.re = cre
		g.rules = append(g.rules, r)
		return nil
	}
	for _, p := range c.Params.Patterns {
		action, err := ParseAction(p.Action)
		if err != nil {
			return nil, fmt.Errorf("guardrail %q: %w", c.Name, err)
		}
		if p.Type == "regex" {
			name := p.Label
			if name == "" {
				name = p.Name
			}
			if name == "" {
				name = "custom_regex"
			}
			if err := add(rule{name: name, what: fmt.Sprintf("pattern %q", name), action: action, tail: tailFixed, mask: maskFor(name)}, p.Regex); err != nil {
				return nil, err
			}
			continue
		}
		names, ok := prebuilt(p.Name)
		if !ok {
			return nil, fmt.Errorf("guardrail %q: unknown prebuilt pattern %q", c.Name, p.Name)
		}
		for _, n := range names {
			d := detectors[n]
			if err := add(rule{name: n, what: fmt.Sprintf("pattern %q", n), action: action, maybe: d.maybe, valid: d.valid, anchor: d.anchor, tail: d.tailOrWord(), mask: maskFor(n)}, d.re); err != nil {
				return nil, err
			}
		}
	}
	for _, w := range c.Params.BlockedWords {
		action, err := ParseAction(w.Action)
		if err != nil {
			return nil, fmt.Errorf("guardrail %q: %w", c.Name, err)
		}
		what := fmt.Sprintf("blocked word %q", w.Keyword)
		if w.Description != "" {
			what += " (" + w.Description + ")"
		}
		first := strings.ToLower(strings.Fields(w.Keyword)[0])
		maybe := func(p *profile) bool { return containsFold(p.text, first) }
		tw := tailWords(len(strings.Fields(w.Keyword)))
		if err := add(rule{name: "blocked_word", what: what, action: action, maybe: maybe, tail: tw, mask: "[KEYWORD_REDACTED]"}, wordRegex(w.Keyword)); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// maskFor is the placeholder of a rule's matches.
func maskFor(name string) string {
	return "[" + strings.ToUpper(name) + "_REDACTED]"
}

// wordRegex matches a word or phrase whole, in any case, with any run of
// spaces between its words.
func wordRegex(kw string) string {
	fields := strings.Fields(kw)
	for i, f := range fields {
		fields[i] = regexp.QuoteMeta(f)
	}
	re := `(?i:` + strings.Join(fields, `\s+`) + `)`
	first, _ := utf8.DecodeRuneInString(kw)
	last, _ := utf8.DecodeLastRuneInString(strings.TrimSpace(kw))
	if isWord(first) {
		re = `\b` + re
	}
	if isWord(last) {
		re += `\b`
	}
	return re
}

func isWord(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

// finding is one match a guard acts on, as byte offsets in the text.
type finding struct {
	guard      string
	rule       *rule
	start, end int
}

// find returns the matches of the guard's rules in text, in order and
// not overlapping (the earlier, then the longer, wins), without those a
// rule's check rejects. Each rule runs only where its cheap test passes.
func (g *Guard) find(text string) []finding {
	var out []finding
	p := profile{text: text, digits: -1}
	for i := range g.rules {
		r := &g.rules[i]
		if r.maybe != nil && !r.maybe(&p) {
			continue
		}
		if r.anchor != "" {
			out = r.findAnchored(g.Name, text, out)
			continue
		}
		for _, m := range r.re.FindAllStringIndex(text, -1) {
			if r.valid == nil || r.valid(text[m[0]:m[1]]) {
				out = append(out, finding{guard: g.Name, rule: r, start: m[0], end: m[1]})
			}
		}
	}
	return disjoint(out)
}

// disjoint sorts findings and drops those overlapping an earlier one (the
// earlier, then the longer, then the one of the earlier rule wins: a
// Lumen virtual key is lumen_key's, not openai_key's).
func disjoint(fs []finding) []finding {
	if len(fs) < 2 {
		return fs
	}
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].start != fs[j].start {
			return fs[i].start < fs[j].start
		}
		return fs[i].end > fs[j].end
	})
	kept := fs[:1]
	for _, f := range fs[1:] {
		if f.start >= kept[len(kept)-1].end {
			kept = append(kept, f)
		}
	}
	return kept
}

// mask returns text with each finding (disjoint, in order) replaced by
// its rule's placeholder.
func mask(text string, fs []finding) string {
	var b strings.Builder
	b.Grow(len(text))
	prev := 0
	for _, f := range fs {
		b.WriteString(text[prev:f.start])
		b.WriteString(f.rule.mask)
		prev = f.end
	}
	b.WriteString(text[prev:])
	return b.String()
}

// findAnchored runs an anchored rule on each whitespace-delimited word
// holding its anchor (at most anchorReach bytes either side of it).
func (r *rule) findAnchored(guard, text string, out []finding) []finding {
	end := 0 // the end of the last word searched
	for i := 0; ; {
		j := strings.Index(text[i:], r.anchor)
		if j < 0 {
			return out
		}
		at := i + j
		ws := at
		for ws > end && ws > at-anchorReach && !isSpace(text[ws-1]) {
			ws--
		}
		we := at + len(r.anchor)
		for we < len(text) && we < at+anchorReach && !isSpace(text[we]) {
			we++
		}
		for _, m := range r.re.FindAllStringIndex(text[ws:we], -1) {
			s, e := ws+m[0], ws+m[1]
			if r.valid == nil || r.valid(text[s:e]) {
				out = append(out, finding{guard: guard, rule: r, start: s, end: e})
			}
		}
		end, i = we, max(we, at+1)
		if i >= len(text) {
			return out
		}
	}
}

// anchorReach bounds the word an anchored rule searches, either side of
// its anchor.
const anchorReach = 512

// Hit is a rule that matched: for metrics and logs, never the text.
type Hit struct {
	Guard  string
	Rule   string
	Action Action
}

// BlockedError is a request or an answer a guard refused. It names the
// guard, what matched and where, never the matched text.
type BlockedError struct {
	Guard string
	What  string // `pattern "us_ssn"`, `blocked word "falcon"`
	Field string // where in the request ("messages[0].content"); empty for an answer
	// Output is true when the answer was refused (post_call).
	Output bool
}

func (e *BlockedError) Error() string {
	if e.Output {
		return fmt.Sprintf("guardrail %q blocked the answer: %s detected", e.Guard, e.What)
	}
	if e.Field == "" {
		return fmt.Sprintf("guardrail %q blocked the request: %s detected", e.Guard, e.What)
	}
	return fmt.Sprintf("guardrail %q blocked the request: %s detected in %s", e.Guard, e.What, e.Field)
}

// check applies the guard to one text. It returns the text with the
// masked matches replaced (changed reports whether any were), the rules
// that matched, and the first blocking match's rule, if any; with maskAll
// (logging_only) what would block is masked instead.
func (g *Guard) check(text string, hits []Hit, maskAll bool) (out string, changed bool, _ []Hit, blocked *rule) {
	fs := g.find(text)
	if len(fs) == 0 {
		return text, false, hits, nil
	}
	for _, f := range fs {
		if maskAll {
			hits = append(hits, Hit{Guard: g.Name, Rule: f.rule.name, Action: Mask})
			continue
		}
		hits = append(hits, Hit{Guard: g.Name, Rule: f.rule.name, Action: f.rule.action})
		if f.rule.action == Block && blocked == nil {
			blocked = f.rule
		}
	}
	if blocked != nil {
		return text, false, hits, blocked
	}
	return mask(text, fs), true, hits, nil
}

// Set is the configured guardrails, by name.
type Set struct {
	all    []*Guard
	byName map[string]*Guard
}

// NewSet compiles a guardrails list (which Validate accepted).
func NewSet(list []Config) (*Set, error) {
	s := &Set{byName: make(map[string]*Guard, len(list))}
	for _, c := range list {
		g, err := Compile(c)
		if err != nil {
			return nil, err
		}
		s.all = append(s.all, g)
		s.byName[g.Name] = g
	}
	return s, nil
}

// All returns the guards in config order.
func (s *Set) All() []*Guard {
	if s == nil {
		return nil
	}
	return s.all
}

// Has reports whether a guardrail of that name is configured.
func (s *Set) Has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.byName[name]
	return ok
}

// UnknownError is a request naming a guardrail that is not configured.
type UnknownError struct {
	Name      string
	Available []string
}

func (e *UnknownError) Error() string {
	if len(e.Available) == 0 {
		return fmt.Sprintf("guardrail %q is not configured (this gateway has no guardrails)", e.Name)
	}
	return fmt.Sprintf("guardrail %q is not configured; available: %s", e.Name, strings.Join(e.Available, ", "))
}

// Select returns the guards a request runs: every default_on guard, then
// those it names (in its "guardrails" field) that are not default_on. A
// request cannot turn a default_on guard off.
func (s *Set) Select(named []string) ([]*Guard, error) {
	if s == nil {
		if len(named) > 0 {
			return nil, &UnknownError{Name: named[0]}
		}
		return nil, nil
	}
	var out []*Guard
	for _, g := range s.all {
		if g.DefaultOn {
			out = append(out, g)
		}
	}
	for _, n := range named {
		g, ok := s.byName[n]
		if !ok {
			names := make([]string, len(s.all))
			for i, g := range s.all {
				names[i] = g.Name
			}
			return nil, &UnknownError{Name: n, Available: names}
		}
		if !g.DefaultOn && !contains(out, g) {
			out = append(out, g)
		}
	}
	return out, nil
}

func contains(gs []*Guard, g *Guard) bool {
	for _, x := range gs {
		if x == g {
			return true
		}
	}
	return false
}
