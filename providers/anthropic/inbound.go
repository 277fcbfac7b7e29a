package anthropic

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tokens"
)

// Inbound translation serves Anthropic clients from any provider. An
// Anthropic request becomes an OpenAI chat request (ToOpenAI); the OpenAI
// answer becomes a Message (FromOpenAI) or, streamed, the Messages API
// event sequence (StreamTranslator).
//
// An OpenAI refusal (the model declined) is a text block with stop_reason
// "refusal". System messages inside messages stay where they are, as
// OpenAI system messages; a structured output format (output_config.format) becomes
// response_format json_schema.
//
// What an OpenAI-form upstream cannot carry is dropped: top_k, thinking
// (and thinking blocks in history), output_config.effort,
// context_management, cache_control (OpenAI-form upstreams cache on their
// own), is_error on tool results (the content is kept), service_tier.
// OpenAI-form upstreams have no deferred tool loading, so tools marked
// defer_loading are offered from the start, and a tool_reference in a tool
// result (client-side tool search) becomes a line naming the tool.
// Requests that depend on what cannot be carried are refused with an
// *providers.InvalidRequestError: server tools (web_search, bash,
// text_editor, computer …), document and search_result blocks.

// ToOpenAI translates a Messages API request body into an OpenAI chat
// completions body for the same model name. max_tokens is required, as the
// Messages API requires it; errors are *providers.InvalidRequestError with
// the Anthropic field path.
func ToOpenAI(anthropicBody []byte) ([]byte, error) {
	chat, err := toChat(anthropicBody, true)
	if err != nil {
		return nil, err
	}
	out, err := providers.MarshalJSON(chat)
	if err != nil {
		return nil, fmt.Errorf("encoding the chat request: %w", err)
	}
	return out, nil
}

func toChat(body []byte, requireMaxTokens bool) (*providers.ChatRequest, error) {
	var req messagesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, &providers.InvalidRequestError{Param: te.Field, Message: fmt.Sprintf("expected %s, got JSON %s", te.Type, te.Value), Err: err}
		}
		return nil, &providers.InvalidRequestError{Message: "the body is not a valid Messages API request: " + err.Error(), Err: err}
	}
	switch {
	case req.Model == "":
		return nil, providers.Invalid("model", "Field required")
	case requireMaxTokens && req.MaxTokens == nil:
		return nil, providers.Invalid("max_tokens", "Field required")
	case len(req.Messages) == 0:
		return nil, providers.Invalid("messages", "at least one message is required")
	}
	chat := &providers.ChatRequest{Model: req.Model, MaxTokens: req.MaxTokens, Temperature: req.Temperature, TopP: req.TopP,
		Stop: req.StopSequences, Stream: req.Stream}
	if req.Stream {
		chat.StreamOptions = &providers.StreamOptions{IncludeUsage: true}
	}
	if req.Metadata != nil {
		chat.User = providers.UpstreamUser(req.Metadata.UserID)
	}
	if sys := systemMessage(req.System); sys != nil {
		chat.Messages = append(chat.Messages, *sys)
	}
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		var msgs []providers.Message
		var err error
		switch m.Role {
		case "user":
			msgs, err = userMessages(m.Content, at)
		case "assistant":
			msgs, err = assistantMessage(m.Content, at)
		case "system":
			msgs, err = systemTurn(m.Content, at)
		default:
			return nil, providers.Invalid(at+".role", "unsupported role %q (supported: user, assistant, system)", m.Role)
		}
		if err != nil {
			return nil, err
		}
		chat.Messages = append(chat.Messages, msgs...)
	}
	if err := responseFormat(chat, req); err != nil {
		return nil, err
	}
	for i, t := range req.Tools {
		if t.Type != "" && t.Type != "custom" {
			return nil, providers.Invalid(fmt.Sprintf("tools[%d].type", i), "the server tool %q is only available when this model group is served by Anthropic", t.Type)
		}
		chat.Tools = append(chat.Tools, providers.Tool{Type: "function", Function: providers.FunctionDef{
			Name: t.Name, Description: t.Description, Parameters: t.InputSchema}})
	}
	if tc := req.ToolChoice; tc != nil && len(chat.Tools) > 0 {
		switch tc.Type {
		case "auto":
			chat.ToolChoice = &providers.ToolChoice{Mode: providers.ToolChoiceAuto}
		case "any":
			chat.ToolChoice = &providers.ToolChoice{Mode: providers.ToolChoiceRequired}
		case "none":
			chat.ToolChoice = &providers.ToolChoice{Mode: providers.ToolChoiceNone}
		case "tool":
			chat.ToolChoice = &providers.ToolChoice{Mode: providers.ToolChoiceFunction, Name: tc.Name}
		default:
			return nil, providers.Invalid("tool_choice.type", "unsupported tool_choice type %q (supported: auto, any, tool, none)", tc.Type)
		}
		if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse {
			no := false
			chat.ParallelToolCalls = &no
		}
	}
	return chat, nil
}

