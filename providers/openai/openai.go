// Package openai is the provider for every upstream that speaks the OpenAI
// wire format: OpenAI itself, Azure OpenAI, Groq, Together, Mistral,
// DeepSeek, Fireworks, OpenRouter, vLLM, Ollama, LM Studio and any custom
// OpenAI-compatible api_base. Bodies pass through byte for byte; only
// "model" is set to the upstream id (and stream_options.include_usage is
// forced on so that usage is counted, except on Azure api-versions that
// predate stream_options, where it is removed), and tool call ids longer
// than OpenAI accepts (another provider's, such as Gemini's with its
// thought signature) are mapped by ToolID, in the call and its result
// alike.
package openai

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/sse"
)

// DefaultBase is each provider's public endpoint, up to and including /v1.
var DefaultBase = map[string]string{
	"openai":       "https://api.openai.com/v1",
	"groq":         "https://api.groq.com/openai/v1",
	"together_ai":  "https://api.together.xyz/v1",
	"mistral":      "https://api.mistral.ai/v1",
	"deepseek":     "https://api.deepseek.com/v1",
	"fireworks_ai": "https://api.fireworks.ai/inference/v1",
	"openrouter":   "https://openrouter.ai/api/v1",
	"xai":          "https://api.x.ai/v1",
	"perplexity":   "https://api.perplexity.ai",
	"cerebras":     "https://api.cerebras.ai/v1",
	"ollama":       "http://localhost:11434/v1",
	"ollama_chat":  "http://localhost:11434/v1",
	"lm_studio":    "http://localhost:1234/v1",
}

// DefaultAzureAPIVersion is used when an azure deployment sets none.
const DefaultAzureAPIVersion = "2024-10-21"

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client is an OpenAI-format upstream. It is safe for concurrent use.
type Client struct {
	provider string
	base     string // no trailing slash
	key      string
	azure    bool
	version  string
	headers  map[string]string
	http     *http.Client
	timeout  time.Duration
	gap      time.Duration
	name     string // provider/model, for errors
	// responses: Responses API requests go to {base}/responses as sent
	// (see providers.Request.Responses), not translated to chat.
	responses bool
	// noStreamOptions: the upstream refuses stream_options (Azure before
	// api-version 2024-09-01-preview), so streams go without it and
	// their usage is estimated.
	noStreamOptions bool
}

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Buffered = (*stream)(nil)
)

// New returns a client for one deployment.
func New(cfg providers.Config) (*Client, error) {
	c := &Client{
		provider: cfg.Provider,
		key:      cfg.APIKey,
		azure:    cfg.Provider == "azure",
		version:  cfg.APIVersion,
		headers:  cfg.Headers,
		http:     cfg.HTTPClient(),
		timeout:  cfg.Timeout,
		gap:      cfg.StreamTimeout,
		name:     cfg.Provider + "/" + cfg.Model,
	}
	base := cfg.APIBase
	if base == "" {
		base = DefaultBase[cfg.Provider]
	} else if u, err := url.Parse(base); err == nil && strings.Trim(u.Path, "/") == "" && !c.azure && cfg.Provider != "perplexity" {
		base = strings.TrimRight(base, "/") + "/v1" // "http://host:11434" means its /v1 API
	}
	if base == "" {
		return nil, fmt.Errorf("provider %s: api_base is required", cfg.Provider)
	}
	c.base = strings.TrimRight(base, "/")
	c.responses = cfg.Provider == "openai" && c.base == DefaultBase["openai"]
	if cfg.ResponsesAPI != nil {
		c.responses = *cfg.ResponsesAPI
	}
	if c.azure && c.version == "" {
		c.version = DefaultAzureAPIVersion
	}
	c.noStreamOptions = c.azure && !azureStreamOptions(c.version)
	return c, nil
}

// azureStreamOptions reports whether Azure's api-version takes
// stream_options: versions from 2024-09-01-preview on (2024-10-21 is the
// first GA one); older ones answer 400 "Unrecognized request argument
// supplied: stream_options". A version that is not a date ("v1",
// "preview", "latest") is a current one.
func azureStreamOptions(version string) bool {
	if len(version) < len("2006-01-02") {
		return true
	}
	day, err := time.Parse("2006-01-02", version[:len("2006-01-02")])
	return err != nil || !day.Before(time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC))
}

