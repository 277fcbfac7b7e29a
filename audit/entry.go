package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Action names what an entry records. The values are stable: they are hashed
// into the chain and read by SIEM rules.
type Action string

// The actions Lumen records. Other dotted names may be added; an Action is
// free text to the chain.
const (
	ActionRequest        Action = "request"         // a request was served (or refused)
	ActionKeyCreated     Action = "key.created"     // a virtual key was created
	ActionKeyRevoked     Action = "key.revoked"     // a virtual key was revoked
	ActionKeyUpdated     Action = "key.updated"     // a key's limits, models or tags changed
	ActionKeyRotated     Action = "key.rotated"     // a key's secret was replaced
	ActionBudgetChanged  Action = "budget.changed"  // a budget was set or changed
	ActionConfigReloaded Action = "config.reloaded" // a new config was validated and swapped in
)

// Actors that are not a virtual key.
const (
	ActorAdmin  = "admin"  // the master key
	ActorSystem = "system" // Lumen itself (reload, startup)
)

// Digest is a SHA-256 digest. The zero Digest means "none".
type Digest [sha256.Size]byte

// IsZero reports whether d is the zero Digest.
func (d Digest) IsZero() bool { return d == Digest{} }

// String returns d in lowercase hex, or "" for the zero Digest.
func (d Digest) String() string {
	if d.IsZero() {
		return ""
	}
	return hex.EncodeToString(d[:])
}

// Summary is what an entry says about the request or change it records.
// Every field may be empty; none may hold a secret or prompt text.
type Summary struct {
	RequestID        string  // Lumen's request id
	ModelGroup       string  // model_name the client asked for
	Deployment       string  // deployment that answered
	Provider         string  // provider id ("openai")
	Status           int     // HTTP status returned to the client
	PromptTokens     int     // input tokens, cached ones included
	CompletionTokens int     // output tokens
	CachedTokens     int     // part of PromptTokens read from a prompt cache
	CostUSD          float64 // cost charged, in US dollars
}

// Entry is one record of the audit log.
//
// Callers fill Time (optional), Actor, Action, Target, Summary, Detail and
// either the payload digests or the payloads; the writer assigns Seq,
// PrevHash and Hash. Append copies the Entry but not the payload slices: the
// caller must not modify them afterwards.
type Entry struct {
	// Seq is the entry's position in the chain: 1, 2, 3 … with no gaps.
	Seq uint64
	// Time is when the event happened; zero means "now" at Append. It is
	// stored in UTC with nanosecond precision.
	Time time.Time
	// Actor is who acted: a key id, ActorAdmin or ActorSystem. Never a raw
	// key: a value that looks like one ("sk-…") is stored as "redacted",
	// and a virtual key ("lumen-sk-…") or Bearer token inside any text
	// field as "lumen-sk-[redacted]" or "Bearer [redacted]" (redactSecret).
	Actor string
	// Action is what happened.
	Action Action
	// Target is the object acted on (a key id, a budget scope, a config
	// path); empty for requests.
	Target string
	// Summary describes a request; for other actions it may be empty.
	Summary Summary
	// Detail is a short human-readable note ("max_budget 10 -> 20"). It must
	// not hold secrets or prompt text.
	Detail string
	// RequestSHA256 and ResponseSHA256 are the digests of the request and
	// response bodies; zero means none. When zero and the matching payload is
	// set, the writer computes them.
	RequestSHA256, ResponseSHA256 Digest
	// RequestPayload and ResponsePayload are the bodies themselves. They are
	// stored only when Options.StorePayloads is set; otherwise the writer
	// keeps their digests and forgets them. They are not hashed into the
	// chain directly (their digests are), so purging stored payloads later
	// keeps the chain valid.
	RequestPayload, ResponsePayload []byte
	// PrevHash is the Hash of entry Seq-1 (zero for Seq 1).
	PrevHash Digest
	// Hash is the entry's chain hash; see (*Entry).ComputeHash.
	Hash Digest
}

// hashDomain starts every entry's hashed encoding. It names the format version.
const hashDomain = "lumen-audit-entry-v1\n"

