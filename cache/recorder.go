package cache

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
)

// Recorder builds an Entry from a chat completion stream as it passes: feed
// it every payload Stream.Recv returns, then call Finish once Recv has
// returned io.EOF. It keeps only what the entry will hold (the chunk log and
// the assembled message) and gives up, freeing both, as soon as they exceed
// the size bound, an error event arrives, or a choice finishes with a reason
// other than stop, length, tool_calls or function_call (content_filter).
//
// A Recorder is not safe for concurrent use; the goroutine reading the
// stream owns it.
type Recorder struct {
	max     int
	err     error
	log     chunkLog
	object  string
	model   []byte // raw JSON
	fp      []byte
	tier    []byte
	usage   []byte
	choices []*choiceAcc
	texts   int // bytes held by choices
}

type choiceAcc struct {
	index              int64
	role               []byte // raw JSON
	content, refusal   []byte // decoded text
	reasoning          []byte
	reasoningKey       string
	sawContent         bool
	sawRefusal         bool
	tools              []*toolAcc
	fn                 *toolAcc // legacy function_call
	lpContent, lpRefus []byte   // raw logprobs items, comma-separated
	sawLogprobs        bool
	finish             string
}

type toolAcc struct {
	index          int64
	id, typ, name  []byte // decoded text
	args           []byte
	hasID, hasType bool
}

// NewRecorder returns a Recorder whose entry may hold up to maxBytes; 0 means
// DefaultMaxEntryBytes.
func NewRecorder(maxBytes int) *Recorder {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxEntryBytes
	}
	return &Recorder{max: maxBytes}
}

// fail makes the recording fail with err and frees what it held.
func (r *Recorder) fail(err error) {
	r.err = err
	r.log = chunkLog{}
	r.choices = nil
	r.usage = nil
}

// Err returns why the recording has already failed, or nil.
func (r *Recorder) Err() error { return r.err }

// Add records one chunk payload (a chat.completion.chunk JSON object).
func (r *Recorder) Add(chunk []byte) {
	if r.err != nil {
		return
	}
	doc := gjson.Parse(unsafe.String(unsafe.SliceData(chunk), len(chunk)))
	if !doc.IsObject() {
		r.fail(fmt.Errorf("%w: a stream event is not a JSON object", ErrNotCacheable))
		return
	}
	doc.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "error":
			r.fail(fmt.Errorf("%w: the stream carried an error", ErrNotCacheable))
		case "object":
			if r.object == "" {
				r.object = strings.Clone(v.Str) // v.Str may be chunk's memory, which the stream reuses
			}
		case "model":
			if r.model == nil {
				r.model = []byte(v.Raw)
			}
		case "system_fingerprint":
			if v.Type != gjson.Null {
				r.fp = append(r.fp[:0], v.Raw...)
			}
		case "service_tier":
			if v.Type != gjson.Null {
				r.tier = append(r.tier[:0], v.Raw...)
			}
		case "usage":
			if v.IsObject() {
				r.usage = append(r.usage[:0], v.Raw...)
			}
		case "choices":
			v.ForEach(func(_, c gjson.Result) bool {
				r.choice(c)
				return r.err == nil
			})
		}
		return r.err == nil
	})
	if r.err != nil {
		return
	}
	r.log.add(chunk)
	if len(r.log.buf)+r.texts+len(r.usage) > r.max {
		r.fail(fmt.Errorf("%w: entry exceeds %d bytes", ErrNotCacheable, r.max))
	}
}

func (r *Recorder) acc(index int64) *choiceAcc {
	for _, c := range r.choices {
		if c.index == index {
			return c
		}
	}
	c := &choiceAcc{index: index}
	r.choices = append(r.choices, c)
	return c
}

