package cache

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

// A stored JSON document (a body or a chunk) has the values of its top-level
// "id" and "created" fields cut out: every replay writes fresh ones, so they
// are not worth keeping, and chunks without them are far more alike.
//
// The chunk log stores chunk payloads one after the other, each as a delta
// against the previous one: consecutive chunks of a stream share everything
// but the few bytes of text they add, so a record is
//
//	uvarint prefix   bytes shared with the start of the previous chunk
//	uvarint suffix   bytes shared with the end of the previous chunk
//	uvarint n, n bytes in between
//	uvarint idAt+1, createdAt+1   where the fresh values go (0: absent)
//
// A 250-chunk stream of a 1 KB answer takes ~2 KB instead of ~50 KB.

// hole records where the id and created values were cut from a document
// (-1: the field is absent or not of the expected type).
type holes struct{ id, created int }

// strip appends src to dst without the values of its top-level "id" string
// and "created" number.
func strip(dst, src []byte) ([]byte, holes) {
	h := holes{-1, -1}
	s := unsafe.String(unsafe.SliceData(src), len(src))
	idv := valueAt(s, "id", gjson.String)
	crv := valueAt(s, "created", gjson.Number)
	first, second := idv, crv
	if crv[0] >= 0 && (idv[0] < 0 || crv[0] < idv[0]) {
		first, second = crv, idv
	}
	pos := 0
	removed := 0
	for _, r := range [2][2]int{first, second} {
		if r[0] < 0 {
			continue
		}
		dst = append(dst, src[pos:r[0]]...)
		at := r[0] - removed
		if r == idv {
			h.id = at
		} else {
			h.created = at
		}
		removed += r[1] - r[0]
		pos = r[1]
	}
	return append(dst, src[pos:]...), h
}

// valueAt returns the byte range of a top-level field's raw value when it has
// type t, or {-1, -1}.
func valueAt(doc, field string, t gjson.Type) [2]int {
	v := gjson.Get(doc, field)
	if v.Type != t || v.Index <= 0 || v.Index+len(v.Raw) > len(doc) || doc[v.Index:v.Index+len(v.Raw)] != v.Raw {
		return [2]int{-1, -1}
	}
	return [2]int{v.Index, v.Index + len(v.Raw)}
}

// fill appends doc to dst with id (a raw JSON string) and created (raw JSON
// digits) put back into its holes.
func fill(dst, doc []byte, h holes, id, created []byte) []byte {
	first, second := h.id, h.created
	fv, sv := id, created
	if h.created >= 0 && (h.id < 0 || h.created < h.id) {
		first, second, fv, sv = h.created, h.id, created, id
	}
	pos := 0
	if first >= 0 {
		dst = append(dst, doc[:first]...)
		dst = append(dst, fv...)
		pos = first
	}
	if second >= 0 {
		dst = append(dst, doc[pos:second]...)
		dst = append(dst, sv...)
		pos = second
	}
	return append(dst, doc[pos:]...)
}

// chunkLog encodes chunks into a log; see the comment above.
type chunkLog struct {
	buf   []byte
	n     int
	prev  []byte // the previous chunk, stripped
	spare []byte
}

func (l *chunkLog) add(chunk []byte) {
	cur, h := strip(l.spare[:0], chunk)
	prev := l.prev
	p := 0
	for p < len(prev) && p < len(cur) && prev[p] == cur[p] {
		p++
	}
	s := 0
	for s < len(prev)-p && s < len(cur)-p && prev[len(prev)-1-s] == cur[len(cur)-1-s] {
		s++
	}
	mid := cur[p : len(cur)-s]
	l.buf = binary.AppendUvarint(l.buf, uint64(p))
	l.buf = binary.AppendUvarint(l.buf, uint64(s))
	l.buf = binary.AppendUvarint(l.buf, uint64(len(mid)))
	l.buf = append(l.buf, mid...)
	l.buf = binary.AppendUvarint(l.buf, uint64(h.id+1))
	l.buf = binary.AppendUvarint(l.buf, uint64(h.created+1))
	l.n++
	l.prev, l.spare = cur, prev
}

var errCorrupt = errors.New("corrupt cache entry")

// logReader decodes a chunk log.
type logReader struct {
	log       []byte
	pos       int
	prev, cur []byte
}

// next decodes the next chunk (stripped) and its holes. The slice is valid
// until the call after next.
func (r *logReader) next() ([]byte, holes, error) {
	var f [5]uint64
	var mid []byte
	for i := range f {
		v, n := binary.Uvarint(r.log[r.pos:])
		if n <= 0 {
			return nil, holes{}, errCorrupt
		}
		r.pos += n
		f[i] = v
		if i == 2 {
			if v > uint64(len(r.log)-r.pos) {
				return nil, holes{}, errCorrupt
			}
			mid = r.log[r.pos : r.pos+int(v)]
			r.pos += int(v)
		}
	}
	p, s := f[0], f[1]
	if p > uint64(len(r.prev)) || s > uint64(len(r.prev))-p {
		return nil, holes{}, errCorrupt
	}
	cur := append(r.cur[:0], r.prev[:p]...)
	cur = append(cur, mid...)
	cur = append(cur, r.prev[uint64(len(r.prev))-s:]...)
	h := holes{int(f[3]) - 1, int(f[4]) - 1}
	if f[3] > uint64(len(cur)) || f[4] > uint64(len(cur)) {
		return nil, holes{}, errCorrupt
	}
	r.prev, r.cur = cur, r.prev
	return cur, h, nil
}

func (r *logReader) done() bool { return r.pos >= len(r.log) }

// validLog checks that a log of n chunks decodes, without building chunks.
func validLog(log []byte, n int) bool {
	prevLen := uint64(0)
	pos := 0
	for i := 0; i < n; i++ {
		var f [5]uint64
		for j := range f {
			v, k := binary.Uvarint(log[pos:])
			if k <= 0 {
				return false
			}
			pos += k
			f[j] = v
			if j == 2 {
				if v > uint64(len(log)-pos) {
					return false
				}
				pos += int(v)
			}
		}
		if f[0] > prevLen || f[1] > prevLen-f[0] || f[2] > uint64(len(log)) {
			return false
		}
		prevLen = f[0] + f[1] + f[2]
		if f[3] > prevLen || f[4] > prevLen {
			return false
		}
	}
	return pos == len(log)
}

// appendID appends id as a JSON string.
func appendID(dst []byte, id string) []byte {
	return providers.AppendJSONString(dst, id)
}

func appendCreated(dst []byte, created int64) []byte {
	return strconv.AppendInt(dst, created, 10)
}
