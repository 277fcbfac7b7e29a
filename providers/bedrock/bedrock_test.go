package bedrock

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
)

func newTestClient(t *testing.T, base string) *Client {
	t.Helper()
	c, err := New(providers.Config{Provider: "bedrock", Model: "anthropic.claude-3-5-haiku-20241022-v1:0", APIBase: base, AWSRegion: "us-east-1",
		AWSAccessKeyID: fakeCreds.AccessKeyID, AWSSecretAccessKey: fakeCreds.SecretAccessKey, AWSSessionToken: fakeCreds.SessionToken})
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return time.Unix(1767225600, 0) }
	return c
}

func TestSuite(t *testing.T) {
	pt.Run(t, pt.Caps{
		CacheWrite: true, ToolCallIDs: true,
		Status: map[pt.ErrorKind]int{pt.RateLimited: 429, pt.Overloaded: 503, pt.BadRequest: 400, pt.Unauthorized: 403},
	}, func(t *testing.T, f *pt.Fake) providers.Provider {
		srv := httptest.NewServer(fakeUpstream(t, f))
		t.Cleanup(srv.Close)
		c := newTestClient(t, srv.URL)
		c.SetImageFetcher(f.Images)
		return c
	})
}

// TestModelIDsInThePath sends requests for model ids with a colon and for
// an inference-profile ARN: each is one escaped path segment, and the fake
// checks that the signature covers the path as sent.
func TestModelIDsInThePath(t *testing.T) {
	for _, model := range []string{
		"us.anthropic.claude-3-5-haiku-20241022-v1:0",
		"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
	} {
		t.Run(model, func(t *testing.T) {
			f := pt.NewFake(nil)
			f.SetReply(pt.Reply{Text: "ok", Finish: providers.FinishStop})
			srv := httptest.NewServer(fakeUpstream(t, f))
			defer srv.Close()
			c := newTestClient(t, srv.URL)
			for _, stream := range []bool{false, true} {
				req := &providers.Request{Op: providers.OpChat, Model: model, Stream: stream, Body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`)}
				if stream {
					st, err := c.DoStream(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					for err == nil {
						_, err = st.Recv()
					}
					st.Close()
					if err != io.EOF {
						t.Fatal(err)
					}
				} else if _, err := c.Do(context.Background(), req); err != nil {
					t.Fatal(err)
				}
				got, _ := f.Last()
				want := "/model/" + model + "/converse"
				if stream {
					want += "-stream"
				}
				if got.Model != model || got.Path != want {
					t.Errorf("upstream got model %q path %q, want %q %q", got.Model, got.Path, model, want)
				}
			}
		})
	}
}

func TestNewSettings(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "eu-west-3")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "")
	c, err := New(providers.Config{Model: "converse/amazon.nova-pro-v1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if c.region != "eu-west-3" || c.creds.AccessKeyID != "AKIDENV" || c.base != "https://bedrock-runtime.eu-west-3.amazonaws.com" || c.model != "amazon.nova-pro-v1:0" {
		t.Errorf("client = region %q key %q base %q model %q", c.region, c.creds.AccessKeyID, c.base, c.model)
	}
	t.Setenv("AWS_REGION", "us-west-2")
	if c, err = New(providers.Config{Model: "m", AWSRegion: "ap-south-1", AWSAccessKeyID: "AKIDP", AWSSecretAccessKey: "s"}); err != nil || c.region != "ap-south-1" || c.creds.AccessKeyID != "AKIDP" {
		t.Errorf("params must win over the environment: %v", err)
	}
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "env-bearer")
	if c, err = New(providers.Config{Model: "m", AWSAccessKeyID: "AKIDP", AWSSecretAccessKey: "s"}); err != nil || c.bearer != "" || c.creds.AccessKeyID != "AKIDP" {
		t.Errorf("aws_* params must win over AWS_BEARER_TOKEN_BEDROCK: %v", err)
	}
	if c, err = New(providers.Config{Model: "m"}); err != nil || c.bearer != "env-bearer" {
		t.Errorf("AWS_BEARER_TOKEN_BEDROCK must win over AWS_ACCESS_KEY_ID: %v", err)
	}
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	if _, err := New(providers.Config{Model: "m"}); err == nil || !strings.Contains(err.Error(), "no AWS credentials") {
		t.Errorf("without credentials: %v", err)
	}
	if _, err := New(providers.Config{Model: "invoke/m", AWSAccessKeyID: "a", AWSSecretAccessKey: "b"}); err == nil {
		t.Errorf("invoke/ models must be refused")
	}
}

// TestBearerKey checks that a Bedrock API key replaces SigV4.
func TestBearerKey(t *testing.T) {
	var auth, date string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, date = r.Header.Get("Authorization"), r.Header.Get("X-Amz-Date")
		_, _ = io.WriteString(w, `{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn","usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}`)
	}))
	defer srv.Close()
	c, err := New(providers.Config{Model: "m", APIBase: srv.URL, AWSRegion: "us-east-1", APIKey: "bedrock-api-key-abc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`)}); err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer bedrock-api-key-abc" || date != "" {
		t.Errorf("Authorization %q X-Amz-Date %q, want the bearer key and no signature", auth, date)
	}
}
