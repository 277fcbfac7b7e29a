package bedrock

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// This file decodes the AWS event-stream binary framing
// (application/vnd.amazon.eventstream) in which ConverseStream answers.
// A message is:
//
//	total length   uint32, big-endian, the whole message
//	headers length uint32
//	prelude CRC    uint32, CRC-32 (IEEE) of the 8 bytes above
//	headers        name length (1 byte), name, value type (1 byte), value
//	payload        total − headers − 16 bytes
//	message CRC    uint32, CRC-32 of everything before it
//
// Header values are typed; Bedrock sends strings (type 7) for
// :event-type, :message-type, :content-type and :exception-type.

// maxMessage bounds one message (AWS's own limit is 16 MiB).
const maxMessage = 16 << 20

// errCorrupt is wrapped by every framing error.
var errCorrupt = errors.New("corrupt event-stream message")

// frame is one decoded message.
type frame struct {
	headers map[string]string // string-typed headers; others are skipped
	payload []byte
}

// frameReader reads messages from an event stream. It is not safe for
// concurrent use.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 32<<10)}
}

// Buffered reports how many bytes are waiting.
func (fr *frameReader) Buffered() int { return fr.r.Buffered() }

// next returns the next message. It returns io.EOF at a clean end between
// messages and io.ErrUnexpectedEOF when the stream ends inside one. The
// payload is only valid until the next call.
func (fr *frameReader) next() (frame, error) {
	var prelude [12]byte
	if _, err := io.ReadFull(fr.r, prelude[:]); err != nil {
		return frame{}, err // io.EOF only when no byte came
	}
	total := binary.BigEndian.Uint32(prelude[0:4])
	hlen := binary.BigEndian.Uint32(prelude[4:8])
	if crc32.ChecksumIEEE(prelude[:8]) != binary.BigEndian.Uint32(prelude[8:12]) {
		return frame{}, fmt.Errorf("%w: prelude checksum mismatch", errCorrupt)
	}
	if total < 16 || total > maxMessage || hlen > total-16 {
		return frame{}, fmt.Errorf("%w: lengths %d/%d", errCorrupt, total, hlen)
	}
	if cap(fr.buf) < int(total) {
		fr.buf = make([]byte, total)
	}
	msg := fr.buf[:total]
	copy(msg, prelude[:])
	if _, err := io.ReadFull(fr.r, msg[12:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	if crc32.ChecksumIEEE(msg[:total-4]) != binary.BigEndian.Uint32(msg[total-4:]) {
		return frame{}, fmt.Errorf("%w: message checksum mismatch", errCorrupt)
	}
	headers, err := parseHeaders(msg[12 : 12+hlen])
	if err != nil {
		return frame{}, err
	}
	return frame{headers: headers, payload: msg[12+hlen : total-4]}, nil
}

// parseHeaders reads the header block, keeping string values.
func parseHeaders(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for len(b) > 0 {
		n := int(b[0])
		if len(b) < 1+n+1 {
			return nil, fmt.Errorf("%w: truncated header name", errCorrupt)
		}
		name := string(b[1 : 1+n])
		typ := b[1+n]
		b = b[2+n:]
		var size int
		switch typ {
		case 0, 1: // bool true, false: no value bytes
		case 2: // byte
			size = 1
		case 3: // int16
			size = 2
		case 4: // int32
			size = 4
		case 5, 8: // int64, timestamp
			size = 8
		case 9: // uuid
			size = 16
		case 6, 7: // bytes, string: uint16 length
			if len(b) < 2 {
				return nil, fmt.Errorf("%w: truncated header %q", errCorrupt, name)
			}
			l := int(binary.BigEndian.Uint16(b))
			if len(b) < 2+l {
				return nil, fmt.Errorf("%w: truncated header %q", errCorrupt, name)
			}
			if typ == 7 {
				out[name] = string(b[2 : 2+l])
			}
			b = b[2+l:]
			continue
		default:
			return nil, fmt.Errorf("%w: header %q has unknown type %d", errCorrupt, name, typ)
		}
		if len(b) < size {
			return nil, fmt.Errorf("%w: truncated header %q", errCorrupt, name)
		}
		b = b[size:]
	}
	return out, nil
}
