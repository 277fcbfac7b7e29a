package providers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// This file is the typed form of the OpenAI chat completions schema: the
// common internal form that the translating providers (anthropic, gemini,
// bedrock) read requests from and write answers and chunks in. It covers
// what those providers can express: messages with string or multi-part
// content (text, image_url), tools, tool_choice, tool calls and results,
// response_format, stop, max tokens, temperature, top_p and usage with
// cached tokens. Fields outside it (logprobs, logit_bias, audio, modalities,
// prediction, web_search_options, …) are dropped by the translators when
// they decode a body; each provider package lists what it drops.
//
// OpenAI-shaped upstreams never go through these types: their bodies pass
// through as bytes.

// ChatRequest is an OpenAI chat completions request.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	N                   *int            `json:"n,omitempty"`
	Stop                Strings         `json:"stop,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *StreamOptions  `json:"stream_options,omitempty"`
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          *ToolChoice     `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      *ResponseFormat `json:"response_format,omitempty"`
	User                string          `json:"user,omitempty"`
	// ReasoningEffort is OpenAI's reasoning_effort (none, minimal, low,
	// medium, high, xhigh); the translators map it to their provider's
	// thinking settings for the models that have them.
	ReasoningEffort string `json:"reasoning_effort,omitempty"`
}

// maxUserLen is the longest end-user id UpstreamUser passes as it is:
// OpenAI's safety_identifier limit, which the strictest OpenAI-compatible
// upstreams apply to user too (OpenRouter's is 128).
const maxUserLen = 64

