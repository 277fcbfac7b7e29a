// Package credentials keeps the credentials that URLs and connection
// strings carry out of what Lumen shows: `lumen config show`, config
// errors, log lines and the errors returned to clients. Redact is the one
// function that finds them; everything that prints a URL, a DSN or an error
// that may quote one goes through it.
package credentials

import (
	"encoding/base64"
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Mask replaces each credential (net/url's URL.Redacted uses the same).
const Mask = "xxxxx"

// Redact returns s with the credentials of every URL and connection string
// in it replaced by Mask, the rest left readable:
//
//   - a userinfo password: postgres://user:pass@host/db becomes
//     postgres://user:xxxxx@host/db, redis://:pass@host redis://:xxxxx@host
//     (also a password net/url cannot parse, holding "@" or "/");
//   - the value of a query parameter or key=value setting named like a
//     secret (ending in password, passwd, pwd, pass, secret, token, key,
//     apikey, auth, sig, signature or credential(s), in any case, "-", "_"
//     and "." ignored): ?sslpassword=…, ?api_key=…, &X-Amz-Signature=…,
//     libpq's "host=db password=…" (quoted values too), Azure's
//     "…;AccountKey=…".
//
// A username on its own (https://name@host) is kept: it is no secret to
// Postgres, Redis or HTTP basic auth. s may be a whole URL or DSN, or any
// text quoting some (an error message, a log line). Redact is idempotent
// and safe for concurrent use.
func Redact(s string) string {
	if strings.Contains(s, "://") {
		s = redactUserinfo(s)
	}
	if strings.IndexByte(s, '=') >= 0 {
		s = paramRE.ReplaceAllStringFunc(s, redactParam)
	}
	return s
}

// RedactError returns err with its text redacted: err itself when its
// text holds no credential, else an error whose Error is Redact's and
// which unwraps to err, so errors.Is and errors.As still see it. A
// *url.Error from parsing a URL that holds credentials loses its reason
// too: net/url quotes the piece it could not read ("invalid port
// \":pass\" after host"), which may be part of the password.
func RedactError(err error) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	r := text
	var ue *url.Error
	if errors.As(err, &ue) && ue.Op == "parse" && Redact(ue.URL) != ue.URL {
		r = strings.Replace(r, ue.Error(), ue.Op+" "+strconv.Quote(ue.URL)+": not a valid URL", 1)
	}
	if r = Redact(r); r != text {
		return &redacted{text: r, err: err}
	}
	return err
}

// SentFor returns the credentials net/http sends for rawURL's userinfo,
// which an answer may quote back: the password, and the value of the
// "Authorization: Basic" header made of it (base64 of user:password).
// Nil when rawURL has no password.
func SentFor(rawURL string) []string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return nil
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return nil
	}
	return []string{pw, base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pw))}
}

type redacted struct {
	text string
	err  error
}

func (e *redacted) Error() string { return e.text }
func (e *redacted) Unwrap() error { return e.err }

// schemeRE finds where a URL's authority starts.
var schemeRE = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://`)

// endOfURL are the characters that end a URL quoted in text: a password
// may hold anything else ("@", "/", ":", ",").
const endOfURL = " \t\r\n\"'<>`"

// redactUserinfo masks the password of every scheme://user:password@
// in s.
func redactUserinfo(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range schemeRE.FindAllStringIndex(s, -1) {
		start := m[1]
		if start < last {
			continue
		}
		end := len(s)
		if i := strings.IndexAny(s[start:], endOfURL); i >= 0 {
			end = start + i
		}
		rest := s[start:end]
		// The userinfo ends at the URL's last "@": a password net/url
		// would refuse ("p@ss/w:rd") is hidden whole, at the cost of a
		// host hidden too when a path or query holds an "@" after a ":".
		at := strings.LastIndexByte(rest, '@')
		if at < 0 {
			continue
		}
		colon := strings.IndexByte(rest[:at], ':')
		if colon < 0 || rest[colon+1:at] == "" || rest[colon+1:at] == Mask {
			continue
		}
		b.WriteString(s[last : start+colon+1])
		b.WriteString(Mask)
		last = start + at
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// paramRE matches name=value: a query parameter, a libpq or ADO-style
// setting. A value is quoted ('…' or "…"), or runs to the next separator.
var paramRE = regexp.MustCompile(`([A-Za-z0-9_.\-]+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&;"'<>#` + "`" + `]*)`)

// secretSuffixes end the names of parameters whose values are secrets,
// lowercased with "-", "_" and "." removed.
var secretSuffixes = []string{
	"password", "passwd", "pwd", "pass", "secret", "token", "key", "apikey",
	"auth", "sig", "signature", "credential", "credentials",
}

func redactParam(m string) string {
	name, value, _ := strings.Cut(m, "=")
	if value == "" || value == Mask || !secretName(name) {
		return m
	}
	return name + "=" + Mask
}

func secretName(name string) bool {
	n := strings.NewReplacer("-", "", "_", "", ".", "").Replace(strings.ToLower(name))
	for _, suf := range secretSuffixes {
		if strings.HasSuffix(n, suf) {
			return true
		}
	}
	return false
}
