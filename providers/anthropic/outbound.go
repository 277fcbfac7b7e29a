package anthropic

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lumengw/lumen/providers"
)

// DefaultMaxTokens is the max_tokens Lumen sends when an OpenAI request
// sets neither max_completion_tokens nor max_tokens: the Messages API
// requires one, and 4096 is within every Claude model's output limit.
const DefaultMaxTokens = 4096

// responseTool is the tool Lumen adds to carry a response_format: the
// model is made to call it, and its input becomes the answer's text.
const responseTool = "json_response"

// imageTypes are the media types Claude accepts for images.
var imageTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

// translation is an OpenAI request turned into a Messages API request,
// with what the answer's translation needs to know.
type translation struct {
	body messagesRequest
	// jsonTool is set when response_format became the responseTool.
	jsonTool bool
}

// fromChat translates an OpenAI chat request into a Messages API request
// for model.
func fromChat(req *providers.ChatRequest, model string, stream bool) (*translation, error) {
	tr := &translation{body: messagesRequest{Model: model, Stream: stream, Temperature: req.Temperature, TopP: req.TopP}}
	out := &tr.body
	var system []block
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		var bs []block
		role := "user"
		switch m.Role {
		case "system", "developer":
			system = append(system, withCache(textBlocks(m.Content), m.CacheControl)...)
			continue
		case "user":
			var err error
			if bs, err = userBlocks(m.Content, at); err != nil {
				return nil, err
			}
		case "assistant":
			role = "assistant"
			bs = textBlocks(m.Content)
			for _, tc := range m.ToolCalls {
				bs = append(bs, block{Type: "tool_use", ID: providers.ClaudeToolID(tc.ID), Name: tc.Function.Name, Input: tc.Function.ArgumentsJSON()})
			}
		case "tool":
			bs = []block{{Type: "tool_result", ToolUseID: providers.ClaudeToolID(m.ToolCallID), Content: &toolResultBody{Text: m.Content.String()}}}
		}
		if len(bs) == 0 {
			continue // the API rejects empty turns; merging closes the gap
		}
		bs = withCache(bs, m.CacheControl)
		if n := len(out.Messages); n > 0 && out.Messages[n-1].Role == role {
			out.Messages[n-1].Content = append(out.Messages[n-1].Content, bs...)
		} else {
			out.Messages = append(out.Messages, message{Role: role, Content: bs})
		}
	}
	if len(system) == 1 && system[0].CacheControl == nil {
		out.System.Text = system[0].Text
	} else if len(system) > 0 {
		out.System.Blocks = system
	}

	maxTokens := req.OutputLimit()
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	out.MaxTokens = &maxTokens
	out.StopSequences = req.Stop
	if req.User != "" {
		out.Metadata = &metadata{UserID: req.User}
	}

	for _, t := range req.Tools {
		schema := t.Function.Parameters
		if len(schema) == 0 || string(schema) == "null" {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, tool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	if tc := req.ToolChoice; tc != nil {
		switch tc.Mode {
		case providers.ToolChoiceAuto:
			out.ToolChoice = &toolChoice{Type: "auto"}
		case providers.ToolChoiceNone:
			out.ToolChoice = &toolChoice{Type: "none"}
		case providers.ToolChoiceRequired:
			out.ToolChoice = &toolChoice{Type: "any"}
		case providers.ToolChoiceFunction:
			out.ToolChoice = &toolChoice{Type: "tool", Name: tc.Name}
		}
	}
	if req.ParallelToolCalls != nil && !*req.ParallelToolCalls && len(out.Tools) > 0 {
		if out.ToolChoice == nil {
			out.ToolChoice = &toolChoice{Type: "auto"}
		}
		if out.ToolChoice.Type != "none" {
			disable := true
			out.ToolChoice.DisableParallelToolUse = &disable
		}
	}
	if err := tr.responseFormat(req.ResponseFormat); err != nil {
		return nil, err
	}
	if err := tr.reasoning(req, model); err != nil {
		return nil, err
	}
	return tr, nil
}

// responseFormat carries a json_object or json_schema response format the
// way Anthropic documents for JSON output with tools: a tool whose
// input_schema is the schema, which the model must call. With other tools
// present the model must call one of them or this one.
func (tr *translation) responseFormat(rf *providers.ResponseFormat) error {
	if rf == nil || rf.Type == "text" {
		return nil
	}
	out := &tr.body
	for i, t := range out.Tools {
		if t.Name == responseTool {
			return providers.Invalid(fmt.Sprintf("tools[%d].function.name", i), "the tool name %q is reserved for response_format on Anthropic models; rename the tool", responseTool)
		}
	}
	schema := json.RawMessage(`{"type":"object"}`)
	desc := "Answer with a JSON object. Call this tool exactly once with the whole answer as its input."
	if rf.Type == "json_schema" {
		if !isObject(rf.JSONSchema.Schema) {
			return providers.Invalid("response_format.json_schema.schema", "Anthropic models take a JSON object schema")
		}
		schema = rf.JSONSchema.Schema
		desc = "Answer with JSON that matches this schema. Call this tool exactly once with the whole answer as its input."
		if d := rf.JSONSchema.Description; d != "" {
			desc += " " + d
		}
	}
	tr.jsonTool = true
	out.Tools = append(out.Tools, tool{Name: responseTool, Description: desc, InputSchema: schema})
	switch {
	case len(out.Tools) == 1 || out.ToolChoice != nil && out.ToolChoice.Type == "none":
		// The caller's tools stay declared (history may use them) but
		// none of them may be called.
		out.ToolChoice = &toolChoice{Type: "tool", Name: responseTool}
	case out.ToolChoice == nil || out.ToolChoice.Type == "auto":
		if out.ToolChoice == nil {
			out.ToolChoice = &toolChoice{}
		}
		out.ToolChoice.Type = "any"
	}
	return nil
}

// textBlocks returns the text of a content as text blocks, one per part,
// empty text dropped (the API rejects empty text blocks).
func textBlocks(c providers.Content) []block {
	if c.Parts == nil {
		if c.Text == "" {
			return nil
		}
		return []block{{Type: "text", Text: c.Text}}
	}
	var out []block
	for _, p := range c.Parts {
		if (p.Type == providers.PartText || p.Type == providers.PartRefusal) && p.Text != "" {
			out = append(out, block{Type: "text", Text: p.Text, CacheControl: p.CacheControl})
		}
	}
	return out
}

// userBlocks translates a user message's content: text, images as base64
// (data URL) or url (http) sources, and PDF or plain-text files as
// document blocks. Any other part is refused, not dropped.
func userBlocks(c providers.Content, at string) ([]block, error) {
	if c.Parts == nil {
		return textBlocks(c), nil
	}
	var out []block
	for j, p := range c.Parts {
		switch p.Type {
		case providers.PartText, providers.PartRefusal:
			if p.Text != "" {
				out = append(out, block{Type: "text", Text: p.Text, CacheControl: p.CacheControl})
			}
		case providers.PartImageURL:
			param := fmt.Sprintf("%s.content[%d].image_url.url", at, j)
			src, err := imageSource(p.ImageURL.URL, param)
			if err != nil {
				return nil, err
			}
			out = append(out, block{Type: "image", Source: src, CacheControl: p.CacheControl})
		case providers.PartFile:
			src, ok := documentSource(p.File)
			if !ok {
				return nil, providers.UnsupportedPart(fmt.Sprintf("%s.content[%d]", at, j), p, "Anthropic")
			}
			out = append(out, block{Type: "document", Source: src, Title: p.File.Filename, CacheControl: p.CacheControl})
		default:
			return nil, providers.UnsupportedPart(fmt.Sprintf("%s.content[%d]", at, j), p, "Anthropic")
		}
	}
	return out, nil
}

// documentSource is a file's document source: a PDF as base64, plain
// text as text.
func documentSource(f *providers.File) (*source, bool) {
	if f == nil {
		return nil, false
	}
	mt, data, ok := providers.ParseDataURL(f.FileData)
	switch {
	case ok && mt == "application/pdf":
		return &source{Type: "base64", MediaType: mt, Data: data}, true
	case ok && mt == "text/plain":
		text, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, false
		}
		return &source{Type: "text", MediaType: mt, Data: string(text)}, true
	}
	return nil, false
}

