package providers

import (
	"cmp"
	"context"
	"os"
	"slices"
	"strings"

	"github.com/lumengw/lumen/internal/credentials"
)

// minSecret is the shortest configured value Scrub replaces: shorter ones
// ("1", "true") would mangle messages and are no keys.
const minSecret = 6

// Secrets are the values of c that must never be shown: the API key, the
// AWS credentials (for bedrock also those of the AWS_* variables it falls
// back on), the password of api_base's userinfo with the basic auth
// credentials net/http makes of it, and the values of extra headers that
// carry credentials (Authorization, and names holding "key", "token",
// "secret", "auth" or "password"), each also without its scheme
// ("Bearer ").
func (c Config) Secrets() []string {
	var out []string
	add := func(v string) {
		v = strings.TrimSpace(v)
		if len(v) >= minSecret && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	for _, v := range []string{c.APIKey, c.AWSAccessKeyID, c.AWSSecretAccessKey, c.AWSSessionToken} {
		add(v)
	}
	if c.Provider == "bedrock" {
		// bedrock.New signs with these when the deployment sets none, and
		// AWS quotes a signed session token back in a SignatureDoesNotMatch.
		for _, name := range []string{"AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
			add(os.Getenv(name))
		}
	}
	// net/http sends api_base's user:password as "Authorization: Basic
	// <base64>" when nothing else sets Authorization; an upstream (or the
	// proxy in front of it) may echo either.
	for _, v := range credentials.SentFor(c.APIBase) {
		add(v)
	}
	for name, v := range c.Headers {
		n := strings.ToLower(name)
		if !strings.Contains(n, "key") && !strings.Contains(n, "token") && !strings.Contains(n, "secret") &&
			!strings.Contains(n, "auth") && !strings.Contains(n, "password") {
			continue
		}
		add(v)
		if _, cred, ok := strings.Cut(strings.TrimSpace(v), " "); ok {
			add(cred)
		}
	}
	return out
}

// Scrub returns p such that none of secrets appears in an error it
// returns, from Do, DoStream or a stream's Recv: each is replaced by
// "[redacted]". Upstreams echo a key they refuse ("Incorrect API key
// provided: …"), and transport errors quote URLs, which some providers
// authenticate in (Gemini's ?key=); Redact's patterns catch the usual key
// shapes, Scrub the deployment's own values whatever their shape. With no
// secrets p is returned as it is.
func Scrub(p Provider, secrets []string) Provider {
	if len(secrets) == 0 {
		return p
	}
	// Longest first: "Bearer k" before "k".
	s := slices.Clone(secrets)
	slices.SortFunc(s, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(s))
	for _, v := range s {
		pairs = append(pairs, v, "[redacted]")
	}
	return &scrubbed{Provider: p, r: strings.NewReplacer(pairs...), secrets: s}
}

type scrubbed struct {
	Provider
	r       *strings.Replacer
	secrets []string
}

func (p *scrubbed) Do(ctx context.Context, req *Request) (*Response, error) {
	resp, err := p.Provider.Do(ctx, req)
	return resp, p.scrub(err)
}

func (p *scrubbed) DoStream(ctx context.Context, req *Request) (Stream, error) {
	st, err := p.Provider.DoStream(ctx, req)
	if err != nil {
		return nil, p.scrub(err)
	}
	return &scrubbedStream{Stream: st, p: p}, nil
}

// scrub is err with the secrets replaced. An UpstreamError stays one (a
// copy, its Message replaced), and so does a SpentError (its Err
// scrubbed); any other error whose text holds a secret is wrapped so that
// its text is replaced while errors.Is and errors.As still see the
// original.
func (p *scrubbed) scrub(err error) error {
	if err == nil || !p.holds(err.Error()) {
		return err
	}
	if se, ok := err.(*SpentError); ok {
		return &SpentError{Err: p.scrub(se.Err), Usage: se.Usage}
	}
	if ue, ok := err.(*UpstreamError); ok {
		c := *ue
		c.Message = p.r.Replace(c.Message)
		if c.Err != nil && p.holds(c.Err.Error()) {
			c.Err = &scrubbedError{text: p.r.Replace(c.Err.Error()), err: c.Err}
		}
		return &c
	}
	return &scrubbedError{text: p.r.Replace(err.Error()), err: err}
}

func (p *scrubbed) holds(s string) bool {
	for _, v := range p.secrets {
		if strings.Contains(s, v) {
			return true
		}
	}
	return false
}

type scrubbedError struct {
	text string
	err  error
}

func (e *scrubbedError) Error() string { return e.text }
func (e *scrubbedError) Unwrap() error { return e.err }

type scrubbedStream struct {
	Stream
	p *scrubbed
}

func (s *scrubbedStream) Recv() ([]byte, error) {
	b, err := s.Stream.Recv()
	if err != nil {
		err = s.p.scrub(err)
	}
	return b, err
}

// Buffered passes on the stream's own Buffered.
func (s *scrubbedStream) Buffered() int {
	if b, ok := s.Stream.(Buffered); ok {
		return b.Buffered()
	}
	return 0
}
