package responses

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/lumengw/lumen/providers"
)

// Translate reads a Responses API request body once: it returns its
// translation into an OpenAI chat completions body for the same model
// name, and what the Response will repeat of it (and needs to map calls
// back). Errors are *providers.InvalidRequestError naming the Responses
// field.
func Translate(body []byte) ([]byte, Echo, error) {
	req, err := decode(body)
	if err != nil {
		return nil, Echo{}, err
	}
	chat, err := toChat(req)
	if err != nil {
		return nil, Echo{}, err
	}
	out, err := providers.MarshalJSON(chat)
	if err != nil {
		return nil, Echo{}, fmt.Errorf("encoding the chat request: %w", err)
	}
	return out, echoOf(req), nil
}

func decode(body []byte) (*request, error) {
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, &providers.InvalidRequestError{Param: te.Field, Message: fmt.Sprintf("expected %s, got JSON %s", te.Type, te.Value), Err: err}
		}
		return nil, &providers.InvalidRequestError{Message: "the body is not a valid Responses API request: " + err.Error(), Err: err}
	}
	return &req, nil
}

// stateful are the request fields that need responses stored server-side.
func stateful(req *request) error {
	const why = "Lumen does not store responses; send the whole conversation in input"
	switch {
	case req.PreviousResponseID != nil && *req.PreviousResponseID != "":
		return providers.Invalid("previous_response_id", "%s", why)
	case len(req.Conversation) > 0 && string(req.Conversation) != "null":
		return providers.Invalid("conversation", "%s", why)
	case req.Background:
		return providers.Invalid("background", "background responses are not supported: Lumen does not store responses")
	case len(req.Prompt) > 0 && string(req.Prompt) != "null":
		return providers.Invalid("prompt", "stored prompt templates are OpenAI's; send the prompt's text as instructions and input")
	}
	return nil
}

func toChat(req *request) (*providers.ChatRequest, error) {
	switch {
	case req.Model == "":
		return nil, providers.Invalid("model", "you must provide a model parameter")
	case len(req.Input) == 0 || string(req.Input) == "null":
		return nil, providers.Invalid("input", "Missing required parameter: 'input'.")
	}
	if err := stateful(req); err != nil {
		return nil, err
	}
	chat := &providers.ChatRequest{Model: req.Model, MaxTokens: req.MaxOutputTokens, Temperature: req.Temperature,
		TopP: req.TopP, Stream: req.Stream, User: providers.UpstreamUser(req.endUser())}
	if req.Reasoning != nil {
		chat.ReasoningEffort = req.Reasoning.Effort
	}
	if req.Stream {
		chat.StreamOptions = &providers.StreamOptions{IncludeUsage: true}
	}
	if req.Instructions != nil && *req.Instructions != "" {
		chat.Messages = append(chat.Messages, providers.Message{Role: "system", Content: providers.TextContent(*req.Instructions)})
	}
	msgs, err := inputMessages(req.Input)
	if err != nil {
		return nil, err
	}
	chat.Messages = append(chat.Messages, msgs...)
	if len(chat.Messages) == 0 {
		return nil, providers.Invalid("input", "the input has no message")
	}
	for i, t := range req.Tools {
		at := fmt.Sprintf("tools[%d]", i)
		switch t.Type {
		case "function":
			f, err := function(t, "", at)
			if err != nil {
				return nil, err
			}
			chat.Tools = append(chat.Tools, f)
		case "namespace":
			if t.Name == "" {
				return nil, providers.Invalid(at+".name", "a namespace needs a name")
			}
			for j, ft := range t.Tools {
				fat := fmt.Sprintf("%s.tools[%d]", at, j)
				if ft.Type != "function" {
					return nil, providers.Invalid(fat+".type", "unsupported tool %q in a namespace for a chat upstream (supported: function)", ft.Type)
				}
				f, err := function(ft, t.Name, fat)
				if err != nil {
					return nil, err
				}
				chat.Tools = append(chat.Tools, f)
			}
		case "custom":
			f, err := customFunction(t, at)
			if err != nil {
				return nil, err
			}
			chat.Tools = append(chat.Tools, f)
		default:
			// A built-in tool (web_search, file_search, code_interpreter…)
			// runs on OpenAI's side: the model answers without it
			// (Echo.Dropped lists it; the server says so in a header).
		}
	}
	if tc, err := toolChoice(req.ToolChoice); err != nil {
		return nil, err
	} else if len(chat.Tools) > 0 {
		// OpenAI refuses both without tools (all of them may have been
		// built-in ones, left out).
		chat.ToolChoice, chat.ParallelToolCalls = tc, req.ParallelToolCalls
	}
	if req.Text != nil && req.Text.Format != nil {
		f := req.Text.Format
		switch f.Type {
		case "text":
		case "json_object":
			chat.ResponseFormat = &providers.ResponseFormat{Type: "json_object"}
		case "json_schema":
			if len(bytes.TrimSpace(f.Schema)) == 0 || bytes.TrimSpace(f.Schema)[0] != '{' {
				return nil, providers.Invalid("text.format.schema", "a json_schema format needs a JSON object schema")
			}
			name := f.Name
			if name == "" {
				name = "output"
			}
			chat.ResponseFormat = &providers.ResponseFormat{Type: "json_schema", JSONSchema: &providers.JSONSchema{
				Name: name, Description: f.Description, Schema: f.Schema, Strict: f.Strict}}
		default:
			return nil, providers.Invalid("text.format.type", "unsupported text format %q (supported: text, json_object, json_schema)", f.Type)
		}
	}
	return chat, nil
}

