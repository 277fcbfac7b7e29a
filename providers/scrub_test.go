package providers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

type failing struct{ err error }

func (f failing) Name() string { return "f" }
func (f failing) Do(context.Context, *Request) (*Response, error) {
	return nil, f.err
}
func (f failing) DoStream(context.Context, *Request) (Stream, error) { return nil, f.err }

func TestSecrets(t *testing.T) {
	c := Config{APIKey: "mysecretpassword123", AWSSecretAccessKey: "wJalrXUtnFEMI", Headers: map[string]string{
		"Authorization": "Bearer hdr-token-77", "X-Tenant-Token": "tenant-secret-42", "anthropic-beta": "prompt-caching-2024", "X-Api-Key": "k1"}}
	got := c.Secrets()
	for _, want := range []string{"mysecretpassword123", "wJalrXUtnFEMI", "Bearer hdr-token-77", "hdr-token-77", "tenant-secret-42"} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets %q lacks %q", got, want)
		}
	}
	for _, not := range []string{"prompt-caching-2024", "k1"} { // not a credential header; too short
		if slices.Contains(got, not) {
			t.Errorf("Secrets %q holds %q", got, not)
		}
	}
}

// The credentials a deployment sends without setting them as such: the
// basic auth of api_base's userinfo, and for bedrock the AWS environment.
func TestSecretsSentImplicitly(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAENVTEST0001")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret-access-key")
	t.Setenv("AWS_SESSION_TOKEN", "env-session-token-77")
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "env-bedrock-bearer")
	got := Config{Provider: "bedrock"}.Secrets()
	for _, want := range []string{"AKIAENVTEST0001", "env-secret-access-key", "env-session-token-77", "env-bedrock-bearer"} {
		if !slices.Contains(got, want) {
			t.Errorf("bedrock Secrets %q lacks %q", got, want)
		}
	}
	if got := (Config{Provider: "openai"}).Secrets(); len(got) != 0 {
		t.Errorf("openai Secrets %q hold the AWS environment", got)
	}
	got = Config{Provider: "hosted_vllm", APIBase: "https://lumen:hunter2%40x@vllm.internal/v1"}.Secrets()
	for _, want := range []string{"hunter2@x", "bHVtZW46aHVudGVyMkB4"} { // base64("lumen:hunter2@x")
		if !slices.Contains(got, want) {
			t.Errorf("Secrets %q lacks %q", got, want)
		}
	}
}

func TestScrub(t *testing.T) {
	secrets := []string{"mysecretpassword123", "Bearer hdr-token-77", "hdr-token-77"}
	ue := &UpstreamError{Provider: "openai", Status: 401, Message: "key mysecretpassword123; header Bearer hdr-token-77",
		Err: fmt.Errorf("via hdr-token-77: %w", context.DeadlineExceeded)}
	_, err := Scrub(failing{ue}, secrets).Do(context.Background(), &Request{})
	var got *UpstreamError
	if !errors.As(err, &got) || got.Status != 401 || got.Message != "key [redacted]; header [redacted]" {
		t.Fatalf("scrubbed %#v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || got.Err.Error() != "via [redacted]: context deadline exceeded" {
		t.Errorf("the wrapped error: %v (Is deadline: %t)", got.Err, errors.Is(err, context.DeadlineExceeded))
	}
	if ue.Message == got.Message {
		t.Error("the provider's own error was modified, not copied")
	}
	// A failure after part of the work was spent: the upstream error it
	// wraps is scrubbed too (the server reads its Message), the usage kept.
	_, err = Scrub(failing{&SpentError{Err: ue, Usage: Usage{PromptTokens: 600}}}, secrets).Do(context.Background(), &Request{})
	if !errors.As(err, &got) || got.Message != "key [redacted]; header [redacted]" || Spent(err).PromptTokens != 600 {
		t.Errorf("scrubbed spent error %#v: message %q, spent %+v", err, got.Message, Spent(err))
	}
	// Other errors keep their identity for errors.Is.
	_, err = Scrub(failing{fmt.Errorf("dial https://x/?key=mysecretpassword123: %w", context.Canceled)}, secrets).DoStream(context.Background(), &Request{})
	if err.Error() != "dial https://x/?key=[redacted]: context canceled" || !errors.Is(err, context.Canceled) {
		t.Errorf("stream open error %q", err)
	}
	// An error without a secret is returned as it is.
	plain := errors.New("plain")
	if _, err := Scrub(failing{plain}, secrets).Do(context.Background(), &Request{}); err != plain {
		t.Errorf("got %v, want the same error", err)
	}
	if p := (failing{plain}); Scrub(p, nil) != Provider(p) {
		t.Error("no secrets: the provider should be returned as it is")
	}
}

// Redact, which every upstream message goes through on its way to a
// client, a log line or a trace, hides key-like tokens and the credentials
// of URLs an upstream quotes (a proxy upstream's own database URL).
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"Incorrect API key provided: sk-abc123456789":                                  "Incorrect API key provided: [redacted]",
		"could not connect to postgres://litellm:dbpass99@db:5432/litellm":             "could not connect to postgres://litellm:xxxxx@db:5432/litellm",
		"fetching https://bucket.s3.amazonaws.com/o?X-Amz-Signature=abcdef0123 failed": "fetching https://bucket.s3.amazonaws.com/o?X-Amz-Signature=xxxxx failed",
		"max_tokens=4096 is too large":                                                 "max_tokens=4096 is too large",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
