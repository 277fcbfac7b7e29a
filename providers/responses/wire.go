// Package responses serves the OpenAI Responses API (POST /v1/responses)
// from any model group, over the chat completions form every provider
// takes: a request becomes a chat request (Translate), the chat answer
// becomes a Response (FromChat) or, streamed, the Responses event sequence
// (StreamTranslator).
//
// The wire format follows OpenAI's API reference for responses and its
// streaming events, as the official SDK (openai-go v3, responses package)
// reads them. Lumen keeps no state: previous_response_id, conversation,
// item_reference input items, stored prompts and background mode need the
// server to store responses, and are refused with a 400 naming the field.
//
// Carried: instructions, text, images, function tools (also inside a
// namespace: the chat function is named "<namespace>__<name>" and calls
// come back split), custom (free-form) tools as functions of one string
// argument "input" (their grammar in the description; calls come back as
// custom_tool_call items), function and custom tool calls and their
// outputs, tool_choice, text.format, sampling settings and
// max_output_tokens. Built-in tools (web_search, file_search,
// code_interpreter, tool_search, …) run on OpenAI's side or need its
// deferred loading: they are left out, the model answers without them,
// and Echo.Dropped names them. reasoning.effort becomes reasoning_effort;
// reasoning items in the input and the reasoning summary, include, store
// and prompt_cache_key settings are dropped, as no chat upstream reads
// them (store is echoed in the Response as the request said it).
//
// A deployment that speaks the Responses API itself is sent the client's
// own request instead (providers.Request.Responses); IsResponse,
// NativeEvent and EventUsage let the server recognise its answer or events
// and pass them through.
package responses

import (
	"encoding/json"

	"github.com/lumengw/lumen/providers"
)

// request is a POST /v1/responses body (the fields Lumen reads).
type request struct {
	Model             string          `json:"model"`
	Input             json.RawMessage `json:"input"`
	Instructions      *string         `json:"instructions"`
	MaxOutputTokens   *int            `json:"max_output_tokens"`
	Temperature       *float64        `json:"temperature"`
	TopP              *float64        `json:"top_p"`
	Stream            bool            `json:"stream"`
	Tools             []tool          `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Text              *textConfig     `json:"text"`
	Reasoning         *struct {
		Effort string `json:"effort"`
	} `json:"reasoning"`
	User               string          `json:"user"`
	SafetyIdentifier   string          `json:"safety_identifier"`
	Store              *bool           `json:"store"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Conversation       json.RawMessage `json:"conversation"`
	Background         bool            `json:"background"`
	Prompt             json.RawMessage `json:"prompt"`
}

// endUser is the request's end-user id: user, else safety_identifier.
func (r *request) endUser() string {
	if r.User != "" {
		return r.User
	}
	return r.SafetyIdentifier
}

// tool is a tools entry: a function, a namespace of functions, or a
// built-in tool (any other type), kept as sent for the Response's echo.
type tool struct {
	Type        string
	Name        string
	Description string
	Parameters  json.RawMessage
	Strict      *bool
	Tools       []tool      // a namespace's
	Format      *toolFormat // a custom tool's input format
	raw         json.RawMessage
}

// toolFormat is a custom tool's format: {"type":"text"} or
// {"type":"grammar","syntax":"lark"|"regex","definition":…}.
type toolFormat struct {
	Type       string `json:"type"`
	Syntax     string `json:"syntax"`
	Definition string `json:"definition"`
}

