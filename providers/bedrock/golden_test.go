package bedrock

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
)

const goldenModel = "anthropic.claude-3-5-haiku-20241022-v1:0"

func requestBody(t *testing.T, name string) string {
	t.Helper()
	for _, r := range pt.Requests {
		if r.Name == name {
			return r.Body
		}
	}
	t.Fatalf("no request %q in providertest.Requests", name)
	return ""
}

// TestGoldenRequests pins the exact Converse body Lumen sends for each
// shared request.
func TestGoldenRequests(t *testing.T) {
	c := newTestClient(t, "")
	c.SetImageFetcher(&providers.ImageFetcher{Client: pt.ExampleImageClient})
	for _, r := range pt.Requests {
		t.Run(r.Name, func(t *testing.T) {
			_, body, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: goldenModel,
				Body: []byte(r.Body), Stream: gjson.Get(r.Body, "stream").Bool()})
			if err != nil {
				t.Fatal(err)
			}
			pt.Golden(t, filepath.Join("testdata", "requests", r.Name+".json"), body)
		})
	}
}

// TestFileRejects: a file the provider cannot read is a 400, not a
// request sent without it.
func TestFileRejects(t *testing.T) {
	c := newTestClient(t, "")
	pt.CheckFileRejects(t, func(body []byte) error {
		_, _, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: goldenModel, Body: body})
		return err
	})
}

// serve answers every request with data.
func serve(t *testing.T, data []byte, contentType string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("X-Amzn-Requestid", "b0d6a4c2-5e1f-4f0a-8d3b-2a9c7e6f1d40")
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return newTestClient(t, srv.URL)
}

// TestGoldenResponses pins the OpenAI translation of documented Converse
// answers.
func TestGoldenResponses(t *testing.T) {
	for _, tt := range []struct{ fixture, request string }{
		{"text_cached", "plain"},
		{"tool_use", "tool_round_trip"},
		{"reasoning_max_tokens", "plain"},
		{"json_response", "json_schema"},
		{"guardrail", "plain"},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "responses", tt.fixture+".json"))
			if err != nil {
				t.Fatal(err)
			}
			c := serve(t, data, "application/json")
			resp, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: goldenModel, Body: []byte(requestBody(t, tt.request))})
			if err != nil {
				t.Fatal(err)
			}
			pt.Golden(t, filepath.Join("testdata", "responses", tt.fixture+".openai.json"), resp.Body)
		})
	}
}

// readEvents encodes a .events fixture (one message a line: "event TYPE
// JSON" or "exception TYPE JSON") into event-stream frames.
func readEvents(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		typ, payload, _ := strings.Cut(rest, " ")
		switch kind {
		case "event":
			out = append(out, eventFrame(typ, payload)...)
		case "exception":
			out = append(out, encodeFrame([][2]string{{":exception-type", typ}, {":content-type", "application/json"}, {":message-type", "exception"}}, []byte(payload))...)
		default:
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
	}
	return out
}

// TestGoldenStreams pins the OpenAI chunks for documented ConverseStream
// event sequences.
func TestGoldenStreams(t *testing.T) {
	for _, tt := range []struct{ fixture, request string }{
		{"text", "stream"},
		{"tools", "tool_round_trip"},
		{"reasoning", "stream"},
		{"throttled", "stream"},
		{"model_stream_error", "stream"},
		{"validation", "stream"},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			c := serve(t, readEvents(t, filepath.Join("testdata", "streams", tt.fixture+".events")), "application/vnd.amazon.eventstream")
			st, err := c.DoStream(context.Background(), &providers.Request{Op: providers.OpChat, Model: goldenModel, Body: []byte(requestBody(t, tt.request)), Stream: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var chunks [][]byte
			for {
				data, err := st.Recv()
				if err != nil {
					if err == io.EOF {
						err = nil
					} else if !providers.IsRetryable(err) && tt.fixture != "validation" {
						t.Errorf("in-band %s is not retryable: %v", tt.fixture, err)
					}
					pt.Golden(t, filepath.Join("testdata", "streams", tt.fixture+".openai.txt"), pt.StreamGolden(chunks, err))
					return
				}
				chunks = append(chunks, bytes.Clone(data))
			}
		})
	}
}