// Name implements providers.Provider.
func (c *Client) Name() string { return c.provider }

// native reports whether req goes out as the client's own Responses API
// request.
func (c *Client) native(req *providers.Request) bool {
	return c.responses && req.Responses != nil && req.Op == providers.OpChat
}

func (c *Client) endpoint(req *providers.Request) string {
	if c.native(req) {
		if c.azure {
			return c.base + "/openai/v1/responses" // Azure's v1 API takes no api-version
		}
		return c.base + "/responses"
	}
	if c.azure {
		return c.base + "/openai/deployments/" + url.PathEscape(req.Model) + "/" + req.Op.String() + "?api-version=" + url.QueryEscape(c.version)
	}
	return c.base + "/" + req.Op.String()
}

func (c *Client) newRequest(ctx context.Context, req *providers.Request) (*http.Request, error) {
	src := req.Body
	if c.native(req) {
		src = req.Responses
	}
	contentType := "application/json"
	var body []byte
	var err error
	if req.ContentType != "" { // a multipart transcription: its model field is the upstream id
		contentType = req.ContentType
		if body, err = providers.SetFormValue(src, req.ContentType, "model", req.Model); err != nil {
			return nil, fmt.Errorf("setting model: %w", err)
		}
	} else if body, err = sjson.SetBytes(src, "model", req.Model); err != nil {
		return nil, fmt.Errorf("setting model: %w", err)
	}
	if req.Op == providers.OpChat && req.ContentType == "" {
		if c.native(req) {
			body, err = fixResponsesCallIDs(body)
		} else {
			body, err = fixChatToolIDs(body, c.chatToolID)
		}
		if err != nil {
			return nil, err
		}
	}
	if c.native(req) {
		if gjson.GetBytes(body, "stream").Bool() != req.Stream {
			if body, err = sjson.SetBytes(body, "stream", req.Stream); err != nil {
				return nil, fmt.Errorf("setting stream: %w", err)
			}
		}
	} else if req.Stream && req.Op != providers.OpEmbedding {
		if c.noStreamOptions {
			// The client's own stream_options would be refused too.
			if gjson.GetBytes(body, "stream_options").Exists() {
				if body, err = sjson.DeleteBytes(body, "stream_options"); err != nil {
					return nil, fmt.Errorf("removing stream_options: %w", err)
				}
			}
		} else if body, err = sjson.SetBytes(body, "stream_options.include_usage", true); err != nil {
			return nil, fmt.Errorf("setting stream_options: %w", err)
		}
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(req), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building upstream request: %w", err)
	}
	hr.Header.Set("Content-Type", contentType)
	if req.Stream {
		hr.Header.Set("Accept", "text/event-stream")
	}
	if c.key != "" {
		if c.azure {
			hr.Header.Set("api-key", c.key)
		} else {
			hr.Header.Set("Authorization", "Bearer "+c.key)
		}
	}
	for k, v := range c.headers {
		hr.Header.Set(k, v)
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
	hr, err := c.newRequest(ctx, req)
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
	body, err := providers.ReadAnswer(resp)
	if err != nil {
		return nil, c.transportError(ctx, err, false)
	}
	switch ct := resp.Header.Get("Content-Type"); {
	case req.Op == providers.OpSpeech:
		return &providers.Response{Body: body, ContentType: ct,
			Usage: providers.Usage{Characters: utf8.RuneCountInString(gjson.GetBytes(req.Body, "input").Str)}}, nil
	case req.Op == providers.OpTranscription && !strings.HasPrefix(ct, "application/json"):
		return &providers.Response{Body: body, ContentType: ct}, nil // text, srt or vtt: no usage to read
	}
	if providers.JSONTooDeep(body, providers.MaxJSONDepth) {
		// Checked before gjson's validator, which recurses per level.
		return nil, &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: http.StatusBadGateway,
			Message: fmt.Sprintf("upstream answered with JSON nested more than %d levels deep", providers.MaxJSONDepth), Retryable: true}
	}
	if !gjson.ValidBytes(body) {
		return nil, &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: http.StatusBadGateway,
			Message: "upstream answered with invalid JSON", Retryable: true}
	}
	if b := trimSpace(body); len(b) == 0 || b[0] != '{' {
		// null, a number, an array: every answer here is an object.
		return nil, &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: http.StatusBadGateway,
			Message: "upstream answered with JSON that is not an object", Retryable: true}
	}
	u := ParseUsage(body)
	switch req.Op {
	case providers.OpImage, providers.OpImageEdit:
		u.Images = len(gjson.GetBytes(body, "data").Array())
	case providers.OpTranscription:
		u.Seconds = gjson.GetBytes(body, "usage.seconds").Float() // whisper-1's usage {"type":"duration"}
	}
	return &providers.Response{Body: body, Usage: u}, nil
}

