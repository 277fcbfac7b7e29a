package router

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
	"github.com/lumengw/lumen/tokens"
)

// maxFailovers bounds how many times one stream is continued elsewhere:
// each continuation re-sends the whole prompt, so a stream that keeps
// breaking should end rather than multiply its cost.
const maxFailovers = 3

// continueInstruction follows the partial answer for upstreams that have
// no assistant prefill: OpenAI and the OpenAI-shaped servers treat a final
// assistant message as history and start a new message, so they are told
// to continue. The splice still removes any text the model repeats.
const continueInstruction = "Your previous reply was cut off. Continue it exactly where it stopped, " +
	"without repeating any of it and without any preamble: output only the rest of the reply."

// prefill reports whether d continues a final assistant message by itself
// (assistant prefill): Claude models up to 4.5 natively (Anthropic, and
// Claude on Bedrock), Mistral with "prefix": true on that
// message. The others get the partial answer as an assistant message
// followed by continueInstruction. Claude Opus 4.6, Sonnet 4.6 and later
// refuse a conversation that ends with an assistant message (400 "This
// model does not support assistant message prefill"), and so, presumably,
// will the models after them: only the known older ones are prefilled.
func prefill(d *Deployment) bool {
	switch d.ProviderName {
	case "mistral":
		return true
	case "anthropic", "bedrock":
		return claudePrefill.MatchString(d.Model)
	}
	return false
}

// claudePrefill matches the Claude model ids that accept assistant
// prefill: Claude 3.x, and Claude 4 to 4.5 (claude-sonnet-4-20250514,
// claude-opus-4-1, claude-sonnet-4-5@20250929,
// anthropic.claude-haiku-4-5-20251001-v1:0), not claude-opus-4-6.
var claudePrefill = regexp.MustCompile(`claude-(?:3|(?:opus|sonnet|haiku)-4(?:-[0-5])?(?:-\d{8}|[@:]|-v\d|$))`)

// stream is the Stream of a streaming Result. It replays the first event
// the router already read, keeps the deployment's in-flight count and
// token usage, and — when router_settings.stream_failover is on — fails
// over when the upstream breaks mid-answer:
//
//   - nothing but a role chunk relayed yet: the request is restarted on
//     another deployment;
//   - text relayed: another deployment is asked to continue it (see
//     continuation) and its chunks are spliced in: the original id and
//     model, its role chunk dropped, any text it repeats removed, then its
//     own finish;
//   - a tool call in progress: its chunks are held back until the finish
//     chunk (half a tool call's arguments cannot be spliced: a client
//     concatenates them), so when it breaks nothing of it has reached the
//     client and the request is restarted (or, after text, continued) on
//     another deployment, which makes the tool call afresh. The price: with
//     failover on, tool-call arguments reach the client when the call is
//     complete, not token by token;
//   - n > 1 choices: no splice is safe, the error is returned (the server
//     ends the stream with an error event).
//
// Candidates are the group's deployments that have not broken this
// stream, healthy ones only, then the fallback groups (each admitted by
// Call.Admit and Call.Skip, as before the first event). A break that ends
// the stream with an error after some fallback was passed over (its rate
// window full, its budget spent) returns a *FallbacksRefusedError, as a
// call that fails before its first event does, so the client's error
// event says why no fallback continued it. A break after a
// finish_reason was relayed ends the stream normally: the answer was
// whole, only the trailing usage chunk is lost.
//
// The continuation's usage chunk is rewritten to include the estimated
// tokens of the broken attempts (their prompt, and the text they produced),
// so the spend recorded is what the upstreams were paid for. Like every
// Stream, it belongs to one goroutine.
type stream struct {
	r      *Router
	ctx    context.Context
	rs     *reqState
	g      *Group
	gt     groupTry // the serving group's deployments tried by this stream
	d      *Deployment
	cur    providers.Stream
	cancel context.CancelFunc
	body   []byte // the body the serving attempt was sent
	first  []byte // the first event, read by the router, not yet returned
	eof    bool   // the serving attempt's stream is over
	closed bool

	failover  bool // failover allowed for this request
	attempts  int
	failovers int
	// serving and calls are what Serving reports, kept apart from d and
	// attempts for a reader on another goroutine (a cache flight pumps
	// the stream while its leader finishes).
	serving atomic.Pointer[Deployment]
	calls   atomic.Int32

	// What the client has been sent.
	relayed    int // bytes of event data
	id, model  []byte
	text       strings.Builder // assistant text (choice 0)
	toolSent   bool
	finished   bool
	attemptOut int // output tokens the serving attempt generated, sent or not

	// The serving attempt, when it is a continuation.
	cont         bool
	partial      string // the text it must continue, not repeat
	holding      bool   // its first text is held until overlap is ruled out
	held         []held
	heldText     strings.Builder
	queue        []held // chunks for deliver, in order
	tools        []held // a tool call in progress, held back (see deliver)
	ready        []held // chunks deliver let through, to relay in order
	extraPrompt  int    // tokens spent by broken attempts, added to usage
	extraOutput  int
	fittedPrompt bool
}

