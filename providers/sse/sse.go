// Package sse reads and writes Server-Sent Events as LLM providers use them.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Event is one server-sent event.
type Event struct {
	// Type is the "event:" field; empty for plain data events.
	Type []byte
	// Data is the event's data lines joined by "\n".
	Data []byte
}

// Reader reads events from an SSE stream. The slices in the Event it returns
// are only valid until the next call to Next. A Reader is not safe for
// concurrent use.
type Reader struct {
	r    *bufio.Reader
	typ  []byte
	data []byte
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 16<<10)}
}

// maxLine bounds one line, so a broken upstream cannot grow memory forever.
const maxLine = 16 << 20

// ErrLineTooLong is returned when an SSE line exceeds 16 MiB.
var ErrLineTooLong = errors.New("sse: line too long")

// Next returns the next event. It returns io.EOF when the stream ends cleanly
// between events and io.ErrUnexpectedEOF when it ends inside one.
func (r *Reader) Next() (Event, error) {
	r.typ = r.typ[:0]
	r.data = r.data[:0]
	hasData := false
	var long []byte
	for {
		line, err := r.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = r.r.ReadSlice('\n')
				long = append(long, line...)
				if len(long) > maxLine {
					return Event{}, ErrLineTooLong
				}
			}
			line = long
		}
		if err != nil {
			if err == io.EOF {
				if len(line) > 0 {
					// A last line without its newline still counts.
					r.field(line, &hasData)
				}
				if hasData {
					return Event{Type: r.typ, Data: r.data}, nil
				}
				if len(line) > 0 || len(r.typ) > 0 {
					return Event{}, io.ErrUnexpectedEOF
				}
			}
			return Event{}, err
		}
		line = trimEOL(line)
		if len(line) == 0 {
			if hasData {
				return Event{Type: r.typ, Data: r.data}, nil
			}
			r.typ = r.typ[:0]
			continue
		}
		r.field(line, &hasData)
	}
}

func (r *Reader) field(line []byte, hasData *bool) {
	line = trimEOL(line)
	if line[0] == ':' {
		return // comment, e.g. ": keep-alive"
	}
	name, value, _ := bytes.Cut(line, []byte{':'})
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(name) {
	case "data":
		if *hasData {
			r.data = append(r.data, '\n')
		}
		r.data = append(r.data, value...)
		*hasData = true
	case "event":
		r.typ = append(r.typ[:0], value...)
	}
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// Buffered reports how many bytes have arrived from the stream but not yet
// been returned as events. Zero means the next event is not here yet.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// Done is the data of OpenAI's stream terminator event.
var Done = []byte("[DONE]")

// AppendEvent appends an SSE event with optional type and data to dst.
// data must not contain newlines (JSON payloads never do).
func AppendEvent(dst []byte, typ string, data []byte) []byte {
	if typ != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, typ...)
		dst = append(dst, '\n')
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, '\n', '\n')
}
