package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lumengw/lumen/providers"
)

// thoughtSep separates a made-up tool-call id from the thoughtSignature it
// carries (LiteLLM's convention, so ids survive a switch between the two).
const thoughtSep = "__thought__"

// madeUpPrefix starts the tool-call ids Lumen makes up for calls Gemini
// sent without one: "call_" and 24 hex digits (randomID).
const madeUpPrefix = "call_"

// splitCallID splits an OpenAI tool-call id into the functionCall id to
// send back, as functionCall.id and functionResponse.id, and the
// thoughtSignature it carries. The id is Gemini's own, or one a client or
// another provider chose; one Lumen made up is not sent, since Gemini
// never issued it.
func splitCallID(full string) (id, sig string) {
	id, sig, _ = strings.Cut(full, thoughtSep)
	if madeUp(id) {
		id = ""
	}
	return id, sig
}

// madeUp reports whether id has the shape of the ids Lumen makes up.
func madeUp(id string) bool {
	hexPart, ok := strings.CutPrefix(id, madeUpPrefix)
	if !ok || len(hexPart) != 24 {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		if c := hexPart[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// skipSignature is the thoughtSignature Google documents for a function
// call Gemini 3 did not make, or whose signature is lost
// (ai.google.dev/gemini-api/docs/thought-signatures): it passes the check
// that otherwise fails the request with 400 "Function call is missing a
// thought_signature".
const skipSignature = "skip_thought_signature_validator"

// strictSignatures reports whether model wants a thoughtSignature on the
// first function call of each model turn: Gemini 3 and later. Calls from
// another provider (a fallback, a conversation moved between models) or
// from a client that dropped the "__thought__" suffix have none.
func strictSignatures(model string) bool {
	m := strings.ToLower(model)
	m = m[strings.LastIndexByte(m, '/')+1:]
	v, ok := strings.CutPrefix(m, "gemini-")
	if !ok {
		return false
	}
	major := 0
	for i := 0; i < len(v) && v[i] >= '0' && v[i] <= '9' && major < 100; i++ {
		major = major*10 + int(v[i]-'0')
	}
	return major >= 3
}

// translation is an OpenAI request turned into a generateContent request.
type translation struct {
	body generateRequest
}

// fromChat translates an OpenAI chat request for model. http(s) images are
// fetched with images, within ctx, at most the fetcher's MaxTotalBytes in
// all.
func fromChat(ctx context.Context, req *providers.ChatRequest, model string, images *providers.ImageFetcher) (*translation, error) {
	tr := &translation{}
	out := &tr.body
	batch := images.Batch()
	var system []part
	names := map[string]string{} // tool call id → function name
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		var ps []part
		role := "user"
		switch m.Role {
		case "system", "developer":
			system = append(system, textParts(m.Content)...)
			continue
		case "user":
			var err error
			if ps, err = userParts(ctx, m.Content, at, batch); err != nil {
				return nil, err
			}
		case "assistant":
			role = "model"
			ps = textParts(m.Content)
			signed := false // a call of this message carried a signature
			for _, tc := range m.ToolCalls {
				names[tc.ID] = tc.Function.Name
				id, sig := splitCallID(tc.ID)
				switch {
				case sig != "":
					signed = true
				case !signed && strictSignatures(model):
					sig = skipSignature
				}
				ps = append(ps, part{FunctionCall: &functionCall{ID: id, Name: tc.Function.Name, Args: tc.Function.ArgumentsJSON()}, ThoughtSignature: sig})
			}
		case "tool":
			name, ok := names[m.ToolCallID]
			if !ok {
				return nil, providers.Invalid(at+".tool_call_id", "no earlier assistant message made tool call %q; Gemini needs the function's name to return its result", m.ToolCallID)
			}
			id, _ := splitCallID(m.ToolCallID)
			ps = []part{{FunctionResponse: &functionResponse{ID: id, Name: name, Response: toolResponse(m.Content.String())}}}
		}
		if len(ps) == 0 {
			continue // the API rejects empty turns; merging closes the gap
		}
		if n := len(out.Contents); n > 0 && out.Contents[n-1].Role == role {
			out.Contents[n-1].Parts = append(out.Contents[n-1].Parts, ps...)
		} else {
			out.Contents = append(out.Contents, content{Role: role, Parts: ps})
		}
	}
	if len(out.Contents) == 0 {
		return nil, providers.Invalid("messages", "Gemini needs at least one user or assistant message with content")
	}
	if len(system) > 0 {
		out.SystemInstruction = &content{Parts: system}
	}

	gc := generationConfig{Temperature: req.Temperature, TopP: req.TopP, StopSequences: req.Stop, Seed: req.Seed,
		PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty}
	if n := req.OutputLimit(); n > 0 {
		gc.MaxOutputTokens = &n
	}
	if rf := req.ResponseFormat; rf != nil && rf.Type != "text" {
		gc.ResponseMimeType = "application/json"
		if rf.Type == "json_schema" {
			gc.ResponseJSONSchema = rf.JSONSchema.Schema
		}
	}
	var err error
	if gc.ThinkingConfig, err = thinking(req.ReasoningEffort, model); err != nil {
		return nil, err
	}
	if !gc.isZero() {
		out.GenerationConfig = &gc
	}

	if len(req.Tools) > 0 {
		decl := toolDecl{}
		for _, t := range req.Tools {
			fd := functionDecl{Name: t.Function.Name, Description: t.Function.Description}
			if p := bytes.TrimSpace(t.Function.Parameters); len(p) > 0 && string(p) != "null" {
				fd.ParametersJSONSchema = t.Function.Parameters
			}
			decl.FunctionDeclarations = append(decl.FunctionDeclarations, fd)
		}
		out.Tools = []toolDecl{decl}
	}
	if tc := req.ToolChoice; tc != nil {
		fc := functionCallingConfig{}
		switch tc.Mode {
		case providers.ToolChoiceAuto:
			fc.Mode = "AUTO"
		case providers.ToolChoiceNone:
			fc.Mode = "NONE"
		case providers.ToolChoiceRequired:
			fc.Mode = "ANY"
		case providers.ToolChoiceFunction:
			fc.Mode, fc.AllowedFunctionNames = "ANY", []string{tc.Name}
		}
		out.ToolConfig = &toolConfig{FunctionCallingConfig: fc}
	}
	return tr, nil
}

// toolResponse is a tool result as a functionResponse.response, which must
// be an object: a JSON object result is sent as it is, anything else as
// {"output": text}, the key Google documents for a function's output.
func toolResponse(text string) json.RawMessage {
	if b := bytes.TrimSpace([]byte(text)); len(b) > 0 && b[0] == '{' && json.Valid(b) {
		return json.RawMessage(b)
	}
	out, _ := providers.MarshalJSON(map[string]string{"output": text})
	return out
}

// textParts returns a content's text as parts, one per text part, empty
// text dropped.
func textParts(c providers.Content) []part {
	if c.Parts == nil {
		if c.Text == "" {
			return nil
		}
		return []part{{Text: c.Text}}
	}
	var out []part
	for _, p := range c.Parts {
		if (p.Type == providers.PartText || p.Type == providers.PartRefusal) && p.Text != "" {
			out = append(out, part{Text: p.Text})
		}
	}
	return out
}

// userParts translates a user message's content: text, inline images and
// files (a PDF or another document Gemini reads, inline). Any other part
// is refused, not dropped.
func userParts(ctx context.Context, c providers.Content, at string, images *providers.ImageBatch) ([]part, error) {
	if c.Parts == nil {
		return textParts(c), nil
	}
	var out []part
	for j, p := range c.Parts {
		switch p.Type {
		case providers.PartText, providers.PartRefusal:
			if p.Text != "" {
				out = append(out, part{Text: p.Text})
			}
		case providers.PartImageURL:
			img, err := images.Load(ctx, fmt.Sprintf("%s.content[%d].image_url.url", at, j), p.ImageURL.URL)
			if err != nil {
				return nil, err
			}
			out = append(out, part{InlineData: &blob{MimeType: img.MediaType, Data: img.Base64}})
		case providers.PartFile:
			mt, data, ok := "", "", p.File != nil
			if ok {
				mt, data, ok = providers.ParseDataURL(p.File.FileData)
			}
			if !ok || !documentTypes[mt] {
				return nil, providers.UnsupportedPart(fmt.Sprintf("%s.content[%d]", at, j), p, "Gemini")
			}
			out = append(out, part{InlineData: &blob{MimeType: mt, Data: data}})
		default:
			return nil, providers.UnsupportedPart(fmt.Sprintf("%s.content[%d]", at, j), p, "Gemini")
		}
	}
	return out, nil
}

// documentTypes are the document types Gemini reads inline
// (ai.google.dev/gemini-api/docs/document-processing).
var documentTypes = map[string]bool{
	"application/pdf": true, "text/plain": true, "text/html": true, "text/markdown": true,
	"text/csv": true, "text/xml": true, "application/json": true,
}

// finishReason maps a Gemini finishReason to OpenAI's; calls says whether
// the answer called functions.
func finishReason(reason string, calls bool) string {
	switch reason {
	case "MAX_TOKENS":
		return providers.FinishLength
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
		"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION":
		return providers.FinishContentFilter
	}
	if calls {
		return providers.FinishToolCalls
	}
	return providers.FinishStop // STOP, and OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL, IMAGE_OTHER, NO_IMAGE…
}

// normalize converts usageMetadata to Lumen's usage: promptTokenCount
// already includes the cached tokens.
func (u *usageMetadata) normalize() providers.Usage {
	if u == nil {
		return providers.Usage{}
	}
	return providers.Usage{
		PromptTokens:     u.PromptTokenCount + u.ToolUsePromptTokenCount,
		CompletionTokens: u.CandidatesTokenCount + u.ThoughtsTokenCount,
		ReasoningTokens:  u.ThoughtsTokenCount,
		CachedTokens:     u.CachedContentTokenCount,
	}
}

// toolCall turns a functionCall part into an OpenAI tool call. Its id is
// Gemini's (Gemini 3 names every call), else one made up, and carries the
// part's thoughtSignature.
func (c *Client) toolCall(p part) providers.ToolCall {
	id := p.FunctionCall.ID
	if id == "" {
		id = madeUpPrefix + c.newID()
	}
	if p.ThoughtSignature != "" {
		id += thoughtSep + p.ThoughtSignature
	}
	return providers.ToolCall{ID: id, Type: "function", Function: providers.FunctionCall{Name: p.FunctionCall.Name, Arguments: compactJSON(p.FunctionCall.Args)}}
}

// toChat translates a whole answer into an OpenAI chat.completion.
func (c *Client) toChat(g *generateResponse) (*providers.ChatResponse, providers.Usage) {
	var text, reasoning strings.Builder
	var calls []providers.ToolCall
	finish := providers.FinishStop
	if len(g.Candidates) > 0 {
		cand := g.Candidates[0]
		for _, p := range cand.Content.Parts {
			switch {
			case p.FunctionCall != nil:
				calls = append(calls, c.toolCall(p))
			case p.Thought:
				reasoning.WriteString(p.Text)
			default:
				text.WriteString(p.Text)
			}
		}
		finish = finishReason(cand.FinishReason, len(calls) > 0)
	} else if g.PromptFeedback != nil && g.PromptFeedback.BlockReason != "" {
		finish = providers.FinishContentFilter
	}
	msg := providers.ResponseMessage{Role: "assistant", ReasoningContent: reasoning.String(), ToolCalls: calls}
	if text.Len() > 0 || len(calls) == 0 {
		s := text.String()
		msg.Content = &s
	}
	u := g.UsageMetadata.normalize()
	return &providers.ChatResponse{
		ID: c.responseID(g), Object: "chat.completion", Created: c.now().Unix(), Model: c.modelOf(g),
		Choices: []providers.Choice{{Message: msg, FinishReason: finish}},
		Usage:   u.Chat(),
	}, u
}

func (c *Client) responseID(g *generateResponse) string {
	if g.ResponseID != "" {
		return "chatcmpl-" + g.ResponseID
	}
	return "chatcmpl-" + c.newID()
}

func (c *Client) modelOf(g *generateResponse) string {
	if g.ModelVersion != "" {
		return g.ModelVersion
	}
	return c.model
}

// compactJSON returns raw JSON without insignificant space, "{}" when
// empty, as OpenAI sends tool arguments.
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

func (g *generationConfig) isZero() bool {
	return g.Temperature == nil && g.TopP == nil && g.StopSequences == nil && g.Seed == nil && g.PresencePenalty == nil &&
		g.FrequencyPenalty == nil && g.MaxOutputTokens == nil && g.ResponseMimeType == "" && g.ResponseJSONSchema == nil &&
		g.ThinkingConfig == nil
}