type held struct {
	data []byte
	ci   chunkInfo
}

var _ providers.Buffered = (*stream)(nil)

func (r *Router) newStream(ctx context.Context, rs *reqState, g *Group, o outcome) *stream {
	// A stream in the client's own API (Anthropic Messages or Responses
	// events, which have no "choices") cannot be continued with chat
	// chunks from another deployment: a break ends it with an error.
	native := o.first != nil && !gjson.GetBytes(o.first, "choices").Exists()
	s := &stream{r: r, ctx: ctx, rs: rs, g: g, d: o.d, cur: o.stream, cancel: o.cancel, body: rs.body,
		first: o.first, eof: o.eof, attempts: rs.res.Attempts,
		failover: r.failover && !native && gjson.GetBytes(rs.body, "n").Int() <= 1}
	s.gt = groupTry{g: g, tried: bit(o.d.index)}
	s.serving.Store(o.d)
	s.calls.Store(int32(s.attempts))
	return s
}

// Serving reports the deployment answering the stream (after a mid-stream
// failover, the one that took over) and the upstream calls it has taken,
// failed continuations included. Safe from any goroutine.
func (s *stream) Serving() (*Deployment, int) { return s.serving.Load(), int(s.calls.Load()) }

// Serving is implemented by the streams Router.Do returns: the ledger
// records the deployment that finished a failed-over stream and every
// upstream call it took.
type Serving interface {
	Serving() (*Deployment, int)
}

// Recv implements providers.Stream.
func (s *stream) Recv() ([]byte, error) {
	for {
		if len(s.ready) > 0 {
			h := s.ready[0]
			s.ready = s.ready[1:]
			return s.relay(h.data, h.ci), nil
		}
		if len(s.queue) > 0 {
			h := s.queue[0]
			s.queue = s.queue[1:]
			if s.deliver(h) {
				return s.relay(h.data, h.ci), nil
			}
			continue
		}
		if s.closed {
			return nil, io.EOF
		}
		data, err := s.next()
		if err == nil {
			if s.failover { // what a broken attempt cost (broke)
				s.attemptOut += tokens.Chunk(data)
			}
			ci := s.parse(data)
			if s.cont {
				var ok bool
				if data, ok = s.splice(data, ci); !ok {
					continue
				}
			}
			if s.deliver(held{data, ci}) {
				return s.relay(data, ci), nil
			}
			continue
		}
		if err == io.EOF {
			if s.holding {
				s.end()
				s.release()
				continue
			}
			if len(s.tools) > 0 { // ended without a finish: pass it on as it came
				s.end()
				s.ready, s.tools = append(s.ready, s.tools...), nil
				continue
			}
			s.end()
			return nil, io.EOF
		}
		if ferr := s.broke(err); ferr != nil {
			if s.ctx.Err() == nil {
				// The fallbacks passed over, here or before the stream
				// began, as a call that fails before its first event says.
				ferr = withRefusals(s.rs, ferr)
			}
			return nil, ferr
		}
		if s.finished {
			return nil, io.EOF
		}
	}
}

func (s *stream) next() ([]byte, error) {
	if s.first != nil {
		data := s.first
		s.first = nil
		return data, nil
	}
	if s.eof || s.cur == nil {
		return nil, io.EOF
	}
	return s.cur.Recv()
}