// Claude Opus 4.7 and later refuse sampling parameters: they are dropped,
// through an inference profile id too.
func TestFixedSampling(t *testing.T) {
	c := newTestClient(t, "")
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"top_p":0.9,"max_tokens":50}`)
	for model, dropped := range map[string]bool{"us.anthropic.claude-opus-4-7-v1:0": true, goldenModel: false} {
		_, out, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: model, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(out, "inferenceConfig.temperature").Exists(); got == dropped || gjson.GetBytes(out, "inferenceConfig.maxTokens").Int() != 50 {
			t.Errorf("%s: %s", model, out)
		}
	}
}

// reasoning_effort reaches Claude models as Anthropic's thinking in
// additionalModelRequestFields, left off where Anthropic would refuse it.
func TestReasoningEffort(t *testing.T) {
	c := newTestClient(t, "")
	const weather = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`
	const sonnet45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
	for _, tt := range []struct {
		name, model, body string
		want              map[string]string // gjson path → value; "" means absent
	}{
		{"adaptive", "us.anthropic.claude-opus-4-6-v1", `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"high","temperature":0.3}`,
			map[string]string{"additionalModelRequestFields.thinking.type": "adaptive", "additionalModelRequestFields.output_config.effort": "high",
				"inferenceConfig": ""}},
		{"budget under the default maxTokens", sonnet45, `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"medium","top_p":0.5}`,
			map[string]string{"additionalModelRequestFields.thinking.type": "enabled", "additionalModelRequestFields.thinking.budget_tokens": "2048",
				"inferenceConfig.maxTokens": "4096", "inferenceConfig.topP": "", "additionalModelRequestFields.output_config": ""}},
		{"budget", sonnet45, `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"low","max_tokens":20000,"top_p":0.97}`,
			map[string]string{"additionalModelRequestFields.thinking.budget_tokens": "2048", "inferenceConfig.maxTokens": "20000", "inferenceConfig.topP": "0.97"}},
		{"no room to think", sonnet45, `{"messages":[{"role":"user","content":"Prove it."}],"reasoning_effort":"low","max_tokens":1500,"temperature":0.3}`,
			map[string]string{"additionalModelRequestFields": "", "inferenceConfig.temperature": "0.3"}},
		{"tool loop continues without thinking", "us.anthropic.claude-sonnet-4-6", `{"messages":[{"role":"user","content":"Weather?"},
			{"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
			{"role":"tool","tool_call_id":"t1","content":"sunny"}],"reasoning_effort":"high",` + weather + `}`,
			map[string]string{"additionalModelRequestFields.thinking": "", "additionalModelRequestFields.output_config.effort": "high"}},
		{"forced tool", sonnet45, `{"messages":[{"role":"user","content":"Weather?"}],"reasoning_effort":"high","tool_choice":"required",` + weather + `}`,
			map[string]string{"additionalModelRequestFields": ""}},
		{"json output is a forced tool", sonnet45, `{"messages":[{"role":"user","content":"JSON"}],"reasoning_effort":"high","response_format":{"type":"json_object"}}`,
			map[string]string{"additionalModelRequestFields": "", "toolConfig.toolChoice.tool.name": "json_response"}},
		{"model without thinking", goldenModel, `{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high"}`,
			map[string]string{"additionalModelRequestFields": ""}},
		{"not Claude", "amazon.nova-pro-v1:0", `{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high","temperature":0.3}`,
			map[string]string{"additionalModelRequestFields": "", "inferenceConfig.temperature": "0.3"}},
		{"none", "us.anthropic.claude-opus-4-6-v1", `{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"none"}`,
			map[string]string{"additionalModelRequestFields": ""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, out, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: tt.model, Body: []byte(tt.body)})
			if err != nil {
				t.Fatal(err)
			}
			for path, want := range tt.want {
				got := gjson.GetBytes(out, path)
				if want == "" && got.Exists() || want != "" && got.String() != want {
					t.Errorf("%s = %s, want %q\n%s", path, got.Raw, want, out)
				}
			}
		})
	}
	for _, model := range []string{"us.anthropic.claude-opus-4-6-v1", "amazon.nova-pro-v1:0"} {
		_, _, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: model,
			Body: []byte(`{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"extreme"}`)})
		var ie *providers.InvalidRequestError
		if !errors.As(err, &ie) || ie.Param != "reasoning_effort" {
			t.Errorf("%s, unknown effort: %v", model, err)
		}
	}
}

// cache_control_injection_points become Converse cache points after the
// system prompt and the last message.
func TestCacheInjection(t *testing.T) {
	c := newTestClient(t, "")
	last := -1
	c.cache = []providers.CachePoint{{Role: "system"}, {Index: &last}}
	_, out, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: goldenModel, Body: []byte(
		`{"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"hello"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(out, "system.1.cachePoint.type").Str != "default" || gjson.GetBytes(out, "messages.0.content.1.cachePoint.type").Str != "default" {
		t.Fatalf("body %s", out)
	}
}

// Two documents of one name get distinct names, as Converse requires.
func TestDocumentNamesAreUnique(t *testing.T) {
	c := newTestClient(t, "")
	pdf := `{"type":"file","file":{"filename":"report.pdf","file_data":"data:application/pdf;base64,JVBERi0x"}}`
	_, out, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: goldenModel, Body: []byte(
		`{"messages":[{"role":"user","content":[{"type":"text","text":"compare"},` + pdf + `,` + pdf + `]},{"role":"assistant","content":"ok"},{"role":"user","content":[` + pdf + `]}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{gjson.GetBytes(out, "messages.0.content.1.document.name").Str, gjson.GetBytes(out, "messages.0.content.2.document.name").Str,
		gjson.GetBytes(out, "messages.2.content.0.document.name").Str}
	if names[0] != "report" || names[1] != "report (2)" || names[2] != "report (3)" {
		t.Fatalf("names %q\n%s", names, out)
	}
}

// Converse takes at most five documents in a request: a sixth is a 400
// naming it, not a request Bedrock refuses.
func TestTooManyDocuments(t *testing.T) {
	c := newTestClient(t, "")
	pdf := `{"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0x"}}`
	body := `{"messages":[{"role":"user","content":[{"type":"text","text":"read"}` + strings.Repeat(","+pdf, 6) + `]}]}`
	_, _, err := c.translate(context.Background(), &providers.Request{Op: providers.OpChat, Model: goldenModel, Body: []byte(body)})
	var ie *providers.InvalidRequestError
	if !errors.As(err, &ie) || ie.Param != "messages[0].content[6]" {
		t.Fatalf("six documents: %v", err)
	}
}
