package bedrock

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/lumengw/lumen/providers"
)

// responseTool is the tool Lumen adds to carry a response_format, as for
// Anthropic: Converse has no JSON mode, so the model is made to call a
// tool whose input schema is the schema, and its input becomes the text.
const responseTool = "json_response"

// imageFormats maps media types to Converse image formats.
var imageFormats = map[string]string{"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}

// translation is an OpenAI request turned into a Converse request.
type translation struct {
	body     converseRequest
	jsonTool bool
}

func text(s string) contentBlock { return contentBlock{Text: &s} }

var defaultCache = &cachePoint{Type: "default"}

// fromChat translates an OpenAI chat request for model (a Bedrock model id,
// inference profile or ARN); http(s) images are fetched with images, within ctx,
// at most the fetcher's MaxTotalBytes in all.
func fromChat(ctx context.Context, req *providers.ChatRequest, model string, images *providers.ImageFetcher) (*translation, error) {
	tr := &translation{}
	out := &tr.body
	batch := images.Batch()
	historyTools := false
	docNames := map[string]bool{} // Converse wants document names unique in the request
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		var bs []contentBlock
		role := "user"
		switch m.Role {
		case "system", "developer":
			for _, b := range textBlocks(m.Content) {
				out.System = append(out.System, systemBlock{Text: *b.Text})
				if b.CachePoint != nil {
					out.System = append(out.System, systemBlock{CachePoint: defaultCache})
				}
			}
			if len(m.CacheControl) > 0 && len(out.System) > 0 {
				out.System = append(out.System, systemBlock{CachePoint: defaultCache})
			}
			continue
		case "user":
			var err error
			if bs, err = userBlocks(ctx, m.Content, at, batch, docNames); err != nil {
				return nil, err
			}
		case "assistant":
			role = "assistant"
			bs = textBlocks(m.Content)
			for _, tc := range m.ToolCalls {
				historyTools = true
				bs = append(bs, contentBlock{ToolUse: &toolUse{ToolUseID: providers.ClaudeToolID(tc.ID), Name: tc.Function.Name, Input: tc.Function.ArgumentsJSON()}})
			}
		case "tool":
			historyTools = true
			bs = []contentBlock{{ToolResult: &toolResult{ToolUseID: providers.ClaudeToolID(m.ToolCallID), Content: []toolResultContent{{Text: m.Content.String()}}}}}
		}
		if len(m.CacheControl) > 0 && len(bs) > 0 {
			bs = append(bs, contentBlock{CachePoint: defaultCache})
		}
		if len(bs) == 0 {
			continue // Converse rejects empty turns; merging closes the gap
		}
		if n := len(out.Messages); n > 0 && out.Messages[n-1].Role == role {
			out.Messages[n-1].Content = append(out.Messages[n-1].Content, bs...)
		} else {
			out.Messages = append(out.Messages, message{Role: role, Content: bs})
		}
	}
	if len(out.Messages) == 0 {
		return nil, providers.Invalid("messages", "Bedrock needs at least one user or assistant message with content")
	}

	ic := inferenceConfig{Temperature: req.Temperature, TopP: req.TopP, StopSequences: req.Stop}
	if providers.FixedSampling(model) {
		ic.Temperature, ic.TopP = nil, nil // these Claude models refuse them (a 400)
	}
	if n := req.OutputLimit(); n > 0 {
		ic.MaxTokens = &n
	}
	if !ic.empty() {
		out.InferenceConfig = &ic
	}

	var tools []tool
	for _, t := range req.Tools {
		ts := toolSpec{Name: t.Function.Name, Description: t.Function.Description}
		ts.InputSchema.JSON = t.Function.Parameters
		if p := bytes.TrimSpace(t.Function.Parameters); len(p) == 0 || string(p) == "null" {
			ts.InputSchema.JSON = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		tools = append(tools, tool{ToolSpec: ts})
	}
	var choice *toolChoice
	if tc := req.ToolChoice; tc != nil {
		switch tc.Mode {
		case providers.ToolChoiceAuto:
			choice = &toolChoice{Auto: &struct{}{}}
		case providers.ToolChoiceRequired:
			choice = &toolChoice{Any: &struct{}{}}
		case providers.ToolChoiceFunction:
			choice = &toolChoice{Tool: &struct {
				Name string `json:"name"`
			}{tc.Name}}
		case providers.ToolChoiceNone:
			// Converse has no "none": the tools are left out, unless the
			// history uses them (then Converse requires their definitions).
			if !historyTools {
				tools = nil
			}
		}
	}
	if len(tools) > 0 {
		out.ToolConfig = &toolConfig{Tools: tools, ToolChoice: choice}
	}
	if err := tr.responseFormat(req.ResponseFormat); err != nil {
		return nil, err
	}
	if err := tr.reasoning(req, model); err != nil {
		return nil, err
	}
	return tr, nil
}

// defaultMaxTokens is the maxTokens sent with a thinking budget when the
// request sets none, as the Anthropic translator's default max_tokens: a
// budget must fit under it.
const defaultMaxTokens = 4096

// reasoning carries reasoning_effort to Claude models as Anthropic's own
// thinking and output_config in additionalModelRequestFields
// (providers.ClaudeReasoning), dropping the temperature and top_p that
// thinking refuses. Other Bedrock models take reasoning in fields of their
// own and get none.
func (tr *translation) reasoning(req *providers.ChatRequest, model string) error {
	if f, _ := providers.ClaudeVersion(model); f == "" {
		return providers.CheckReasoningEffort(req.ReasoningEffort)
	}
	out := &tr.body
	maxTokens := defaultMaxTokens
	if ic := out.InferenceConfig; ic != nil && ic.MaxTokens != nil {
		maxTokens = *ic.MaxTokens
	}
	forced := out.ToolConfig != nil && out.ToolConfig.ToolChoice != nil && (out.ToolConfig.ToolChoice.Any != nil || out.ToolConfig.ToolChoice.Tool != nil)
	th, err := providers.ClaudeReasoning(req, model, maxTokens, forced)
	if err != nil || th.Thinking == nil && th.Effort == "" {
		return err
	}
	add := &additionalFields{Thinking: th.Thinking}
	if th.Effort != "" {
		add.OutputConfig = &struct {
			Effort string `json:"effort"`
		}{th.Effort}
	}
	out.AdditionalModelRequestFields = add
	if th.Thinking != nil {
		if out.InferenceConfig == nil {
			out.InferenceConfig = &inferenceConfig{}
		}
		ic := out.InferenceConfig
		ic.Temperature = nil
		if ic.TopP != nil && *ic.TopP < 0.95 {
			ic.TopP = nil
		}
		if ic.MaxTokens == nil && providers.ThinkingBudget(model) {
			ic.MaxTokens = &maxTokens
		}
		if ic.empty() {
			out.InferenceConfig = nil
		}
	}
	return nil
}

// responseFormat adds the response tool for json_object/json_schema.
func (tr *translation) responseFormat(rf *providers.ResponseFormat) error {
	if rf == nil || rf.Type == "text" {
		return nil
	}
	out := &tr.body
	if out.ToolConfig != nil {
		for i, t := range out.ToolConfig.Tools {
			if t.ToolSpec.Name == responseTool {
				return providers.Invalid(fmt.Sprintf("tools[%d].function.name", i), "the tool name %q is reserved for response_format on Bedrock; rename the tool", responseTool)
			}
		}
	}
	ts := toolSpec{Name: responseTool, Description: "Answer with a JSON object. Call this tool exactly once with the whole answer as its input."}
	ts.InputSchema.JSON = json.RawMessage(`{"type":"object"}`)
	if rf.Type == "json_schema" {
		s := bytes.TrimSpace(rf.JSONSchema.Schema)
		if len(s) == 0 || s[0] != '{' {
			return providers.Invalid("response_format.json_schema.schema", "Bedrock takes a JSON object schema")
		}
		ts.InputSchema.JSON = rf.JSONSchema.Schema
		ts.Description = "Answer with JSON that matches this schema. Call this tool exactly once with the whole answer as its input."
		if d := rf.JSONSchema.Description; d != "" {
			ts.Description += " " + d
		}
	}
	tr.jsonTool = true
	if out.ToolConfig == nil {
		out.ToolConfig = &toolConfig{}
	}
	out.ToolConfig.Tools = append(out.ToolConfig.Tools, tool{ToolSpec: ts})
	if len(out.ToolConfig.Tools) == 1 {
		out.ToolConfig.ToolChoice = &toolChoice{Tool: &struct {
			Name string `json:"name"`
		}{responseTool}}
	} else if c := out.ToolConfig.ToolChoice; c == nil || c.Auto != nil {
		out.ToolConfig.ToolChoice = &toolChoice{Any: &struct{}{}}
	}
	return nil
}

// textBlocks returns a content's text as blocks, empty text dropped (the
// API rejects blank text); a part's cache_control adds a cache point
// after it.
func textBlocks(c providers.Content) []contentBlock {
	if c.Parts == nil {
		if c.Text == "" {
			return nil
		}
		return []contentBlock{text(c.Text)}
	}
	var out []contentBlock
	for _, p := range c.Parts {
		if (p.Type == providers.PartText || p.Type == providers.PartRefusal) && p.Text != "" {
			out = append(out, text(p.Text))
			if len(p.CacheControl) > 0 {
				out = append(out, contentBlock{CachePoint: defaultCache})
			}
		}
	}
	return out
}

func userBlocks(ctx context.Context, c providers.Content, at string, images *providers.ImageBatch, docNames map[string]bool) ([]contentBlock, error) {
	if c.Parts == nil {
		return textBlocks(c), nil
	}
	var out []contentBlock
	for j, p := range c.Parts {
		switch p.Type {
		case providers.PartText, providers.PartRefusal:
			if p.Text != "" {
				out = append(out, text(p.Text))
			}
		case providers.PartImageURL:
			param := fmt.Sprintf("%s.content[%d].image_url.url", at, j)
			img, err := images.Load(ctx, param, p.ImageURL.URL)
			if err != nil {
				return nil, err
			}
			format, ok := imageFormats[img.MediaType]
			if !ok {
				return nil, providers.Invalid(param, "Bedrock takes PNG, JPEG, GIF or WebP images, not %q", img.MediaType)
			}
			ib := &imageBlock{Format: format}
			ib.Source.Bytes = img.Base64
			out = append(out, contentBlock{Image: ib})
		case providers.PartFile:
			db, ok := document(p.File, docNames)
			if !ok {
				return nil, providers.UnsupportedPart(fmt.Sprintf("%s.content[%d]", at, j), p, "Bedrock")
			}
			if len(docNames) > maxDocuments {
				return nil, providers.Invalid(fmt.Sprintf("%s.content[%d]", at, j), "Bedrock takes at most %d documents in a request (the whole conversation counts)", maxDocuments)
			}
			out = append(out, contentBlock{Document: db})
		default:
			return nil, providers.UnsupportedPart(fmt.Sprintf("%s.content[%d]", at, j), p, "Bedrock")
		}
		if len(p.CacheControl) > 0 && len(out) > 0 {
			out = append(out, contentBlock{CachePoint: defaultCache})
		}
	}
	return out, nil
}

// maxDocuments is how many documents Converse takes in one request.
const maxDocuments = 5

// documentFormats are the Converse document formats, by media type.
var documentFormats = map[string]string{
	"application/pdf": "pdf", "text/csv": "csv", "text/html": "html", "text/plain": "txt", "text/markdown": "md",
	"application/msword": "doc", "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
	"application/vnd.ms-excel": "xls", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}

// document is a file part as a Converse document block. Converse requires
// names unique in the request (whatever their case), of letters, digits,
// single spaces, hyphens, parentheses and square brackets: the file name
// with anything else dropped (else "document"), numbered " (2)", " (3)"…
// when taken; used holds the names taken, lower-cased.
func document(f *providers.File, used map[string]bool) (*documentBlock, bool) {
	if f == nil {
		return nil, false
	}
	mt, data, ok := providers.ParseDataURL(f.FileData)
	format := documentFormats[mt]
	if !ok || format == "" {
		return nil, false
	}
	name := strings.TrimSuffix(f.Filename, "."+format)
	name = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(" -()[]", r):
			return r
		case r == '_' || r == '.':
			return ' '
		}
		return -1
	}, name)), " ")
	if name == "" {
		name = "document"
	}
	for i, base := 2, name; used[strings.ToLower(name)]; i++ {
		name = base + " (" + strconv.Itoa(i) + ")"
	}
	used[strings.ToLower(name)] = true
	db := &documentBlock{Format: format, Name: name}
	db.Source.Bytes = data
	return db, true
}