// deliver reports whether a chunk goes to the client now. With failover
// on, a tool call's chunks, and any after them, are held back until the
// finish chunk, then let through in order (via ready) with it.
func (s *stream) deliver(h held) bool {
	if !s.failover {
		return true
	}
	if !h.ci.finish && (h.ci.tools || len(s.tools) > 0) {
		h.data = bytes.Clone(h.data) // Recv's slice is reused by the next call
		s.tools = append(s.tools, h)
		return false
	}
	if len(s.tools) == 0 {
		return true
	}
	h.data = bytes.Clone(h.data)
	s.ready = append(append(s.ready, s.tools...), h)
	s.tools = nil
	return false
}

// Buffered implements providers.Buffered: whether the next event is
// already here.
func (s *stream) Buffered() int {
	if len(s.ready) > 0 || len(s.queue) > 0 || s.first != nil {
		return 1
	}
	if b, ok := s.cur.(providers.Buffered); ok {
		return b.Buffered()
	}
	return 0
}

// Close implements providers.Stream; it is safe to call twice.
func (s *stream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.end()
	return nil
}

// end releases the serving attempt: its stream, context and in-flight
// count.
func (s *stream) end() {
	if s.cur != nil {
		_ = s.cur.Close()
		s.cur = nil
		s.d.inflight.Add(-1)
	}
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	s.eof = true
}

// chunkInfo is what the router needs to know of one chunk.
type chunkInfo struct {
	text   string // choice 0's text delta
	role   bool   // the delta carries a role
	tools  bool   // the delta carries tool or function call parts
	finish bool   // choice 0 has a finish_reason
	usage  bool   // the chunk carries usage
}

func (s *stream) parse(data []byte) chunkInfo {
	var ci chunkInfo
	ci.usage = openai.HasUsage(data)
	if !s.failover {
		return ci
	}
	c := gjson.GetBytes(data, "choices.0")
	if !c.Exists() {
		return ci
	}
	if s.rs.call.Op == providers.OpCompletion {
		ci.text = c.Get("text").Str
	} else {
		delta := c.Get("delta")
		ci.text = delta.Get("content").Str
		ci.role = delta.Get("role").Exists()
		ci.tools = delta.Get("tool_calls").Exists() || delta.Get("function_call").Exists()
	}
	f := c.Get("finish_reason")
	ci.finish = f.Exists() && f.Type != gjson.Null
	return ci
}

// relay records what the client is sent.
func (s *stream) relay(data []byte, ci chunkInfo) []byte {
	s.relayed += len(data)
	if s.failover && s.id == nil {
		s.id = []byte(gjson.GetBytes(data, "id").Str)
		s.model = []byte(gjson.GetBytes(data, "model").Str)
	}
	s.text.WriteString(ci.text)
	s.toolSent = s.toolSent || ci.tools
	s.finished = s.finished || ci.finish
	if ci.usage {
		u := gjson.GetBytes(data, "usage")
		s.d.usage.addTokens(s.r.now(), int(u.Get("prompt_tokens").Int()+u.Get("completion_tokens").Int()))
	}
	return data
}

// splice fits a continuation's chunk into the client's stream: its role
// chunk is dropped, id and model become the original's, usage adds what
// the broken attempts spent, and its first text is held until any repeat
// of the partial answer can be cut. ok is false when nothing is to be
// returned now.
func (s *stream) splice(data []byte, ci chunkInfo) (out []byte, ok bool) {
	if ci.role && ci.text == "" && !ci.tools && !ci.finish && !ci.usage {
		return nil, false
	}
	out = s.rewrite(data, ci)
	if !s.holding {
		return out, true
	}
	out = bytes.Clone(out) // kept past the next Recv, which may reuse data
	if ci.text != "" {
		s.held = append(s.held, held{out, ci})
		s.heldText.WriteString(ci.text)
		if t := s.heldText.String(); len(t) > len(s.partial) || !strings.Contains(s.partial, t) {
			s.release()
		}
		return nil, false
	}
	s.release()
	s.queue = append(s.queue, held{out, ci})
	return nil, false
}

