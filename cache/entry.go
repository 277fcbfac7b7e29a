package cache

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
)

const hexDigits = "0123456789abcdef"

// Entry is one cached answer. It can answer a non-streaming request (Body)
// and, for chat completions, a streaming one (Stream), whichever kind of
// request recorded it: an entry recorded from a stream keeps its chunks and
// the equivalent chat.completion body; one recorded from a body keeps it and
// a synthesized chunk sequence.
//
// An Entry is immutable once built and safe for concurrent use; stores hand
// the same *Entry to every reader.
type Entry struct {
	stored  int64 // unix nanoseconds
	usage   providers.Usage
	kind    kind
	body    holes
	bodyLen int
	chunks  int
	// data is the stripped body followed by the chunk log, in one
	// allocation sized exactly.
	data []byte
}

type kind uint8

const (
	kindChat kind = iota + 1
	kindText
	kindOther // embeddings and other bodies without a stream form
)

// ErrNotCacheable is returned (wrapped) for an answer that must not be
// stored: an error, an incomplete or content-filtered answer, or one too
// large for an entry.
var ErrNotCacheable = errors.New("answer is not cacheable")

// DefaultMaxEntryBytes bounds one entry when the caller gives no bound.
const DefaultMaxEntryBytes = 4 << 20

// complete are the finish reasons of a complete answer. Anything else
// (content_filter, error, a provider's own abort reasons) is not cached.
var complete = map[string]bool{"stop": true, "length": true, "tool_calls": true, "function_call": true}

// NewEntry builds an entry from a successful non-streaming response body
// (chat.completion, text_completion or an embeddings list). maxBytes bounds
// Size; 0 means DefaultMaxEntryBytes. It returns ErrNotCacheable for an
// error body, a choice without a complete finish_reason, or an oversized
// entry.
func NewEntry(body []byte, maxBytes int) (*Entry, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxEntryBytes
	}
	doc := gjson.Parse(unsafe.String(unsafe.SliceData(body), len(body)))
	if !doc.IsObject() {
		return nil, fmt.Errorf("%w: response is not a JSON object", ErrNotCacheable)
	}
	if doc.Get("error").Exists() {
		return nil, fmt.Errorf("%w: response is an error", ErrNotCacheable)
	}
	e := &Entry{stored: nowNano(), usage: openai.ParseUsage(body)}
	var log chunkLog
	switch obj := doc.Get("object").Str; obj {
	case "chat.completion", "text_completion":
		e.kind = kindText
		if obj == "chat.completion" {
			e.kind = kindChat
		}
		if err := checkChoices(doc.Get("choices")); err != nil {
			return nil, err
		}
		if e.kind == kindChat {
			synthesize(doc, &log, maxBytes)
			if len(log.buf) > maxBytes {
				return nil, fmt.Errorf("%w: entry exceeds %d bytes", ErrNotCacheable, maxBytes)
			}
		}
	case "list":
		e.kind = kindOther
		if d := doc.Get("data"); !d.IsArray() || len(d.Array()) == 0 {
			return nil, fmt.Errorf("%w: empty list", ErrNotCacheable)
		}
	default:
		return nil, fmt.Errorf("%w: unknown object %q", ErrNotCacheable, obj)
	}
	if err := e.pack(body, &log, maxBytes); err != nil {
		return nil, err
	}
	return e, nil
}

func checkChoices(choices gjson.Result) error {
	if !choices.IsArray() || len(choices.Array()) == 0 {
		return fmt.Errorf("%w: no choices", ErrNotCacheable)
	}
	var err error
	choices.ForEach(func(_, c gjson.Result) bool {
		if fr := c.Get("finish_reason").Str; !complete[fr] {
			err = fmt.Errorf("%w: finish_reason %q", ErrNotCacheable, fr)
			return false
		}
		return true
	})
	return err
}

// pack strips body and stores it with the log in one exact allocation.
func (e *Entry) pack(body []byte, log *chunkLog, maxBytes int) error {
	// slices.Grow rounds the capacity up to the allocator's size class, so
	// that Size can count what the entry really holds.
	stripped, h := strip(slices.Grow([]byte(nil), len(body)+len(log.buf)), body)
	if len(stripped)+len(log.buf) > maxBytes {
		return fmt.Errorf("%w: entry exceeds %d bytes", ErrNotCacheable, maxBytes)
	}
	e.body = h
	e.bodyLen = len(stripped)
	e.data = append(stripped, log.buf...)
	e.chunks = log.n
	return nil
}

func nowNano() int64 { return time.Now().UnixNano() }

// Stored returns when the answer was recorded.
func (e *Entry) Stored() time.Time { return time.Unix(0, e.stored) }

// Age returns how old the answer is at now.
func (e *Entry) Age(now time.Time) time.Duration { return now.Sub(e.Stored()) }

// Usage returns the token usage of the original upstream call: what a hit
// saved.
func (e *Entry) Usage() providers.Usage { return e.usage }

// Streamable reports whether Stream can replay the entry: true for chat
// completions, false for text completions and embeddings.
func (e *Entry) Streamable() bool { return e.chunks > 0 }

