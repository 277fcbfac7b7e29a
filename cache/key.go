package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Key identifies a cacheable request. Two requests have the same Hash when
// they would make the same upstream call: same scope, model group, messages,
// tools and output-changing parameters, whatever their JSON key order,
// whitespace, string escapes or number spelling (1 and 1.0).
//
// A Key is a value: it holds no reference to the request body.
type Key struct {
	// Hash is the exact-match key.
	Hash [32]byte
	// Partition hashes everything Hash covers except the content of the
	// last user message. Requests in one partition differ at most in that
	// message; the semantic store only compares prompts within one.
	Partition [32]byte
	// Prompt is the text of the last user message (text parts joined by
	// "\n"), or "" when it is not plain text (images, audio) or absent:
	// such requests are only ever matched exactly.
	Prompt string
}

// String returns Hash in hex, as Redis keys and logs use it.
func (k Key) String() string { return hex.EncodeToString(k.Hash[:]) }

// ErrBadRequest is returned (wrapped) by NewKey for a body that is not a JSON
// object.
var ErrBadRequest = errors.New("request body is not a JSON object")

// keyVersion changes whenever the canonical form changes, so that entries
// written by an older Lumen sharing a Redis are never misread.
const keyVersion = "lumen-cache-key-v1"

// ignored are the top-level request fields that do not change the answer:
// transport (stream, stream_options), attribution (user, metadata, store)
// and Lumen's own controls. model is replaced by the model group.
var ignored = map[string]bool{
	"model":          true,
	"stream":         true,
	"stream_options": true,
	"user":           true,
	"metadata":       true,
	"store":          true,
	"cache":          true,
	"lumen":          true,
}

// NewKey computes the cache key of an OpenAI-format request body sent to a
// model group, within scope (see Scope; "" is the global namespace).
//
// Every top-level field except those that cannot change the answer (stream,
// stream_options, user, metadata, store, cache, lumen) is part of the key,
// so parameters Lumen does not know about are never ignored by mistake. A
// top-level null counts as absent. Objects compare with their keys sorted;
// arrays keep their order.
func NewKey(group, scope string, body []byte) (Key, error) {
	// The body is only read while hashing; no string derived from it
	// outlives this call except the cloned prompt.
	js := unsafe.String(unsafe.SliceData(body), len(body))
	doc := gjson.Parse(js)
	if !doc.IsObject() || !gjson.Valid(js) {
		return Key{}, fmt.Errorf("computing cache key: %w", ErrBadRequest)
	}
	c := canonPool.Get().(*canon)
	defer c.release()
	c.str(keyVersion)
	c.str(scope)
	c.str(group)

	start := len(c.pairs)
	doc.ForEach(func(k, v gjson.Result) bool {
		if !ignored[k.Str] && v.Type != gjson.Null {
			c.pairs = append(c.pairs, pair{k.Str, v})
		}
		return true
	})
	c.sortPairs(start)
	end := len(c.pairs)
	c.buf = append(c.buf, 'o')
	c.buf = binary.AppendUvarint(c.buf, uint64(end-start))
	var prompt gjson.Result
	cut := [2]int{-1, -1}
	for i := start; i < end; i++ {
		p := c.pairs[i]
		c.str(p.k)
		if p.k == "messages" && p.v.IsArray() {
			prompt, cut = c.messages(p.v)
			continue
		}
		c.value(p.v)
	}
	c.pairs = c.pairs[:start]

	var k Key
	if cut[0] < 0 {
		k.Hash = sha256.Sum256(c.buf)
		k.Partition = k.Hash
		return k, nil
	}
	h := sha256.New()
	h.Write(c.buf[:cut[0]])
	h.Write([]byte{'P'}) // the last user message's content goes here
	h.Write(c.buf[cut[1]:])
	h.Sum(k.Partition[:0])
	h.Reset()
	h.Write(k.Partition[:])
	h.Write(c.buf[cut[0]:cut[1]])
	h.Sum(k.Hash[:0])
	k.Prompt = promptText(prompt)
	return k, nil
}

// messages writes the messages array and returns the content of the last
// user message and where its canonical form lies in c.buf.
func (c *canon) messages(msgs gjson.Result) (gjson.Result, [2]int) {
	last := -1
	n := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		if m.Get("role").Str == "user" {
			last = n
		}
		n++
		return true
	})
	c.buf = binary.BigEndian.AppendUint32(append(c.buf, 'a'), uint32(n))
	var content gjson.Result
	cut := [2]int{-1, -1}
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		if i != last || !m.IsObject() {
			c.value(m)
			i++
			return true
		}
		start := len(c.pairs)
		m.ForEach(func(k, v gjson.Result) bool {
			c.pairs = append(c.pairs, pair{k.Str, v})
			return true
		})
		c.sortPairs(start)
		end := len(c.pairs)
		c.buf = append(c.buf, 'o')
		c.buf = binary.AppendUvarint(c.buf, uint64(end-start))
		for j := start; j < end; j++ {
			p := c.pairs[j]
			c.str(p.k)
			if p.k == "content" && cut[0] < 0 {
				content = p.v
				cut[0] = len(c.buf)
				c.value(p.v)
				cut[1] = len(c.buf)
				continue
			}
			c.value(p.v)
		}
		c.pairs = c.pairs[:start]
		i++
		return true
	})
	return content, cut
}