// nsSep joins a namespace and a function name into the chat function's
// name (chat function names allow [a-zA-Z0-9_-] only).
const nsSep = "__"

// function is a function tool (in namespace ns, or none) as a chat tool.
func function(t tool, ns, at string) (providers.Tool, error) {
	if t.Name == "" {
		return providers.Tool{}, providers.Invalid(at+".name", "a function tool needs a name")
	}
	name := t.Name
	if ns != "" {
		name = ns + nsSep + t.Name
	}
	return providers.Tool{Type: "function", Function: providers.FunctionDef{
		Name: name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict}}, nil
}

// customInput is the parameters schema of a custom tool as a chat
// function: its free-form input as one string.
var customInput = json.RawMessage(`{"type":"object","properties":{"input":{"type":"string","description":"The tool's whole free-form input, as plain text."}},"required":["input"],"additionalProperties":false}`)

// customFunction is a custom (free-form input) tool as a chat function of
// one string argument, "input"; the input's grammar, if any, goes into the
// description, since a chat upstream cannot constrain to it.
func customFunction(t tool, at string) (providers.Tool, error) {
	if t.Name == "" {
		return providers.Tool{}, providers.Invalid(at+".name", "a custom tool needs a name")
	}
	desc := t.Description
	if f := t.Format; f != nil && f.Type == "grammar" && f.Definition != "" {
		desc += fmt.Sprintf("\n\nThe input must match this %s grammar:\n%s", f.Syntax, f.Definition)
	}
	return providers.Tool{Type: "function", Function: providers.FunctionDef{Name: t.Name, Description: desc, Parameters: customInput}}, nil
}

// toolChoice reads "auto" | "none" | "required" | {"type":"function" or
// "custom","name":…} (a custom tool is a function upstream).
func toolChoice(raw json.RawMessage) (*providers.ToolChoice, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var mode string
		_ = json.Unmarshal(raw, &mode)
		switch mode {
		case providers.ToolChoiceAuto, providers.ToolChoiceNone, providers.ToolChoiceRequired:
			return &providers.ToolChoice{Mode: mode}, nil
		}
		return nil, providers.Invalid("tool_choice", "unsupported tool_choice %q (supported: auto, none, required or a function)", mode)
	}
	var obj struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || (obj.Type != "function" && obj.Type != "custom") || obj.Name == "" {
		return nil, providers.Invalid("tool_choice", "a tool_choice object must be {\"type\": \"function\" or \"custom\", \"name\": …} (built-in tools are not available through Lumen)")
	}
	return &providers.ToolChoice{Mode: providers.ToolChoiceFunction, Name: obj.Name}, nil
}

