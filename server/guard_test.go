package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/internal/syncbuf"
)

// A request whose guardrails match many times logs each guardrail, rule
// and action that matched once, with the number of matches: a prompt of
// 500 e-mail addresses is one entry, not 500.
func TestGuardrailMatchesLoggedOnce(t *testing.T) {
	const yaml = `
model_list: [{model_name: echo, params: {model: mock/echo}}]
guardrails:
  - guardrail_name: pii
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      default_on: true
      patterns:
        - {pattern_type: prebuilt, pattern_name: email, action: MASK}
`
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	guards, err := guardrail.NewSet(cfg.Guardrails)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	_, url, stop := runServer(t, yaml, Options{Logger: zerolog.New(&logs), Guardrails: guards}, nil)
	prompt := strings.Repeat("mail jane@corp.example.com ", 500)
	status, text := postJSON(t, url+"/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"`+prompt+`"}]}`)
	if status != http.StatusOK || strings.Contains(text, "jane@corp") {
		t.Fatalf("%d %s", status, text)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if gjson.Get(l, "message").Str == "request" {
			line = l
		}
	}
	got := gjson.Get(line, "guardrails").Array()
	if len(got) != 1 || got[0].Str != "pii/email/mask" || gjson.Get(line, "guardrail_matches").Int() != 500 {
		t.Fatalf("request log line %.400s, want guardrails [pii/email/mask] and 500 matches", line)
	}
}
