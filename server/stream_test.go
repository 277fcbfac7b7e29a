package server

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/tokens"
)

// noUsageUpstream is an OpenAI-compatible upstream that ignores
// stream_options.include_usage: it streams chunks (each a chat chunk's
// delta) and ends without a usage chunk.
func noUsageUpstream(t *testing.T, deltas []string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		send := func(delta, finish string) {
			fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-nu\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":%s}]}\n\n", delta, finish)
			w.(http.Flusher).Flush()
		}
		send(`{"role":"assistant","content":null}`, "null")
		for _, d := range deltas {
			send(d, "null")
		}
		finish := `"stop"`
		if strings.Contains(strings.Join(deltas, ""), "tool_calls") {
			finish = `"tool_calls"`
		}
		send(`{}`, finish)
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A stream whose upstream reports no usage is billed for every token the
// client received, not its text alone: a tool-calling agent's arguments,
// a reasoning model's reasoning, a refusal. The ledger row's completion
// tokens are Lumen's estimate of them, and its cost follows, in every
// client API (chat passes the chunks through; Messages and Responses
// translate them).
func TestStreamWithoutUsageEstimatesEveryOutput(t *testing.T) {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	args := []string{`{"location": `, `"Paris, France", `, `"unit": "celsius", `, `"days": [1, 2, 3]}`}
	toolCall := []string{`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}`}
	wantTool := tokens.Count("get_weather")
	for _, a := range args {
		toolCall = append(toolCall, `{"tool_calls":[{"index":0,"function":{"arguments":`+q(a)+`}}]}`)
		wantTool += tokens.Count(a)
	}
	reasoning := []string{"The user wants the weather; ", "Paris is in France, ", "so Celsius it is."}
	var thinking []string
	wantThinking := tokens.Count("Sunny.")
	for _, r := range reasoning {
		thinking = append(thinking, `{"reasoning_content":`+q(r)+`}`)
		wantThinking += tokens.Count(r)
	}
	thinking = append(thinking, `{"content":"Sunny."}`)
	const refusal = "I can't help with planning that."
	streams := []struct {
		name   string
		deltas []string
		want   int
	}{
		{"tool call arguments", toolCall, wantTool},
		{"reasoning", thinking, wantThinking},
		{"refusal", []string{`{"refusal":` + q(refusal) + `}`}, tokens.Count(refusal)},
	}
	const in, out = 0.000001, 0.00001
	for _, st := range streams {
		for _, api := range []string{"chat", "chat+usage", "messages", "responses"} {
			t.Run(st.name+"/"+api, func(t *testing.T) {
				up := noUsageUpstream(t, st.deltas)
				rec := &memRecorder{}
				_, url, stop := runServer(t, fmt.Sprintf(`
model_list:
  - {model_name: m, params: {model: openai/m, api_base: "%s/v1", api_key: sk-x}, model_info: {input_cost_per_token: %g, output_cost_per_token: %g}}
`, up.URL, in, out), Options{Logger: zerolog.Nop(), Ledger: rec}, nil)
				req := map[string]struct{ path, body string }{
					"chat":       {"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"weather in Paris?"}]}`},
					"chat+usage": {"/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"weather in Paris?"}]}`},
					"messages":   {"/v1/messages", `{"model":"m","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"weather in Paris?"}]}`},
					"responses":  {"/v1/responses", `{"model":"m","stream":true,"input":"weather in Paris?"}`},
				}[api]
				status, text := postJSON(t, url+req.path, req.body)
				if status != http.StatusOK {
					t.Fatalf("%d %s", status, text)
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				recs := rec.records()
				if len(recs) != 1 {
					t.Fatalf("%d ledger records, want 1", len(recs))
				}
				u := recs[0].Usage
				// The translated streams report the estimate to the client
				// too, as the ledger records it.
				switch api {
				case "chat", "chat+usage":
					// A client that asked for usage gets a usage chunk all the
					// same, in the stream's id, as the last before [DONE].
					events := dataEvents(text)
					last := gjson.Get(events[len(events)-2], "usage")
					if api == "chat" {
						if strings.Contains(text, `"usage"`) {
							t.Errorf("a usage chunk the client did not ask for: %s", text)
						}
						break
					}
					if events[len(events)-1] != "[DONE]" || gjson.Get(events[len(events)-2], "id").Str != "chatcmpl-nu" ||
						last.Get("completion_tokens").Int() != int64(st.want) || last.Get("prompt_tokens").Int() != int64(u.PromptTokens) ||
						last.Get("total_tokens").Int() != int64(u.PromptTokens+st.want) {
						t.Errorf("the stream ends %q, want a usage chunk of prompt %d completion %d", events[len(events)-2:], u.PromptTokens, st.want)
					}
				case "messages":
					if got := messageDeltaOutput(text); got != st.want {
						t.Errorf("message_delta usage.output_tokens = %d, want %d", got, st.want)
					}
				case "responses":
					got := completedUsage(text)
					if got.Get("output_tokens").Int() != int64(st.want) || got.Get("input_tokens").Int() != int64(u.PromptTokens) ||
						got.Get("total_tokens").Int() != int64(u.PromptTokens+st.want) {
						t.Errorf("response.completed usage = %s, want input %d output %d", got.Raw, u.PromptTokens, st.want)
					}
				}
				if u.CompletionTokens != st.want {
					t.Errorf("completion_tokens = %d, want %d (the estimate of what was streamed)", u.CompletionTokens, st.want)
				}
				cost := float64(u.PromptTokens)*in + float64(st.want)*out
				if u.PromptTokens == 0 || math.Abs(recs[0].CostUSD-cost) > 1e-12 {
					t.Errorf("cost = %g for %d prompt tokens, want %g", recs[0].CostUSD, u.PromptTokens, cost)
				}
			})
		}
	}
}

// dataEvents are the data payloads of an SSE stream, in order.
func dataEvents(stream string) []string {
	var out []string
	for _, line := range strings.Split(stream, "\n") {
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, data)
		}
	}
	return out
}

// completedUsage is the response.usage of a Responses stream's
// response.completed event.
func completedUsage(stream string) gjson.Result {
	for _, line := range strings.Split(stream, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if ok && gjson.Get(data, "type").Str == "response.completed" {
			return gjson.Get(data, "response.usage")
		}
	}
	return gjson.Result{}
}

// messageDeltaOutput is the usage.output_tokens of a Messages stream's
// message_delta event.
func messageDeltaOutput(stream string) int {
	for _, line := range strings.Split(stream, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if ok && gjson.Get(data, "type").Str == "message_delta" {
			return int(gjson.Get(data, "usage.output_tokens").Int())
		}
	}
	return -1
}

// sseEvent is one event of an SSE stream: its name ("" when it has none)
// and its data.
type sseEvent struct{ name, data string }

func sseEvents(stream string) []sseEvent {
	var out []sseEvent
	for _, block := range strings.Split(stream, "\n\n") {
		var e sseEvent
		for _, line := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				e.name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				e.data = v
			}
		}
		if e.data != "" {
			out = append(out, e)
		}
	}
	return out
}