// UpstreamUser is the OpenAI "user" a translated request sends for the
// end-user id a client gave (Anthropic's metadata.user_id, a Responses
// user): the id itself, or, when it is longer than 64 bytes (Claude
// Code sends 100 to 160), the hex SHA-256 of it, 64 characters. The digest
// is the same for the same id, so an upstream's per-user tracking still
// tells users apart.
func UpstreamUser(id string) string {
	if len(id) <= maxUserLen {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// CheckReasoningEffort refuses a reasoning_effort the translators do not
// know; the empty one is none given.
func CheckReasoningEffort(effort string) error {
	switch effort {
	case "", "none", "minimal", "low", "medium", "high", "xhigh":
		return nil
	}
	return Invalid("reasoning_effort", "unknown reasoning_effort %q (use none, minimal, low, medium, high or xhigh)", effort)
}

// OutputLimit returns max_completion_tokens, else max_tokens, else zero.
func (r *ChatRequest) OutputLimit() int {
	switch {
	case r.MaxCompletionTokens != nil:
		return *r.MaxCompletionTokens
	case r.MaxTokens != nil:
		return *r.MaxTokens
	}
	return 0
}

// StreamOptions is the request's stream_options.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// Strings is a JSON field that holds either one string or a list of them
// (OpenAI's "stop"). It always marshals as a list.
type Strings []string

// UnmarshalJSON implements json.Unmarshaler.
func (s *Strings) UnmarshalJSON(b []byte) error {
	switch {
	case isNull(b):
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = Strings{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// Message is one chat message. Role is "system", "developer", "user",
// "assistant" or "tool".
type Message struct {
	Role       string     `json:"role"`
	Content    Content    `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	// CacheControl is the Anthropic prompt-caching marker LiteLLM accepts on
	// a message ({"type":"ephemeral"}); the anthropic provider puts it on
	// the message's last block, the others ignore it.
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

// MarshalJSON implements json.Marshaler. A tool message's empty content
// is "" rather than null: OpenAI refuses a tool message whose content is
// null, and a tool that printed nothing (a silent shell command) is an
// empty result, not a missing one.
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message
	if m.Role != "tool" || !m.Content.IsZero() {
		return marshal(plain(m))
	}
	return marshal(struct {
		plain
		Content string `json:"content"`
	}{plain: plain(m)})
}

// Content is a message's content: a string, or a list of parts when Parts
// is not nil. The zero Content marshals as null.
type Content struct {
	Text  string
	Parts []Part
}

// TextContent returns a Content holding the string s.
func TextContent(s string) Content { return Content{Text: s} }

// String returns the content's text: the string, or the text parts joined
// with no separator. Non-text parts are skipped.
func (c Content) String() string {
	if c.Parts == nil {
		return c.Text
	}
	var b strings.Builder
	for _, p := range c.Parts {
		if p.Type == PartText || p.Type == PartRefusal {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// IsZero reports whether the content is null or absent.
func (c Content) IsZero() bool { return c.Parts == nil && c.Text == "" }

// MarshalJSON implements json.Marshaler.
func (c Content) MarshalJSON() ([]byte, error) {
	switch {
	case c.Parts != nil:
		return marshal(c.Parts)
	case c.Text == "":
		return []byte("null"), nil
	}
	return marshal(c.Text)
}

// UnmarshalJSON implements json.Unmarshaler.
func (c *Content) UnmarshalJSON(b []byte) error {
	*c = Content{}
	switch {
	case isNull(b):
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, &c.Text)
	}
	var parts []Part
	if err := json.Unmarshal(b, &parts); err != nil {
		return err
	}
	if parts == nil {
		parts = []Part{}
	}
	c.Parts = parts
	return nil
}

// Content part types the translators understand.
const (
	PartText     = "text"
	PartImageURL = "image_url"
	PartFile     = "file"    // a document: a PDF as a data URL, or an OpenAI file id
	PartRefusal  = "refusal" // assistant history only; read as text
)

// Part is one element of a multi-part content.
type Part struct {
	Type     string    `json:"type"`
	Text     string    `json:"text"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
	File     *File     `json:"file,omitempty"`
	// CacheControl is the Anthropic prompt-caching marker on this part.
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

// File is a file part's document, as OpenAI's chat completions take it:
// FileData is a base64 data URL ("data:application/pdf;base64,..."), or
// FileID names a file uploaded to OpenAI's Files API.
type File struct {
	Filename string `json:"filename,omitempty"`
	FileData string `json:"file_data,omitempty"`
	FileID   string `json:"file_id,omitempty"`
}

// MarshalJSON implements json.Marshaler: a text part has no image_url and
// an image part no text.
func (p Part) MarshalJSON() ([]byte, error) {
	type text struct {
		Type         string          `json:"type"`
		Text         string          `json:"text"`
		CacheControl json.RawMessage `json:"cache_control,omitempty"`
	}
	type image struct {
		Type         string          `json:"type"`
		ImageURL     *ImageURL       `json:"image_url"`
		CacheControl json.RawMessage `json:"cache_control,omitempty"`
	}
	type file struct {
		Type         string          `json:"type"`
		File         *File           `json:"file"`
		CacheControl json.RawMessage `json:"cache_control,omitempty"`
	}
	switch p.Type {
	case PartImageURL:
		return marshal(image{p.Type, p.ImageURL, p.CacheControl})
	case PartFile:
		return marshal(file{p.Type, p.File, p.CacheControl})
	}
	return marshal(text{p.Type, p.Text, p.CacheControl})
}

// UnsupportedPart is the error for a content part a translator cannot
// send to its provider: the request is refused rather than sent without
// it. at is the part's parameter path.
func UnsupportedPart(at string, p Part, provider string) error {
	if p.Type == PartFile {
		if p.File == nil || p.File.FileData == "" {
			return Invalid(at+".file", "%s models take a file as file_data (a base64 data URL); a file_id names a file uploaded to OpenAI, which they cannot read", provider)
		}
		mt, _, _ := ParseDataURL(p.File.FileData)
		return Invalid(at+".file.file_data", "%s models do not take %q files here (file_data must be a base64 data URL of a supported type)", provider, mt)
	}
	return Invalid(at+".type", "content part %q is not supported for %s models (supported: text, image_url, file)", p.Type, provider)
}

// ImageURL is an image_url part's target: an http(s) URL or a data URL.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// UnmarshalJSON implements json.Unmarshaler; it also accepts the bare
// string some clients send.
func (u *ImageURL) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*u = ImageURL{}
		return json.Unmarshal(b, &u.URL)
	}
	type plain ImageURL
	return json.Unmarshal(b, (*plain)(u))
}

// Tool is a tool the model may call. Type is "function".
type Tool struct {
	Type     string      `json:"type"`
	Function FunctionDef `json:"function"`
}

// FunctionDef declares a function tool. Parameters is its JSON Schema.
type FunctionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// Tool choice modes.
const (
	ToolChoiceAuto     = "auto"
	ToolChoiceNone     = "none"
	ToolChoiceRequired = "required"
	ToolChoiceFunction = "function" // the function named in ToolChoice.Name
)

// ToolChoice is the request's tool_choice: a mode string, or an object
// naming one function.
type ToolChoice struct {
	Mode string
	Name string // for Mode ToolChoiceFunction
}

// MarshalJSON implements json.Marshaler.
func (t ToolChoice) MarshalJSON() ([]byte, error) {
	if t.Mode == ToolChoiceFunction {
		return marshal(map[string]any{"type": "function", "function": map[string]string{"name": t.Name}})
	}
	return marshal(t.Mode)
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *ToolChoice) UnmarshalJSON(b []byte) error {
	*t = ToolChoice{}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &t.Mode)
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	if obj.Type != "function" {
		return fmt.Errorf("tool_choice type %q is not supported", obj.Type)
	}
	t.Mode, t.Name = ToolChoiceFunction, obj.Function.Name
	return nil
}

// ToolCall is a function call the assistant made. Index is set only in
// stream chunks.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall is a tool call's function and its JSON-encoded arguments.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ArgumentsJSON returns the arguments as raw JSON: "{}" when empty.
func (f FunctionCall) ArgumentsJSON() json.RawMessage {
	if strings.TrimSpace(f.Arguments) == "" {
		return json.RawMessage("{}")
	}
	return json.RawMessage(f.Arguments)
}

// ResponseFormat is the request's response_format. Type is "text",
// "json_object" or "json_schema".
type ResponseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema is a json_schema response format.
type JSONSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ChatResponse is an OpenAI chat.completion object.
type ChatResponse struct {
	ID      string     `json:"id"`
	Object  string     `json:"object"`
	Created int64      `json:"created"`
	Model   string     `json:"model"`
	Choices []Choice   `json:"choices"`
	Usage   *ChatUsage `json:"usage,omitempty"`
}

// Choice is one answer of a ChatResponse.
type Choice struct {
	Index        int             `json:"index"`
	Message      ResponseMessage `json:"message"`
	FinishReason string          `json:"finish_reason"`
}

// ResponseMessage is the assistant message of a Choice. Content is null
// when the answer is only tool calls.
type ResponseMessage struct {
	Role    string  `json:"role"`
	Content *string `json:"content"`
	// ReasoningContent carries the model's visible reasoning (Anthropic
	// thinking, Gemini thoughts), as DeepSeek and LiteLLM name it.
	ReasoningContent string `json:"reasoning_content,omitempty"`
	// Reasoning is the same text as OpenRouter and newer vLLM name it;
	// read through ReasoningText.
	Reasoning string `json:"reasoning,omitempty"`
	// Refusal is the text of a model that declined to answer (OpenAI's
	// refusal, in place of content).
	Refusal   string     `json:"refusal,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ReasoningText is the message's reasoning: reasoning_content, else
// reasoning (a server that sends both sends the same text twice).
func (m ResponseMessage) ReasoningText() string {
	if m.ReasoningContent != "" {
		return m.ReasoningContent
	}
	return m.Reasoning
}

// DecodeChatResponse reads an upstream's chat.completion body for a
// translation back to a client's API. A body that is not a chat
// completion, or one without choices, is the upstream's fault: an
// *UpstreamError (502 api_error) whose Deployment the caller fills in.
func DecodeChatResponse(body []byte) (*ChatResponse, error) {
	var resp ChatResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, &UpstreamError{Status: http.StatusBadGateway, Type: "api_error", Retryable: true,
			Message: "upstream answered with something other than a chat completion", Err: err}
	}
	if len(resp.Choices) == 0 {
		return nil, &UpstreamError{Status: http.StatusBadGateway, Type: "api_error", Retryable: true,
			Message: "upstream answered with a chat completion without choices"}
	}
	return &resp, nil
}

// DecodeChatChunk reads an upstream's chat.completion.chunk payload into
// c for a translation to a client's API. A payload that is not a JSON
// object is the upstream's fault: an *UpstreamError (502 api_error) whose
// Deployment the caller fills in.
func DecodeChatChunk(payload []byte, c *ChatChunk) error {
	p := bytes.TrimLeft(payload, " \t\r\n")
	var err error
	if len(p) == 0 || p[0] != '{' {
		err = errors.New("not a JSON object")
	} else {
		err = json.Unmarshal(payload, c)
	}
	if err != nil {
		return &UpstreamError{Status: http.StatusBadGateway, Type: "api_error", Retryable: true,
			Message: "upstream sent a stream event that is not a chat completion chunk", Err: err}
	}
	return nil
}

// ChatChunk is an OpenAI chat.completion.chunk object.
type ChatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []ChunkChoice `json:"choices"`
	Usage   *ChatUsage    `json:"usage,omitempty"`
}

// ChunkChoice is one choice of a chunk.
type ChunkChoice struct {
	Index        int     `json:"index"`
	Delta        Delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// Delta is what a chunk adds to its choice.
type Delta struct {
	Role             string     `json:"role,omitempty"`
	Content          *string    `json:"content,omitempty"`
	ReasoningContent *string    `json:"reasoning_content,omitempty"`
	Reasoning        *string    `json:"reasoning,omitempty"` // ReasoningContent as OpenRouter and newer vLLM name it
	Refusal          *string    `json:"refusal,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
}

// Finish reasons.
const (
	FinishStop          = "stop"
	FinishLength        = "length"
	FinishToolCalls     = "tool_calls"
	FinishContentFilter = "content_filter"
)

// ChatUsage is the usage object of a response or the last chunk.
type ChatUsage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
	// CacheCreationInputTokens is the part of PromptTokens written to the
	// provider's prompt cache. OpenAI has no such field; the name is
	// LiteLLM's, so clients written for LiteLLM find it.
	CacheCreationInputTokens int `json:"cache_creation_input_tokens,omitempty"`
}

// PromptTokensDetails breaks down prompt tokens.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// CompletionTokensDetails breaks down completion tokens.
type CompletionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// Chat returns u as an OpenAI usage object; completion_tokens_details
// only when the reasoning tokens are known.
func (u Usage) Chat() *ChatUsage {
	cu := &ChatUsage{
		PromptTokens:             u.PromptTokens,
		CompletionTokens:         u.CompletionTokens,
		TotalTokens:              u.Total(),
		PromptTokensDetails:      &PromptTokensDetails{CachedTokens: u.CachedTokens},
		CacheCreationInputTokens: u.CacheWriteTokens,
	}
	if u.ReasoningTokens > 0 {
		cu.CompletionTokensDetails = &CompletionTokensDetails{ReasoningTokens: u.ReasoningTokens}
	}
	return cu
}

// Normalized returns the usage as Lumen counts it.
func (u *ChatUsage) Normalized() Usage {
	if u == nil {
		return Usage{}
	}
	n := Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, CacheWriteTokens: u.CacheCreationInputTokens}
	if u.PromptTokensDetails != nil {
		n.CachedTokens = u.PromptTokensDetails.CachedTokens
	}
	if u.CompletionTokensDetails != nil {
		n.ReasoningTokens = u.CompletionTokensDetails.ReasoningTokens
	}
	return n
}

// InvalidRequestError is a request that Lumen cannot serve as asked: the
// body does not parse, a field has a value the chosen provider cannot
// express, an image cannot be fetched. The server answers it with 400 in
// the caller's API shape (OpenAI or Anthropic error JSON) and the router
// does not retry it.
type InvalidRequestError struct {
	// Param is the offending field as a path into the request body
	// ("messages[2].content[1].type"); empty when it is the whole body.
	Param string
	// Message says what is wrong and what to do, without the field path.
	Message string
	// Err is the underlying cause, if any.
	Err error
}

func (e *InvalidRequestError) Error() string {
	if e.Param == "" {
		return e.Message
	}
	return e.Param + ": " + e.Message
}

func (e *InvalidRequestError) Unwrap() error { return e.Err }

// Invalid returns an *InvalidRequestError for param.
func Invalid(param, format string, args ...any) *InvalidRequestError {
	return &InvalidRequestError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// IsInvalidRequest reports whether err is, or wraps, an
// *InvalidRequestError.
func IsInvalidRequest(err error) bool {
	var ie *InvalidRequestError
	return errors.As(err, &ie)
}

// DecodeChatRequest parses and checks an OpenAI chat request body for a
// translating provider. It rejects, as *InvalidRequestError, what no
// translation can carry: content parts other than text and image_url, tool
// call arguments that are not JSON, tool messages without tool_call_id,
// n > 1, unknown roles and response formats.
func DecodeChatRequest(body []byte) (*ChatRequest, error) {
	var req ChatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, &InvalidRequestError{Param: te.Field, Message: fmt.Sprintf("expected %s, got JSON %s", te.Type, te.Value), Err: err}
		}
		return nil, &InvalidRequestError{Message: "the body is not a valid chat completions request: " + err.Error(), Err: err}
	}
	if len(req.Messages) == 0 {
		return nil, Invalid("messages", "at least one message is required")
	}
	if req.N != nil && *req.N > 1 {
		return nil, Invalid("n", "only n=1 is supported by this provider; send %d requests instead", *req.N)
	}
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case "system", "developer", "user", "assistant":
		case "tool":
			if m.ToolCallID == "" {
				return nil, Invalid(at+".tool_call_id", "a tool message needs the id of the tool call it answers")
			}
		default:
			return nil, Invalid(at+".role", "unsupported role %q (supported: system, developer, user, assistant, tool)", m.Role)
		}
		for j, p := range m.Content.Parts {
			switch p.Type {
			case PartText, PartRefusal:
			case PartImageURL:
				if m.Role != "user" {
					return nil, Invalid(fmt.Sprintf("%s.content[%d]", at, j), "images are only supported in user messages")
				}
				if p.ImageURL == nil || p.ImageURL.URL == "" {
					return nil, Invalid(fmt.Sprintf("%s.content[%d].image_url.url", at, j), "an image_url part needs a url")
				}
			case PartFile:
				if m.Role != "user" {
					return nil, Invalid(fmt.Sprintf("%s.content[%d]", at, j), "files are only supported in user messages")
				}
				if p.File == nil || (p.File.FileData == "" && p.File.FileID == "") {
					return nil, Invalid(fmt.Sprintf("%s.content[%d].file", at, j), "a file part needs file_data (a base64 data URL) or file_id")
				}
			default:
				return nil, Invalid(fmt.Sprintf("%s.content[%d].type", at, j), "unsupported content part type %q (supported: text, image_url, file)", p.Type)
			}
		}
		for k, tc := range m.ToolCalls {
			tat := fmt.Sprintf("%s.tool_calls[%d]", at, k)
			if tc.Function.Name == "" {
				return nil, Invalid(tat+".function.name", "a tool call needs a function name")
			}
			args := tc.Function.ArgumentsJSON()
			if !json.Valid(args) {
				return nil, Invalid(tat+".function.arguments", "the arguments of tool call %q are not valid JSON", tc.ID)
			}
			if b := bytes.TrimSpace(args); b[0] != '{' {
				return nil, Invalid(tat+".function.arguments", "the arguments of tool call %q must be a JSON object", tc.ID)
			}
		}
	}
	for i, t := range req.Tools {
		if t.Type != "function" {
			return nil, Invalid(fmt.Sprintf("tools[%d].type", i), "unsupported tool type %q (supported: function)", t.Type)
		}
		if t.Function.Name == "" {
			return nil, Invalid(fmt.Sprintf("tools[%d].function.name", i), "a tool needs a name")
		}
	}
	if req.ToolChoice != nil {
		switch req.ToolChoice.Mode {
		case ToolChoiceAuto, ToolChoiceNone, ToolChoiceRequired:
		case ToolChoiceFunction:
			if req.ToolChoice.Name == "" {
				return nil, Invalid("tool_choice.function.name", "name the function to call")
			}
		default:
			return nil, Invalid("tool_choice", "unsupported tool_choice %q (supported: auto, none, required or a function)", req.ToolChoice.Mode)
		}
	}
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "text", "json_object":
		case "json_schema":
			if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 {
				return nil, Invalid("response_format.json_schema.schema", "a json_schema response format needs a schema")
			}
		default:
			return nil, Invalid("response_format.type", "unsupported response format %q (supported: text, json_object, json_schema)", rf.Type)
		}
	}
	return &req, nil
}