// rewrite returns a continuation chunk as the original stream's.
func (s *stream) rewrite(data []byte, ci chunkInfo) []byte {
	out := bytes.Clone(data)
	if len(s.id) > 0 {
		out, _ = sjson.SetBytes(out, "id", s.id)
	}
	if len(s.model) > 0 {
		out, _ = sjson.SetBytes(out, "model", s.model)
	}
	if ci.role {
		out, _ = sjson.DeleteBytes(out, "choices.0.delta.role")
	}
	if ci.usage && (s.extraPrompt > 0 || s.extraOutput > 0) {
		u := gjson.GetBytes(out, "usage")
		p := u.Get("prompt_tokens").Int() + int64(s.extraPrompt)
		c := u.Get("completion_tokens").Int() + int64(s.extraOutput)
		out, _ = sjson.SetBytes(out, "usage.prompt_tokens", p)
		out, _ = sjson.SetBytes(out, "usage.completion_tokens", c)
		out, _ = sjson.SetBytes(out, "usage.total_tokens", p+c)
	}
	return out
}

// release queues the held chunks with the repeated text cut off.
func (s *stream) release() {
	s.holding = false
	cut := overlap(s.partial, s.heldText.String())
	for _, h := range s.held {
		if cut > 0 {
			n := min(cut, len(h.ci.text))
			cut -= n
			if n == len(h.ci.text) {
				continue
			}
			h.ci.text = h.ci.text[n:]
			path := "choices.0.delta.content"
			if s.rs.call.Op == providers.OpCompletion {
				path = "choices.0.text"
			}
			h.data, _ = sjson.SetBytes(h.data, path, h.ci.text)
		}
		s.queue = append(s.queue, h)
	}
	s.held = nil
	s.heldText.Reset()
}

// minOverlap is the shortest repeat cut from a continuation when it does
// not start at a word boundary: shorter accidental matches are left alone.
const minOverlap = 8

// overlap is how many leading bytes of cont repeat the end of partial:
// all of partial when cont restarted the answer, else the longest suffix
// of partial that cont starts with, if it is whole words (starts with a
// space), only whitespace (a prefill had its trailing whitespace trimmed,
// and the model wrote it again) or at least minOverlap bytes.
func overlap(partial, cont string) int {
	if partial == "" {
		return 0
	}
	if strings.HasPrefix(cont, partial) {
		return len(partial)
	}
	for k := min(len(partial), len(cont), 1024); k > 0; k-- {
		if !strings.HasSuffix(partial, cont[:k]) {
			continue
		}
		if k >= minOverlap || k >= 2 && isSpace(cont[0]) || strings.TrimLeft(cont[:k], " \t\r\n") == "" {
			return k
		}
		return 0
	}
	return 0
}

func isSpace(b byte) bool { return b == ' ' || b == '\n' || b == '\t' }

// broke handles the serving attempt's failure: it returns nil when
// another deployment took over, else the error for the client.
func (s *stream) broke(err error) error {
	d := s.d
	// What the broken attempt generated, relayed or held back unsent:
	// text, reasoning, refusals and tool calls alike (the upstream bills
	// them all).
	produced := s.attemptOut
	s.end()
	s.held, s.holding = nil, false
	s.heldText.Reset()
	s.tools = nil // a tool call in progress never reached the client
	if s.ctx.Err() != nil {
		d.health.release()
		return err
	}
	if retryable(s.ctx, err) {
		d.health.failure(s.r.now())
	} else {
		d.health.release()
	}
	log := s.r.log.Warn().Str("request_id", s.rs.call.RequestID).Str("model_group", s.g.Name).Str("deployment", d.ID).
		Str("reason", reason(err)).Int("relayed_bytes", s.relayed).Str("error", redact(err.Error()))
	switch {
	case s.finished:
		log.Msg("stream broke after its finish: ending it normally")
		return nil
	case !s.failover:
		log.Msg("stream broke mid-answer")
		return err
	case s.toolSent:
		log.Msg("stream broke mid tool call: a tool call cannot be spliced, ending with an error")
		return err
	}
	s.extraPrompt += tokens.Prompt(s.body)
	s.extraOutput += produced
	for s.failovers < maxFailovers {
		nd, ng := s.nextDeployment()
		if nd == nil {
			log.Msg("stream broke mid-answer: no deployment left to continue it")
			return err
		}
		body, ok := s.continuation(nd)
		if !ok {
			nd.health.release()
			log.Msg("stream broke mid-answer: this request cannot be continued elsewhere")
			return err
		}
		s.failovers++
		s.attempts++
		s.calls.Store(int32(s.attempts))
		s.r.stats.failovers.Add(1)
		if s.r.obs != nil {
			s.r.obs.MidstreamFailover(s.g.Name)
		}
		o := s.r.attempt(s.ctx, nd, s.rs, body, s.attempts, false)
		if o.err != nil {
			if s.ctx.Err() != nil {
				return err
			}
			continue
		}
		s.r.log.Warn().Str("request_id", s.rs.call.RequestID).Str("model_group", s.g.Name).Str("deployment", d.ID).
			Str("to_group", ng.Name).Str("to_deployment", nd.ID).Int("relayed_bytes", s.relayed).
			Str("reason", reason(err)).Msg("stream broke mid-answer: continuing on another deployment")
		s.adopt(o, ng, body)
		return nil
	}
	log.Msg("stream broke mid-answer: failovers exhausted")
	return err
}