// DoStream implements providers.Provider.
func (c *Client) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	wd := providers.NewWatchdog(cancel, c.timeout, c.gap)
	hr, err := c.newRequest(ctx, req)
	if err != nil {
		wd.Stop()
		cancel()
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		wd.Stop()
		cancel()
		return nil, c.transportError(ctx, err, wd.Fired())
	}
	if resp.StatusCode/100 != 2 {
		defer cancel()
		defer resp.Body.Close()
		wd.Stop()
		return nil, c.statusError(resp)
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		// Some servers ignore stream:true and answer whole; an error object
		// is the usual reason.
		defer cancel()
		defer resp.Body.Close()
		wd.Stop()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if e := gjson.GetBytes(body, "error"); e.Exists() {
			return nil, c.errorFromBody(http.StatusBadGateway, body, resp.Header)
		}
		return nil, &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: http.StatusBadGateway,
			Message: "upstream answered a stream request without streaming", Retryable: true}
	}
	return &stream{c: c, ctx: ctx, body: resp.Body, r: sse.NewReader(resp.Body), wd: wd, cancel: cancel, responses: c.native(req)}, nil
}

type stream struct {
	c        *Client
	ctx      context.Context
	body     io.ReadCloser
	r        *sse.Reader
	wd       *providers.Watchdog
	cancel   context.CancelFunc
	finished bool // a chunk carried a finish_reason (a Response: it completed)
	done     bool
	// responses: the stream is Responses API events, which end with the
	// connection after response.completed (or .incomplete, .failed).
	responses bool
}

func (s *stream) Recv() ([]byte, error) {
	if s.done {
		return nil, io.EOF
	}
	ev, err := s.r.Next()
	if err != nil {
		if err == io.EOF && s.finished {
			// Servers that end without [DONE] after a finished choice.
			s.done = true
			return nil, io.EOF
		}
		return nil, s.c.transportError(s.ctx, err, s.wd.Fired())
	}
	s.wd.Kick()
	data := ev.Data
	if bytes.Equal(data, sse.Done) {
		s.done = true
		return nil, io.EOF
	}
	if s.responses {
		typ := gjson.GetBytes(data, "type").Str
		if string(ev.Type) == "error" || typ == "error" {
			// {"type":"error","code","message","param"}
			return nil, &providers.UpstreamError{Provider: s.c.provider, Deployment: s.c.name, Status: http.StatusBadGateway,
				Type: "api_error", Code: gjson.GetBytes(data, "code").Str, Message: gjson.GetBytes(data, "message").Str, Retryable: true}
		}
		switch typ {
		case "response.completed", "response.incomplete", "response.failed":
			s.finished = true
		}
		return data, nil
	}
	if string(ev.Type) == "error" || isErrorObject(data) {
		return nil, s.c.errorFromBody(http.StatusBadGateway, data, nil)
	}
	if !s.finished && hasFinish(data) {
		s.finished = true
	}
	return data, nil
}

// Buffered implements providers.Buffered.
func (s *stream) Buffered() int { return s.r.Buffered() }