// entryOverhead approximates the Entry struct and its allocation headers.
const entryOverhead = int(unsafe.Sizeof(Entry{})) + 16

// Size returns the bytes the entry holds in memory.
func (e *Entry) Size() int { return cap(e.data) + entryOverhead }

// NewID returns a fresh response id for a replayed answer of the entry's
// kind ("chatcmpl-…" or "cmpl-…").
func (e *Entry) NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	prefix := "chatcmpl-lumen"
	if e.kind == kindText {
		prefix = "cmpl-lumen"
	}
	out := make([]byte, 0, len(prefix)+2*len(b))
	out = append(out, prefix...)
	for _, c := range b {
		out = append(out, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return string(out)
}

// replayValues returns the raw JSON id and created a replay writes: fresh
// ones when id is "" or created is 0.
func (e *Entry) replayValues(id string, created int64) ([]byte, []byte) {
	if id == "" {
		id = e.NewID()
	}
	if created == 0 {
		created = time.Now().Unix()
	}
	return appendID(nil, id), appendCreated(nil, created)
}

// Body returns the non-streaming response body with id and created
// replaced; "" and 0 mean a fresh id and the current time.
func (e *Entry) Body(id string, created int64) []byte {
	idv, crv := e.replayValues(id, created)
	doc := e.data[:e.bodyLen]
	return fill(make([]byte, 0, len(doc)+len(idv)+len(crv)), doc, e.body, idv, crv)
}

// Stream returns the answer as a stream of chat.completion.chunk payloads,
// each with id and created replaced ("" and 0 mean fresh ones), then io.EOF.
// The last payload carries usage with "choices": [] when the answer had
// usage. For an entry that is not Streamable the stream yields io.EOF at
// once; check Streamable first.
func (e *Entry) Stream(id string, created int64) providers.Stream {
	idv, crv := e.replayValues(id, created)
	return &replay{r: logReader{log: e.data[e.bodyLen:]}, id: idv, created: crv, left: e.chunks}
}

// replay is an Entry's Stream.
type replay struct {
	r           logReader
	id, created []byte
	out         []byte
	left        int
}

var (
	_ providers.Stream   = (*replay)(nil)
	_ providers.Buffered = (*replay)(nil)
)

// Recv returns the next chunk payload; it is valid until the next call.
func (s *replay) Recv() ([]byte, error) {
	if s.left <= 0 {
		return nil, io.EOF
	}
	doc, h, err := s.r.next()
	if err != nil {
		s.left = 0
		return nil, fmt.Errorf("replaying cache entry: %w", err)
	}
	s.left--
	s.out = fill(s.out[:0], doc, h, s.id, s.created)
	return s.out, nil
}

// Buffered implements providers.Buffered: every remaining chunk is ready,
// so the server writes a replay in one flush.
func (s *replay) Buffered() int { return s.left }

// Close ends the replay; it is safe to call twice.
func (s *replay) Close() error {
	s.left = 0
	return nil
}

const entryVersion = 1

// MarshalBinary encodes the entry for a shared store.
func (e *Entry) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, len(e.data)+64)
	b = append(b, entryVersion, byte(e.kind))
	for _, v := range [...]int64{e.stored, int64(e.usage.PromptTokens), int64(e.usage.CompletionTokens),
		int64(e.usage.CachedTokens), int64(e.usage.CacheWriteTokens),
		int64(e.body.id), int64(e.body.created), int64(e.bodyLen), int64(e.chunks)} {
		b = binary.AppendVarint(b, v)
	}
	return append(b, e.data...), nil
}

// UnmarshalBinary decodes an entry written by MarshalBinary, checking that it
// replays without error. The entry keeps a reference to b.
func (e *Entry) UnmarshalBinary(b []byte) error {
	if len(b) < 2 || b[0] != entryVersion || b[1] < byte(kindChat) || b[1] > byte(kindOther) {
		return fmt.Errorf("decoding cache entry: %w", errCorrupt)
	}
	var v [9]int64
	pos := 2
	for i := range v {
		x, n := binary.Varint(b[pos:])
		if n <= 0 {
			return fmt.Errorf("decoding cache entry: %w", errCorrupt)
		}
		v[i] = x
		pos += n
	}
	data := b[pos:]
	bodyLen, chunks := v[7], v[8]
	if bodyLen < 0 || bodyLen > int64(len(data)) || chunks < 0 ||
		v[5] < -1 || v[5] > bodyLen || v[6] < -1 || v[6] > bodyLen ||
		!validLog(data[bodyLen:], int(chunks)) {
		return fmt.Errorf("decoding cache entry: %w", errCorrupt)
	}
	*e = Entry{
		stored: v[0],
		usage: providers.Usage{PromptTokens: int(v[1]), CompletionTokens: int(v[2]),
			CachedTokens: int(v[3]), CacheWriteTokens: int(v[4])},
		kind:    kind(b[1]),
		body:    holes{int(v[5]), int(v[6])},
		bodyLen: int(bodyLen),
		chunks:  int(chunks),
		data:    data,
	}
	return nil
}