// ParseDataURL splits a base64 data URL ("data:image/png;base64,iVBO…")
// into its media type and base64 payload. ok is false for anything else.
func ParseDataURL(s string) (mediaType, data string, ok bool) {
	rest, found := strings.CutPrefix(s, "data:")
	if !found {
		return "", "", false
	}
	meta, data, found := strings.Cut(rest, ",")
	if !found {
		return "", "", false
	}
	mediaType, enc, _ := strings.Cut(meta, ";")
	if !strings.EqualFold(enc, "base64") {
		return "", "", false
	}
	return strings.ToLower(mediaType), data, true
}

// marshal encodes v as JSON without escaping <, > and &, as the providers
// themselves send text. MarshalJSON methods must use it too: the encoder
// does not undo an inner json.Marshal's escaping.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// MarshalJSON encodes v like json.Marshal but leaves <, > and & as they
// are, as the providers send text.
func MarshalJSON(v any) ([]byte, error) { return marshal(v) }

func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

func isNull(b []byte) bool { return len(b) == 0 || string(b) == "null" }

// ChunkBuilder writes the OpenAI chunks of one translated stream. All
// chunks share ID, Model and Created, as OpenAI's do. The returned slices
// are fresh and owned by the caller.
type ChunkBuilder struct {
	ID      string
	Model   string
	Created int64
}

