package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/ledger"
)

// send makes a request with the given headers and returns the status and
// body.
func send(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// The Anthropic API's errors are in Anthropic's shape, those Lumen raises
// before the endpoint runs (a missing or wrong key, an unknown endpoint
// or method) as much as the endpoint's own; the OpenAI API's stay in
// OpenAI's.
func TestErrorShapeFollowsTheAPI(t *testing.T) {
	f := newAdminFixture(t, testMaster)
	const msg = `{"model":"demo","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	tests := []struct {
		name         string
		method, path string
		header       map[string]string
		status       int
		anthropic    bool
		typ          string // Anthropic's error.type, or OpenAI's error.type
	}{
		{"messages without a key", "POST", "/v1/messages", nil, 401, true, "authentication_error"},
		{"messages, wrong x-api-key", "POST", "/v1/messages", map[string]string{"x-api-key": "sk-wrong"}, 401, true, "authentication_error"},
		{"messages, wrong Bearer", "POST", "/v1/messages", bearer("sk-wrong"), 401, true, "authentication_error"},
		{"messages under /anthropic, wrong key", "POST", "/anthropic/v1/messages", map[string]string{"x-api-key": "sk-wrong"}, 401, true, "authentication_error"},
		{"count_tokens without a key", "POST", "/v1/messages/count_tokens", nil, 401, true, "authentication_error"},
		{"messages by GET", "GET", "/v1/messages", bearer(testMaster), 404, true, "not_found_error"},
		{"unknown endpoint under /v1/messages", "POST", "/v1/messages/batches", bearer(testMaster), 404, true, "not_found_error"},
		{"unknown endpoint under /anthropic", "POST", "/anthropic/v1/complete", bearer(testMaster), 404, true, "not_found_error"},
		{"the endpoint's own error", "POST", "/v1/messages", bearer(testMaster), 400, true, "invalid_request_error"},
		{"chat without a key", "POST", "/v1/chat/completions", nil, 401, false, "authentication_error"},
		{"chat by GET", "GET", "/v1/chat/completions", bearer(testMaster), 404, false, "invalid_request_error"},
		{"a path like the Messages API's", "POST", "/v1/messagesx", bearer(testMaster), 404, false, "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := msg
			if tt.typ == "invalid_request_error" && tt.anthropic {
				body = `{"max_tokens":10}` // no model
			}
			status, text := send(t, tt.method, f.srv.URL+tt.path, body, tt.header)
			var e struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(text), &e); err != nil {
				t.Fatalf("%d %s: %v", status, text, err)
			}
			if status != tt.status || e.Error.Type != tt.typ || e.Error.Message == "" {
				t.Fatalf("got %d %s, want %d with type %s", status, text, tt.status, tt.typ)
			}
			if isAnthropic := e.Type == "error"; isAnthropic != tt.anthropic {
				t.Fatalf("got %s, want the Anthropic shape: %v", text, tt.anthropic)
			}
		})
	}
}

// An open gateway serves any key but a virtual key it cannot apply: one
// revoked, expired or unknown (a mistyped lumen-sk-… would otherwise run
// without its limits and budget).
func TestOpenGatewayRefusesVirtualKeysItDoesNotHold(t *testing.T) {
	f := newAdminFixture(t, "")
	ctx := t.Context()
	live, _, err := f.keys.Create(ctx, ledger.KeySpec{Name: "live"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, _, err := f.keys.Create(ctx, ledger.KeySpec{Name: "revoked"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.keys.Revoke(ctx, "revoked"); err != nil {
		t.Fatal(err)
	}
	// The last character changed (to one it is not).
	mistyped := live[:len(live)-1] + "x"
	if mistyped == live {
		mistyped = live[:len(live)-1] + "y"
	}
	noKeys := budgetServer(t, "model_list: [{model_name: demo, params: {model: mock/demo}}]\n")
	tests := []struct {
		name   string
		url    string
		key    string
		status int
	}{
		{"no key", f.srv.URL, "", 200},
		{"a placeholder", f.srv.URL, "anything", 200},
		{"another gateway's key", f.srv.URL, "sk-proj-placeholder", 200},
		{"a live virtual key", f.srv.URL, live, 200},
		{"a revoked virtual key", f.srv.URL, revoked, 401},
		{"a mistyped virtual key", f.srv.URL, mistyped, 401},
		{"a virtual key, no key store", noKeys.URL, live, 401},
		{"a placeholder, no key store", noKeys.URL, "anything", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.key != "" {
				h["Authorization"] = "Bearer " + tt.key
			}
			status, text := send(t, "POST", tt.url+"/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`, h)
			if status != tt.status {
				t.Fatalf("got %d %s, want %d", status, text, tt.status)
			}
			if status == 401 && errorOf(t, text).Type != "authentication_error" {
				t.Fatalf("got %s", text)
			}
		})
	}
}

