// Package anthropic speaks Anthropic's Messages API in both directions.
//
// Outbound, Client is the provider for "anthropic/…" deployments: it
// translates OpenAI chat requests into POST {api_base}/v1/messages and the
// answers, streamed or not, back into OpenAI chat.completion(.chunk) form.
// It also forwards native Messages API bodies untouched but for the model
// and any tool id the API would refuse (DoMessages), so an Anthropic
// client served by an Anthropic upstream keeps cache_control, thinking
// and every other field.
//
// Inbound, ToOpenAI, FromOpenAI and StreamTranslator let Lumen serve
// Anthropic clients (the SDKs, Claude Code) from any provider through the
// common OpenAI form; ErrorJSON gives errors their Anthropic shape and
// CountTokens estimates /v1/messages/count_tokens.
//
// Outbound translation, field by field:
//   - system and developer messages, wherever they are, become the
//     top-level system prompt, in order;
//   - consecutive messages of one role are merged into one turn (the API
//     requires alternation); tool results go in a user turn as
//     tool_result blocks; empty text is dropped (the API rejects it);
//   - tool call ids the API refuses (another provider's, such as Gemini's
//     with a base64 thought signature) → providers.ClaudeToolID, in the
//     tool_use and its tool_result alike;
//   - images: data URLs become base64 sources (JPEG, PNG, GIF, WebP),
//     http(s) URLs become url sources that Anthropic fetches;
//   - max_completion_tokens, else max_tokens, else DefaultMaxTokens;
//     temperature and top_p as given (Anthropic's temperature range is
//     0–1); stop → stop_sequences; user → metadata.user_id;
//   - tools → tools with input_schema; tool_choice auto/none/required/named
//     → auto/none/any/tool; parallel_tool_calls:false →
//     disable_parallel_tool_use;
//   - response_format json_object/json_schema → a "json_response" tool the
//     model must call (Anthropic's documented way to get JSON that follows
//     a schema on every Claude model); its input comes back as the text;
//   - cache_control on a message or content part (LiteLLM's extension) is
//     kept on the block.
//
// Dropped, because the Messages API has no equivalent: n>1 (refused with
// 400), seed, presence_penalty, frequency_penalty, logprobs, logit_bias.
// Thinking blocks in answers come back as reasoning_content; their
// signatures are not kept, so thinking cannot be continued across turns
// through the OpenAI form (the native path keeps it).
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/internal/credentials"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
)

// DefaultBase is the public Messages API root.
const DefaultBase = "https://api.anthropic.com"

// DefaultVersion is the anthropic-version header sent unless the
// deployment sets api_version.
const DefaultVersion = "2023-06-01"

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client is one Anthropic deployment. It is safe for concurrent use.
type Client struct {
	base     string // no trailing slash, no /v1
	key      string
	version  string
	model    string
	headers  map[string]string
	http     *http.Client
	timeout  time.Duration
	gap      time.Duration
	provider string
	name     string // provider/model, for errors
	now      func() time.Time
	cache    []providers.CachePoint // cache_control_injection_points
}

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Buffered = (*stream)(nil)
	_ Native             = (*Client)(nil)
)

// Native is the optional capability of a provider that speaks the Messages
// API itself: the server passes an Anthropic client's body through
// unchanged rather than translating it.
type Native interface {
	// DoMessages sends a Messages API body (streaming or not, as its
	// "stream" field says) with only "model" replaced by the deployment's
	// model and any tool id the API would refuse mapped by
	// providers.ClaudeToolID (an id from another provider's earlier turn).
	// From header it forwards anthropic-version and anthropic-beta,
	// nothing else. It returns the upstream response when its status is
	// 2xx (the caller reads and closes Body: JSON, or SSE when streaming);
	// any other status is returned as *providers.UpstreamError.
	DoMessages(ctx context.Context, body []byte, header http.Header) (*http.Response, error)
}