func (b *ChunkBuilder) chunk(d Delta, finish *string) []byte {
	out, err := marshal(ChatChunk{ID: b.ID, Object: "chat.completion.chunk", Created: b.Created, Model: b.Model,
		Choices: []ChunkChoice{{Delta: d, FinishReason: finish}}})
	if err != nil {
		panic(fmt.Sprintf("providers: marshaling a chunk: %v", err)) // only plain types: cannot fail
	}
	return out
}

// Role is the first chunk: the assistant role and empty content, as
// OpenAI starts every stream.
func (b *ChunkBuilder) Role() []byte {
	empty := ""
	return b.chunk(Delta{Role: "assistant", Content: &empty}, nil)
}

// Content is a chunk adding text.
func (b *ChunkBuilder) Content(text string) []byte { return b.chunk(Delta{Content: &text}, nil) }

// Reasoning is a chunk adding reasoning text (reasoning_content).
func (b *ChunkBuilder) Reasoning(text string) []byte {
	return b.chunk(Delta{ReasoningContent: &text}, nil)
}

// ToolCallStart is the first chunk of tool call number index: its id,
// function name and the first arguments (often empty).
func (b *ChunkBuilder) ToolCallStart(index int, id, name, args string) []byte {
	return b.chunk(Delta{ToolCalls: []ToolCall{{Index: &index, ID: id, Type: "function",
		Function: FunctionCall{Name: name, Arguments: args}}}}, nil)
}