// inputMessages translates input: a string (one user message) or items.
// function_call items join the assistant message before them (or start
// one), so an answer's text and its calls are one chat message with
// several tool calls, as chat upstreams want them.
func inputMessages(raw json.RawMessage) ([]providers.Message, error) {
	raw = bytes.TrimSpace(raw)
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, providers.Invalid("input", "the input is not a valid JSON string")
		}
		return []providers.Message{{Role: "user", Content: providers.TextContent(s)}}, nil
	}
	var items []item
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, providers.Invalid("input", "the input must be a string or an array of items")
	}
	var out []providers.Message
	for i, it := range items {
		at := fmt.Sprintf("input[%d]", i)
		switch it.Type {
		case "", "message":
			m, err := message(it, at)
			if err != nil {
				return nil, err
			}
			if m != nil {
				out = append(out, *m)
			}
		case "function_call":
			if it.CallID == "" || it.Name == "" {
				return nil, providers.Invalid(at, "a function_call item needs call_id and name")
			}
			name := it.Name
			if it.Namespace != "" {
				name = it.Namespace + nsSep + it.Name
			}
			out = appendCall(out, providers.ToolCall{ID: it.CallID, Type: "function", Function: providers.FunctionCall{Name: name, Arguments: it.Arguments}})
		case "custom_tool_call":
			if it.CallID == "" || it.Name == "" {
				return nil, providers.Invalid(at, "a custom_tool_call item needs call_id and name")
			}
			args, _ := json.Marshal(map[string]string{"input": it.Input})
			out = appendCall(out, providers.ToolCall{ID: it.CallID, Type: "function", Function: providers.FunctionCall{Name: it.Name, Arguments: string(args)}})
		case "function_call_output", "custom_tool_call_output":
			if it.CallID == "" {
				return nil, providers.Invalid(at+".call_id", "a function_call_output item needs the call_id it answers")
			}
			text, err := callOutput(it.Output, at+".output")
			if err != nil {
				return nil, err
			}
			out = append(out, providers.Message{Role: "tool", ToolCallID: it.CallID, Content: providers.TextContent(text)})
		case "reasoning":
			// Only the model that wrote it can read it back.
		case "item_reference":
			return nil, providers.Invalid(at+".type", "item_reference needs stored items; Lumen does not store responses, so send the item itself")
		default:
			return nil, providers.Invalid(at+".type", "unsupported input item %q (supported: message, function_call, function_call_output, custom_tool_call, custom_tool_call_output, reasoning)", it.Type)
		}
	}
	return out, nil
}

// appendCall adds a tool call to the assistant message that ends out, or
// starts one.
func appendCall(out []providers.Message, call providers.ToolCall) []providers.Message {
	if n := len(out); n > 0 && out[n-1].Role == "assistant" {
		out[n-1].ToolCalls = append(out[n-1].ToolCalls, call)
		return out
	}
	return append(out, providers.Message{Role: "assistant", ToolCalls: []providers.ToolCall{call}})
}

// message translates a message item. An assistant message's text is its
// output_text parts; the others take input_text and input_image.
func message(it item, at string) (*providers.Message, error) {
	role := it.Role
	switch role {
	case "user", "system", "assistant":
	case "developer":
		role = "system" // every chat upstream knows system; not all know developer
	default:
		return nil, providers.Invalid(at+".role", "unsupported role %q (supported: user, system, developer, assistant)", role)
	}
	raw := bytes.TrimSpace(it.Content)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, providers.Invalid(at+".content", "a message needs content")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, providers.Invalid(at+".content", "the content is not a valid JSON string")
		}
		return &providers.Message{Role: role, Content: providers.TextContent(s)}, nil
	}
	var parts []part
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, providers.Invalid(at+".content", "the content must be a string or an array of parts")
	}
	var out []providers.Part
	for j, p := range parts {
		pat := fmt.Sprintf("%s.content[%d]", at, j)
		switch p.Type {
		case "input_text", "output_text", "text":
			out = append(out, providers.Part{Type: providers.PartText, Text: p.Text})
		case "refusal":
			out = append(out, providers.Part{Type: providers.PartText, Text: p.Refusal})
		case "input_image":
			if role == "assistant" {
				return nil, providers.Invalid(pat+".type", "an assistant message cannot carry an image")
			}
			if p.ImageURL == "" {
				return nil, providers.Invalid(pat+".image_url", "an input_image needs an image_url (a URL or a data URL); file_id needs OpenAI's file store")
			}
			detail := p.Detail
			if detail == "auto" {
				detail = ""
			}
			out = append(out, providers.Part{Type: providers.PartImageURL, ImageURL: &providers.ImageURL{URL: p.ImageURL, Detail: detail}})
		case "input_file":
			// Chat completions take a file as file_data or file_id (PDF
			// only at OpenAI; other upstreams say what they read).
			switch {
			case role == "assistant":
				return nil, providers.Invalid(pat+".type", "an assistant message cannot carry a file")
			case p.FileData == "" && p.FileID == "":
				return nil, providers.Invalid(pat+".file_url", "an input_file for a chat upstream needs file_data (a base64 data URL) or file_id; chat completions cannot fetch a file_url")
			}
			data := fileDataURL(p.FileData, p.Filename)
			name := p.Filename
			if name == "" && data != "" {
				mt, _, _ := providers.ParseDataURL(data)
				name = "document" + fileExt[mt] // OpenAI wants a name with file_data
			}
			out = append(out, providers.Part{Type: providers.PartFile, File: &providers.File{Filename: name, FileData: data, FileID: p.FileID}})
		default:
			return nil, providers.Invalid(pat+".type", "unsupported content part %q (supported: input_text, input_image, input_file, output_text, refusal)", p.Type)
		}
	}
	if len(out) == 1 && out[0].Type == providers.PartText {
		return &providers.Message{Role: role, Content: providers.TextContent(out[0].Text)}, nil
	}
	if role != "user" {
		// system and assistant messages carry text only on most upstreams
		var b strings.Builder
		for j, p := range out {
			if p.Type != providers.PartText {
				return nil, providers.Invalid(fmt.Sprintf("%s.content[%d].type", at, j), "a %s message carries text only; send images and files in a user message", it.Role)
			}
			b.WriteString(p.Text)
		}
		return &providers.Message{Role: role, Content: providers.TextContent(b.String())}, nil
	}
	return &providers.Message{Role: role, Content: providers.Content{Parts: out}}, nil
}

