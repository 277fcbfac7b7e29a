package server

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"

	"github.com/lumengw/lumen/router"
)

// feedbackRequest is the body of POST /v1/feedback.
type feedbackRequest struct {
	RequestID string   `json:"request_id"`
	Score     *float64 `json:"score"`
}

// feedbackResponse acknowledges a score.
type feedbackResponse struct {
	Object    string  `json:"object"`
	RequestID string  `json:"request_id"`
	Score     float64 `json:"score"`
}

// maxFeedbackBody bounds a feedback body: an id and a number.
const maxFeedbackBody = 4 << 10

// feedback serves POST /v1/feedback {"request_id", "score": 0..1}: an
// explicit outcome of a recent auto-routed request (its x-lumen-request-id),
// fed to the bandit of auto:smart for the request's domain and model.
func (s *Server) feedback(w http.ResponseWriter, r *http.Request) {
	if err := s.serveFeedback(w, r); err != nil {
		s.writeError(w, r, err)
	}
}

func (s *Server) serveFeedback(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, maxFeedbackBody)
	if err != nil {
		return err
	}
	var req feedbackRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return invalid("", "the body must be a JSON object {\"request_id\": \"...\", \"score\": 0..1}: %v", err)
	}
	if req.RequestID == "" {
		return invalid("request_id", "Missing required parameter: 'request_id' (the x-lumen-request-id of an auto-routed request).")
	}
	if req.Score == nil || math.IsNaN(*req.Score) || *req.Score < 0 || *req.Score > 1 {
		return invalid("score", "'score' must be a number between 0 (bad answer) and 1 (good answer).")
	}
	c := callerFrom(r.Context())
	who := "*" // the master key, or an open gateway without keys
	if c.key != nil {
		who = c.key.ID
	}
	if err := s.Router().Feedback(req.RequestID, *req.Score, who); errors.Is(err, router.ErrUnknownRequest) {
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "request_not_found", Param: "request_id",
			Message: sprintf("no recent auto-routed request of yours has id %q; feedback applies to the last 10,000 requests sent to model \"auto\" or an auto route, by the key that sent them", req.RequestID)}
	} else if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, feedbackResponse{Object: "feedback", RequestID: req.RequestID, Score: *req.Score})
	return nil
}
