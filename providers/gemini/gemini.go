// Package gemini is the provider for "gemini/…" deployments: Google AI's
// Gemini API (generativelanguage.googleapis.com). It translates OpenAI chat
// requests into POST {api_base}/v1beta/models/{model}:generateContent (or
// :streamGenerateContent?alt=sse) and the answers back into OpenAI
// chat.completion(.chunk) form, and embeddings requests into
// :batchEmbedContents (see embed.go). The key goes in the x-goog-api-key
// header.
//
// Translation, field by field:
//   - system and developer messages become systemInstruction, one part
//     each, in order;
//   - assistant is role "model"; consecutive turns of one role are merged;
//     tool results become functionResponse parts of a user turn, named by
//     the function of the call they answer;
//     empty text is dropped (the API rejects empty parts);
//   - images become inlineData: data URLs as they are, http(s) URLs
//     downloaded by Lumen first (the API does not fetch arbitrary URLs);
//   - max_completion_tokens/max_tokens → maxOutputTokens; temperature, top_p,
//     stop, seed, presence/frequency penalties → generationConfig;
//   - response_format json_object → responseMimeType application/json;
//     json_schema also sets responseJsonSchema (JSON Schema as given);
//   - tools → functionDeclarations with parametersJsonSchema; tool_choice
//     auto/none/required/named → toolConfig AUTO/NONE/ANY/ANY+allowed name;
//   - a functionCall's id (Gemini 3 names every call, 2.5 some) is the
//     tool call's id, and goes back as the functionCall's and the
//     functionResponse's id; a call without one gets an id Lumen makes up
//     ("call_" and 24 hex digits), which is never sent to Gemini. A part's
//     thoughtSignature (which Gemini 3 models require back with the call)
//     rides in the id after "__thought__" and is restored when the call
//     returns as history. For Gemini 3 a model turn whose calls carry no
//     signature (made by another provider, or stripped by the client)
//     gets the value Google documents for that case,
//     "skip_thought_signature_validator", rather than a 400.
//
// Answers: thought parts become reasoning_content; finishReason STOP →
// stop (tool_calls when the answer calls functions), MAX_TOKENS → length,
// SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_SAFETY,
// IMAGE_PROHIBITED_CONTENT, IMAGE_RECITATION → content_filter, as does a
// prompt blocked by promptFeedback; the others (OTHER, LANGUAGE,
// MALFORMED_FUNCTION_CALL…) → stop. Usage:
// promptTokenCount (which includes cachedContentTokenCount) plus
// toolUsePromptTokenCount is the prompt; candidatesTokenCount plus
// thoughtsTokenCount the completion, thoughtsTokenCount its
// completion_tokens_details.reasoning_tokens.
//
// Dropped: n>1 (refused with 400), parallel_tool_calls (Gemini has no
// switch), logprobs, logit_bias, user, the detail of image_url.
package gemini

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lumengw/lumen/internal/credentials"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
)

// DefaultBase is the public Gemini API root.
const DefaultBase = "https://generativelanguage.googleapis.com"

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client is one Gemini deployment. It is safe for concurrent use.
type Client struct {
	base     string // no trailing slash, no /v1beta
	key      string
	model    string // without "models/"
	headers  map[string]string
	http     *http.Client
	images   *providers.ImageFetcher
	timeout  time.Duration
	gap      time.Duration
	provider string
	name     string
	now      func() time.Time
	newID    func() string
}

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Buffered = (*stream)(nil)
)

// New returns a client for one deployment. cfg.APIBase is the API root
// ("https://generativelanguage.googleapis.com"; a trailing /v1beta is
// tolerated); empty means DefaultBase.
func New(cfg providers.Config) (*Client, error) {
	base := strings.TrimRight(cfg.APIBase, "/")
	if base == "" {
		base = DefaultBase
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("gemini: api_base %q must be an http(s) URL", credentials.Redact(cfg.APIBase))
	}
	base = strings.TrimSuffix(strings.TrimSuffix(base, "/v1beta"), "/v1")
	model := strings.TrimPrefix(cfg.Model, "models/")
	if model == "" {
		return nil, fmt.Errorf("gemini: a model id is required")
	}
	provider := cfg.Provider
	if provider == "" {
		provider = "gemini"
	}
	return &Client{
		base: base, key: cfg.APIKey, model: model, headers: cfg.Headers,
		http: cfg.HTTPClient(), images: providers.DefaultImageFetcher,
		timeout: cfg.Timeout, gap: cfg.StreamTimeout,
		provider: provider, name: provider + "/" + model,
		now: time.Now, newID: randomID,
	}, nil
}

// SetImageFetcher sets the fetcher that downloads http(s) images; nil
// restores providers.DefaultImageFetcher. Call it before the client is used.
func (c *Client) SetImageFetcher(f *providers.ImageFetcher) {
	if f == nil {
		f = providers.DefaultImageFetcher
	}
	c.images = f
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Name implements providers.Provider.
func (c *Client) Name() string { return c.provider }

func (c *Client) translate(ctx context.Context, req *providers.Request) (*translation, []byte, error) {
	if req.Op != providers.OpChat {
		return nil, nil, fmt.Errorf("gemini: %s: %w", req.Op, providers.ErrUnsupported)
	}
	chat, err := providers.DecodeChatRequest(req.Body)
	if err != nil {
		return nil, nil, err
	}
	tr, err := fromChat(ctx, chat, req.Model, c.images)
	if err != nil {
		return nil, nil, err
	}
	body, err := providers.MarshalJSON(&tr.body)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the gemini request: %w", err)
	}
	return tr, body, nil
}

