// Package bedrock is the provider for "bedrock/…" deployments: Amazon
// Bedrock's Converse API. It translates OpenAI chat requests into
// POST {api_base}/model/{modelId}/converse (or /converse-stream, answered
// in the AWS event-stream binary framing) and the answers back into OpenAI
// chat.completion(.chunk) form. Requests are signed with SigV4 (service
// "bedrock") by hand, or carry a Bedrock API key as a bearer token.
//
// Region: aws_region_name, else AWS_REGION, else AWS_DEFAULT_REGION.
// Credentials: aws_access_key_id/aws_secret_access_key/aws_session_token,
// else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN; or an
// api_key (or AWS_BEARER_TOKEN_BEDROCK), which replaces signing. Instance
// profiles, SSO and shared config files are not read.
//
// Translation, field by field:
//   - system and developer messages → system blocks; consecutive turns of
//     one role merged; tool results → toolResult blocks in a user turn;
//     toolUseIds Converse refuses (another provider's, such as Gemini's)
//     → providers.ClaudeToolID, in the toolUse and its toolResult alike;
//     empty text dropped (Converse rejects blank text);
//   - images → image blocks with bytes (data URLs as they are, http(s)
//     URLs downloaded by Lumen); PNG, JPEG, GIF and WebP;
//   - max tokens, temperature, top_p, stop → inferenceConfig;
//   - tools → toolSpec with inputSchema.json; tool_choice auto/required/
//     named → auto/any/tool; "none" leaves the tools out (Converse has no
//     "none"), unless the history holds tool calls, which need them;
//   - response_format json_object/json_schema → a "json_response" tool the
//     model must call; its input comes back as the text (Converse has no
//     JSON mode);
//   - cache_control on a message or part → a cachePoint block after it;
//   - reasoning_effort → for Claude models, Anthropic's thinking and
//     output_config.effort in additionalModelRequestFields, as the
//     Anthropic translator sends them (no thinking on a forced tool or a
//     tool-loop continuation); other models take no reasoning field.
//
// Dropped: n>1 (refused with 400), seed, presence/frequency penalties,
// parallel_tool_calls, user, logprobs. Reasoning blocks come back as
// reasoning_content without their signatures.
package bedrock

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lumengw/lumen/internal/credentials"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client is one Bedrock deployment. It is safe for concurrent use.
type Client struct {
	base     string // no trailing slash
	region   string
	creds    Credentials
	bearer   string // Bedrock API key; replaces SigV4 when set
	model    string
	headers  map[string]string
	http     *http.Client
	images   *providers.ImageFetcher
	timeout  time.Duration
	gap      time.Duration
	provider string
	name     string
	now      func() time.Time
	cache    []providers.CachePoint // cache_control_injection_points
}

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Buffered = (*stream)(nil)
)

