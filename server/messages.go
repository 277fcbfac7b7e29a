package server

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/anthropic"
	"github.com/lumengw/lumen/tokens"
)

// messages serves the Anthropic Messages API (POST /v1/messages) from any
// model group. The request is translated to the OpenAI form every
// provider takes, and the client's own body rides along: a deployment that
// speaks the Messages API sends it natively (cache_control, thinking and
// all); the others answer in OpenAI form, translated back here. Keys,
// limits, budgets, the ledger and metrics apply as on /v1/chat/completions;
// errors are in Anthropic's shape.
func (s *Server) messages() http.Handler {
	return s.handle(providers.OpChat, s.serveMessages, func(w http.ResponseWriter, x *exchange, err error) *apiError {
		return writeAnthropicError(w, s.classifyExchange(x, err), x.started)
	})
}

func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request, x *exchange) error {
	native, err := readBody(w, r, s.maxBody)
	if err == nil {
		err = refuseDeepJSON(native)
	}
	if err != nil {
		return err
	}
	model := gjson.GetBytes(native, "model")
	if !gjson.ValidBytes(native) || model.Type != gjson.String || model.Str == "" {
		return invalid("model", "the body must be a JSON object with a model (a model_name of this gateway)")
	}
	body, err := anthropic.ToOpenAI(native)
	if err != nil {
		return err
	}
	// Budgets, limits and the ledger know the end user by the id the
	// client sent, not by the digest a long one goes upstream as.
	x.endUser = gjson.GetBytes(native, "metadata.user_id").Str
	if err := s.begin(w, r, x, body, &native); err != nil {
		return err
	}
	call := s.call(x)
	call.Native = native
	call.NativeHeader = http.Header{}
	for _, h := range []string{"Anthropic-Version", "Anthropic-Beta"} {
		for _, v := range r.Header.Values(h) {
			call.NativeHeader.Add(h, v) // canonical keys: the provider reads them with Get
		}
	}
	res, err := s.Router().Do(r.Context(), call)
	s.routed(w, x, res)
	if err == nil {
		err = x.awaitChecks(res)
	}
	if err != nil {
		return err
	}
	if x.stream {
		return s.writeMessagesStream(w, x, model.Str, res.Stream)
	}
	return s.writeTranslated(w, x, res.Response, anthropic.IsMessage, func(chat []byte) ([]byte, error) {
		return anthropic.FromOpenAI(chat, model.Str)
	})
}

// writeMessagesStream relays a stream as Messages API events, each flushed
// as it arrives: native events pass through, OpenAI chunks are
// translated. A failure after the first event ends the stream with an
// Anthropic error event.
func (s *Server) writeMessagesStream(w http.ResponseWriter, x *exchange, model string, st providers.Stream) error {
	st = x.guardStream(st)
	defer st.Close()
	if s.metrics != nil {
		s.metrics.StreamStarted()
		defer s.metrics.StreamFinished()
	}
	ew := s.newEventWriter(w, x, st)
	tr := anthropic.NewStreamTranslator(model, x.id)
	fail := func(err error) error {
		err = x.blame(err)
		if !x.started {
			return err
		}
		ae := s.classifyExchange(x, err)
		x.fail(ae)
		if ae.Status != statusClientClosed {
			_ = ew.write([]anthropic.Event{anthropic.ErrorEvent(ae.Status, ae.Message)})
		}
		return nil
	}
	var counter anthropic.UsageCounter
	one := make([]anthropic.Event, 1)
	native, translating := false, false
	for {
		data, err := st.Recv()
		if err == io.EOF {
			if !native {
				// Lumen's count of the answer's text, which the ledger
				// records when the upstream reports no usage.
				tr.SetOutputTokens(x.estimated)
				if err := ew.write(tr.Finish()); err != nil {
					return err
				}
			}
			ew.end()
			return nil
		}
		if err != nil {
			return fail(err)
		}
		if anthropic.IsNativeEvent(data) {
			native = true
			counter.Event(data)
			if u := counter.Usage(); u.Total() > 0 {
				x.usage = u
			}
			one[0] = anthropic.Event{Type: gjson.GetBytes(data, "type").Str, Data: data}
			if err := ew.write(one); err != nil {
				return err
			}
			continue
		}
		if !translating {
			// message_start carries the input tokens, as Anthropic's
			// does: estimated here unless a limit or budget did already.
			translating = true
			if x.promptEst == 0 {
				x.promptEst = tokens.Prompt(x.body)
			}
			tr.SetInputTokens(x.promptEst)
		}
		x.countChunk(data)
		events, err := tr.Chunk(data)
		if err != nil {
			return fail(err)
		}
		if err := ew.write(events); err != nil {
			return err
		}
	}
}

// countTokens serves POST /v1/messages/count_tokens: an estimate of the
// request's input tokens.
func (s *Server) countTokens(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, s.maxBody)
	if err == nil {
		err = refuseDeepJSON(body)
	}
	if err == nil {
		var n int
		if n, err = anthropic.CountTokens(body); err == nil {
			writeJSON(w, http.StatusOK, map[string]int{"input_tokens": n})
			return
		}
	}
	s.writeError(w, r, err)
}

// anthropicPath reports whether path is under the Anthropic API Lumen
// serves: /v1/messages and below, and everything under /anthropic/. Its
// errors are in Anthropic's shape, whoever raises them.
func anthropicPath(path string) bool {
	return path == "/v1/messages" || strings.HasPrefix(path, "/v1/messages/") || strings.HasPrefix(path, "/anthropic/")
}

// writeAnthropicError answers a classified error in the Anthropic error
// shape ({"type":"error","error":{"type","message"}}), with its status and
// headers. After a stream started it writes nothing (the stream writer
// sent an error event).
func writeAnthropicError(w http.ResponseWriter, ae *apiError, started bool) *apiError {
	if started || ae.Status == statusClientClosed {
		return ae
	}
	for k, v := range ae.Header {
		w.Header()[k] = v
	}
	msg := ae.Message
	if ae.Param != "" && !strings.HasPrefix(msg, ae.Param) {
		msg = ae.Param + ": " + msg // Anthropic's style: "max_tokens: Field required"
	}
	body := anthropic.ErrorJSON(ae.Status, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(ae.Status)
	_, _ = w.Write(body)
	return ae
}