// ComputeHash returns the chain hash of e: SHA-256 over a canonical encoding
// of every field but Hash and the payloads, PrevHash included. An auditor
// can re-implement it from this description alone:
//
//	SHA-256( "lumen-audit-entry-v1\n"            (21 bytes, no length prefix)
//	         || F(seq) || F(time) || F(actor) || F(action) || F(target)
//	         || F(request_id) || F(model_group) || F(deployment) || F(provider)
//	         || F(status) || F(prompt_tokens) || F(completion_tokens)
//	         || F(cached_tokens) || F(cost_usd) || F(detail)
//	         || F(request_sha256) || F(response_sha256) || F(prev_hash) )
//
// where F(x) is the length of x's bytes as an 8-byte big-endian unsigned
// integer followed by those bytes, and the bytes of each field are:
//
//   - seq: 8 bytes, unsigned big-endian.
//   - time: 8 bytes, Unix time in nanoseconds (UTC), signed two's complement big-endian.
//   - status, prompt_tokens, completion_tokens, cached_tokens: 8 bytes each,
//     signed two's complement big-endian.
//   - cost_usd: 8 bytes, the IEEE-754 binary64 bits, big-endian (the writer
//     stores +0 for zero, NaN and ±Inf).
//   - actor, action, target, request_id, model_group, deployment, provider,
//     detail: the UTF-8 bytes (the writer replaces invalid UTF-8 with U+FFFD
//     before hashing).
//   - request_sha256, response_sha256: the 32 digest bytes, or no bytes
//     (length 0) when there is none.
//   - prev_hash: the 32 bytes of the previous entry's hash; 32 zero bytes for seq 1.
//
// In the export (JSONL) the time is RFC 3339 with nanoseconds, digests and
// hashes are lowercase hex ("" for none) and cost_usd is the shortest
// decimal that round-trips to the same binary64, so the hash can be
// recomputed from an exported line.
func (e *Entry) ComputeHash() Digest {
	h := sha256.New()
	var buf [8]byte
	u64 := func(v uint64) {
		binary.BigEndian.PutUint64(buf[:], 8)
		h.Write(buf[:])
		binary.BigEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	str := func(s string) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	digest := func(d *Digest) {
		if d.IsZero() {
			binary.BigEndian.PutUint64(buf[:], 0)
			h.Write(buf[:])
			return
		}
		binary.BigEndian.PutUint64(buf[:], uint64(len(d)))
		h.Write(buf[:])
		h.Write(d[:])
	}
	h.Write([]byte(hashDomain))
	u64(e.Seq)
	u64(uint64(e.Time.UnixNano()))
	str(e.Actor)
	str(string(e.Action))
	str(e.Target)
	str(e.Summary.RequestID)
	str(e.Summary.ModelGroup)
	str(e.Summary.Deployment)
	str(e.Summary.Provider)
	u64(uint64(int64(e.Summary.Status)))
	u64(uint64(int64(e.Summary.PromptTokens)))
	u64(uint64(int64(e.Summary.CompletionTokens)))
	u64(uint64(int64(e.Summary.CachedTokens)))
	u64(math.Float64bits(e.Summary.CostUSD))
	str(e.Detail)
	digest(&e.RequestSHA256)
	digest(&e.ResponseSHA256)
	// prev_hash is always 32 bytes, zero included.
	binary.BigEndian.PutUint64(buf[:], uint64(len(e.PrevHash)))
	h.Write(buf[:])
	h.Write(e.PrevHash[:])
	var d Digest
	h.Sum(d[:0])
	return d
}

// normalize puts e into the form that is stored and hashed, so that what is
// read back from SQLite hashes to the same value: UTC nanosecond time, valid
// UTF-8, a storable cost, digests of the payloads, and no secret in any
// text field.
func (e *Entry) normalize(storePayloads bool) {
	e.Time = time.Unix(0, e.Time.UnixNano()).UTC()
	e.Actor = redactSecret(validUTF8(e.Actor))
	e.Action = Action(validUTF8(string(e.Action)))
	e.Target = redactSecret(validUTF8(e.Target))
	e.Detail = redactSecret(validUTF8(e.Detail))
	s := &e.Summary
	s.RequestID = redactSecret(validUTF8(s.RequestID))
	s.ModelGroup = redactSecret(validUTF8(s.ModelGroup))
	s.Deployment = redactSecret(validUTF8(s.Deployment))
	s.Provider = redactSecret(validUTF8(s.Provider))
	// SQLite stores integral REALs as integers (so -0 reads back as +0) and
	// cannot store NaN; JSON cannot carry NaN or Inf either.
	if s.CostUSD == 0 || math.IsNaN(s.CostUSD) || math.IsInf(s.CostUSD, 0) {
		s.CostUSD = 0
	}
	if e.RequestSHA256.IsZero() && e.RequestPayload != nil {
		e.RequestSHA256 = sha256.Sum256(e.RequestPayload)
	}
	if e.ResponseSHA256.IsZero() && e.ResponsePayload != nil {
		e.ResponseSHA256 = sha256.Sum256(e.ResponsePayload)
	}
	if !storePayloads {
		e.RequestPayload, e.ResponsePayload = nil, nil
	}
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// secretRE matches, anywhere in a string, what redactSecret removes:
//   - a Lumen virtual key: "lumen-sk-" and more than the 4 characters of
//     its display prefix ("lumen-sk-Ab12", which is no secret, stays),
//     even glued to what precedes it ("token_lumen-sk-…");
//   - a provider key: a word starting "sk-" ("sk-proj-", "sk-ant-"…) and
//     at least 6 more characters;
//   - the token after "Bearer " (any case), as an Authorization header
//     carries it.
//
// Groups 1 to 3 are the parts kept in front of the marker.
var secretRE = regexp.MustCompile(`(lumen-sk-)[A-Za-z0-9_-]{5,}|\b(sk-)[A-Za-z0-9_-]{6,}|\b((?i:bearer)\s+)[A-Za-z0-9._~+/-]+=*`)

// redactMark replaces a secret, after what names its kind ("lumen-sk-",
// "Bearer ").
const redactMark = "[redacted]"

// redactSecret keeps raw keys and tokens out of the log: the chain cannot
// be edited afterwards, so a leaked secret would stay in it for good. A
// string that is one raw key ("sk-…") becomes "redacted"; in any other
// string each virtual key, provider key and Bearer token is
// replaced where it stands, the rest left readable:
// "key lumen-sk-Xy…(43 characters) via Bearer abc" is stored as
// "key lumen-sk-[redacted] via Bearer [redacted]".
func redactSecret(s string) string {
	if strings.HasPrefix(s, "sk-") && len(s) > 8 {
		return "redacted"
	}
	if !strings.Contains(s, "sk-") && !strings.ContainsAny(s, " \t\n\r") {
		return s // no key, and no scheme followed by credentials
	}
	return secretRE.ReplaceAllString(s, "${1}${2}${3}"+redactMark)
}