// finishReason maps a Converse stopReason to OpenAI's.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return providers.FinishLength
	case "tool_use":
		return providers.FinishToolCalls
	case "guardrail_intervened", "content_filtered":
		return providers.FinishContentFilter
	default: // end_turn, stop_sequence, malformed_*
		return providers.FinishStop
	}
}

// normalize converts Converse usage: prompt tokens include cache reads
// and writes.
func (u usage) normalize() providers.Usage {
	return providers.Usage{
		PromptTokens:     u.InputTokens + u.CacheReadInputTokens + u.CacheWriteInputTokens,
		CompletionTokens: u.OutputTokens,
		CachedTokens:     u.CacheReadInputTokens,
		CacheWriteTokens: u.CacheWriteInputTokens,
	}
}

// toChat translates a Converse answer into an OpenAI chat.completion.
func (tr *translation) toChat(r *converseResponse, id, model string, created int64) (*providers.ChatResponse, providers.Usage) {
	var txt, reasoning strings.Builder
	var calls []providers.ToolCall
	answered := false
	if r.Output.Message != nil {
		for _, b := range r.Output.Message.Content {
			switch {
			case b.Text != nil:
				txt.WriteString(*b.Text)
			case b.ReasoningContent != nil && b.ReasoningContent.ReasoningText != nil:
				reasoning.WriteString(b.ReasoningContent.ReasoningText.Text)
			case b.ToolUse != nil:
				if tr.jsonTool && b.ToolUse.Name == responseTool {
					txt.WriteString(compactJSON(b.ToolUse.Input))
					answered = true
					continue
				}
				calls = append(calls, providers.ToolCall{ID: b.ToolUse.ToolUseID, Type: "function",
					Function: providers.FunctionCall{Name: b.ToolUse.Name, Arguments: compactJSON(b.ToolUse.Input)}})
			}
		}
	}
	msg := providers.ResponseMessage{Role: "assistant", ReasoningContent: reasoning.String(), ToolCalls: calls}
	if txt.Len() > 0 || len(calls) == 0 {
		s := txt.String()
		msg.Content = &s
	}
	finish := finishReason(r.StopReason)
	if finish == providers.FinishToolCalls && len(calls) == 0 && answered {
		finish = providers.FinishStop
	}
	u := r.Usage.normalize()
	return &providers.ChatResponse{ID: id, Object: "chat.completion", Created: created, Model: model,
		Choices: []providers.Choice{{Message: msg, FinishReason: finish}}, Usage: u.Chat()}, u
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "{}"
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
