package sse

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // "type|data"
		wantErr error
	}{
		{"openai chunks", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []string{`|{"a":1}`, `|[DONE]`}, io.EOF},
		{"crlf and comment", ": keep-alive\r\n\r\ndata: x\r\n\r\n", []string{"|x"}, io.EOF},
		{"typed anthropic event", "event: message_start\ndata: {}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n", []string{"message_start|{}", `ping|{"type":"ping"}`}, io.EOF},
		{"multi-line data", "data: a\ndata: b\n\n", []string{"|a\nb"}, io.EOF},
		{"no space after colon", "data:x\n\n", []string{"|x"}, io.EOF},
		{"last event without blank line", "data: x\n", []string{"|x"}, io.EOF},
		{"cut inside event", "event: message_delta\n", nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in))
			var got []string
			var err error
			for {
				var ev Event
				ev, err = r.Next()
				if err != nil {
					break
				}
				got = append(got, string(ev.Type)+"|"+string(ev.Data))
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("events = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReaderLongLine(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	r := NewReader(strings.NewReader("data: " + long + "\n\n"))
	ev, err := r.Next()
	if err != nil || string(ev.Data) != long {
		t.Fatalf("long line: err=%v len=%d", err, len(ev.Data))
	}
}

func TestAppendEvent(t *testing.T) {
	got := string(AppendEvent(nil, "error", []byte(`{"error":{}}`)))
	if got != "event: error\ndata: {\"error\":{}}\n\n" {
		t.Fatalf("got %q", got)
	}
}