func systemMessage(s systemPrompt) *providers.Message {
	if s.Blocks == nil {
		if s.Text == "" {
			return nil
		}
		return &providers.Message{Role: "system", Content: providers.TextContent(s.Text)}
	}
	var texts []string
	for _, b := range s.Blocks {
		if b.Type == "text" && b.Text != "" {
			texts = append(texts, b.Text)
		}
	}
	switch len(texts) {
	case 0:
		return nil
	case 1:
		return &providers.Message{Role: "system", Content: providers.TextContent(texts[0])}
	}
	parts := make([]providers.Part, len(texts))
	for i, t := range texts {
		parts[i] = providers.Part{Type: providers.PartText, Text: t}
	}
	return &providers.Message{Role: "system", Content: providers.Content{Parts: parts}}
}

// systemTurn translates a system message inside messages (an instruction
// from that point of the conversation on) into an OpenAI system message
// at the same place. It carries text only.
func systemTurn(bs blocks, at string) ([]providers.Message, error) {
	var texts []string
	for j, b := range bs {
		if b.Type != "text" {
			return nil, providers.Invalid(fmt.Sprintf("%s.content[%d].type", at, j), "unsupported content block %q in a system message (supported: text)", b.Type)
		}
		if b.Text != "" {
			texts = append(texts, b.Text)
		}
	}
	if len(texts) == 0 {
		return nil, nil
	}
	return []providers.Message{{Role: "system", Content: providers.TextContent(strings.Join(texts, "\n\n"))}}, nil
}

// responseFormat carries a structured output format (output_config.format,
// or the beta's top-level output_format) as response_format json_schema.
func responseFormat(chat *providers.ChatRequest, req messagesRequest) error {
	f, at := req.OutputFormat, "output_format"
	if req.OutputConfig != nil && req.OutputConfig.Format != nil {
		f, at = req.OutputConfig.Format, "output_config.format"
	}
	if f == nil {
		return nil
	}
	if f.Type != "json_schema" {
		return providers.Invalid(at+".type", "unsupported output format %q (supported: json_schema)", f.Type)
	}
	if !isObject(f.Schema) {
		return providers.Invalid(at+".schema", "a json_schema output format needs a JSON object schema")
	}
	strict := true
	chat.ResponseFormat = &providers.ResponseFormat{Type: "json_schema",
		JSONSchema: &providers.JSONSchema{Name: "output", Schema: f.Schema, Strict: &strict}}
	return nil
}

// userMessages translates a user turn: its tool_result blocks become tool
// messages, first, as OpenAI wants them right after the assistant's
// calls; its text, images and documents become one user message after
// them.
func userMessages(bs blocks, at string) ([]providers.Message, error) {
	var out []providers.Message
	var parts []providers.Part
	for j, b := range bs {
		bat := fmt.Sprintf("%s.content[%d]", at, j)
		switch b.Type {
		case "text":
			parts = append(parts, providers.Part{Type: providers.PartText, Text: b.Text})
		case "image", "document":
			p, err := mediaPart(b, bat)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		case "tool_result":
			var text []string
			if b.Content != nil {
				if b.Content.Blocks == nil {
					text = append(text, b.Content.Text)
				}
				for k, cb := range b.Content.Blocks {
					switch cb.Type {
					case "text":
						text = append(text, cb.Text)
					case "tool_reference":
						// Client-side tool search: the named tool is
						// callable from now on. An OpenAI-form upstream
						// was offered every tool, deferred ones too.
						text = append(text, "Tool loaded: "+cb.ToolName)
					case "image", "document":
						// OpenAI tool messages carry text only: the image
						// or document follows in the user message.
						p, err := mediaPart(cb, fmt.Sprintf("%s.content[%d]", bat, k))
						if err != nil {
							return nil, err
						}
						parts = append(parts, p)
					default:
						return nil, providers.Invalid(fmt.Sprintf("%s.content[%d].type", bat, k), "unsupported tool_result content block %q (supported: text, image, document, tool_reference)", cb.Type)
					}
				}
			}
			out = append(out, providers.Message{Role: "tool", ToolCallID: b.ToolUseID, Content: providers.TextContent(strings.Join(text, "\n"))})
		default:
			return nil, providers.Invalid(bat+".type", "unsupported content block %q in a user message for a non-Anthropic upstream (supported: text, image, document, tool_result)", b.Type)
		}
	}
	switch {
	case len(parts) == 1 && parts[0].Type == providers.PartText:
		out = append(out, providers.Message{Role: "user", Content: providers.TextContent(parts[0].Text)})
	case len(parts) > 0:
		out = append(out, providers.Message{Role: "user", Content: providers.Content{Parts: parts}})
	}
	return out, nil
}

