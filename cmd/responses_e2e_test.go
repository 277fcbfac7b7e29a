package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tidwall/gjson"
)

// The Responses API through the official Go SDK, served by an OpenAI-form
// chat upstream: a function call comes back as a function_call item (also
// streamed), its output goes back as a function_call_output item, the
// answer comes out; bad input answers 400 in the OpenAI shape naming the
// field; a built-in tool is left out and named in a header.
func TestE2EResponsesAPI(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, `
model_list:
  - model_name: gpt-tools
    litellm_params: {model: openai/weather-tool, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-master-test-0000
`, fake)
	c := openai.NewClient(option.WithBaseURL(l.URL+"/v1/"), option.WithAPIKey("sk-master-test-0000"), option.WithMaxRetries(0))
	weather := responses.ToolUnionParam{OfFunction: &responses.FunctionToolParam{Name: "get_weather",
		Parameters: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}
	params := responses.ResponseNewParams{Model: "gpt-tools", Instructions: openai.String("Answer briefly."),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Paris?")},
		Tools: []responses.ToolUnionParam{weather}}

	resp, err := c.Responses.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Object != "response" || resp.Status != "completed" || len(resp.Output) != 1 || resp.Output[0].Type != "function_call" {
		t.Fatalf("response: %s", resp.RawJSON())
	}
	call := resp.Output[0].AsFunctionCall()
	if call.Name != "get_weather" || call.Arguments != `{"city":"Paris"}` || call.CallID != "call_abc123" {
		t.Fatalf("function call: %+v", call)
	}
	if resp.Usage.InputTokens != 40 || resp.Usage.OutputTokens != 12 {
		t.Errorf("usage %+v", resp.Usage)
	}
	up := fake.lastBody()
	if msgs, _ := up["messages"].([]any); len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" {
		t.Errorf("upstream messages %v", up["messages"])
	}

	// Streamed: the SDK reads every event; the arguments arrive in deltas
	// and the final response holds the call.
	st := c.Responses.NewStreaming(context.Background(), params)
	var types []string
	var args strings.Builder
	var final responses.Response
	for st.Next() {
		ev := st.Current()
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.function_call_arguments.delta":
			args.WriteString(ev.Delta)
		case "response.completed":
			final = ev.AsResponseCompleted().Response
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if types[0] != "response.created" || types[len(types)-1] != "response.completed" || args.String() != `{"city":"Paris"}` ||
		len(final.Output) != 1 || final.Output[0].AsFunctionCall().Name != "get_weather" || final.Usage.TotalTokens != 52 {
		t.Fatalf("stream %v, arguments %q, final %s", types, args.String(), final.RawJSON())
	}

	// The round trip: the call and its output go back as items.
	output := responses.ResponseInputItemParamOfFunctionCallOutput("sunny, 21C")
	output.OfFunctionCallOutput.CallID = openai.String(call.CallID)
	params.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
		responses.ResponseInputItemParamOfMessage("Weather in Paris?", responses.EasyInputMessageRoleUser),
		responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name),
		output,
	}}
	answer, err := c.Responses.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if answer.OutputText() != "Sunny, 21C" {
		t.Fatalf("answer: %s", answer.RawJSON())
	}
	fake.mu.Lock()
	last := fake.bodies[len(fake.bodies)-1]
	fake.mu.Unlock()
	if got := gjson.GetBytes(last, `messages.#(role=="tool").tool_call_id`).Str; got != "call_abc123" {
		t.Errorf("tool result upstream: %s", last)
	}
	answerStream := c.Responses.NewStreaming(context.Background(), params)
	var text strings.Builder
	for answerStream.Next() {
		if ev := answerStream.Current(); ev.Type == "response.output_text.delta" {
			text.WriteString(ev.Delta)
		}
	}
	if err := answerStream.Err(); err != nil || text.String() != "Sunny, 21C" {
		t.Fatalf("streamed answer %q %v", text.String(), err)
	}

	// Stateful features are refused, naming the field, in the OpenAI shape.
	params.PreviousResponseID = openai.String("resp_123")
	_, err = c.Responses.New(context.Background(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "previous_response_id" ||
		!strings.Contains(apiErr.Message, "does not store responses") {
		t.Fatalf("previous_response_id: %v", err)
	}

	// A built-in tool is left out, and said so.
	r := rawPost(t, l, "/v1/responses", "sk-master-test-0000",
		`{"model":"gpt-tools","input":"hi","tools":[{"type":"web_search"},{"type":"function","name":"get_weather","parameters":{"type":"object"}}]}`)
	if r.status != 200 || r.header.Get("X-Lumen-Dropped-Tools") != "web_search" || r.header.Get("X-Lumen-Model-Group") != "gpt-tools" ||
		r.header.Get("X-Lumen-Cost-Usd") == "" {
		t.Fatalf("built-in tool: %d %v %s", r.status, r.header, r.text)
	}
	if up := fake.lastBody(); len(up["tools"].([]any)) != 1 {
		t.Errorf("upstream tools %v", up["tools"])
	}
	// Keys apply as on chat completions.
	if r := rawPost(t, l, "/v1/responses", "sk-wrong", `{"model":"gpt-tools","input":"hi"}`); r.status != 401 {
		t.Errorf("wrong key: %d %s", r.status, r.text)
	}
}

// A deployment that speaks the Responses API (responses_api: true) gets the
// client's own request, reasoning items and built-in tools included, and
// its Response and events pass through; usage is read for the ledger and
// the cost.
func TestE2EResponsesNative(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		if r.URL.Path != "/v1/responses" || r.Header.Get("Authorization") != "Bearer sk-upstream-secret-123456" {
			http.Error(w, `{"error":{"message":"wrong path or key","type":"invalid_request_error"}}`, 404)
			return
		}
		const resp = `{"id":"resp_native_1","object":"response","created_at":1700000000,"status":"completed","model":"gpt-5","output":[` +
			`{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAA-opaque"},` +
			`{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Native hello","annotations":[]}]}],` +
			`"usage":{"input_tokens":1000,"input_tokens_details":{"cached_tokens":0},"output_tokens":100,"output_tokens_details":{"reasoning_tokens":60},"total_tokens":1100}}`
		if !gjson.GetBytes(b, "stream").Bool() {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, resp)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		if gjson.GetBytes(b, "input").Str == "crash" {
			io.WriteString(w, "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_2\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n")
			io.WriteString(w, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Half\",\"logprobs\":[]}\n\n")
			io.WriteString(w, "event: error\ndata: {\"type\":\"error\",\"sequence_number\":2,\"code\":\"server_error\",\"message\":\"The model crashed\",\"param\":null}\n\n")
			return
		}
		fmt.Fprintf(w, "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_native_1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n")
		fmt.Fprintf(w, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"delta\":\"Native hello\",\"logprobs\":[]}\n\n")
		fmt.Fprintf(w, "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":%s}\n\n", resp)
	}))
	defer up.Close()
	l := startLumen(t, `
model_list:
  - model_name: gpt-5
    litellm_params: {model: openai/gpt-5, api_base: "`+up.URL+`/v1", api_key: sk-upstream-secret-123456, responses_api: true}
    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.00001}
`, nil)
	body := `{"model":"gpt-5","store":false,"include":["reasoning.encrypted_content"],"tools":[{"type":"web_search"}],"input":[` +
		`{"role":"user","content":"hi"},{"type":"reasoning","id":"rs_0","summary":[],"encrypted_content":"gAAAA-earlier"},` +
		`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hello"}]},{"role":"user","content":"again"}]}`
	r := rawPost(t, l, "/v1/responses", "", body)
	if r.status != 200 || gjson.Get(r.text, "id").Str != "resp_native_1" || gjson.Get(r.text, "output.0.encrypted_content").Str != "gAAAA-opaque" {
		t.Fatalf("native answer: %d %s", r.status, r.text)
	}
	if r.header.Get("X-Lumen-Dropped-Tools") != "" || r.header.Get("X-Lumen-Cost-Usd") != "0.002" {
		t.Errorf("headers: dropped %q cost %q", r.header.Get("X-Lumen-Dropped-Tools"), r.header.Get("X-Lumen-Cost-Usd"))
	}
	mu.Lock()
	sent := bodies[0]
	mu.Unlock()
	if gjson.GetBytes(sent, "input.1.encrypted_content").Str != "gAAAA-earlier" || gjson.GetBytes(sent, "tools.0.type").Str != "web_search" ||
		gjson.GetBytes(sent, "model").Str != "gpt-5" {
		t.Errorf("upstream body %s", sent)
	}

	// The gateway's own fields work as on chat completions and never
	// reach the native upstream.
	r = rawPost(t, l, "/v1/responses", "", `{"model":"gpt-5","models":["nope"],"input":"hi"}`)
	if r.status != 404 || !strings.Contains(r.text, `nope`) {
		t.Errorf("an unknown model in models: %d %s", r.status, r.text)
	}
	r = rawPost(t, l, "/v1/responses", "", `{"model":"gpt-5","fallbacks":[],"cache":{"no-cache":true},"lumen":{"quality_floor":0.5},"input":"hi"}`)
	mu.Lock()
	sent = bodies[len(bodies)-1]
	mu.Unlock()
	if r.status != 200 || gjson.GetBytes(sent, "fallbacks").Exists() || gjson.GetBytes(sent, "cache").Exists() || gjson.GetBytes(sent, "lumen").Exists() {
		t.Errorf("gateway fields: %d %s; upstream got %s", r.status, r.text, sent)
	}

	// Streamed through the SDK: the upstream's events, in order.
	c := openai.NewClient(option.WithBaseURL(l.URL+"/v1/"), option.WithAPIKey("anything"), option.WithMaxRetries(0))
	st := c.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{Model: "gpt-5",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}})
	var seqs []int64
	var final responses.Response
	for st.Next() {
		ev := st.Current()
		seqs = append(seqs, ev.SequenceNumber)
		if ev.Type == "response.completed" {
			final = ev.AsResponseCompleted().Response
		}
	}
	if err := st.Err(); err != nil || len(seqs) != 3 || seqs[2] != 2 || final.OutputText() != "Native hello" || final.ID != "resp_native_1" {
		t.Fatalf("native stream: %v %v %s", seqs, err, final.RawJSON())
	}

	// A native stream that breaks ends with Lumen's error event, numbered
	// after the last event relayed.
	r = rawPost(t, l, "/v1/responses", "", `{"model":"gpt-5","stream":true,"input":"crash"}`)
	events := strings.Split(strings.TrimSpace(r.text), "\n\n")
	last := events[len(events)-1]
	data := strings.TrimPrefix(last[strings.Index(last, "data: "):], "data: ")
	if len(events) != 3 || !strings.HasPrefix(last, "event: error\n") || gjson.Get(data, "sequence_number").Int() != 2 ||
		gjson.Get(data, "code").Str != "server_error" || !strings.Contains(gjson.Get(data, "message").Str, "The model crashed") {
		t.Fatalf("broken native stream:\n%s", r.text)
	}
}