// New returns a client for one deployment. cfg.APIBase overrides the
// endpoint (a VPC endpoint, a proxy); empty means
// https://bedrock-runtime.{region}.amazonaws.com.
func New(cfg providers.Config) (*Client, error) {
	model := strings.TrimPrefix(cfg.Model, "converse/")
	switch {
	case model == "":
		return nil, fmt.Errorf("bedrock: a model id is required")
	case strings.HasPrefix(model, "invoke/"):
		return nil, fmt.Errorf("bedrock: %q: only the Converse API is supported; use bedrock/%s", cfg.Model, strings.TrimPrefix(model, "invoke/"))
	}
	region := firstNonEmpty(cfg.AWSRegion, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
	if region == "" {
		return nil, fmt.Errorf("bedrock: no AWS region: set aws_region_name or AWS_REGION")
	}
	c := &Client{region: region, model: model, headers: cfg.Headers, http: cfg.HTTPClient(),
		images: providers.DefaultImageFetcher, timeout: cfg.Timeout, gap: cfg.StreamTimeout, now: time.Now,
		cache: cfg.CacheInjection}
	c.provider = cfg.Provider
	if c.provider == "" {
		c.provider = "bedrock"
	}
	c.name = c.provider + "/" + model
	// What the deployment sets wins over the environment: api_key, then
	// the aws_* keys, then AWS_BEARER_TOKEN_BEDROCK, then AWS_ACCESS_KEY_ID.
	switch {
	case cfg.APIKey != "":
		c.bearer = cfg.APIKey
	case cfg.AWSAccessKeyID != "" || cfg.AWSSecretAccessKey != "":
		c.creds = Credentials{cfg.AWSAccessKeyID, cfg.AWSSecretAccessKey, cfg.AWSSessionToken}
	case os.Getenv("AWS_BEARER_TOKEN_BEDROCK") != "":
		c.bearer = os.Getenv("AWS_BEARER_TOKEN_BEDROCK")
	default:
		c.creds = Credentials{os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")}
	}
	if c.bearer == "" && (c.creds.AccessKeyID == "" || c.creds.SecretAccessKey == "") {
		return nil, fmt.Errorf("bedrock: no AWS credentials: set aws_access_key_id and aws_secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or a Bedrock api_key")
	}
	c.base = strings.TrimRight(cfg.APIBase, "/")
	if c.base == "" {
		c.base = "https://bedrock-runtime." + region + ".amazonaws.com"
	}
	if !strings.HasPrefix(c.base, "http://") && !strings.HasPrefix(c.base, "https://") {
		return nil, fmt.Errorf("bedrock: api_base %q must be an http(s) URL", credentials.Redact(cfg.APIBase))
	}
	return c, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// SetImageFetcher sets the fetcher that downloads http(s) images; nil
// restores providers.DefaultImageFetcher. Call it before the client is used.
func (c *Client) SetImageFetcher(f *providers.ImageFetcher) {
	if f == nil {
		f = providers.DefaultImageFetcher
	}
	c.images = f
}

// Name implements providers.Provider.
func (c *Client) Name() string { return c.provider }

func (c *Client) translate(ctx context.Context, req *providers.Request) (*translation, []byte, error) {
	if req.Op != providers.OpChat {
		return nil, nil, fmt.Errorf("bedrock: %s: %w", req.Op, providers.ErrUnsupported)
	}
	chat, err := providers.DecodeChatRequest(req.Body)
	if err != nil {
		return nil, nil, err
	}
	providers.InjectCacheControl(chat, c.cache)
	tr, err := fromChat(ctx, chat, req.Model, c.images)
	if err != nil {
		return nil, nil, err
	}
	body, err := providers.MarshalJSON(&tr.body)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the bedrock request: %w", err)
	}
	return tr, body, nil
}

func (c *Client) modelID(req *providers.Request) string {
	if m := strings.TrimPrefix(req.Model, "converse/"); m != "" {
		return m
	}
	return c.model
}

// newRequest builds and signs a Converse request. The model id is one
// path segment: its ':' and, in ARNs, '/' are percent-encoded.
func (c *Client) newRequest(ctx context.Context, model string, body []byte, stream bool) (*http.Request, error) {
	op := "/converse"
	if stream {
		op = "/converse-stream"
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/model/x"+op, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building upstream request: %w", err)
	}
	prefix := strings.TrimSuffix(hr.URL.Path, "/model/x"+op)
	hr.URL.Path = prefix + "/model/" + model + op
	hr.URL.RawPath = prefix + "/model/" + uriEncode(model) + op
	hr.Header.Set("Content-Type", "application/json")
	if stream {
		hr.Header.Set("Accept", "application/vnd.amazon.eventstream")
	} else {
		hr.Header.Set("Accept", "application/json")
	}
	for k, v := range c.headers {
		hr.Header.Set(k, v)
	}
	if c.bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+c.bearer)
	} else {
		sign(hr, c.creds, c.region, "bedrock", hashHex(body), c.now())
	}
	return hr, nil
}