// A stream that breaks mid-answer and whose fallback is passed over (its
// rpm window full) ends with an error event that says so, in each client
// API's shape, as the error of a request that fails before its first
// event does: the client gets the text sent so far, then the upstream's
// failure followed by "fallbacks passed over:" and b's full window.
func TestBrokenStreamNamesRefusedFallbacks(t *testing.T) {
	tests := []struct {
		api, path, body string
		text            string // the relayed text, as the API sends it
		message         string // the error event's message (gjson path)
	}{
		{api: "chat", path: "/v1/chat/completions", body: `{"model":"a","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			text: `"content":" wor"`, message: "error.message"},
		{api: "messages", path: "/v1/messages", body: `{"model":"a","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`,
			text: `"text":" wor"`, message: "error.message"},
		{api: "responses", path: "/v1/responses", body: `{"model":"a","stream":true,"input":"hi"}`,
			text: `"delta":" wor"`, message: "message"},
	}
	for _, tt := range tests {
		t.Run(tt.api, func(t *testing.T) {
			var mu sync.Mutex
			calls := map[string]int{}
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				model := gjson.GetBytes(body, "model").Str
				mu.Lock()
				calls[model]++
				mu.Unlock()
				if model == "b-model" {
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"id":"chatcmpl-b","object":"chat.completion","created":1,"model":"b-model","choices":[{"index":0,"message":{"role":"assistant","content":"from b"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`)
					return
				}
				// a: two chunks, then the connection drops.
				w.Header().Set("Content-Type", "text/event-stream")
				for _, delta := range []string{"Hello", " wor"} {
					fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-a\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"a-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", delta)
					w.(http.Flusher).Flush()
				}
				panic(http.ErrAbortHandler)
			}))
			defer up.Close()
			_, url, stop := runServer(t, fmt.Sprintf(`
model_list:
  - {model_name: a, params: {model: openai/a-model, api_base: "%[1]s/v1", api_key: sk-x}}
  - {model_name: b, params: {model: openai/b-model, api_base: "%[1]s/v1", api_key: sk-x}}
router_settings: {num_retries: 0, fallbacks: [{a: [b]}]}
limits: {model_groups: {b: {rpm: 1}}}
`, up.URL), Options{Logger: zerolog.Nop(), Limiter: limits.NewMemoryLimiter(limits.LimiterOptions{})}, nil)
			defer stop()
			// b's window is full.
			if status, text := postJSON(t, url+"/v1/chat/completions", `{"model":"b","messages":[{"role":"user","content":"hi"}]}`); status != http.StatusOK {
				t.Fatalf("b: %d %s", status, text)
			}
			status, text := postJSON(t, url+tt.path, tt.body)
			if status != http.StatusOK {
				t.Fatalf("%d %s, want a started stream", status, text)
			}
			events := sseEvents(text)
			if len(events) == 0 || !strings.Contains(text, tt.text) {
				t.Fatalf("stream %s: want the text relayed before the break (%s)", text, tt.text)
			}
			var msg string
			for _, e := range events {
				if e.name == "error" {
					msg = gjson.Get(e.data, tt.message).Str
				}
			}
			want := `fallbacks passed over: rate limit reached for model "b": 1 requests per minute`
			if !strings.Contains(msg, "deployment openai/a-model: connection closed mid-response") || !strings.Contains(msg, want) {
				t.Errorf("error event message %q, want a's failure and %q; stream:\n%s", msg, want, text)
			}
			if strings.Contains(text, "[DONE]") {
				t.Errorf("a broken stream ended with [DONE]:\n%s", text)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls["a-model"] != 1 || calls["b-model"] != 1 {
				t.Errorf("upstream calls %v, want a-model 1 and b-model 1 (the call that filled its window)", calls)
			}
		})
	}
}