// ToolCallArgs is a chunk adding arguments to tool call number index.
func (b *ChunkBuilder) ToolCallArgs(index int, args string) []byte {
	return b.chunk(Delta{ToolCalls: []ToolCall{{Index: &index, Function: FunctionCall{Arguments: args}}}}, nil)
}

// Finish is the chunk with the finish reason and an empty delta.
func (b *ChunkBuilder) Finish(reason string) []byte { return b.chunk(Delta{}, &reason) }

// Usage is the last chunk: no choices, the usage of the whole answer, as
// OpenAI sends it with stream_options.include_usage.
func (b *ChunkBuilder) Usage(u Usage) []byte {
	out, err := marshal(ChatChunk{ID: b.ID, Object: "chat.completion.chunk", Created: b.Created, Model: b.Model,
		Choices: []ChunkChoice{}, Usage: u.Chat()})
	if err != nil {
		panic(fmt.Sprintf("providers: marshaling a chunk: %v", err))
	}
	return out
}

// ImageFetcher downloads the http(s) images of image_url parts for
// providers that only take inline bytes (Gemini, Bedrock). It is safe for
// concurrent use.
type ImageFetcher struct {
	// Client does the download; nil means a client that refuses to connect
	// to an address that is not public (loopback, private, CGNAT,
	// link-local, an IPv6 form of one of those: see publicAddr), so that a
	// request cannot make Lumen read its own network (cloud metadata, admin
	// ports). It checks the address it is about to connect to, after DNS
	// and on every redirect: a name resolving to 127.0.0.1, or a public
	// server redirecting there, is refused as well.
	Client *http.Client
	// MaxBytes bounds one image; zero means 20 MiB.
	MaxBytes int64
	// MaxTotalBytes bounds the images one Batch fetches together, those
	// of one request, so that a request listing many large images cannot
	// hold them all in memory; zero means 32 MiB. Data URLs do not count:
	// they are in the request body, which general_settings.
	// max_request_size_mb bounds.
	MaxTotalBytes int64
}