func (t *tool) UnmarshalJSON(b []byte) error {
	var v struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
		Tools       []tool          `json:"tools"`
		Format      *toolFormat     `json:"format"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*t = tool{Type: v.Type, Name: v.Name, Description: v.Description, Parameters: v.Parameters, Strict: v.Strict,
		Tools: v.Tools, Format: v.Format, raw: append(json.RawMessage(nil), b...)}
	return nil
}

func (t tool) MarshalJSON() ([]byte, error) { return t.raw, nil }

type textConfig struct {
	Format *textFormat `json:"format"`
}

// textFormat is text.format: text, json_object or json_schema.
type textFormat struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// item is one input item. Type is empty for the short message form
// ({"role": "user", "content": "…"}).
type item struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	// function_call, custom_tool_call
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Arguments string `json:"arguments"`
	Input     string `json:"input"`
	// function_call_output: a string or input content parts
	Output json.RawMessage `json:"output"`
}

// part is an input or output content part.
type part struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Refusal  string `json:"refusal"`
	ImageURL string `json:"image_url"`
	FileID   string `json:"file_id"`
	Detail   string `json:"detail"`
	// input_file
	Filename string `json:"filename"`
	FileData string `json:"file_data"`
	FileURL  string `json:"file_url"`
}

// response is a Response object.
type response struct {
	ID                 string          `json:"id"`
	Object             string          `json:"object"`
	CreatedAt          int64           `json:"created_at"`
	Status             string          `json:"status"`
	Error              *responseError  `json:"error"`
	IncompleteDetails  *incomplete     `json:"incomplete_details"`
	Instructions       *string         `json:"instructions"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	Model              string          `json:"model"`
	Output             []outputItem    `json:"output"`
	ParallelToolCalls  bool            `json:"parallel_tool_calls"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Store              bool            `json:"store"`
	Temperature        *float64        `json:"temperature"`
	Text               json.RawMessage `json:"text"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	Tools              []tool          `json:"tools"`
	TopP               *float64        `json:"top_p"`
	Truncation         string          `json:"truncation"`
	Usage              *usage          `json:"usage"`
	Metadata           map[string]any  `json:"metadata"`
}

type responseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type incomplete struct {
	Reason string `json:"reason"`
}

// outputItem is a message, a function_call or a reasoning item.
type outputItem struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Status string `json:"status,omitempty"`
	// message
	Role    string        `json:"role,omitempty"`
	Content *[]outputPart `json:"content,omitempty"`
	// function_call
	CallID    string  `json:"call_id,omitempty"`
	Name      string  `json:"name,omitempty"`
	Namespace string  `json:"namespace,omitempty"`
	Arguments *string `json:"arguments,omitempty"`
	// custom_tool_call
	Input *string `json:"input,omitempty"`
	// reasoning
	Summary *[]summaryText `json:"summary,omitempty"`
}

// outputPart is a message's content part: output_text, or refusal (the
// model declined to answer; its words in Refusal).
type outputPart struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
	Logprobs    []any  `json:"logprobs"`
	Refusal     string `json:"-"`
}

// textPart is an output_text part holding text.
func textPart(text string) outputPart {
	return outputPart{Type: "output_text", Text: text, Annotations: []any{}, Logprobs: []any{}}
}

// refusalPart is a refusal part holding the model's refusal.
func refusalPart(refusal string) outputPart { return outputPart{Type: "refusal", Refusal: refusal} }

// MarshalJSON implements json.Marshaler: a refusal part is
// {"type":"refusal","refusal":…}, without the output_text fields.
func (p outputPart) MarshalJSON() ([]byte, error) {
	if p.Type == "refusal" {
		return providers.MarshalJSON(struct {
			Type    string `json:"type"`
			Refusal string `json:"refusal"`
		}{p.Type, p.Refusal})
	}
	type plain outputPart
	return providers.MarshalJSON(plain(p))
}

type summaryText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type usage struct {
	InputTokens         int           `json:"input_tokens"`
	InputTokensDetails  inputDetails  `json:"input_tokens_details"`
	OutputTokens        int           `json:"output_tokens"`
	OutputTokensDetails outputDetails `json:"output_tokens_details"`
	TotalTokens         int           `json:"total_tokens"`
}

type inputDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type outputDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// fromUsage is a chat usage the Responses way (input counts cached tokens).
func fromUsage(u *providers.ChatUsage) *usage {
	if u == nil {
		return nil
	}
	out := &usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens}
	if d := u.PromptTokensDetails; d != nil {
		out.InputTokensDetails.CachedTokens = d.CachedTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.OutputTokensDetails.ReasoningTokens = d.ReasoningTokens
	}
	return out
}