func (r *Recorder) choice(c gjson.Result) {
	var idx int64
	var delta, logprobs, finish gjson.Result
	c.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "index":
			idx = v.Int()
		case "delta":
			delta = v
		case "logprobs":
			logprobs = v
		case "finish_reason":
			finish = v
		}
		return true
	})
	a := r.acc(idx)
	before := len(a.content) + len(a.refusal) + len(a.reasoning) + len(a.lpContent) + len(a.lpRefus)
	delta.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "role":
			if v.Type == gjson.String {
				a.role = append(a.role[:0], v.Raw...)
			}
		case "content":
			if v.Type == gjson.String {
				a.content = append(a.content, v.Str...)
				a.sawContent = true
			}
		case "refusal":
			if v.Type == gjson.String {
				a.refusal = append(a.refusal, v.Str...)
				a.sawRefusal = true
			}
		case "reasoning_content", "reasoning":
			if v.Type == gjson.String {
				a.reasoning = append(a.reasoning, v.Str...)
				a.reasoningKey = "reasoning" // a constant: k.Str is the chunk's memory
				if k.Str == "reasoning_content" {
					a.reasoningKey = "reasoning_content"
				}
			}
		case "tool_calls":
			v.ForEach(func(_, tc gjson.Result) bool {
				r.texts += a.tool(tc)
				return true
			})
		case "function_call":
			if a.fn == nil {
				a.fn = &toolAcc{}
			}
			r.texts += a.fn.add(v)
		}
		return true
	})
	if logprobs.IsObject() {
		a.sawLogprobs = true
		a.lpContent = appendItems(a.lpContent, logprobs.Get("content"))
		a.lpRefus = appendItems(a.lpRefus, logprobs.Get("refusal"))
	}
	r.texts += len(a.content) + len(a.refusal) + len(a.reasoning) + len(a.lpContent) + len(a.lpRefus) - before
	if finish.Type == gjson.String && finish.Str != "" {
		a.finish = strings.Clone(finish.Str) // finish.Str is the chunk's memory, which the stream reuses
		if !complete[finish.Str] {
			r.fail(fmt.Errorf("%w: finish_reason %q", ErrNotCacheable, finish.Str))
		}
	}
}

// appendItems appends the raw items of a JSON array to a comma-separated list.
func appendItems(dst []byte, arr gjson.Result) []byte {
	if !arr.IsArray() {
		return dst
	}
	arr.ForEach(func(_, it gjson.Result) bool {
		if len(dst) > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, it.Raw...)
		return true
	})
	return dst
}

// tool merges one tool_calls delta and returns the bytes it added.
func (a *choiceAcc) tool(tc gjson.Result) int {
	ix := tc.Get("index")
	var t *toolAcc
	switch {
	case ix.Exists():
		for _, x := range a.tools {
			if x.index == ix.Int() {
				t = x
			}
		}
	case !tc.Get("id").Exists() && len(a.tools) > 0:
		t = a.tools[len(a.tools)-1] // a continuation without an index
	}
	if t == nil {
		t = &toolAcc{index: ix.Int()}
		if !ix.Exists() {
			t.index = int64(len(a.tools))
		}
		a.tools = append(a.tools, t)
	}
	n := 0
	if id := tc.Get("id"); id.Type == gjson.String && !t.hasID {
		t.id = append(t.id, id.Str...)
		t.hasID = true
		n += len(id.Str)
	}
	if typ := tc.Get("type"); typ.Type == gjson.String && !t.hasType {
		t.typ = append(t.typ, typ.Str...)
		t.hasType = true
		n += len(typ.Str)
	}
	return n + t.add(tc.Get("function"))
}

// add merges a function delta ({"name", "arguments"}) and returns the bytes
// it added.
func (t *toolAcc) add(fn gjson.Result) int {
	n := 0
	if name := fn.Get("name"); name.Type == gjson.String {
		t.name = append(t.name, name.Str...)
		n += len(name.Str)
	}
	if args := fn.Get("arguments"); args.Type == gjson.String {
		t.args = append(t.args, args.Str...)
		n += len(args.Str)
	}
	return n
}

// Finish returns the entry of a stream whose Recv returned io.EOF. It returns
// ErrNotCacheable when the recording failed, saw no choice, a choice never
// finished, or the stream is not a chat completion.
func (r *Recorder) Finish() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.object != "chat.completion.chunk" {
		return nil, fmt.Errorf("%w: stream object %q is not a chat completion", ErrNotCacheable, r.object)
	}
	if len(r.choices) == 0 {
		return nil, fmt.Errorf("%w: the stream had no choices", ErrNotCacheable)
	}
	for _, c := range r.choices {
		if c.finish == "" {
			return nil, fmt.Errorf("%w: choice %d did not finish", ErrNotCacheable, c.index)
		}
	}
	body := r.body()
	e := &Entry{kind: kindChat, usage: openai.ParseUsage(body)}
	if err := e.pack(body, &r.log, r.max); err != nil {
		r.fail(err)
		return nil, err
	}
	e.stored = nowNano()
	r.log = chunkLog{}
	r.choices = nil
	return e, nil
}

