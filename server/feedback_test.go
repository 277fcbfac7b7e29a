package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/router/auto"
)

const feedbackYAML = `
model_list:
  - model_name: cheap
    params: {model: mock/cheap}
    model_info: {quality: 0.71, input_cost_per_token: 0.0000006, output_cost_per_token: 0.0000006}
  - model_name: strong
    params: {model: mock/strong}
    model_info: {quality: 0.88, input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}
router_settings: {auto: {candidates: [cheap, strong]}}
general_settings: {master_key: sk-master-feedback}
`

func feedbackServer(t *testing.T) (*httptest.Server, *router.Router) {
	t.Helper()
	cfg, r := routed(t, feedbackYAML)
	srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.New(io.Discard)}))
	t.Cleanup(srv.Close)
	return srv, r
}

func post(t *testing.T, url, key, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp, m
}

func TestFeedback(t *testing.T) {
	srv, r := feedbackServer(t)
	const key = "sk-master-feedback"
	resp, _ := post(t, srv.URL+"/v1/chat/completions", key,
		`{"model":"auto","messages":[{"role":"user","content":"What is the capital of France?"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("chat status %d", resp.StatusCode)
	}
	h := resp.Header
	if h.Get("x-lumen-selected-model") != "cheap" || h.Get("x-lumen-model-group") != "cheap" ||
		h.Get("x-lumen-difficulty") == "" || h.Get("x-lumen-predicted-quality") == "" || h.Get("x-lumen-route-reason") == "" {
		t.Fatalf("auto headers missing: %v", h)
	}
	id := h.Get("x-lumen-request-id")

	tests := []struct {
		name   string
		key    string
		body   string
		status int
		param  string
	}{
		{"unauthenticated", "", `{"request_id":"` + id + `","score":1}`, 401, ""},
		{"unknown id", key, `{"request_id":"req-nope","score":1}`, 404, "request_id"},
		{"score above 1", key, `{"request_id":"` + id + `","score":1.5}`, 400, "score"},
		{"score missing", key, `{"request_id":"` + id + `"}`, 400, "score"},
		{"score not a number", key, `{"request_id":"` + id + `","score":"good"}`, 400, ""},
		{"id missing", key, `{"score":0.5}`, 400, "request_id"},
		{"accepted", key, `{"request_id":"` + id + `","score":0}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, m := post(t, srv.URL+"/v1/feedback", tt.key, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tt.status, m)
			}
			if tt.status == 200 {
				if m["object"] != "feedback" || m["request_id"] != id {
					t.Fatalf("body %v", m)
				}
				return
			}
			e, ok := m["error"].(map[string]any)
			if !ok || e["message"] == "" || e["type"] == nil {
				t.Fatalf("not an OpenAI error: %v", m)
			}
			if tt.param != "" && e["param"] != tt.param {
				t.Fatalf("param %v, want %s", e["param"], tt.param)
			}
		})
	}
	// The accepted score reached the bandit: one failure of cheap, handed
	// to the ledger at the next sync.
	var sent armsSent
	if err := r.SyncLearning(context.Background(), &sent); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 1 || sent[0].Model != "cheap" || sent[0].Alpha != 0 || sent[0].Beta != 1 {
		t.Fatalf("outcomes synced: %+v", sent)
	}
}

// armsSent is a router.ArmStore that keeps what it was sent.
type armsSent []auto.Arm

func (a *armsSent) MergeArms(_ context.Context, deltas []auto.Arm, _ float64) ([]auto.Arm, error) {
	*a = append(*a, deltas...)
	return *a, nil
}

func TestAutoNoCandidateIs422(t *testing.T) {
	srv, _ := feedbackServer(t)
	resp, m := post(t, srv.URL+"/v1/chat/completions", "sk-master-feedback",
		`{"model":"auto","messages":[{"role":"user","content":"hi"}],"lumen":{"max_cost_per_1k":0.0001}}`)
	e, _ := m["error"].(map[string]any)
	if resp.StatusCode != http.StatusUnprocessableEntity || e["code"] != "no_auto_candidate" ||
		!strings.Contains(e["message"].(string), "cheap excluded by max_cost_per_1k") {
		t.Fatalf("status %d, body %v", resp.StatusCode, m)
	}
}
