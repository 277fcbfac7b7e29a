package cmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGuardrailsCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(`
model_list: [{model_name: m, params: {model: mock/m}}]
guardrails:
  - guardrail_name: pii
    litellm_params: {guardrail: litellm_content_filter, mode: [pre_call, post_call], default_on: true, patterns: [{pattern_name: email, action: MASK}]}
  - guardrail_name: words
    litellm_params: {guardrail: litellm_content_filter, mode: post_call, blocked_words: [{keyword: falcon}]}
`), 0o600)
	run := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		root := NewCmdRoot(&Factory{In: strings.NewReader(stdin), Out: &out, ErrOut: &out})
		root.SetArgs(append(args, "--config", path))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	out, err := run("", "guardrails", "list")
	if err != nil || !strings.Contains(out, "pii    litellm_content_filter  pre_call,post_call  true        email:mask") ||
		!strings.Contains(out, `word "falcon":block`) {
		t.Errorf("list: %v\n%s", err, out)
	}
	out, err = run("", "guardrails", "test", "mail a@b.io about Falcon")
	if err != nil || !strings.Contains(out, "match: pii/email (mask)") || !strings.Contains(out, "text: mail [EMAIL_REDACTED] about Falcon") {
		t.Errorf("request: %v\n%s", err, out)
	}
	out, err = run("mail a@b.io about Falcon", "guardrails", "test", "--answer", "--guardrail", "words")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(out, `blocked: guardrail "words" blocked the answer: blocked word "falcon" detected`) {
		t.Errorf("answer: %v\n%s", err, out)
	}
	if _, err := run("", "guardrails", "test", "--guardrail", "nope", "x"); err == nil || !strings.Contains(err.Error(), `guardrail "nope" is not configured`) {
		t.Errorf("unknown: %v", err)
	}
}