// New returns a client for one deployment. cfg.APIBase is the API root
// ("https://api.anthropic.com"; a trailing /v1 is tolerated); empty means
// DefaultBase. cfg.APIVersion sets anthropic-version.
func New(cfg providers.Config) (*Client, error) {
	base := strings.TrimRight(cfg.APIBase, "/")
	if base == "" {
		base = DefaultBase
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("anthropic: api_base %q must be an http(s) URL", credentials.Redact(cfg.APIBase))
	}
	base = strings.TrimSuffix(base, "/v1")
	provider := cfg.Provider
	if provider == "" {
		provider = "anthropic"
	}
	c := &Client{
		base:     base,
		key:      cfg.APIKey,
		version:  cfg.APIVersion,
		model:    cfg.Model,
		headers:  cfg.Headers,
		http:     cfg.HTTPClient(),
		timeout:  cfg.Timeout,
		gap:      cfg.StreamTimeout,
		provider: provider,
		name:     provider + "/" + cfg.Model,
		now:      time.Now,
		cache:    cfg.CacheInjection,
	}
	if c.version == "" {
		c.version = DefaultVersion
	}
	return c, nil
}

// Name implements providers.Provider.
func (c *Client) Name() string { return c.provider }

// translate decodes an OpenAI request and builds the Messages API body.
func (c *Client) translate(req *providers.Request) (*translation, []byte, error) {
	if req.Op != providers.OpChat {
		return nil, nil, fmt.Errorf("anthropic: %s: %w", req.Op, providers.ErrUnsupported)
	}
	chat, err := providers.DecodeChatRequest(req.Body)
	if err != nil {
		return nil, nil, err
	}
	providers.InjectCacheControl(chat, c.cache)
	tr, err := fromChat(chat, req.Model, req.Stream)
	if err != nil {
		return nil, nil, err
	}
	body, err := providers.MarshalJSON(&tr.body)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the anthropic request: %w", err)
	}
	return tr, body, nil
}

func (c *Client) newRequest(ctx context.Context, body []byte, stream bool, from http.Header) (*http.Request, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building upstream request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Anthropic-Version", c.version)
	if stream {
		hr.Header.Set("Accept", "text/event-stream")
	}
	if c.key != "" {
		hr.Header.Set("X-Api-Key", c.key)
	}
	for k, v := range c.headers {
		hr.Header.Set(k, v)
	}
	if from != nil {
		if v := from.Get("Anthropic-Version"); v != "" {
			hr.Header.Set("Anthropic-Version", v)
		}
		if v := from.Values("Anthropic-Beta"); len(v) > 0 {
			hr.Header["Anthropic-Beta"] = v
		}
	}
	return hr, nil
}

// Do implements providers.Provider.
func (c *Client) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	if req.Native != nil {
		return c.doNative(ctx, req)
	}
	tr, body, err := c.translate(req)
	if err != nil {
		return nil, err
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	hr, err := c.newRequest(ctx, body, false, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, c.transportError(ctx, err, false)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, c.statusError(resp)
	}
	raw, err := providers.ReadAnswer(resp)
	if err != nil {
		return nil, c.transportError(ctx, err, false)
	}
	var m messageResponse
	if err := json.Unmarshal(raw, &m); err != nil || m.Type != "message" {
		return nil, c.badGateway("upstream answered with something other than a message")
	}
	chat, u := tr.toChat(&m, c.now().Unix())
	out, err := providers.MarshalJSON(chat)
	if err != nil {
		return nil, fmt.Errorf("encoding the translated answer: %w", err)
	}
	return &providers.Response{Body: out, Usage: u}, nil
}

// DoStream implements providers.Provider.
func (c *Client) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	if req.Native != nil {
		return c.doNativeStream(ctx, req)
	}
	tr, body, err := c.translate(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	wd := providers.NewWatchdog(cancel, c.timeout, c.gap)
	resp, err := c.open(ctx, body, true, nil, wd)
	if err != nil {
		cancel()
		return nil, err
	}
	return newStream(c, tr, ctx, resp.Body, wd, cancel), nil
}