func imagePart(src *source, at string) (providers.Part, error) {
	if src == nil {
		return providers.Part{}, providers.Invalid(at+".source", "an image block needs a source")
	}
	var url string
	switch src.Type {
	case "base64":
		url = "data:" + src.MediaType + ";base64," + src.Data
	case "url":
		url = src.URL
	default:
		return providers.Part{}, providers.Invalid(at+".source.type", "unsupported image source %q (supported: base64, url)", src.Type)
	}
	return providers.Part{Type: providers.PartImageURL, ImageURL: &providers.ImageURL{URL: url}}, nil
}

// mediaPart translates an image or document block.
func mediaPart(b block, at string) (providers.Part, error) {
	if b.Type == "document" {
		return documentPart(b, at)
	}
	return imagePart(b.Source, at)
}

// documentPart translates a document block: a base64 PDF becomes a file
// part (OpenAI's chat completions read PDFs), plain text a text part under
// its title. A URL or an Anthropic file id cannot reach another provider.
func documentPart(b block, at string) (providers.Part, error) {
	src := b.Source
	if src == nil {
		return providers.Part{}, providers.Invalid(at+".source", "a document block needs a source")
	}
	switch {
	case src.Type == "base64" && src.MediaType == "application/pdf":
		// OpenAI wants a file name with file_data; the title, as a PDF's.
		name := b.Title
		if !strings.HasSuffix(strings.ToLower(name), ".pdf") {
			name = strings.TrimSpace(name + ".pdf")
			if name == ".pdf" {
				name = "document.pdf"
			}
		}
		return providers.Part{Type: providers.PartFile, File: &providers.File{Filename: name, FileData: "data:application/pdf;base64," + src.Data}}, nil
	case src.Type == "text":
		text := src.Data
		if b.Title != "" {
			text = b.Title + "\n\n" + text
		}
		return providers.Part{Type: providers.PartText, Text: text}, nil
	}
	return providers.Part{}, providers.Invalid(at+".source", "a document for a non-Anthropic upstream must be a base64 PDF or text, not a %s source of %q", src.Type, src.MediaType)
}

func assistantMessage(bs blocks, at string) ([]providers.Message, error) {
	msg := providers.Message{Role: "assistant"}
	var text strings.Builder
	for j, b := range bs {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			if !isObject(b.Input) {
				return nil, providers.Invalid(fmt.Sprintf("%s.content[%d].input", at, j), "a tool_use input must be a JSON object")
			}
			msg.ToolCalls = append(msg.ToolCalls, providers.ToolCall{ID: b.ID, Type: "function",
				Function: providers.FunctionCall{Name: b.Name, Arguments: compactJSON(b.Input)}})
		case "thinking", "redacted_thinking":
			// Only Anthropic can read its thinking back.
		default:
			return nil, providers.Invalid(fmt.Sprintf("%s.content[%d].type", at, j), "unsupported content block %q in an assistant message for a non-Anthropic upstream (supported: text, tool_use, thinking)", b.Type)
		}
	}
	msg.Content = providers.TextContent(text.String())
	if msg.Content.IsZero() && len(msg.ToolCalls) == 0 {
		return nil, nil
	}
	return []providers.Message{msg}, nil
}

// FromOpenAI translates an OpenAI chat.completion body into a Messages API
// Message that names model.
func FromOpenAI(openaiResponse []byte, model string) ([]byte, error) {
	resp, err := providers.DecodeChatResponse(openaiResponse)
	if err != nil {
		return nil, err
	}
	ch := resp.Choices[0]
	m := messageResponse{ID: messageID(resp.ID), Type: "message", Role: "assistant", Model: model, Content: []block{}}
	if r := ch.Message.ReasoningText(); r != "" {
		m.Content = append(m.Content, block{Type: "thinking", Thinking: r})
	}
	if c := ch.Message.Content; c != nil && *c != "" {
		m.Content = append(m.Content, block{Type: "text", Text: *c})
	}
	// A refusal is the model's words to the user: a text block, as
	// Anthropic's own refusals keep what was said before stop_reason
	// "refusal".
	if r := ch.Message.Refusal; r != "" {
		m.Content = append(m.Content, block{Type: "text", Text: r})
	}
	for _, tc := range ch.Message.ToolCalls {
		input := tc.Function.ArgumentsJSON()
		if !json.Valid(input) || !isObject(input) {
			return nil, &providers.UpstreamError{Status: http.StatusBadGateway, Type: "api_error", Retryable: true,
				Message: fmt.Sprintf("the model called %s with arguments that are not a JSON object", tc.Function.Name)}
		}
		id := tc.ID
		if id == "" {
			id = newToolID()
		}
		m.Content = append(m.Content, block{Type: "tool_use", ID: id, Name: tc.Function.Name, Input: json.RawMessage(compactJSON(input))})
	}
	stop := refusalStop(stopReason(ch.FinishReason), ch.Message.Refusal != "")
	m.StopReason = &stop
	m.Usage = fromUsage(resp.Usage.Normalized())
	return providers.MarshalJSON(&m)
}