// Default bounds of an ImageFetcher.
const (
	defaultMaxImageBytes      = 20 << 20
	defaultMaxImageTotalBytes = 32 << 20
)

// errImageTooLarge is fetch's error for an image over its limit.
var errImageTooLarge = errors.New("image too large")

// DefaultImageFetcher is the fetcher providers use unless told otherwise.
var DefaultImageFetcher = &ImageFetcher{}

var publicOnlyClient = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		Proxy: nil, // a proxy would hide the address the guard checks
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("checking image address %q: %w", address, err)
			}
			if a := ap.Addr(); !publicAddr(a) {
				return fmt.Errorf("image host %s is not a public address", a.Unmap())
			}
			return nil
		}}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	},
}

// Image is image data ready for a provider: its media type and the bytes
// in standard base64.
type Image struct {
	MediaType string
	Base64    string
}

// ImageBatch loads the images of one request: together, those it fetches
// may come to MaxTotalBytes. Make one with ImageFetcher.Batch per request
// translated; it is not safe for concurrent use.
type ImageBatch struct {
	f    *ImageFetcher
	left int64 // bytes the batch may still fetch
}

// Batch returns an ImageBatch for the images of one request. A nil f is
// DefaultImageFetcher.
func (f *ImageFetcher) Batch() *ImageBatch {
	if f == nil {
		f = DefaultImageFetcher
	}
	return &ImageBatch{f: f, left: f.totalBytes()}
}

