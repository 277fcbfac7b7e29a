package guardrail

import (
	"sort"
	"strings"
)

// detector is a prebuilt pattern: a regular expression (Go RE2) and,
// where the format has one, a check that cuts false positives (a card
// number's Luhn digit, an IBAN's mod-97).
type detector struct {
	re    string
	maybe func(*profile) bool // a cheap test that the text could hold a match
	valid func(match string) bool
	// anchor, when set, is a literal every match contains and no match
	// spans whitespace around: the expression runs only on the
	// whitespace-delimited words holding it.
	anchor string
	// tail is where a match could still be growing in a stream; nil means
	// the word being written (no match spans whitespace).
	tail tail
}

func (d detector) tailOrWord() tail {
	if d.tail != nil {
		return d.tail
	}
	return tailWord
}

// detectors are the prebuilt patterns, by pattern_name. The names follow
// LiteLLM's content filter where it has the same detector.
var detectors = map[string]detector{
	// PII
	"email":    {anchor: "@", re: `\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b`},
	"us_ssn":   {maybe: digitRun(9), re: `\b\d{3}-\d{2}-\d{4}\b`, valid: validSSN},
	"us_phone": {tail: tailNumber, maybe: digitRun(10), re: `(?:\+?\b1[\s.-]?)?(?:\(\d{3}\)|\b\d{3})[\s.-]?\d{3}[\s.-]?\d{4}\b`},
	"credit_card": {tail: tailNumber, maybe: digitRun(13), re: `\b(?:\d[ -]?){12,18}\d\b`, valid: func(s string) bool {
		d := digits(s)
		return len(d) >= 13 && len(d) <= 19 && cardPrefix(d) && luhn(d)
	}},
	"visa":       {tail: tailNumber, maybe: digitRun(16), re: `\b4\d{3}(?:[ -]?\d{4}){3}\b`, valid: func(s string) bool { return luhn(digits(s)) }},
	"mastercard": {tail: tailNumber, maybe: digitRun(16), re: `\b(?:5[1-5]\d{2}|2[2-7]\d{2})(?:[ -]?\d{4}){3}\b`, valid: func(s string) bool { return luhn(digits(s)) }},
	"amex":       {tail: tailNumber, maybe: digitRun(15), re: `\b3[47]\d{2}[ -]?\d{6}[ -]?\d{5}\b`, valid: func(s string) bool { return luhn(digits(s)) }},
	"discover":   {tail: tailNumber, maybe: digitRun(16), re: `\b6(?:011|5\d{2})(?:[ -]?\d{4}){3}\b`, valid: func(s string) bool { return luhn(digits(s)) }},
	"iban":       {tail: tailNumber, maybe: ibanStart, re: `\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b`, valid: validIBAN},
	"ipv4":       {maybe: func(p *profile) bool { return p.run() >= 4 && dottedQuad(p.text) }, re: `\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b`},
	"ipv6":       {maybe: colons, re: `\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:){1,6}(?::[0-9A-Fa-f]{1,4}){1,6}\b`},
	"url":        {anchor: "://", re: `\bhttps?://[^\s<>"'` + "`" + `]+`},
	// credentials. A Lumen virtual key (ledger.KeyPrefix and 43 base62
	// digits) is also an sk- key: openai_key takes it whole, "lumen-"
	// included, rather than mask its sk- part and leave "lumen-" before
	// the mask; where both run, lumen_key, listed first, names it.
	"aws_access_key":  {maybe: has("AKIA", "ASIA"), re: `\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`},
	"github_token":    {maybe: has("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), re: `\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b`},
	"slack_token":     {maybe: has("xox"), re: `\bxox[abposr]-[A-Za-z0-9-]{10,}`},
	"lumen_key":       {anchor: "lumen-sk-", re: `lumen-sk-[0-9A-Za-z]{43}\b`},
	"openai_key":      {maybe: has("sk-"), re: `(?:lumen-)?\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}`},
	"anthropic_key":   {maybe: has("sk-ant-"), re: `\bsk-ant-[A-Za-z0-9_-]{20,}`},
	"google_api_key":  {maybe: has("AIza"), re: `\bAIza[0-9A-Za-z_-]{35}\b`},
	"stripe_key":      {maybe: has("k_live_", "k_test_"), re: `\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b`},
	"jwt":             {maybe: has("eyJ"), re: `\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`},
	"private_key":     {tail: tailPrivateKey, maybe: has("PRIVATE KEY-----"), re: `-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)-----END [A-Z ]*PRIVATE KEY-----`},
	"generic_api_key": {tail: tailAssignment, maybe: secretWord, re: `(?i)\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|password)["']?\s*[:=]\s*["']?[A-Za-z0-9_\-./+=]{12,}`},
}

// bundles name several detectors at once.
var bundles = map[string][]string{
	"pii":         {"email", "us_ssn", "us_phone", "credit_card", "iban"},
	"credentials": {"aws_access_key", "github_token", "slack_token", "lumen_key", "openai_key", "anthropic_key", "google_api_key", "stripe_key", "jwt", "private_key", "generic_api_key"},
}

// prebuilt returns the detector names a pattern_name stands for.
func prebuilt(name string) ([]string, bool) {
	if b, ok := bundles[name]; ok {
		return b, true
	}
	if _, ok := detectors[name]; ok {
		return []string{name}, true
	}
	return nil, false
}

// PrebuiltNames lists the prebuilt pattern names (bundles included).
func PrebuiltNames() []string {
	out := make([]string, 0, len(detectors)+len(bundles))
	for n := range detectors {
		out = append(out, n)
	}
	for n := range bundles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func digits(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// luhn reports whether a digit string has a valid Luhn check digit.
func luhn(d string) bool {
	sum, double := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if double {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
		double = !double
	}
	return len(d) > 0 && sum%10 == 0
}

// cardPrefix reports whether digits start like a card of a major network
// (Visa, Mastercard, American Express, Discover, JCB, Diners, UnionPay).
func cardPrefix(d string) bool {
	for _, p := range []string{"4", "51", "52", "53", "54", "55", "22", "23", "24", "25", "26", "27", "34", "37", "6011", "65", "35", "36", "38", "30", "62"} {
		if strings.HasPrefix(d, p) {
			return true
		}
	}
	return false
}

// validSSN drops the numbers the SSA never issues: area 000, 666 or 9xx,
// group 00, serial 0000.
func validSSN(s string) bool {
	d := digits(s)
	if len(d) != 9 {
		return false
	}
	area, group, serial := d[:3], d[3:5], d[5:]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// validIBAN checks an IBAN's mod-97 digits (ISO 13616).
func validIBAN(s string) bool {
	s = strings.ReplaceAll(s, " ", "")
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	r := s[4:] + s[:4]
	rem := 0
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c >= '0' && c <= '9':
			rem = (rem*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			rem = (rem*100 + int(c-'A'+10)) % 97
		default:
			return false
		}
	}
	return rem == 1
}

// has is a test that the text contains one of the literals.
func has(lits ...string) func(*profile) bool {
	return func(p *profile) bool {
		for _, l := range lits {
			if strings.Contains(p.text, l) {
				return true
			}
		}
		return false
	}
}

// digitRun is a test for a run of at least n ASCII digits (see
// longestDigitRun).
func digitRun(n int) func(*profile) bool {
	return func(p *profile) bool { return p.run() >= n }
}

// profile is what the cheap tests of one text share, computed once.
type profile struct {
	text   string
	digits int // the longest digit run; -1 until computed
}

func (p *profile) run() int {
	if p.digits < 0 {
		p.digits = longestDigitRun(p.text)
	}
	return p.digits
}

// longestDigitRun is the length of the longest run of ASCII digits in
// text, up to two separators (space, - . ( ) + /) allowed between them, as
// card numbers, phone numbers and addresses are written.
func longestDigitRun(text string) int {
	best, c, seps := 0, 0, 0
	for i := 0; i < len(text); i++ {
		switch b := text[i]; {
		case b-'0' < 10:
			c, seps = c+1, 0
			best = max(best, c)
		case b == ' ' || b == '-' || b == '.' || b == '(' || b == ')' || b == '+' || b == '/':
			if seps++; seps > 2 {
				c = 0
			}
		default:
			c, seps = 0, 0
		}
	}
	return best
}

// ibanStart is a test for two capitals then two digits, as an IBAN
// begins.
func ibanStart(p *profile) bool {
	text := p.text
	for i := 0; i+3 < len(text); i++ {
		if text[i]-'A' < 26 && text[i+1]-'A' < 26 && text[i+2]-'0' < 10 && text[i+3]-'0' < 10 {
			return true
		}
	}
	return false
}

func colons(p *profile) bool { return strings.Count(p.text, ":") >= 2 }

func secretWord(p *profile) bool {
	text := p.text
	return (strings.ContainsAny(text, ":=")) &&
		(containsFold(text, "key") || containsFold(text, "token") || containsFold(text, "password"))
}

// containsFold reports whether text contains needle (lower case) in any
// ASCII case, without allocating. A needle with non-ASCII letters is
// always reported present (the regular expression decides).
func containsFold(text, needle string) bool {
	if needle == "" {
		return true
	}
	for i := 0; i < len(needle); i++ {
		if needle[i] >= 0x80 {
			return true
		}
	}
	first := needle[0]
	upper := first
	if first >= 'a' && first <= 'z' {
		upper = first - 'a' + 'A'
	}
	for i := 0; i+len(needle) <= len(text); i++ {
		if text[i] != first && text[i] != upper {
			continue
		}
		j := 1
		for ; j < len(needle); j++ {
			c := text[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				break
			}
		}
		if j == len(needle) {
			return true
		}
	}
	return false
}

// dottedQuad is a test for digits, a dot, digits, a dot, digits, a dot
// and a digit, as an IPv4 address is written.
func dottedQuad(text string) bool {
	dots, digits := 0, 0
	for i := 0; i < len(text); i++ {
		switch b := text[i]; {
		case b-'0' < 10:
			if digits++; dots == 3 {
				return true
			}
		case b == '.' && digits > 0:
			dots, digits = dots+1, 0
		default:
			dots, digits = 0, 0
		}
	}
	return false
}