// A web page can POST to an open gateway on the user's machine without a
// CORS preflight (a form, a text/plain fetch) and spend its provider keys
// blind; through DNS rebinding it can be same-origin and read the answers
// too. An open gateway refuses both; programs, and the same origin, are
// served; with a master key nothing changes, as no page can send it.
func TestOpenGatewayRefusesWebPages(t *testing.T) {
	const chat = `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`
	const models = "model_list:\n  - {model_name: demo, params: {model: mock/demo}}\n"
	_, open, _ := runServer(t, models, Options{Logger: zerolog.Nop()}, nil)
	_, closed, _ := runServer(t, models+"general_settings: {master_key: sk-master-web}\n", Options{Logger: zerolog.Nop()}, nil)
	port := open[strings.LastIndex(open, ":")+1:]
	tests := []struct {
		name   string
		url    string
		method string
		host   string // "" keeps the URL's
		header map[string]string
		want   int
	}{
		{name: "a program", url: open, want: http.StatusOK},
		{name: "a page of another origin", url: open, header: map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, want: http.StatusForbidden},
		{name: "Sec-Fetch-Site cross-site", url: open, header: map[string]string{"Sec-Fetch-Site": "cross-site"}, want: http.StatusForbidden},
		{name: "the same origin", url: open, header: map[string]string{"Origin": open, "Sec-Fetch-Site": "same-origin"}, want: http.StatusOK},
		{name: "a rebound name", url: open, host: "evil.example:" + port, header: map[string]string{"Origin": "http://evil.example:" + port}, want: http.StatusForbidden},
		{name: "a rebound name, GET", url: open, method: http.MethodGet, host: "evil.example:" + port, want: http.StatusForbidden},
		{name: "localhost", url: open, host: "localhost:" + port, want: http.StatusOK},
		{name: "a name under .localhost", url: open, host: "lumen.localhost:" + port, want: http.StatusOK},
		{name: "IPv6 loopback", url: open, host: "[::1]:" + port, want: http.StatusOK},
		{name: "master key: another origin with the key", url: closed, header: map[string]string{"Origin": "http://evil.example", "Authorization": "Bearer sk-master-web"}, want: http.StatusOK},
		{name: "master key: any host with the key", url: closed, host: "lumen.example.com", header: map[string]string{"Authorization": "Bearer sk-master-web"}, want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path, body := http.MethodPost, "/v1/chat/completions", chat
			if tt.method == http.MethodGet {
				method, path, body = http.MethodGet, "/v1/models", ""
			}
			req, err := http.NewRequest(method, tt.url+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%d %s; want %d", resp.StatusCode, raw, tt.want)
			}
			if tt.want == http.StatusForbidden && !strings.Contains(string(raw), "permission_error") {
				t.Errorf("refusal not in the OpenAI error shape: %s", raw)
			}
		})
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST:4000": true, "localhost.:4000": true, "a.localhost:4000": true,
		"127.0.0.1:4000": true, "127.1.2.3": true, "[::1]:4000": true, "[::ffff:127.0.0.1]:4000": true,
		"evil.example:4000": false, "localhost.evil.example": false, "10.0.0.1:4000": false, "": false,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %t, want %t", host, got, want)
		}
	}
}
