package server

import (
	"io"
	"net/http"
	"strings"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/responses"
)

// responsesAPI serves the OpenAI Responses API (POST /v1/responses) from
// any model group: the request is translated to chat completions, routed
// like one, and the answer translated back (package responses). Keys,
// limits, budgets, the ledger and metrics apply as on chat completions;
// errors are in the OpenAI shape. Not cached by the response cache.
func (s *Server) responsesAPI() http.Handler {
	return s.handle(providers.OpChat, s.serveResponses, func(w http.ResponseWriter, x *exchange, err error) *apiError {
		if x.started {
			ae, _ := classify(err)
			return ae // the stream writer sent the error events
		}
		return writeError(w, &s.log, err)
	})
}

func (s *Server) serveResponses(w http.ResponseWriter, r *http.Request, x *exchange) error {
	native, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	body, err := responses.ToChat(native)
	if err != nil {
		return err
	}
	if err := s.begin(w, r, x, body); err != nil {
		return err
	}
	echo := responses.EchoOf(native)
	if d := echo.Dropped(); len(d) > 0 {
		w.Header().Set("X-Lumen-Dropped-Tools", strings.Join(d, ","))
	}
	res, err := s.Router().Do(r.Context(), s.call(x))
	s.routed(w, x, res)
	if err != nil {
		return err
	}
	if x.stream {
		return s.writeResponsesStream(w, x, echo, res.Stream)
	}
	resp := res.Response
	x.usage = resp.Usage
	x.status = http.StatusOK
	s.price(x)
	out, err := responses.FromChat(resp.Body, echo)
	if err != nil {
		return err
	}
	s.writeAnswer(w, x, out)
	return nil
}

// writeResponsesStream relays a chat stream as Responses events, each
// flushed as it arrives. A failure after the first event ends the stream
// with an error event and response.failed.
func (s *Server) writeResponsesStream(w http.ResponseWriter, x *exchange, echo responses.Echo, st providers.Stream) error {
	defer st.Close()
	if s.metrics != nil {
		s.metrics.StreamStarted()
		defer s.metrics.StreamFinished()
	}
	ew := s.newEventWriter(w, x, st)
	tr := responses.NewStreamTranslator(echo, x.id)
	fail := func(err error) error {
		if !x.started {
			return err
		}
		ae, _ := classify(err)
		x.fail(ae)
		if ae.Status != statusClientClosed {
			code := ae.Code
			if code == "" {
				code = ae.Type
			}
			_ = ew.write(tr.Fail(code, ae.Message))
		}
		return nil
	}
	for {
		data, err := st.Recv()
		if err == io.EOF {
			if err := ew.write(tr.Finish()); err != nil {
				return err
			}
			ew.end()
			return nil
		}
		if err != nil {
			return fail(err)
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