// Load returns one image, as ImageBatch.Load does in a batch of its own.
func (f *ImageFetcher) Load(ctx context.Context, param, rawURL string) (Image, error) {
	return f.Batch().Load(ctx, param, rawURL)
}

// Load returns the image an image_url part points at: a base64 data URL
// is split without decoding; an http(s) URL is downloaded (within ctx).
// param names the part in errors, which are *InvalidRequestError: the URL
// is the caller's, so a failure is the caller's to fix. An image that
// would take the batch past its total is such an error, found having read
// no more than the bytes left.
//
// When ctx carries an image memo (WithImageMemo), an image this fetcher
// fetched for an earlier attempt at the same request is taken from it
// instead of downloaded again, and a fresh download is kept there. A
// memoized image counts against the batch's total as a download would.
func (b *ImageBatch) Load(ctx context.Context, param, rawURL string) (Image, error) {
	if mt, data, ok := ParseDataURL(rawURL); ok {
		if !strings.HasPrefix(mt, "image/") {
			return Image{}, Invalid(param, "the data URL holds %q, not an image", mt)
		}
		return Image{MediaType: mt, Base64: data}, nil
	}
	if !strings.HasPrefix(rawURL, "http://") && !strings.HasPrefix(rawURL, "https://") {
		return Image{}, Invalid(param, "an image URL must be http(s) or a base64 data URL")
	}
	limit := b.f.MaxBytes
	if limit <= 0 {
		limit = defaultMaxImageBytes
	}
	total := limit > b.left
	if total {
		limit = b.left
	}
	memo := imageMemoFrom(ctx)
	if memo != nil {
		if e, ok := memo.get(b.f, rawURL); ok {
			// Counted as if fetched again, so that the limits hold for
			// each attempt as they would without the memo.
			if e.size > limit {
				return Image{}, b.loadError(ctx, param, rawURL, limit, total, errImageTooLarge)
			}
			b.left -= e.size
			return e.img, nil
		}
	}
	mt, data, err := b.f.fetch(ctx, rawURL, limit)
	if err != nil {
		return Image{}, b.loadError(ctx, param, rawURL, limit, total, err)
	}
	b.left -= int64(len(data))
	img := Image{MediaType: mt, Base64: base64.StdEncoding.EncodeToString(data)}
	if memo != nil {
		memo.put(b.f, rawURL, memoImage{img: img, size: int64(len(data))})
	}
	return img, nil
}