// Do implements providers.Provider.
func (c *Client) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	tr, body, err := c.translate(ctx, req)
	if err != nil {
		return nil, err
	}
	model := c.modelID(req)
	hr, err := c.newRequest(ctx, model, body, false)
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
	var r converseResponse
	if err := json.Unmarshal(raw, &r); err != nil || r.Output.Message == nil {
		return nil, c.badGateway("upstream answered with something other than a Converse response")
	}
	chat, u := tr.toChat(&r, c.responseID(resp.Header), model, c.now().Unix())
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
	fail := func(err error) (providers.Stream, error) {
		wd.Stop()
		cancel()
		return nil, err
	}
	tr, body, err := c.translate(ctx, req)
	if err != nil {
		return fail(err)
	}
	model := c.modelID(req)
	hr, err := c.newRequest(ctx, model, body, true)
	if err != nil {
		return fail(err)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return fail(providers.TransportError(ctx, c.provider, c.name, err, wd.Fired()))
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return fail(c.statusError(resp))
	}
	s := &stream{c: c, tr: tr, ctx: ctx, body: resp.Body, r: newFrameReader(resp.Body), wd: wd, cancel: cancel,
		blocks: map[int]blockState{}, b: providers.ChunkBuilder{ID: c.responseID(resp.Header), Model: model, Created: c.now().Unix()}}
	return s, nil
}

func (c *Client) responseID(h http.Header) string {
	if id := h.Get("X-Amzn-Requestid"); id != "" {
		return "chatcmpl-" + id
	}
	return fmt.Sprintf("chatcmpl-bedrock-%d", c.now().UnixNano())
}

func (c *Client) badGateway(msg string) error {
	return &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: http.StatusBadGateway, Type: "api_error", Message: msg, Retryable: true}
}

// statusError reads an error answer: the exception name in the
// X-Amzn-ErrorType header ("ThrottlingException:http://internal…") or the
// body's __type, the text in the body's message.
func (c *Client) statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var eb struct {
		Message  string `json:"message"`
		MessageC string `json:"Message"`
		Type     string `json:"__type"`
	}
	_ = json.Unmarshal(body, &eb)
	typ := resp.Header.Get("X-Amzn-Errortype")
	if typ == "" {
		typ = eb.Type
	}
	typ, _, _ = strings.Cut(typ, ":")
	if i := strings.LastIndexByte(typ, '#'); i >= 0 {
		typ = typ[i+1:]
	}
	msg := firstNonEmpty(eb.Message, eb.MessageC)
	if msg == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 512 {
			msg = msg[:512] + "…"
		}
	}
	ue := c.exception(resp.StatusCode, typ, msg)
	ue.RetryAfter = providers.ParseRetryAfter(resp.Header)
	return ue
}

// exception converts a Bedrock exception. status is the HTTP status, or 0
// for an exception inside a stream (then the exception names it).
func (c *Client) exception(status int, typ, msg string) *providers.UpstreamError {
	name := strings.ToLower(typ[:min(1, len(typ))]) + typ[min(1, len(typ)):]
	if status == 0 {
		status = statusOf(name)
	}
	retry := providers.RetryableStatus(status)
	switch name {
	case "modelStreamErrorException", "modelNotReadyException", "modelTimeoutException":
		retry = true
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	ue := &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: status,
		Type: providers.ErrorType(status), Code: typ, Message: msg, Retryable: retry}
	if status == http.StatusBadRequest && (openai.IsContextLengthError(msg) || strings.Contains(msg, "too long")) {
		ue.Code = "context_length_exceeded"
	}
	return ue
}

// statusOf is the HTTP status the Bedrock API reference gives each
// exception (the stream's event names start lower-case).
func statusOf(name string) int {
	switch name {
	case "validationException":
		return http.StatusBadRequest
	case "accessDeniedException", "unrecognizedClientException":
		return http.StatusForbidden
	case "resourceNotFoundException":
		return http.StatusNotFound
	case "modelTimeoutException":
		return http.StatusRequestTimeout
	case "throttlingException", "modelNotReadyException":
		return http.StatusTooManyRequests
	case "modelStreamErrorException", "modelErrorException":
		return http.StatusFailedDependency
	case "serviceUnavailableException":
		return http.StatusServiceUnavailable
	default: // internalServerException and anything new
		return http.StatusInternalServerError
	}
}