// stopReason maps OpenAI's finish_reason to a stop_reason.
func stopReason(finish string) string {
	switch finish {
	case providers.FinishLength:
		return "max_tokens"
	case providers.FinishToolCalls, "function_call":
		return "tool_use"
	case providers.FinishContentFilter:
		return "refusal"
	default:
		return "end_turn"
	}
}

// refusalStop is the stop_reason of an answer that refused (OpenAI
// finishes a refusal with "stop"): "refusal", unless something more
// telling than end_turn stopped it.
func refusalStop(stop string, refused bool) string {
	if refused && stop == "end_turn" {
		return "refusal"
	}
	return stop
}

// fromUsage splits Lumen's usage the Anthropic way.
func fromUsage(u providers.Usage) usage {
	return usage{
		InputTokens:              max(0, u.PromptTokens-u.CachedTokens-u.CacheWriteTokens),
		CacheCreationInputTokens: u.CacheWriteTokens,
		CacheReadInputTokens:     u.CachedTokens,
		OutputTokens:             u.CompletionTokens,
	}
}

// messageID gives an OpenAI completion id the msg_ prefix Anthropic
// clients expect.
func messageID(id string) string {
	switch {
	case id == "":
		return "msg_" + randomHex(12)
	case strings.HasPrefix(id, "msg_"):
		return id
	}
	return "msg_" + strings.TrimPrefix(id, "chatcmpl-")
}

func newToolID() string { return "toolu_" + randomHex(12) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CountTokens estimates the input tokens of a Messages API request, for
// POST /v1/messages/count_tokens (answer {"input_tokens": n}). It counts
// like tokens.Prompt over the request's OpenAI form: system, messages,
// tool calls and results, tool definitions, images at a flat rate.
// max_tokens is not required, as the endpoint does not require it.
func CountTokens(body []byte) (int, error) {
	chat, err := toChat(body, false)
	if err != nil {
		return 0, err
	}
	out, err := providers.MarshalJSON(chat)
	if err != nil {
		return 0, fmt.Errorf("encoding the chat request: %w", err)
	}
	return tokens.Prompt(out), nil
}

// ErrorType is the Anthropic error type for an HTTP status.
func ErrorType(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return "invalid_request_error"
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden, status == http.StatusPaymentRequired:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == 529 || status == http.StatusServiceUnavailable:
		return "overloaded_error"
	case status == http.StatusGatewayTimeout:
		return "timeout_error"
	case status >= 500:
		return "api_error"
	default:
		return "invalid_request_error"
	}
}

// ErrorJSON is the Anthropic error body for status and message:
// {"type":"error","error":{"type":…,"message":…}}. The same JSON is the
// data of a stream's error event (ErrorEvent).
func ErrorJSON(status int, message string) []byte {
	out, _ := providers.MarshalJSON(errorBody{Type: "error", Error: errorDetail{Type: ErrorType(status), Message: message}})
	return out
}

// ErrorEvent is the event that ends an Anthropic stream that broke.
func ErrorEvent(status int, message string) Event {
	return Event{Type: "error", Data: ErrorJSON(status, message)}
}

// ParseUsage reads the usage of a Messages API answer, as a native
// pass-through sees it.
func ParseUsage(body []byte) providers.Usage {
	var u UsageCounter
	u.add(gjson.GetBytes(body, "usage"))
	return u.Usage()
}

// UsageCounter reads usage from native Messages API stream events as they
// pass (message_start, then message_delta's cumulative counts). The zero
// value is ready; it is not safe for concurrent use.
type UsageCounter struct {
	u usage
}

// Event takes one event's data.
func (c *UsageCounter) Event(data []byte) {
	switch gjson.GetBytes(data, "type").Str {
	case "message_start":
		c.add(gjson.GetBytes(data, "message.usage"))
	case "message_delta":
		c.add(gjson.GetBytes(data, "usage"))
	}
}

func (c *UsageCounter) add(u gjson.Result) {
	for _, f := range []struct {
		name string
		dst  *int
	}{
		{"input_tokens", &c.u.InputTokens},
		{"cache_creation_input_tokens", &c.u.CacheCreationInputTokens},
		{"cache_read_input_tokens", &c.u.CacheReadInputTokens},
		{"output_tokens", &c.u.OutputTokens},
	} {
		if v := u.Get(f.name); v.Exists() {
			*f.dst = int(v.Int())
		}
	}
}

// Usage returns the usage so far, normalized.
func (c *UsageCounter) Usage() providers.Usage { return c.u.normalize() }
