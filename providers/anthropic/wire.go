package anthropic

import (
	"bytes"
	"encoding/json"

	"github.com/lumengw/lumen/providers"
)

// The Messages API wire format, as documented at
// https://docs.anthropic.com/en/api/messages and
// https://docs.anthropic.com/en/docs/build-with-claude/streaming. The same
// types serve both directions: Lumen writes them to Anthropic (outbound)
// and reads them from Anthropic clients (inbound).

// messagesRequest is a POST /v1/messages body.
type messagesRequest struct {
	Model         string          `json:"model"`
	System        systemPrompt    `json:"system,omitzero"`
	Messages      []message       `json:"messages"`
	MaxTokens     *int            `json:"max_tokens,omitempty"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	TopK          *int            `json:"top_k,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	Tools         []tool          `json:"tools,omitempty"`
	ToolChoice    *toolChoice     `json:"tool_choice,omitempty"`
	Metadata      *metadata       `json:"metadata,omitempty"`
	Thinking      json.RawMessage `json:"thinking,omitempty"`
	// OutputConfig carries effort and, for structured outputs, format;
	// OutputFormat is the earlier beta spelling of that format.
	OutputConfig *outputConfig `json:"output_config,omitempty"`
	OutputFormat *outputFormat `json:"output_format,omitempty"`
}

// outputConfig is the request's output_config.
type outputConfig struct {
	Effort string        `json:"effort,omitempty"`
	Format *outputFormat `json:"format,omitempty"`
}

// outputFormat is a structured output format: {"type":"json_schema","schema":{…}}.
type outputFormat struct {
	Type   string          `json:"type"`
	Schema json.RawMessage `json:"schema,omitempty"`
}

// systemPrompt is the top-level system field: a string or text blocks.
// Outbound it is a string unless blocks are needed (several, or cache
// markers).
type systemPrompt struct {
	Text   string
	Blocks []block
}

func (s systemPrompt) IsZero() bool { return s.Text == "" && s.Blocks == nil }

func (s systemPrompt) MarshalJSON() ([]byte, error) {
	if s.Blocks != nil {
		return providers.MarshalJSON(s.Blocks)
	}
	return providers.MarshalJSON(s.Text)
}

func (s *systemPrompt) UnmarshalJSON(b []byte) error {
	*s = systemPrompt{}
	switch {
	case string(b) == "null":
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, &s.Text)
	}
	return json.Unmarshal(b, &s.Blocks)
}

type metadata struct {
	UserID string `json:"user_id,omitempty"`
}

// message is one turn. Content arrives as a string or blocks; Lumen always
// sends blocks.
type message struct {
	Role    string `json:"role"`
	Content blocks `json:"content"`
}

// blocks is a content field: a string is read as one text block.
type blocks []block

func (bs *blocks) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*bs = blocks{{Type: "text", Text: s}}
		return nil
	}
	var list []block
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*bs = list
	return nil
}

// block is a content block of any type; only the fields of its Type are
// set.
type block struct {
	Type string `json:"type"`
	// text
	Text string `json:"text,omitempty"`
	// image, document
	Source *source `json:"source,omitempty"`
	Title  string  `json:"title,omitempty"` // document
	// tool_use
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
	// tool_result
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   *toolResultBody `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
	// tool_reference (in a tool_result: a deferred tool the client loaded)
	ToolName string `json:"tool_name,omitempty"`
	// thinking
	Thinking  string `json:"thinking,omitempty"`
	Signature string `json:"signature,omitempty"`

	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

// MarshalJSON keeps "text" on text blocks even when empty, as the API
// shows them in content_block_start.
func (b block) MarshalJSON() ([]byte, error) {
	type plain block
	out, err := providers.MarshalJSON(plain(b))
	if err != nil || b.Type != "text" || b.Text != "" {
		return out, err
	}
	return append([]byte(`{"type":"text","text":""`), out[len(`{"type":"text"`):]...), nil
}

// source is an image or document source.
type source struct {
	Type      string `json:"type"` // base64, url, text
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

// UnmarshalJSON implements json.Unmarshaler. It also takes the plain
// string a search_result block's source is, so that such a block decodes
// and is then refused by name rather than failing the whole body.
func (s *source) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*s = source{}
		return json.Unmarshal(b, &s.URL)
	}
	type plain source
	return json.Unmarshal(b, (*plain)(s))
}

// toolResultBody is a tool_result's content: a string or blocks.
type toolResultBody struct {
	Text   string
	Blocks []block
}

func (t toolResultBody) MarshalJSON() ([]byte, error) {
	if t.Blocks != nil {
		return providers.MarshalJSON(t.Blocks)
	}
	return providers.MarshalJSON(t.Text)
}

func (t *toolResultBody) UnmarshalJSON(b []byte) error {
	*t = toolResultBody{}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &t.Text)
	}
	return json.Unmarshal(b, &t.Blocks)
}

// tool is a tool definition. Type is empty or "custom" for client tools;
// server tools (web_search_…, bash_…) have their own type.
type tool struct {
	Type         string          `json:"type,omitempty"`
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"input_schema,omitempty"`
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

// toolChoice is auto, any, tool (with Name) or none.
type toolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse *bool  `json:"disable_parallel_tool_use,omitempty"`
}

// messageResponse is a Message object: the non-streaming answer and the
// message of message_start.
type messageResponse struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Role         string  `json:"role"`
	Model        string  `json:"model"`
	Content      []block `json:"content"`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        usage   `json:"usage"`
}

// usage counts tokens the Anthropic way: input_tokens excludes the tokens
// read from or written to the prompt cache.
type usage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// errorBody is the error shape: {"type":"error","error":{"type","message"}}.
type errorBody struct {
	Type  string      `json:"type"`
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func isObject(raw json.RawMessage) bool {
	b := bytes.TrimSpace(raw)
	return len(b) > 0 && b[0] == '{'
}