// body assembles the chat.completion equivalent of the stream.
func (r *Recorder) body() []byte {
	b := make([]byte, 0, r.texts+len(r.usage)+256*len(r.choices)+128)
	b = append(b, `{"id":"","object":"chat.completion","created":0,"model":`...)
	b = appendRawOr(b, r.model, `""`)
	b = append(b, `,"choices":[`...)
	slices.SortFunc(r.choices, func(x, y *choiceAcc) int { return int(x.index - y.index) })
	for i, c := range r.choices {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, c.index, 10)
		b = append(b, `,"message":{"role":`...)
		b = appendRawOr(b, c.role, `"assistant"`)
		b = append(b, `,"content":`...)
		switch {
		case len(c.content) > 0 || c.sawContent && len(c.tools) == 0 && c.fn == nil:
			// OpenAI answers tool calls with "content": null even when the
			// stream sent "".
			b = providers.AppendJSONString(b, unsafe.String(unsafe.SliceData(c.content), len(c.content)))
		default:
			b = append(b, "null"...)
		}
		if c.sawRefusal {
			b = append(b, `,"refusal":`...)
			b = providers.AppendJSONString(b, unsafe.String(unsafe.SliceData(c.refusal), len(c.refusal)))
		}
		if c.reasoningKey != "" {
			b = append(b, ',')
			b = providers.AppendJSONString(b, c.reasoningKey)
			b = append(b, ':')
			b = providers.AppendJSONString(b, unsafe.String(unsafe.SliceData(c.reasoning), len(c.reasoning)))
		}
		if len(c.tools) > 0 {
			slices.SortStableFunc(c.tools, func(x, y *toolAcc) int { return int(x.index - y.index) })
			b = append(b, `,"tool_calls":[`...)
			for j, t := range c.tools {
				if j > 0 {
					b = append(b, ',')
				}
				typ := "function"
				if t.hasType {
					typ = string(t.typ)
				}
				b = append(b, `{"id":`...)
				b = providers.AppendJSONString(b, string(t.id))
				b = append(b, `,"type":`...)
				b = providers.AppendJSONString(b, typ)
				b = append(b, `,"function":`...)
				b = t.appendFunction(b)
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		if c.fn != nil {
			b = append(b, `,"function_call":`...)
			b = c.fn.appendFunction(b)
		}
		b = append(b, `},"logprobs":`...)
		if c.sawLogprobs {
			b = append(b, `{"content":[`...)
			b = append(b, c.lpContent...)
			b = append(b, ']')
			if len(c.lpRefus) > 0 {
				b = append(b, `,"refusal":[`...)
				b = append(b, c.lpRefus...)
				b = append(b, ']')
			}
			b = append(b, '}')
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"finish_reason":`...)
		b = providers.AppendJSONString(b, c.finish)
		b = append(b, '}')
	}
	b = append(b, ']')
	if r.usage != nil {
		b = append(b, `,"usage":`...)
		b = append(b, r.usage...)
	}
	if r.tier != nil {
		b = append(b, `,"service_tier":`...)
		b = append(b, r.tier...)
	}
	if r.fp != nil {
		b = append(b, `,"system_fingerprint":`...)
		b = append(b, r.fp...)
	}
	return append(b, '}')
}

func (t *toolAcc) appendFunction(b []byte) []byte {
	b = append(b, `{"name":`...)
	b = providers.AppendJSONString(b, string(t.name))
	b = append(b, `,"arguments":`...)
	return append(providers.AppendJSONString(b, string(t.args)), '}')
}

func appendRawOr(b, raw []byte, def string) []byte {
	if len(raw) == 0 {
		return append(b, def...)
	}
	return append(b, raw...)
}

// synthesize writes the chunk sequence OpenAI would have streamed for a
// chat.completion body: per choice a role chunk, reasoning, content and
// refusal chunks, two chunks per tool call (id and name, then arguments), a
// finish chunk; then a usage chunk with "choices": [] when the body has
// usage. It stops early once the log exceeds max.
func synthesize(doc gjson.Result, log *chunkLog, max int) {
	head := []byte(`{"id":"","object":"chat.completion.chunk","created":0,"model":`)
	head = appendRawOr(head, []byte(doc.Get("model").Raw), `""`)
	if v := doc.Get("service_tier"); v.Exists() && v.Type != gjson.Null {
		head = append(append(head, `,"service_tier":`...), v.Raw...)
	}
	if v := doc.Get("system_fingerprint"); v.Exists() && v.Type != gjson.Null {
		head = append(append(head, `,"system_fingerprint":`...), v.Raw...)
	}
	head = append(head, `,"choices":[`...)
	var c []byte
	emit := func(parts ...string) {
		c = append(c[:0], head...)
		for _, p := range parts {
			c = append(c, p...)
		}
		c = append(c, "]}"...)
		log.add(c)
	}
	n := 0
	doc.Get("choices").ForEach(func(_, ch gjson.Result) bool {
		idx := ch.Get("index").Raw
		if idx == "" {
			idx = strconv.Itoa(n)
		}
		n++
		open := `{"index":` + idx + `,"delta":{`
		const tail = `},"logprobs":null,"finish_reason":null}`
		msg := ch.Get("message")
		role := msg.Get("role").Raw
		if role == "" {
			role = `"assistant"`
		}
		content := msg.Get("content")
		empty := "null"
		if content.Type == gjson.String {
			empty = `""`
		}
		emit(open, `"role":`, role, `,"content":`, empty, tail)
		for _, key := range []string{"reasoning_content", "reasoning"} {
			if v := msg.Get(key); v.Type == gjson.String && v.Str != "" {
				emit(open, `"`, key, `":`, v.Raw, tail)
			}
		}
		lp := ch.Get("logprobs")
		lpRaw := "null"
		if lp.IsObject() {
			lpRaw = lp.Raw
		}
		if content.Type == gjson.String && content.Str != "" {
			emit(open, `"content":`, content.Raw, `},"logprobs":`, lpRaw, `,"finish_reason":null}`)
			lpRaw = "null"
		}
		if v := msg.Get("refusal"); v.Type == gjson.String {
			emit(open, `"refusal":`, v.Raw, tail)
		}
		j := 0
		msg.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
			ix := strconv.Itoa(j)
			j++
			typ := tc.Get("type")
			if typ.Exists() && typ.Str != "function" {
				// Other tool types have no documented stream form: one
				// chunk carries the whole call.
				sep := ","
				if strings.TrimSpace(tc.Raw[1:]) == "}" {
					sep = ""
				}
				emit(open, `"tool_calls":[{"index":`, ix, sep, tc.Raw[1:], `]`, tail)
				return true
			}
			fn := tc.Get("function")
			emit(open, `"tool_calls":[{"index":`, ix, `,"id":`, rawOr(tc.Get("id"), `""`),
				`,"type":"function","function":{"name":`, rawOr(fn.Get("name"), `""`), `,"arguments":""}}]`, tail)
			if args := fn.Get("arguments"); args.Type == gjson.String && args.Str != "" {
				emit(open, `"tool_calls":[{"index":`, ix, `,"function":{"arguments":`, args.Raw, `}}]`, tail)
			}
			return true
		})
		if fc := msg.Get("function_call"); fc.IsObject() {
			emit(open, `"function_call":{"name":`, rawOr(fc.Get("name"), `""`), `,"arguments":""}`, tail)
			if args := fc.Get("arguments"); args.Type == gjson.String && args.Str != "" {
				emit(open, `"function_call":{"arguments":`, args.Raw, `}`, tail)
			}
		}
		emit(open, `},"logprobs":`, lpRaw, `,"finish_reason":`, rawOr(ch.Get("finish_reason"), "null"), `}`)
		return len(log.buf) <= max
	})
	if u := doc.Get("usage"); u.IsObject() && len(log.buf) <= max {
		c = append(c[:0], head...)
		c = append(c, `],"usage":`...)
		c = append(c, u.Raw...)
		c = append(c, '}')
		log.add(c)
	}
}

func rawOr(v gjson.Result, def string) string {
	if !v.Exists() {
		return def
	}
	return v.Raw
}