// nextDeployment claims the deployment to continue on: a healthy one of
// the serving group that has not served this stream, else one of the next
// fallback group.
func (s *stream) nextDeployment() (*Deployment, *Group) {
	var atLimit bool
	for {
		if !s.fittedPrompt && s.gt.g.maxInput {
			if err := s.r.fitPrompt(&s.gt, s.rs); err != nil {
				s.gt.skip = ^uint64(0)
			}
		}
		s.fittedPrompt = true
		if d := s.r.pickPass(&s.gt, s.rs, nil, 0, s.r.now(), &atLimit); d != nil {
			return d, s.gt.g
		}
		g := s.r.fallbackTo(s.ctx, s.rs, failGeneric)
		if g == nil {
			return nil, nil
		}
		s.rs.groups = append(s.rs.groups, g.Name)
		s.gt = groupTry{g: g}
		s.fittedPrompt = false
	}
}

// continuation is the body that asks d to continue what the client has
// been sent: the original request when only a role chunk went out;
// otherwise, for chat, the messages plus an assistant message holding the
// partial answer (with Mistral's "prefix": true, or followed by
// continueInstruction for upstreams without prefill), and for completions
// the prompt with the partial text appended. max_tokens shrinks by what was
// already produced. ok is false when the request cannot be continued (a
// completion prompt that is not one string).
func (s *stream) continuation(d *Deployment) (body []byte, ok bool) {
	body = s.rs.body
	partial := s.text.String()
	if partial == "" {
		return body, true
	}
	var err error
	if s.rs.call.Op == providers.OpCompletion {
		p := gjson.GetBytes(body, "prompt")
		if p.Type != gjson.String {
			return nil, false
		}
		if body, err = sjson.SetBytes(body, "prompt", p.Str+partial); err != nil {
			return nil, false
		}
	} else {
		content, pre := partial, prefill(d)
		if pre && d.ProviderName != "mistral" {
			// Anthropic refuses a prefill that ends with whitespace ("final
			// assistant content cannot end with trailing whitespace"); the
			// model writes it again and the splice cuts the repeat.
			content = strings.TrimRight(partial, " \t\r\n")
			if content == "" {
				return s.rs.body, true // only whitespace was sent: restart
			}
		}
		msg, _ := sjson.SetBytes([]byte(`{"role":"assistant"}`), "content", content)
		if d.ProviderName == "mistral" {
			msg, _ = sjson.SetBytes(msg, "prefix", true)
		}
		if body, err = sjson.SetRawBytes(body, "messages.-1", msg); err != nil {
			return nil, false
		}
		if !pre {
			user, _ := sjson.SetBytes([]byte(`{"role":"user"}`), "content", continueInstruction)
			if body, err = sjson.SetRawBytes(body, "messages.-1", user); err != nil {
				return nil, false
			}
		}
	}
	used := int64(tokens.Count(partial))
	for _, f := range [...]string{"max_tokens", "max_completion_tokens"} {
		if v := gjson.GetBytes(body, f); v.Exists() && v.Type == gjson.Number {
			body, _ = sjson.SetBytes(body, f, max(1, v.Int()-used))
		}
	}
	return body, true
}

// adopt makes o, a continuation or restart on group g, the serving attempt.
func (s *stream) adopt(o outcome, g *Group, body []byte) {
	s.d, s.cur, s.cancel, s.first, s.eof, s.body = o.d, o.stream, o.cancel, o.first, o.eof, body
	s.serving.Store(o.d)
	s.g = g
	s.cont = true
	s.partial = s.text.String()
	s.holding = s.partial != ""
	s.attemptOut = 0
}