func imageSource(url, param string) (*source, error) {
	if mt, data, ok := providers.ParseDataURL(url); ok {
		if !imageTypes[mt] {
			return nil, providers.Invalid(param, "Anthropic models take JPEG, PNG, GIF or WebP images, not %q", mt)
		}
		return &source{Type: "base64", MediaType: mt, Data: data}, nil
	}
	if strings.HasPrefix(url, "https://") || strings.HasPrefix(url, "http://") {
		return &source{Type: "url", URL: url}, nil
	}
	return nil, providers.Invalid(param, "an image URL must be http(s) or a base64 data URL")
}

// withCache puts a message-level cache_control on the message's last
// block, where Anthropic reads it.
func withCache(bs []block, cc json.RawMessage) []block {
	if len(cc) > 0 && len(bs) > 0 {
		bs[len(bs)-1].CacheControl = cc
	}
	return bs
}

// finishReason maps a stop_reason to OpenAI's finish_reason.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return providers.FinishLength
	case "tool_use":
		return providers.FinishToolCalls
	case "refusal":
		return providers.FinishContentFilter
	default: // end_turn, stop_sequence, pause_turn
		return providers.FinishStop
	}
}

// normalize converts Anthropic usage to Lumen's: prompt tokens include the
// cached ones.
func (u usage) normalize() providers.Usage {
	return providers.Usage{
		PromptTokens:     u.InputTokens + u.CacheReadInputTokens + u.CacheCreationInputTokens,
		CompletionTokens: u.OutputTokens,
		CachedTokens:     u.CacheReadInputTokens,
		CacheWriteTokens: u.CacheCreationInputTokens,
	}
}

