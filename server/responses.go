package server

import (
	"io"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/responses"
	"github.com/lumengw/lumen/tokens"
)

// responsesAPI serves the OpenAI Responses API (POST /v1/responses) from
// any model group: the request is translated to chat completions, routed
// like one, and the answer translated back (package responses); a
// deployment that speaks the Responses API itself (responses_api) gets the
// client's own request, and its answer or events pass through. Keys,
// limits, budgets, the ledger and metrics apply as on chat completions;
// errors are in the OpenAI shape. Not cached by the response cache.
func (s *Server) responsesAPI() http.Handler {
	return s.handle(providers.OpChat, s.serveResponses, func(w http.ResponseWriter, x *exchange, err error) *apiError {
		ae := s.classifyExchange(x, err)
		if x.started {
			return ae // the stream writer sent the error events
		}
		return writeAPIError(w, ae)
	})
}

func (s *Server) serveResponses(w http.ResponseWriter, r *http.Request, x *exchange) error {
	native, err := readBody(w, r, s.maxBody)
	if err == nil {
		err = refuseDeepJSON(native)
	}
	if err != nil {
		return err
	}
	body, echo, err := responses.Translate(native)
	if err != nil {
		return err
	}
	// Budgets, limits and the ledger know the end user by the id the
	// client sent, not by the digest a long one goes upstream as.
	u := gjson.GetManyBytes(native, "user", "safety_identifier")
	if x.endUser = u[0].Str; x.endUser == "" {
		x.endUser = u[1].Str
	}
	if err := s.begin(w, r, x, body, &native); err != nil {
		return err
	}
	call := s.call(x)
	call.Responses = native
	res, err := s.Router().Do(r.Context(), call)
	s.routed(w, x, res)
	if err == nil {
		err = x.awaitChecks(res)
	}
	if err != nil {
		return err
	}
	if x.stream {
		return s.writeResponsesStream(w, x, echo, res.Stream)
	}
	return s.writeTranslated(w, x, res.Response, responses.IsResponse, func(chat []byte) ([]byte, error) {
		droppedTools(w, echo)
		return responses.FromChat(chat, echo)
	})
}

// writeResponsesStream relays a chat stream as Responses events, each
// flushed as it arrives. A failure after the first event ends the stream
// with an error event and response.failed.
func (s *Server) writeResponsesStream(w http.ResponseWriter, x *exchange, echo responses.Echo, st providers.Stream) error {
	st = x.guardStream(st)
	defer st.Close()
	if s.metrics != nil {
		s.metrics.StreamStarted()
		defer s.metrics.StreamFinished()
	}
	ew := s.newEventWriter(w, x, st)
	tr := responses.NewStreamTranslator(echo, x.id)
	one := make([]providers.TranslatedEvent, 1)
	native, seq := false, int64(-1) // seq: the last native event's sequence_number
	fail := func(err error) error {
		err = x.blame(err)
		if !x.started {
			return err
		}
		ae := s.classifyExchange(x, err)
		x.fail(ae)
		if ae.Status != statusClientClosed {
			code := ae.Code
			if code == "" {
				code = ae.Type
			}
			if native {
				_ = ew.write([]providers.TranslatedEvent{responses.ErrorEvent(code, ae.Message, seq+1)})
			} else {
				_ = ew.write(tr.Fail(code, ae.Message))
			}
		}
		return nil
	}
	for {
		data, err := st.Recv()
		if err == io.EOF {
			if !native {
				// Lumen's estimates, which the ledger records when the
				// upstream reports no usage.
				if x.promptEst == 0 {
					x.promptEst = tokens.Prompt(x.body)
				}
				tr.SetEstimate(x.promptEst, x.estimated)
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
		if typ, n, ok := responses.NativeEvent(data); ok {
			seq = n
			// The deployment speaks the Responses API: its events pass
			// through as they are.
			if u := responses.EventUsage(data); u.Total() > 0 {
				x.usage = u
			}
			one[0] = providers.TranslatedEvent{Type: typ, Data: data}
			if err := ew.write(one); err != nil {
				return err
			}
			native = true
			continue
		}
		if !x.started {
			droppedTools(w, echo)
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

// droppedTools names, in a header, the built-in tools a translated answer
// was made without.
func droppedTools(w http.ResponseWriter, echo responses.Echo) {
	if d := echo.Dropped(); len(d) > 0 {
		w.Header().Set("X-Lumen-Dropped-Tools", strings.Join(d, ","))
	}
}