func (c *Client) newRequest(ctx context.Context, model string, body []byte, stream bool) (*http.Request, error) {
	model = strings.TrimPrefix(model, "models/")
	if model == "" {
		model = c.model
	}
	u := c.base + "/v1beta/models/" + url.PathEscape(model)
	if stream {
		u += ":streamGenerateContent?alt=sse"
	} else {
		u += ":generateContent"
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building upstream request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if stream {
		hr.Header.Set("Accept", "text/event-stream")
	}
	if c.key != "" {
		hr.Header.Set("X-Goog-Api-Key", c.key)
	}
	for k, v := range c.headers {
		hr.Header.Set(k, v)
	}
	return hr, nil
}

// Do implements providers.Provider. It serves chat completions and
// embeddings.
func (c *Client) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	if req.Op == providers.OpEmbedding {
		return c.embed(ctx, req)
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	_, body, err := c.translate(ctx, req)
	if err != nil {
		return nil, err
	}
	hr, err := c.newRequest(ctx, req.Model, body, false)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, providers.TransportError(ctx, c.provider, c.name, err, false)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, c.statusError(resp)
	}
	raw, err := providers.ReadAnswer(resp)
	if err != nil {
		return nil, providers.TransportError(ctx, c.provider, c.name, err, false)
	}
	var g generateResponse
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &g) != nil {
		// null would decode into an empty answer, served as if it were one
		return nil, c.badGateway("upstream answered with something other than a GenerateContentResponse")
	}
	if g.Error != nil {
		return nil, c.apiError(0, g.Error)
	}
	chat, u := c.toChat(&g)
	out, err := providers.MarshalJSON(chat)
	if err != nil {
		return nil, fmt.Errorf("encoding the translated answer: %w", err)
	}
	return &providers.Response{Body: out, Usage: u}, nil
}

// DoStream implements providers.Provider.
func (c *Client) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	wd := providers.NewWatchdog(cancel, c.timeout, c.gap)
	_, body, err := c.translate(ctx, req)
	if err != nil {
		wd.Stop()
		cancel()
		return nil, err
	}
	hr, err := c.newRequest(ctx, req.Model, body, true)
	if err != nil {
		wd.Stop()
		cancel()
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		wd.Stop()
		cancel()
		return nil, providers.TransportError(ctx, c.provider, c.name, err, wd.Fired())
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		wd.Stop()
		cancel()
		return nil, c.statusError(resp)
	}
	return newStream(c, ctx, resp.Body, wd, cancel), nil
}

func (c *Client) badGateway(msg string) error {
	return &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: http.StatusBadGateway, Type: "api_error", Message: msg, Retryable: true}
}

func (c *Client) statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var eb struct {
		Error *apiError `json:"error"`
	}
	_ = json.Unmarshal(body, &eb)
	// Some proxies and the streaming endpoint wrap the error in a list.
	if eb.Error == nil {
		var list []struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(body, &list) == nil && len(list) > 0 {
			eb.Error = list[0].Error
		}
	}
	if eb.Error == nil {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 512 {
			msg = msg[:512] + "…"
		}
		eb.Error = &apiError{Message: msg}
	}
	ue := c.apiError(resp.StatusCode, eb.Error)
	if d := providers.ParseRetryAfter(resp.Header); d > 0 {
		ue.RetryAfter = d
	}
	return ue
}

// apiError converts a google.rpc.Status error. status is the HTTP status,
// or 0 for an error inside a stream (then the error's code, else the
// status string, names it).
func (c *Client) apiError(status int, e *apiError) *providers.UpstreamError {
	if status == 0 {
		status = e.Code
	}
	if status == 0 {
		status = statusOf(e.Status)
	}
	code := e.Status
	for _, d := range e.Details {
		switch {
		case strings.HasSuffix(d.Type, "google.rpc.ErrorInfo") && d.Reason == "API_KEY_INVALID":
			// Google answers a bad key with 400 INVALID_ARGUMENT; it is
			// the deployment's problem, not the caller's request.
			status, code = http.StatusUnauthorized, d.Reason
		}
	}
	ue := &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: status,
		Type: providers.ErrorType(status), Code: code, Message: e.Message, Retryable: providers.RetryableStatus(status)}
	for _, d := range e.Details {
		if strings.HasSuffix(d.Type, "google.rpc.RetryInfo") && d.RetryDelay != "" {
			if dur, err := time.ParseDuration(d.RetryDelay); err == nil && dur > 0 {
				ue.RetryAfter = dur
			}
		}
	}
	if ue.Message == "" {
		ue.Message = http.StatusText(status)
	}
	if status == http.StatusBadRequest && openai.IsContextLengthError(ue.Message) {
		ue.Code = "context_length_exceeded"
	}
	return ue
}

// statusOf is the HTTP status Google documents for a canonical error code.
func statusOf(s string) int {
	switch s {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return http.StatusBadRequest
	case "UNAUTHENTICATED":
		return http.StatusUnauthorized
	case "PERMISSION_DENIED":
		return http.StatusForbidden
	case "NOT_FOUND":
		return http.StatusNotFound
	case "RESOURCE_EXHAUSTED":
		return http.StatusTooManyRequests
	case "UNAVAILABLE":
		return http.StatusServiceUnavailable
	case "DEADLINE_EXCEEDED":
		return http.StatusGatewayTimeout
	default: // INTERNAL, UNKNOWN and anything new
		return http.StatusInternalServerError
	}
}
