package bedrock

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
)

func TestFrameReader(t *testing.T) {
	a := eventFrame("messageStart", `{"role":"assistant"}`)
	b := exceptionFrame("throttlingException", "slow down")
	fr := newFrameReader(bytes.NewReader(append(append([]byte{}, a...), b...)))
	f, err := fr.next()
	if err != nil || f.headers[":event-type"] != "messageStart" || f.headers[":message-type"] != "event" || string(f.payload) != `{"role":"assistant"}` {
		t.Fatalf("first frame = %+v, %v", f, err)
	}
	f, err = fr.next()
	if err != nil || f.headers[":exception-type"] != "throttlingException" || string(f.payload) != `{"message":"slow down"}` {
		t.Fatalf("second frame = %+v, %v", f, err)
	}
	if _, err := fr.next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// TestFrameHeaderTypes decodes a message with every header value type;
// only strings are kept, the others must be skipped by their sizes.
func TestFrameHeaderTypes(t *testing.T) {
	var hb bytes.Buffer
	add := func(name string, typ byte, value []byte) {
		hb.WriteByte(byte(len(name)))
		hb.WriteString(name)
		hb.WriteByte(typ)
		hb.Write(value)
	}
	add("t", 0, nil)
	add("f", 1, nil)
	add("b", 2, []byte{7})
	add("s", 3, []byte{0, 1})
	add("i", 4, []byte{0, 0, 0, 1})
	add("l", 5, make([]byte, 8))
	add("bytes", 6, []byte{0, 2, 0xff, 0xfe})
	add(":event-type", 7, append([]byte{0, 8}, "metadata"...))
	add("ts", 8, make([]byte, 8))
	add("uuid", 9, make([]byte, 16))
	payload := []byte(`{}`)
	total := 16 + hb.Len() + len(payload)
	msg := binary.BigEndian.AppendUint32(nil, uint32(total))
	msg = binary.BigEndian.AppendUint32(msg, uint32(hb.Len()))
	msg = binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
	msg = append(append(msg, hb.Bytes()...), payload...)
	msg = binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
	f, err := newFrameReader(bytes.NewReader(msg)).next()
	if err != nil {
		t.Fatal(err)
	}
	if len(f.headers) != 1 || f.headers[":event-type"] != "metadata" || string(f.payload) != "{}" {
		t.Fatalf("frame = %+v", f)
	}
}

func TestFrameReaderRejects(t *testing.T) {
	good := eventFrame("messageStop", `{"stopReason":"end_turn"}`)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	for _, tt := range []struct {
		name string
		data []byte
		want error
	}{
		{"prelude checksum", flip(9), errCorrupt},
		{"length under the prelude's checksum", flip(3), errCorrupt},
		{"payload bit flipped", flip(len(good) - 6), errCorrupt},
		{"message checksum", flip(len(good) - 1), errCorrupt},
		{"cut inside the message", good[:len(good)-3], io.ErrUnexpectedEOF},
		{"cut inside the prelude", good[:5], io.ErrUnexpectedEOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newFrameReader(bytes.NewReader(tt.data)).next()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