// loadError is Load's error for fetch's err on rawURL, fetched with limit
// bytes left for it; total says the limit was the batch's total.
func (b *ImageBatch) loadError(ctx context.Context, param, rawURL string, limit int64, total bool, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("fetching image: %w", ctx.Err())
	case errors.Is(err, errImageTooLarge) && total:
		return &InvalidRequestError{Param: param, Err: err, Message: fmt.Sprintf(
			"cannot fetch the image at %s: the http(s) images of this request come to more than %d bytes (%d MiB), the most Lumen fetches for one request; send fewer or smaller images",
			rawURL, b.f.totalBytes(), b.f.totalBytes()>>20)}
	case errors.Is(err, errImageTooLarge):
		return &InvalidRequestError{Param: param, Err: err, Message: fmt.Sprintf(
			"cannot fetch the image at %s: the image is larger than %d bytes; send it as a base64 data URL instead", rawURL, limit)}
	default:
		return &InvalidRequestError{Param: param, Message: fmt.Sprintf("cannot fetch the image at %s: %v; send it as a base64 data URL instead", rawURL, err), Err: err}
	}
}

func (f *ImageFetcher) totalBytes() int64 {
	if f.MaxTotalBytes <= 0 {
		return defaultMaxImageTotalBytes
	}
	return f.MaxTotalBytes
}

// fetch downloads rawURL, an image of at most limit bytes: it reads no
// more than limit+1 bytes, and none when the server announces more.
func (f *ImageFetcher) fetch(ctx context.Context, rawURL string, limit int64) (string, []byte, error) {
	client := f.Client
	if client == nil {
		client = publicOnlyClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Accept", "image/*")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the caller's message already
		}
		return "", nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("the server answered %s", resp.Status)
	}
	if resp.ContentLength > limit {
		return "", nil, errImageTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return "", nil, fmt.Errorf("reading: %w", err)
	}
	if int64(len(data)) > limit {
		return "", nil, errImageTooLarge
	}
	mt := mediaType(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "image/") {
		mt = mediaType(http.DetectContentType(data))
	}
	if !strings.HasPrefix(mt, "image/") {
		return "", nil, fmt.Errorf("the server sent %q, not an image", mt)
	}
	return mt, data, nil
}

// CachePoint selects messages to mark for the prompt cache: every message
// of Role, or the message at Index (negative counts from the end).
type CachePoint struct {
	Role  string
	Index *int
}

// maxCacheMarks is how many cache_control marks Anthropic takes in one
// request.
const maxCacheMarks = 4

// ephemeral is the mark InjectCacheControl sets.
var ephemeral = json.RawMessage(`{"type":"ephemeral"}`)

// InjectCacheControl marks the messages points select with an ephemeral
// cache_control, for providers whose prompt cache needs marks (LiteLLM's
// cache_control_injection_points). A request that carries marks of its
// own is left as it is. At most four messages are marked, Anthropic's
// limit: the first selected (usually the system prompt, the longest-lived
// prefix) and the last three.
func InjectCacheControl(req *ChatRequest, points []CachePoint) {
	if len(points) == 0 || len(req.Messages) == 0 {
		return
	}
	for _, m := range req.Messages {
		if len(m.CacheControl) > 0 {
			return
		}
		for _, p := range m.Content.Parts {
			if len(p.CacheControl) > 0 {
				return
			}
		}
	}
	marked := make([]bool, len(req.Messages))
	for _, p := range points {
		switch {
		case p.Index != nil:
			i := *p.Index
			if i < 0 {
				i += len(req.Messages)
			}
			if i >= 0 && i < len(req.Messages) {
				marked[i] = true
			}
		case p.Role != "":
			for i, m := range req.Messages {
				if m.Role == p.Role || p.Role == "system" && m.Role == "developer" {
					marked[i] = true
				}
			}
		}
	}
	var idx []int
	for i, ok := range marked {
		if ok {
			idx = append(idx, i)
		}
	}
	if len(idx) > maxCacheMarks {
		idx = append(idx[:1], idx[len(idx)-(maxCacheMarks-1):]...)
	}
	for _, i := range idx {
		req.Messages[i].CacheControl = ephemeral
	}
}