func (s *stream) Close() error {
	s.wd.Stop()
	s.cancel()
	return s.body.Close()
}

// transportError classifies an error on the way to or from the upstream.
func (c *Client) transportError(ctx context.Context, err error, watchdog bool) error {
	return providers.TransportError(ctx, c.provider, c.name, err, watchdog)
}

func (c *Client) statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return c.errorFromBody(resp.StatusCode, body, resp.Header)
}

// errorFromBody reads an OpenAI error object {"error":{"message","type",
// "param","code"}}, a bare {"error":"…"} (Ollama, TGI), or the flat
// {"object":"error","message","type","param","code":400} older vLLM
// releases (and FastChat, TensorRT-LLM) answer with; anything else
// becomes a short plain message. A numeric code (vLLM's, the HTTP status
// again) is not an OpenAI code and is left out, so that a context-length
// message still gets context_length_exceeded.
func (c *Client) errorFromBody(status int, body []byte, h http.Header) error {
	ue := &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: status, Retryable: providers.RetryableStatus(status)}
	if h != nil {
		ue.RetryAfter = providers.ParseRetryAfter(h)
	}
	e := gjson.GetBytes(body, "error")
	switch {
	case e.IsObject():
		ue.Message = e.Get("message").String()
		ue.Type = e.Get("type").String()
		if code := e.Get("code"); code.Type == gjson.String {
			ue.Code = code.Str
		}
		ue.Param = e.Get("param").String()
	case e.Type == gjson.String:
		ue.Message = e.Str
	case gjson.GetBytes(body, "object").Str == "error" && gjson.GetBytes(body, "message").Type == gjson.String:
		ue.Message = gjson.GetBytes(body, "message").Str
		ue.Type = gjson.GetBytes(body, "type").Str
		ue.Param = gjson.GetBytes(body, "param").Str
	default:
		ue.Message = strings.TrimSpace(string(body))
		if len(ue.Message) > 512 {
			ue.Message = ue.Message[:512] + "…"
		}
	}
	if ue.Message == "" {
		ue.Message = http.StatusText(status)
	}
	if ue.Code == "" && (status == http.StatusBadRequest) && IsContextLengthError(ue.Message) {
		ue.Code = "context_length_exceeded"
	}
	return ue
}

// IsContextLengthError reports whether an upstream message says the prompt
// exceeded the model's context window: OpenAI's "maximum context length",
// Anthropic's "prompt is too long", Gemini's "The input token count (N)
// exceeds the maximum number of tokens allowed (M)", vLLM's "… is longer
// than the maximum model length of M".
func IsContextLengthError(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "context length") || strings.Contains(m, "context_length") ||
		strings.Contains(m, "maximum context") || strings.Contains(m, "too many tokens") ||
		strings.Contains(m, "prompt is too long") || strings.Contains(m, "exceeds the maximum number of tokens") ||
		strings.Contains(m, "maximum model length")
}

// ParseUsage reads an OpenAI usage object from a response or chunk body:
// a chat completion's (prompt_tokens …) or a Response's (input_tokens …).
func ParseUsage(body []byte) providers.Usage {
	u := gjson.GetBytes(body, "usage")
	if !u.IsObject() {
		return providers.Usage{}
	}
	if in := u.Get("input_tokens"); in.Exists() && !u.Get("prompt_tokens").Exists() {
		return providers.Usage{
			PromptTokens:     int(in.Int()),
			CompletionTokens: int(u.Get("output_tokens").Int()),
			CachedTokens:     int(u.Get("input_tokens_details.cached_tokens").Int()),
		}
	}
	if t := u.Get("total_tokens"); t.Exists() && !u.Get("prompt_tokens").Exists() {
		return providers.Usage{PromptTokens: int(t.Int())} // rerank (vLLM): input only
	}
	return providers.Usage{
		PromptTokens:     int(u.Get("prompt_tokens").Int()),
		CompletionTokens: int(u.Get("completion_tokens").Int()),
		CachedTokens:     int(u.Get("prompt_tokens_details.cached_tokens").Int()),
	}
}