// toChat translates a Message into an OpenAI chat.completion.
func (tr *translation) toChat(m *messageResponse, created int64) (*providers.ChatResponse, providers.Usage) {
	var text, reasoning strings.Builder
	var calls []providers.ToolCall
	answered := false // the response tool was called
	for _, b := range m.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "thinking":
			reasoning.WriteString(b.Thinking)
		case "tool_use":
			if tr.jsonTool && b.Name == responseTool {
				text.WriteString(compactJSON(b.Input))
				answered = true
				continue
			}
			calls = append(calls, providers.ToolCall{ID: b.ID, Type: "function", Function: providers.FunctionCall{Name: b.Name, Arguments: compactJSON(b.Input)}})
		}
	}
	msg := providers.ResponseMessage{Role: "assistant", ReasoningContent: reasoning.String(), ToolCalls: calls}
	if text.Len() > 0 || len(calls) == 0 {
		s := text.String()
		msg.Content = &s
	}
	finish := providers.FinishStop
	if m.StopReason != nil {
		finish = finishReason(*m.StopReason)
	}
	if finish == providers.FinishToolCalls && len(calls) == 0 && answered {
		finish = providers.FinishStop
	}
	u := m.Usage.normalize()
	return &providers.ChatResponse{
		ID: m.ID, Object: "chat.completion", Created: created, Model: m.Model,
		Choices: []providers.Choice{{Message: msg, FinishReason: finish}},
		Usage:   u.Chat(),
	}, u
}

// compactJSON returns raw JSON without insignificant space, "{}" when
// empty, as OpenAI sends tool arguments.
func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