// open sends a request and checks the status. On error the watchdog is
// stopped and the body closed.
func (c *Client) open(ctx context.Context, body []byte, stream bool, from http.Header, wd *providers.Watchdog) (*http.Response, error) {
	hr, err := c.newRequest(ctx, body, stream, from)
	if err != nil {
		wd.Stop()
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		wd.Stop()
		return nil, c.transportError(ctx, err, wd.Fired())
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		wd.Stop()
		return nil, c.statusError(resp)
	}
	return resp, nil
}

// DoMessages implements Native. The deployment's timeout bounds the time
// to the response headers and stream_timeout the gaps between body reads;
// closing the body releases everything.
func (c *Client) DoMessages(ctx context.Context, body []byte, header http.Header) (*http.Response, error) {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return nil, providers.Invalid("", "the body is not a JSON object")
	}
	stream := gjson.GetBytes(body, "stream").Bool()
	body, err := sjson.SetBytes(body, "model", c.model)
	if err != nil {
		return nil, fmt.Errorf("setting model: %w", err)
	}
	body = fixToolIDs(body)
	ctx, cancel := context.WithCancel(ctx)
	wd := providers.NewWatchdog(cancel, c.timeout, c.gap)
	resp, err := c.open(ctx, body, stream, header, wd)
	if err != nil {
		cancel()
		return nil, err
	}
	if !stream {
		wd.Stop() // the timeout covered the wait; the body is already coming
	}
	resp.Body = &watchedBody{ReadCloser: resp.Body, wd: wd, cancel: cancel}
	return resp, nil
}

// watchedBody kicks the watchdog on every read and cancels the request
// when closed.
type watchedBody struct {
	io.ReadCloser
	wd     *providers.Watchdog
	cancel context.CancelFunc
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.wd.Kick()
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.wd.Stop()
	b.cancel()
	return b.ReadCloser.Close()
}

// transportError classifies an error on the way to or from the upstream.
func (c *Client) transportError(ctx context.Context, err error, watchdog bool) error {
	return providers.TransportError(ctx, c.provider, c.name, err, watchdog)
}

func (c *Client) badGateway(msg string) error {
	return &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: http.StatusBadGateway, Type: "api_error", Message: msg, Retryable: true}
}

func (c *Client) statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	ue := c.errorFromBody(resp.StatusCode, body)
	ue.RetryAfter = providers.ParseRetryAfter(resp.Header)
	return ue
}

// errorFromBody reads {"type":"error","error":{"type","message"}}. Type is
// normalized to OpenAI's error types; Code keeps Anthropic's.
func (c *Client) errorFromBody(status int, body []byte) *providers.UpstreamError {
	var eb errorBody
	_ = json.Unmarshal(body, &eb)
	if status == 0 {
		status = statusOf(eb.Error.Type)
	}
	ue := &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: status,
		Type: providers.ErrorType(status), Code: eb.Error.Type, Message: eb.Error.Message, Retryable: providers.RetryableStatus(status)}
	if ue.Message == "" {
		ue.Message = strings.TrimSpace(string(body))
		if len(ue.Message) > 512 {
			ue.Message = ue.Message[:512] + "…"
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

// statusOf is the HTTP status Anthropic documents for an error type; it
// names the status of errors that arrive inside a stream.
func statusOf(typ string) int {
	switch typ {
	case "invalid_request_error":
		return http.StatusBadRequest
	case "authentication_error":
		return http.StatusUnauthorized
	case "permission_error":
		return http.StatusForbidden
	case "not_found_error":
		return http.StatusNotFound
	case "request_too_large":
		return http.StatusRequestEntityTooLarge
	case "rate_limit_error":
		return http.StatusTooManyRequests
	case "overloaded_error":
		return 529
	case "timeout_error":
		return http.StatusGatewayTimeout
	default: // api_error and anything new
		return http.StatusInternalServerError
	}
}