// promptText returns the text a semantic lookup embeds: a string content, or
// the text parts of an array content joined by "\n". Any other part makes
// the message non-text and the result "".
func promptText(content gjson.Result) string {
	switch {
	case content.Type == gjson.String:
		return strings.Clone(content.Str)
	case content.IsArray():
		var b strings.Builder
		ok := true
		content.ForEach(func(_, part gjson.Result) bool {
			t := part.Get("text")
			if part.Get("type").Str != "text" || t.Type != gjson.String {
				ok = false
				return false
			}
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(t.Str)
			return true
		})
		if ok {
			return b.String()
		}
	}
	return ""
}

// canon writes an unambiguous, order-independent binary form of JSON values:
// a type byte, then a uvarint length or count, then the content.
type canon struct {
	buf   []byte
	pairs []pair
}

type pair struct {
	k string
	v gjson.Result
}

var canonPool = sync.Pool{New: func() any { return &canon{buf: make([]byte, 0, 4<<10)} }}

func (c *canon) release() {
	if cap(c.buf) > 1<<20 {
		return // let an unusually large request's buffer go
	}
	c.buf = c.buf[:0]
	clear(c.pairs[:cap(c.pairs)])
	c.pairs = c.pairs[:0]
	canonPool.Put(c)
}

func (c *canon) str(s string) {
	c.buf = append(c.buf, 's')
	c.buf = binary.AppendUvarint(c.buf, uint64(len(s)))
	c.buf = append(c.buf, s...)
}

// sortPairs sorts c.pairs[start:] by key. The sort is stable so that
// duplicate keys keep a deterministic order.
func (c *canon) sortPairs(start int) {
	slices.SortStableFunc(c.pairs[start:], func(a, b pair) int { return strings.Compare(a.k, b.k) })
}

func (c *canon) value(v gjson.Result) {
	switch v.Type {
	case gjson.Null:
		c.buf = append(c.buf, 'z')
	case gjson.False:
		c.buf = append(c.buf, 'f')
	case gjson.True:
		c.buf = append(c.buf, 't')
	case gjson.String:
		c.str(v.Str)
	case gjson.Number:
		c.buf = append(c.buf, 'n')
		c.number(v)
	default:
		if v.IsArray() {
			start := len(c.buf)
			c.buf = append(c.buf, 'a', 0, 0, 0, 0)
			n := uint32(0)
			v.ForEach(func(_, e gjson.Result) bool {
				c.value(e)
				n++
				return true
			})
			binary.BigEndian.PutUint32(c.buf[start+1:], n)
			return
		}
		start := len(c.pairs)
		v.ForEach(func(k, e gjson.Result) bool {
			c.pairs = append(c.pairs, pair{k.Str, e})
			return true
		})
		c.sortPairs(start)
		end := len(c.pairs)
		c.buf = append(c.buf, 'o')
		c.buf = binary.AppendUvarint(c.buf, uint64(end-start))
		for i := start; i < end; i++ {
			c.str(c.pairs[i].k)
			c.value(c.pairs[i].v)
		}
		c.pairs = c.pairs[:start]
	}
}

// number writes a number so that 1, 1.0 and 1e0 are equal. Integer literals
// are kept as written (seeds may exceed float64's exact range); other
// numbers go through float64.
func (c *canon) number(v gjson.Result) {
	raw := v.Raw
	if !strings.ContainsAny(raw, ".eE") {
		if raw == "-0" {
			raw = "0"
		}
		c.buf = append(c.buf, 'i')
		c.str(raw)
		return
	}
	f := v.Float()
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		c.buf = append(c.buf, 'i')
		c.str(strconv.FormatInt(int64(f), 10))
		return
	}
	c.buf = append(c.buf, 'g')
	c.str(strconv.FormatFloat(f, 'g', -1, 64))
}

// Scope returns the cache namespace of a request; requests in different
// namespaces never share entries. The rule, in order:
//
//  1. mode "key" (cache.scope: key): every virtual key has its own namespace.
//  2. A key tagged "cache_scope=key" has its own namespace, whatever mode.
//  3. A key tagged "tenant=<name>" shares a namespace with the keys of the
//     same tenant and no one else.
//  4. Otherwise the namespace is global: every caller of a model group
//     shares answers (the default, as in LiteLLM).
//
// tags are the virtual key's tags (nil for none). keyID identifies the
// virtual key (its id or hash, never the secret); ""
// means an unauthenticated request, which always uses rules 3–4. namespace is
// the caller's own "cache": {"namespace": …} (Directive.Namespace): it can
// only narrow the namespace, never reach another tenant's.
func Scope(mode, keyID string, tags map[string]string, namespace string) string {
	var s string
	switch {
	case (mode == "key" || tags["cache_scope"] == "key") && keyID != "":
		s = "key:" + strconv.Quote(keyID)
	case tags["tenant"] != "":
		s = "tenant:" + strconv.Quote(tags["tenant"])
	}
	if namespace != "" {
		s += " ns:" + strconv.Quote(namespace)
	}
	return s
}
