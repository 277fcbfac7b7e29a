package guardrail

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Source is an event stream: OpenAI chat or completion chunks, Anthropic
// Messages events or Responses API events (providers.Stream).
type Source interface {
	Recv() ([]byte, error)
	Close() error
}

// Stream applies the post_call guards to a streamed answer as it passes:
// each text delta is released once no match can still be growing across
// it (for most patterns, once the word is complete; see tail), with
// masked matches replaced; a blocking match ends the stream with
// a *BlockedError before the matched text is sent. The events keep their
// form: chat and completion chunks (choices[].delta.content, .text),
// Anthropic text_delta events, Responses output_text deltas (whose
// sequence numbers are kept consecutive when a held tail needs an event
// of its own) and the full texts of Responses' done events.
type Stream struct {
	src     Source
	guards  []*Guard
	pending map[string]string
	order   []string          // pending keys, first seen first
	queue   [][]byte          // events to return before reading on
	last    []byte            // the last chat chunk, a template for a tail at EOF
	rlast   map[string][]byte // each Responses text's last delta event, likewise
	shift   int64             // Responses events added so far (sequence_number shift)
	seq     int64             // the last Responses sequence_number sent
	hits    []Hit
	eof     bool
}

// NewStream wraps src when any of guards checks answers, else returns
// src itself.
func NewStream(guards []*Guard, src Source) Source {
	var out []*Guard
	for _, g := range guards {
		if g.post {
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		return src
	}
	return &Stream{src: src, guards: out, pending: map[string]string{}}
}

// Hits returns the rules that matched so far.
func (s *Stream) Hits() []Hit { return s.hits }

// Close closes the source.
func (s *Stream) Close() error { return s.src.Close() }

// Buffered reports events ready to return: queued ones and, when the
// source can tell, what it has buffered.
func (s *Stream) Buffered() int {
	n := len(s.queue)
	if b, ok := s.src.(interface{ Buffered() int }); ok {
		n += b.Buffered()
	}
	return n
}

// Recv returns the next event, its text guarded.
func (s *Stream) Recv() ([]byte, error) {
	if len(s.queue) > 0 {
		e := s.queue[0]
		s.queue = s.queue[1:]
		return e, nil
	}
	if s.eof {
		return nil, io.EOF
	}
	data, err := s.src.Recv()
	if err == io.EOF {
		s.eof = true
		if tails := s.tails(); len(tails) > 0 {
			s.queue = tails[1:]
			return tails[0], nil
		}
		return nil, io.EOF
	}
	if err != nil {
		return nil, err
	}
	return s.event(data)
}

// event guards one event.
func (s *Stream) event(data []byte) ([]byte, error) {
	typ := gjson.GetBytes(data, "type").Str
	switch {
	case typ == "content_block_delta":
		if gjson.GetBytes(data, "delta.type").Str != "text_delta" {
			return data, nil
		}
		key := "a" + gjson.GetBytes(data, "index").Raw
		out, err := s.release(key, gjson.GetBytes(data, "delta.text").Str, false)
		if err != nil {
			return nil, err
		}
		return sjson.SetBytes(data, "delta.text", out)
	case typ == "content_block_stop":
		key := "a" + gjson.GetBytes(data, "index").Raw
		tail, err := s.release(key, "", true)
		if err != nil || tail == "" {
			return data, err
		}
		s.queue = append(s.queue, append([]byte(nil), data...))
		return []byte(fmt.Sprintf(`{"type":"content_block_delta","index":%s,"delta":{"type":"text_delta","text":%s}}`,
			gjson.GetBytes(data, "index").Raw, quote(tail))), nil
	case typ == "response.output_text.delta":
		key := responsesKey(data)
		out, err := s.release(key, gjson.GetBytes(data, "delta").Str, false)
		if err != nil {
			return nil, err
		}
		b, err := sjson.SetBytes(data, "delta", out)
		if err != nil {
			return nil, err
		}
		b = s.renumber(b)
		if s.rlast == nil {
			s.rlast = map[string][]byte{}
		}
		s.rlast[key] = append(s.rlast[key][:0], b...)
		return b, nil
	case typ == "response.output_text.done":
		tail, err := s.release(responsesKey(data), "", true)
		if err != nil {
			return nil, err
		}
		done, err := s.whole(data)
		if err != nil {
			return nil, err
		}
		if tail == "" {
			return s.renumber(done), nil
		}
		d, _ := sjson.SetBytes(data, "type", "response.output_text.delta")
		d, _ = sjson.DeleteBytes(d, "text")
		d, _ = sjson.DeleteBytes(d, "logprobs")
		d, _ = sjson.SetBytes(d, "delta", tail)
		d = s.renumber(d)
		s.shift++
		s.queue = append(s.queue, s.renumber(done))
		return d, nil
	case len(typ) > 9 && typ[:9] == "response.":
		out, err := s.whole(data)
		if err != nil {
			return nil, err
		}
		return s.renumber(out), nil
	case typ != "":
		return data, nil // other Anthropic events
	}
	// A chat or completion chunk.
	choices := gjson.GetBytes(data, "choices")
	if !choices.IsArray() {
		return data, nil
	}
	out := data
	var err error
	i := 0
	choices.ForEach(func(_, c gjson.Result) bool {
		field := "delta.content"
		t := c.Get(field)
		if !t.Exists() {
			if tx := c.Get("text"); tx.Exists() {
				field, t = "text", tx
			}
		}
		final := c.Get("finish_reason").Exists() && c.Get("finish_reason").Type != gjson.Null
		if !t.Exists() && !final {
			i++
			return true
		}
		idx := c.Get("index").Int()
		var rel string
		if rel, err = s.release("c"+strconv.FormatInt(idx, 10), t.Str, final); err != nil {
			return false
		}
		if t.Exists() || rel != "" {
			if out, err = sjson.SetBytes(out, "choices."+strconv.Itoa(i)+"."+field, rel); err != nil {
				return false
			}
		}
		i++
		return true
	})
	if err != nil {
		return nil, err
	}
	s.last = append(s.last[:0], data...)
	return out, nil
}

// whole masks (or blocks on) the complete texts a Responses event carries
// (output_text.done's text, a done part's or item's, response.completed's
// output).
func (s *Stream) whole(data []byte) ([]byte, error) {
	out, hits, err := Output(s.guards, data)
	s.hits = append(s.hits, hits...)
	return out, err
}

func responsesKey(data []byte) string {
	return "r" + gjson.GetBytes(data, "item_id").Str + ":" + gjson.GetBytes(data, "content_index").Raw
}

// renumber moves a Responses event's sequence_number past the events
// Stream added.
func (s *Stream) renumber(data []byte) []byte {
	n := gjson.GetBytes(data, "sequence_number")
	if !n.Exists() {
		return data
	}
	s.seq = n.Int() + s.shift
	if s.shift == 0 {
		return data
	}
	b, err := sjson.SetBytes(data, "sequence_number", s.seq)
	if err != nil {
		return data
	}
	return b
}

// release adds text to a key's held text and returns what may be sent:
// everything when final, else what comes before any rule's tail (see
// tail) and before any match that crosses that point or reaches the end,
// masked. A blocking
// match anywhere in the held text is an error at once.
func (s *Stream) release(key, add string, final bool) (string, error) {
	text, seen := s.pending[key]
	if !seen {
		s.order = append(s.order, key)
		s.pending[key] = ""
	}
	text += add
	if text == "" {
		return "", nil
	}
	cut := len(text)
	if !final {
		for _, g := range s.guards {
			for i := range g.rules {
				cut = min(cut, g.rules[i].tail(text))
			}
		}
	}
	var fs []finding
	for _, g := range s.guards {
		for _, f := range g.find(text) {
			if f.rule.action == Block {
				s.hits = append(s.hits, Hit{Guard: g.Name, Rule: f.rule.name, Action: Block})
				s.pending[key] = ""
				return "", &BlockedError{Guard: g.Name, What: f.rule.what, Output: true}
			}
			fs = append(fs, f)
		}
	}
	for moved := true; moved; {
		moved = false
		for _, f := range fs {
			if (f.start < cut && f.end > cut) || (!final && f.end == len(text) && f.start < cut) {
				cut, moved = f.start, true
			}
		}
	}
	for cut > 0 && cut < len(text) && !utf8.RuneStart(text[cut]) {
		cut--
	}
	s.pending[key] = text[cut:]
	// The matches found in the whole text that end before the cut are
	// masked in what is sent; the rest are found again with more text.
	done := fs[:0]
	for _, f := range fs {
		if f.end <= cut {
			done = append(done, f)
		}
	}
	done = disjoint(done)
	for _, f := range done {
		s.hits = append(s.hits, Hit{Guard: f.guard, Rule: f.rule.name, Action: Mask})
	}
	return mask(text[:cut], done), nil
}

// tails returns events carrying the text still held when the source
// ended without closing it (no finish_reason, content_block_stop or
// output_text.done), each shaped after its text's last event.
func (s *Stream) tails() [][]byte {
	var out [][]byte
	for _, key := range s.order {
		if s.pending[key] == "" {
			continue
		}
		tail, err := s.release(key, "", true)
		if err != nil || tail == "" {
			continue
		}
		switch key[0] {
		case 'c':
			if s.last == nil {
				continue
			}
			b := []byte(fmt.Sprintf(`{"id":%s,"object":%s,"created":%s,"model":%s,"choices":[{"index":%s,"delta":{"content":%s},"finish_reason":null}]}`,
				jsonOr(s.last, "id", `""`), jsonOr(s.last, "object", `"chat.completion.chunk"`), jsonOr(s.last, "created", "0"),
				jsonOr(s.last, "model", `""`), key[1:], quote(tail)))
			out = append(out, b)
		case 'a':
			out = append(out, []byte(fmt.Sprintf(`{"type":"content_block_delta","index":%s,"delta":{"type":"text_delta","text":%s}}`, key[1:], quote(tail))))
		case 'r':
			d, err := sjson.SetBytes(s.rlast[key], "delta", tail)
			if err != nil {
				continue
			}
			s.seq++
			if d, err = sjson.SetBytes(d, "sequence_number", s.seq); err == nil {
				out = append(out, d)
			}
		}
	}
	return out
}

// quote is s as a JSON string.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func jsonOr(data []byte, path, def string) string {
	if r := gjson.GetBytes(data, path); r.Exists() {
		return r.Raw
	}
	return def
}
