package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/openai"
	"github.com/lumengw/lumen/providers/sse"
)

// These tests drive the inbound translators with the official Anthropic
// SDK as the client, the way the server will serve /v1/messages: a
// Messages API request goes through ToOpenAI to an OpenAI-shaped upstream
// (through the openai provider), and its answer comes back through
// FromOpenAI or a StreamTranslator. If the SDK parses what comes back, the
// shapes are the ones Anthropic clients expect.

// openAIFake is an OpenAI chat completions upstream that answers with a
// scripted text or tool calls, streamed in the documented chunk format.
type openAIFake struct {
	mu      sync.Mutex
	text    string
	refusal string      // the model declines, in OpenAI's refusal field
	calls   [][3]string // id, name, arguments
	fail    int         // answer with this status and an OpenAI error
	last    []byte
}

func (f *openAIFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.last = body
	text, refusal, calls, fail := f.text, f.refusal, f.calls, f.fail
	f.mu.Unlock()
	if fail != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(fail)
		fmt.Fprintf(w, `{"error":{"message":"Rate limit reached for gpt-test","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
		return
	}
	finish := "stop"
	if len(calls) > 0 {
		finish = "tool_calls"
	}
	usage := `{"prompt_tokens":57,"completion_tokens":17,"total_tokens":74,"prompt_tokens_details":{"cached_tokens":32,"audio_tokens":0}}`
	if !gjson.GetBytes(body, "stream").Bool() {
		var tcs []string
		for _, c := range calls {
			tcs = append(tcs, fmt.Sprintf(`{"id":%q,"type":"function","function":{"name":%q,"arguments":%q}}`, c[0], c[1], c[2]))
		}
		content := "null"
		if text != "" {
			content = fmt.Sprintf("%q", text)
		}
		ref := "null"
		if refusal != "" {
			ref = fmt.Sprintf("%q", refusal)
		}
		tc := ""
		if len(tcs) > 0 {
			tc = `,"tool_calls":[` + strings.Join(tcs, ",") + `]`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-test-2025",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":%s%s,"annotations":[]},"logprobs":null,"finish_reason":%q}],`+
			`"usage":%s,"service_tier":"default","system_fingerprint":"fp_abc"}`, content, ref, tc, finish, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	head := `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-test-2025","system_fingerprint":"fp_44709d6fcb",`
	send := func(choices string) {
		fmt.Fprintf(w, "data: %s\"choices\":[%s]}\n\n", head, choices)
		fl.Flush()
	}
	send(`{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}`)
	for _, p := range splitN(text, 4) {
		send(fmt.Sprintf(`{"index":0,"delta":{"content":%q},"logprobs":null,"finish_reason":null}`, p))
	}
	for _, p := range splitN(refusal, 6) {
		send(fmt.Sprintf(`{"index":0,"delta":{"refusal":%q},"logprobs":null,"finish_reason":null}`, p))
	}
	for i, c := range calls {
		send(fmt.Sprintf(`{"index":0,"delta":{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":""}}]},"logprobs":null,"finish_reason":null}`, i, c[0], c[1]))
		for _, p := range splitN(c[2], 5) {
			send(fmt.Sprintf(`{"index":0,"delta":{"tool_calls":[{"index":%d,"function":{"arguments":%q}}]},"logprobs":null,"finish_reason":null}`, i, p))
		}
	}
	send(fmt.Sprintf(`{"index":0,"delta":{},"logprobs":null,"finish_reason":%q}`, finish))
	fmt.Fprintf(w, "data: %s\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", head, usage)
}

func splitN(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

func (f *openAIFake) lastBody() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// inbound is /v1/messages served from an OpenAI-shaped provider, as the
// server does it, in a few lines.
func inbound(t *testing.T, upstream providers.Provider) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/messages" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		model := gjson.GetBytes(body, "model").Str
		fail := func(err error) {
			status := http.StatusInternalServerError
			var ie *providers.InvalidRequestError
			var ue *providers.UpstreamError
			switch {
			case errors.As(err, &ie):
				status = http.StatusBadRequest
			case errors.As(err, &ue):
				status = ue.Status
				if ue.RetryAfter > 0 {
					w.Header().Set("Retry-After", fmt.Sprint(int(ue.RetryAfter.Seconds())))
				}
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(ErrorJSON(status, err.Error()))
		}
		oai, err := ToOpenAI(body)
		if err != nil {
			fail(err)
			return
		}
		req := &providers.Request{Op: providers.OpChat, Model: "gpt-test", Body: oai, Stream: gjson.GetBytes(oai, "stream").Bool()}
		if !req.Stream {
			resp, err := upstream.Do(r.Context(), req)
			if err != nil {
				fail(err)
				return
			}
			out, err := FromOpenAI(resp.Body, model)
			if err != nil {
				fail(err)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(out)
			return
		}
		st, err := upstream.DoStream(r.Context(), req)
		if err != nil {
			fail(err)
			return
		}
		defer st.Close()
		w.Header().Set("Content-Type", "text/event-stream")
		tr := NewStreamTranslator(model, "")
		var buf []byte
		write := func(evs []Event) {
			for _, e := range evs {
				buf = sse.AppendEvent(buf[:0], e.Type, e.Data)
				_, _ = w.Write(buf)
			}
			w.(http.Flusher).Flush()
		}
		for {
			data, err := st.Recv()
			if err == io.EOF {
				write(tr.Finish())
				return
			}
			if err != nil {
				write([]Event{ErrorEvent(http.StatusBadGateway, err.Error())})
				return
			}
			evs, err := tr.Chunk(data)
			if err != nil {
				write([]Event{ErrorEvent(http.StatusBadGateway, err.Error())})
				return
			}
			write(evs)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func sdkClient(srv *httptest.Server) sdk.Client {
	return sdk.NewClient(option.WithBaseURL(srv.URL), option.WithAPIKey("lumen-sk-test"), option.WithMaxRetries(0))
}

func viaOpenAI(t *testing.T) (*openAIFake, sdk.Client) {
	fake := &openAIFake{}
	up := httptest.NewServer(fake)
	t.Cleanup(up.Close)
	p, err := openai.New(providers.Config{Provider: "openai", Model: "gpt-test", APIBase: up.URL + "/v1", APIKey: "sk-test"})
	if err != nil {
		t.Fatal(err)
	}
	return fake, sdkClient(inbound(t, p))
}

var weatherParam = sdk.ToolUnionParam{OfTool: &sdk.ToolParam{Name: "get_weather", Description: sdk.String("Current weather"),
	InputSchema: sdk.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}, Required: []string{"city"}}}}

func TestSDKMessagesViaOpenAI(t *testing.T) {
	fake, client := viaOpenAI(t)
	fake.text = "Bonjour! Comment puis-je vous aider?"
	msg, err := client.Messages.New(context.Background(), sdk.MessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 300,
		System:        []sdk.TextBlockParam{{Text: "Answer in French."}},
		Messages:      []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Hello"))},
		StopSequences: []string{"END"},
		Temperature:   sdk.Float(0.3),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != fake.text {
		t.Fatalf("content = %+v", msg.Content)
	}
	if msg.StopReason != sdk.StopReasonEndTurn || msg.Model != "claude-sonnet-4-5" || !strings.HasPrefix(msg.ID, "msg_") || msg.Role != "assistant" {
		t.Errorf("message = %s", msg.RawJSON())
	}
	if u := msg.Usage; u.InputTokens != 25 || u.CacheReadInputTokens != 32 || u.OutputTokens != 17 {
		t.Errorf("usage = %s, want input 25 (57 minus 32 cached), cache read 32, output 17", u.RawJSON())
	}
	got := gjson.ParseBytes(fake.lastBody())
	if got.Get("messages.0.role").Str != "system" || got.Get("messages.0.content").Str != "Answer in French." ||
		got.Get("messages.1.content").Str != "Hello" || got.Get("max_tokens").Int() != 300 ||
		got.Get("stop.0").Str != "END" || got.Get("temperature").Float() != 0.3 || got.Get("model").Str != "gpt-test" {
		t.Errorf("the OpenAI upstream got %s", fake.lastBody())
	}
}

func TestSDKToolsViaOpenAI(t *testing.T) {
	fake, client := viaOpenAI(t)
	fake.calls = [][3]string{{"call_Paris1", "get_weather", `{"city":"Paris"}`}, {"call_Tokyo2", "get_weather", `{"city":"Tokyo"}`}}
	params := sdk.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 300, Tools: []sdk.ToolUnionParam{weatherParam},
		ToolChoice: sdk.ToolChoiceUnionParam{OfAny: &sdk.ToolChoiceAnyParam{DisableParallelToolUse: sdk.Bool(false)}},
		Messages:   []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Weather in Paris and Tokyo?"))}}
	msg, err := client.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != sdk.StopReasonToolUse || len(msg.Content) != 2 {
		t.Fatalf("message = %s", msg.RawJSON())
	}
	for i, want := range fake.calls {
		b := msg.Content[i].AsToolUse()
		if b.ID != want[0] || b.Name != want[1] || string(b.Input) != want[2] {
			t.Errorf("tool_use %d = %s %s %s", i, b.ID, b.Name, b.Input)
		}
	}
	got := gjson.ParseBytes(fake.lastBody())
	if got.Get("tool_choice").Str != "required" || got.Get("tools.0.function.name").Str != "get_weather" ||
		got.Get("tools.0.function.parameters.required.0").Str != "city" {
		t.Errorf("the OpenAI upstream got %s", fake.lastBody())
	}

	// Round trip: the SDK sends the calls back with their results.
	fake.calls, fake.text = nil, "Paris is colder."
	params.Messages = append(params.Messages, msg.ToParam(), sdk.NewUserMessage(
		sdk.NewToolResultBlock("call_Paris1", "12C", false), sdk.NewToolResultBlock("call_Tokyo2", "20C", false)))
	msg, err = client.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "Paris is colder." {
		t.Errorf("content = %s", msg.RawJSON())
	}
	got = gjson.ParseBytes(fake.lastBody())
	if got.Get("messages.1.role").Str != "assistant" || got.Get("messages.1.tool_calls.1.id").Str != "call_Tokyo2" ||
		got.Get("messages.1.tool_calls.0.function.arguments").Str != `{"city":"Paris"}` ||
		got.Get("messages.2.role").Str != "tool" || got.Get("messages.2.tool_call_id").Str != "call_Paris1" || got.Get("messages.2.content").Str != "12C" ||
		got.Get("messages.3.tool_call_id").Str != "call_Tokyo2" || got.Get("messages.#").Int() != 4 {
		t.Errorf("the OpenAI upstream got %s", fake.lastBody())
	}
}

func TestSDKStreamViaOpenAI(t *testing.T) {
	fake, client := viaOpenAI(t)
	fake.text = "Streaming through Lumen works."
	stream := client.Messages.NewStreaming(context.Background(), sdk.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 100,
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Stream please"))}})
	var msg sdk.Message
	var types []string
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		if err := msg.Accumulate(ev); err != nil {
			t.Fatalf("accumulating %s: %v", ev.Type, err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != fake.text {
		t.Fatalf("accumulated content = %s", msg.RawJSON())
	}
	if msg.StopReason != sdk.StopReasonEndTurn || msg.Usage.InputTokens != 25 || msg.Usage.CacheReadInputTokens != 32 || msg.Usage.OutputTokens != 17 {
		t.Errorf("accumulated message = %s", msg.RawJSON())
	}
	seq := strings.Join(types, ",")
	want := "message_start,content_block_start,content_block_delta," // the SDK does not surface ping
	if !strings.HasPrefix(seq, want) || !strings.HasSuffix(seq, "content_block_delta,content_block_stop,message_delta,message_stop") {
		t.Errorf("event sequence = %s", seq)
	}
	if !gjson.GetBytes(fake.lastBody(), "stream_options.include_usage").Bool() {
		t.Errorf("the OpenAI upstream must be asked for usage: %s", fake.lastBody())
	}
}

func TestSDKStreamToolsViaOpenAI(t *testing.T) {
	fake, client := viaOpenAI(t)
	fake.text = "Checking both."
	fake.calls = [][3]string{{"call_A", "get_weather", `{"city":"Paris"}`}, {"call_B", "get_weather", `{"city":"Tokyo"}`}}
	stream := client.Messages.NewStreaming(context.Background(), sdk.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 100,
		Tools: []sdk.ToolUnionParam{weatherParam}, Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Weather?"))}})
	var msg sdk.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != sdk.StopReasonToolUse || len(msg.Content) != 3 || msg.Content[0].Text != "Checking both." {
		t.Fatalf("accumulated = %s", msg.RawJSON())
	}
	for i, want := range fake.calls {
		b := msg.Content[i+1].AsToolUse()
		var in map[string]string
		if err := json.Unmarshal(b.Input, &in); err != nil || b.ID != want[0] || b.Name != want[1] || in["city"] == "" || !strings.Contains(want[2], in["city"]) {
			t.Errorf("tool_use %d = %s %s %s (%v)", i, b.ID, b.Name, b.Input, err)
		}
	}
}

func TestSDKErrorsViaOpenAI(t *testing.T) {
	fake, client := viaOpenAI(t)
	fake.fail = http.StatusTooManyRequests
	_, err := client.Messages.New(context.Background(), sdk.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 100,
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("x"))}})
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Type() != "rate_limit_error" || !strings.Contains(ae.Error(), "Rate limit reached") {
		t.Fatalf("err = %v", err)
	}
	if ae.Response.Header.Get("Retry-After") != "3" {
		t.Errorf("Retry-After = %q", ae.Response.Header.Get("Retry-After"))
	}
}

// An OpenAI refusal (content null, the words in refusal) is a text block
// and stop_reason "refusal", streamed or not.
func TestSDKRefusalViaOpenAI(t *testing.T) {
	fake, client := viaOpenAI(t)
	fake.refusal = "I can't help with that."
	params := sdk.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 100,
		Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Something forbidden"))}}
	msg, err := client.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != sdk.StopReasonRefusal || len(msg.Content) != 1 || msg.Content[0].Text != fake.refusal {
		t.Errorf("message = %s", msg.RawJSON())
	}
	stream := client.Messages.NewStreaming(context.Background(), params)
	var acc sdk.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.StopReason != sdk.StopReasonRefusal || len(acc.Content) != 1 || acc.Content[0].Text != fake.refusal {
		t.Errorf("streamed message = %s", acc.RawJSON())
	}
}