// fileExt and fileType map the document types upstreams read to a file
// name's extension and back (a fixed table: the system's MIME tables
// differ between machines).
var (
	fileExt = map[string]string{"application/pdf": ".pdf", "text/plain": ".txt", "text/markdown": ".md",
		"text/csv": ".csv", "text/html": ".html", "application/json": ".json"}
	fileType = func() map[string]string {
		m := make(map[string]string, len(fileExt))
		for t, ext := range fileExt {
			m[ext] = t
		}
		return m
	}()
)

// fileDataURL is an input_file's file_data as a data URL: the Responses
// API also takes bare base64, whose type the file name tells (a PDF when
// it tells none).
func fileDataURL(data, filename string) string {
	if data == "" || strings.HasPrefix(data, "data:") {
		return data
	}
	mt, ok := fileType[strings.ToLower(path.Ext(filename))]
	if !ok {
		mt = "application/pdf"
	}
	return "data:" + mt + ";base64," + data
}

// callOutput reads a function_call_output's output: a string, or text
// parts joined.
func callOutput(raw json.RawMessage, at string) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []part
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", providers.Invalid(at, "the output must be a string or an array of parts")
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "input_text" && p.Type != "output_text" {
			return "", providers.Invalid(fmt.Sprintf("%s[%d].type", at, j), "unsupported function output part %q for a chat upstream (supported: input_text)", p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// Echo is what a Response repeats of its request.
type Echo struct {
	model           string
	instructions    *string
	maxOutputTokens *int
	temperature     *float64
	topP            *float64
	parallel        bool
	store           bool // as the request said; the API's default is true (Lumen stores nothing either way)
	tools           []tool
	toolChoice      json.RawMessage
	text            json.RawMessage
	// namespaced maps a chat function name back to its namespace and name.
	namespaced map[string][2]string
	custom     map[string]bool // the custom tools' names
	dropped    []string
}

// Dropped names the built-in tools of the request that a chat upstream
// cannot run, which were left out.
func (e Echo) Dropped() []string { return e.dropped }

// function returns the Responses name and namespace of a chat function.
func (e Echo) function(chatName string) (name, namespace string) {
	if n, ok := e.namespaced[chatName]; ok {
		return n[1], n[0]
	}
	return chatName, ""
}

// echoOf reads the request fields a Response repeats.
func echoOf(req *request) Echo {
	e := Echo{model: req.Model, instructions: req.Instructions, maxOutputTokens: req.MaxOutputTokens,
		temperature: req.Temperature, topP: req.TopP, parallel: req.ParallelToolCalls == nil || *req.ParallelToolCalls,
		store: req.Store == nil || *req.Store, tools: req.Tools, toolChoice: req.ToolChoice, text: json.RawMessage(`{"format":{"type":"text"}}`)}
	if e.tools == nil {
		e.tools = []tool{}
	}
	for _, t := range req.Tools {
		switch t.Type {
		case "function":
		case "custom":
			if e.custom == nil {
				e.custom = map[string]bool{}
			}
			e.custom[t.Name] = true
		case "namespace":
			for _, ft := range t.Tools {
				if e.namespaced == nil {
					e.namespaced = map[string][2]string{}
				}
				e.namespaced[t.Name+nsSep+ft.Name] = [2]string{t.Name, ft.Name}
			}
		default:
			e.dropped = append(e.dropped, t.Type)
		}
	}
	if len(bytes.TrimSpace(e.toolChoice)) == 0 || string(e.toolChoice) == "null" {
		e.toolChoice = json.RawMessage(`"auto"`)
	}
	if req.Text != nil && req.Text.Format != nil {
		if b, err := json.Marshal(req.Text); err == nil {
			e.text = b
		}
	}
	return e
}

// shell is the Response before its output: status in_progress.
func (e Echo) shell(id string, created int64) response {
	return response{ID: id, Object: "response", CreatedAt: created, Status: "in_progress", Instructions: e.instructions,
		MaxOutputTokens: e.maxOutputTokens, Model: e.model, Output: []outputItem{}, ParallelToolCalls: e.parallel,
		Store: e.store, Temperature: e.temperature, Text: e.text, ToolChoice: e.toolChoice, Tools: e.tools, TopP: e.topP,
		Truncation: "disabled", Metadata: map[string]any{}}
}

// FromChat translates an OpenAI chat.completion body into a Response that
// repeats e.
func FromChat(chatResponse []byte, e Echo) ([]byte, error) {
	resp, err := providers.DecodeChatResponse(chatResponse)
	if err != nil {
		return nil, err
	}
	ch := resp.Choices[0]
	r := e.shell(responseID(resp.ID), resp.Created)
	if r.CreatedAt == 0 {
		r.CreatedAt = time.Now().Unix()
	}
	if t := ch.Message.ReasoningText(); t != "" {
		r.Output = append(r.Output, outputItem{Type: "reasoning", ID: newID("rs_"), Summary: &[]summaryText{{Type: "summary_text", Text: t}}})
	}
	var parts []outputPart
	if c := ch.Message.Content; c != nil && *c != "" {
		parts = append(parts, textPart(*c))
	}
	if rf := ch.Message.Refusal; rf != "" {
		parts = append(parts, refusalPart(rf))
	}
	if len(parts) > 0 {
		r.Output = append(r.Output, outputItem{Type: "message", ID: newID("msg_"), Status: "completed", Role: "assistant", Content: &parts})
	}
	for _, tc := range ch.Message.ToolCalls {
		args := string(tc.Function.ArgumentsJSON())
		if !json.Valid([]byte(args)) {
			return nil, &providers.UpstreamError{Status: http.StatusBadGateway, Type: "api_error", Retryable: true,
				Message: fmt.Sprintf("the model called %s with arguments that are not JSON", tc.Function.Name)}
		}
		id := tc.ID
		if id == "" {
			id = newID("call_")
		}
		if e.custom[tc.Function.Name] {
			input := customInputOf(args)
			r.Output = append(r.Output, outputItem{Type: "custom_tool_call", ID: newID("ctc_"), Status: "completed", CallID: id,
				Name: tc.Function.Name, Input: &input})
			continue
		}
		name, ns := e.function(tc.Function.Name)
		r.Output = append(r.Output, outputItem{Type: "function_call", ID: newID("fc_"), Status: "completed", CallID: id,
			Name: name, Namespace: ns, Arguments: &args})
	}
	r.Status, r.IncompleteDetails = finish(ch.FinishReason)
	if n := len(r.Output); n > 0 && r.Status == "incomplete" && r.Output[n-1].Type == "message" {
		r.Output[n-1].Status = "incomplete" // the text the limit or filter cut
	}
	r.Usage = fromUsage(resp.Usage)
	return providers.MarshalJSON(&r)
}

// customInputOf is a custom tool's input from its chat call's arguments
// ({"input": "…"}); arguments of another shape are passed as they are.
func customInputOf(args string) string {
	var v struct {
		Input *string `json:"input"`
	}
	if json.Unmarshal([]byte(args), &v) == nil && v.Input != nil {
		return *v.Input
	}
	return args
}

// finish maps a finish_reason to the Response's status.
func finish(reason string) (string, *incomplete) {
	switch reason {
	case providers.FinishLength:
		return "incomplete", &incomplete{Reason: "max_output_tokens"}
	case providers.FinishContentFilter:
		return "incomplete", &incomplete{Reason: "content_filter"}
	}
	return "completed", nil
}

// responseID gives a chat completion id the resp_ prefix.
func responseID(id string) string {
	switch {
	case id == "":
		return newID("resp_")
	case strings.HasPrefix(id, "resp_"):
		return id
	}
	return "resp_" + strings.TrimPrefix(id, "chatcmpl-")
}

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
