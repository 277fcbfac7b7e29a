package cmd

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/tokens"
)

// The translating providers end to end: openai-go talks to a real `lumen
// serve` whose model groups are backed by Anthropic-, Gemini- and
// Bedrock-shaped upstreams on loopback, each speaking its documented wire
// format (JSON, SSE, AWS event stream). Every upstream answers with text
// and a get_weather call, or 429 for the model "fail".

func anthropicShaped(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.URL.Path != "/v1/messages" || r.Header.Get("X-Api-Key") != "sk-ant-e2e" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
		return
	}
	if gjson.GetBytes(body, "model").Str == "fail" {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down, anthropic"}}`)
		return
	}
	usage := `{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":9}`
	if !gjson.GetBytes(body, "stream").Bool() {
		fmt.Fprintf(w, `{"id":"msg_e2e","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Checking."},`+
			`{"type":"tool_use","id":"toolu_e2e","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":%s}`, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, ev := range []string{
		`{"type":"message_start","message":{"id":"msg_e2e","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":` + usage + `}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}`,
		`{"type":"content_block_stop","index":0}`,
		`{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_e2e","name":"get_weather","input":{}}}`,
		`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}`,
		`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}`,
		`{"type":"content_block_stop","index":1}`,
		`{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}}`,
		`{"type":"message_stop"}`,
	} {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", gjson.Get(ev, "type").Str, ev)
		w.(http.Flusher).Flush()
	}
}

func geminiShaped(w http.ResponseWriter, r *http.Request, _ []byte) {
	if r.Header.Get("X-Goog-Api-Key") != "AIza-e2e" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}`)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v1beta/models/fail:") {
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":{"code":429,"message":"slow down, gemini","status":"RESOURCE_EXHAUSTED"}}`)
		return
	}
	usage := `{"promptTokenCount":120,"candidatesTokenCount":9,"totalTokenCount":129,"cachedContentTokenCount":100}`
	call := `{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}`
	switch r.URL.Path {
	case "/v1beta/models/gemini-2.5-flash:generateContent":
		fmt.Fprintf(w, `{"candidates":[{"content":{"role":"model","parts":[{"text":"Checking."},%s]},"finishReason":"STOP","index":0}],"usageMetadata":%s,"modelVersion":"gemini-2.5-flash","responseId":"e2e"}`, call, usage)
	case "/v1beta/models/gemini-2.5-flash:streamGenerateContent":
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: %s\r\n\r\n", `{"candidates":[{"content":{"role":"model","parts":[{"text":"Checking."}]},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"e2e"}`)
		w.(http.Flusher).Flush()
		fmt.Fprintf(w, "data: %s\r\n\r\n", `{"candidates":[{"content":{"role":"model","parts":[`+call+`]},"finishReason":"STOP","index":0}],"usageMetadata":`+usage+`,"modelVersion":"gemini-2.5-flash","responseId":"e2e"}`)
	default:
		http.NotFound(w, r)
	}
}

// awsFrame encodes one AWS event-stream message with string headers.
func awsFrame(headers [][2]string, payload string) []byte {
	var hb bytes.Buffer
	for _, h := range headers {
		hb.WriteByte(byte(len(h[0])))
		hb.WriteString(h[0])
		hb.WriteByte(7)
		_ = binary.Write(&hb, binary.BigEndian, uint16(len(h[1])))
		hb.WriteString(h[1])
	}
	total := 16 + hb.Len() + len(payload)
	msg := binary.BigEndian.AppendUint32(nil, uint32(total))
	msg = binary.BigEndian.AppendUint32(msg, uint32(hb.Len()))
	msg = binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
	msg = append(append(msg, hb.Bytes()...), payload...)
	return binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
}

func bedrockShaped(w http.ResponseWriter, r *http.Request, _ []byte) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDE2E/") || r.Header.Get("X-Amz-Date") == "" {
		w.Header().Set("X-Amzn-Errortype", "UnrecognizedClientException")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"message":"The security token included in the request is invalid."}`)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/model/fail/") {
		w.Header().Set("X-Amzn-Errortype", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"message":"slow down, bedrock"}`)
		return
	}
	usage := `{"inputTokens":20,"outputTokens":9,"totalTokens":129,"cacheReadInputTokens":100,"cacheWriteInputTokens":0}`
	switch r.URL.Path {
	case "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse":
		fmt.Fprintf(w, `{"output":{"message":{"role":"assistant","content":[{"text":"Checking."},{"toolUse":{"toolUseId":"tooluse_e2e","name":"get_weather","input":{"city":"Paris"}}}]}},"stopReason":"tool_use","usage":%s,"metrics":{"latencyMs":100}}`, usage)
	case "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse-stream":
		w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
		for _, ev := range [][2]string{
			{"messageStart", `{"role":"assistant","p":"abc"}`},
			{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Checking."},"p":"abcdef"}`},
			{"contentBlockStop", `{"contentBlockIndex":0,"p":"ab"}`},
			{"contentBlockStart", `{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_e2e","name":"get_weather"}},"p":"abcd"}`},
			{"contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}},"p":"a"}`},
			{"contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Paris\"}"}},"p":"abcdefg"}`},
			{"contentBlockStop", `{"contentBlockIndex":1,"p":"abc"}`},
			{"messageStop", `{"stopReason":"tool_use","p":"abcde"}`},
			{"metadata", `{"usage":` + usage + `,"metrics":{"latencyMs":90},"p":"ab"}`},
		} {
			_, _ = w.Write(awsFrame([][2]string{{":event-type", ev[0]}, {":content-type", "application/json"}, {":message-type", "event"}}, ev[1]))
			w.(http.Flusher).Flush()
		}
	default:
		http.NotFound(w, r)
	}
}

const providersConfig = `
model_list:
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_base: "{{UP}}", api_key: sk-ant-e2e}
  - model_name: claude-fail
    litellm_params: {model: anthropic/fail, api_base: "{{UP}}", api_key: sk-ant-e2e}
  - model_name: gemini
    litellm_params: {model: gemini/gemini-2.5-flash, api_base: "{{UP}}", api_key: AIza-e2e}
  - model_name: gemini-fail
    litellm_params: {model: gemini/fail, api_base: "{{UP}}", api_key: AIza-e2e}
  - model_name: bedrock
    litellm_params: {model: "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0", api_base: "{{UP}}", aws_region_name: us-east-1, aws_access_key_id: AKIDE2E, aws_secret_access_key: e2e-secret}
  - model_name: bedrock-fail
    litellm_params: {model: bedrock/fail, api_base: "{{UP}}", aws_region_name: us-east-1, aws_access_key_id: AKIDE2E, aws_secret_access_key: e2e-secret}
router_settings: {num_retries: 0}
`

func TestE2ETranslatingProvidersWithOpenAISDK(t *testing.T) {
	for _, tt := range []struct {
		group    string
		upstream func(http.ResponseWriter, *http.Request, []byte)
	}{
		{"claude", anthropicShaped},
		{"gemini", geminiShaped},
		{"bedrock", bedrockShaped},
	} {
		t.Run(tt.group, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				tt.upstream(w, r, body)
			}))
			defer up.Close()
			l := startLumen(t, strings.ReplaceAll(providersConfig, "{{UP}}", up.URL), nil)
			c := client(l, "anything")
			params := openai.ChatCompletionNewParams{
				Model:    openai.ChatModel(tt.group),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be terse."), openai.UserMessage("Weather in Paris?")},
				Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
					Name: "get_weather", Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}})},
			}

			resp, err := c.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			ch := resp.Choices[0]
			if ch.FinishReason != "tool_calls" || ch.Message.Content != "Checking." || len(ch.Message.ToolCalls) != 1 ||
				ch.Message.ToolCalls[0].Function.Name != "get_weather" || ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
				t.Fatalf("answer: %s", resp.RawJSON())
			}
			if resp.Usage.PromptTokens != 120 || resp.Usage.CompletionTokens != 9 || resp.Usage.PromptTokensDetails.CachedTokens != 100 {
				t.Errorf("usage: %s", resp.Usage.RawJSON())
			}

			params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			st := c.Chat.Completions.NewStreaming(context.Background(), params)
			var acc openai.ChatCompletionAccumulator
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			ch = acc.Choices[0]
			if ch.FinishReason != "tool_calls" || ch.Message.Content != "Checking." || len(ch.Message.ToolCalls) != 1 ||
				ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` || acc.Usage.PromptTokensDetails.CachedTokens != 100 {
				t.Fatalf("streamed answer: %+v usage %s", ch, acc.Usage.RawJSON())
			}

			params.Model = openai.ChatModel(tt.group + "-fail")
			_, err = c.Chat.Completions.New(context.Background(), params)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || !strings.Contains(apiErr.Message, "slow down") {
				t.Fatalf("rate-limited upstream: %v", err)
			}
		})
	}
}

// A PDF sent by the OpenAI SDK as a file content part reaches each
// translating provider as that provider's document, and a file it cannot
// read is a 400 naming the part, not a request sent without it.
func TestE2EFilesReachTranslatingProviders(t *testing.T) {
	const pdf = "data:application/pdf;base64,JVBERi0xLjQKJSVFT0YK"
	for _, tt := range []struct {
		group    string
		upstream func(http.ResponseWriter, *http.Request, []byte)
		path     string // where the document lands in the upstream body
		want     string
	}{
		{"claude", anthropicShaped, "messages.0.content.1.source.data", "JVBERi0xLjQKJSVFT0YK"},
		{"gemini", geminiShaped, "contents.0.parts.1.inlineData.mimeType", "application/pdf"},
		{"bedrock", bedrockShaped, "messages.0.content.1.document.name", "q3 report"},
	} {
		t.Run(tt.group, func(t *testing.T) {
			var mu sync.Mutex
			var got []byte
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = body
				mu.Unlock()
				tt.upstream(w, r, body)
			}))
			defer up.Close()
			l := startLumen(t, strings.ReplaceAll(providersConfig, "{{UP}}", up.URL), nil)
			c := client(l, "anything")
			file := func(f openai.ChatCompletionContentPartFileFileParam) openai.ChatCompletionNewParams {
				return openai.ChatCompletionNewParams{Model: openai.ChatModel(tt.group), Messages: []openai.ChatCompletionMessageParamUnion{
					openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{openai.TextContentPart("Summarise it."), openai.FileContentPart(f)})}}
			}
			if _, err := c.Chat.Completions.New(context.Background(), file(openai.ChatCompletionContentPartFileFileParam{
				Filename: openai.String("q3_report.pdf"), FileData: openai.String(pdf)})); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			body := got
			mu.Unlock()
			if v := gjson.GetBytes(body, tt.path).Str; v != tt.want {
				t.Fatalf("%s = %q, want %q in %s", tt.path, v, tt.want, body)
			}
			_, err := c.Chat.Completions.New(context.Background(), file(openai.ChatCompletionContentPartFileFileParam{FileID: openai.String("file-abc")}))
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "messages[0].content[1].file" {
				t.Fatalf("file_id: %v", err)
			}
		})
	}
}

// /v1/moderations and /v1/rerank route like the other endpoints: the
// OpenAI SDK's moderation call against the mock, a rerank relayed to a
// vLLM-shaped upstream (its usage read for the ledger), and a provider
// without the endpoint answering 400.
func TestE2EModerationsAndRerank(t *testing.T) {
	var mu sync.Mutex
	var path string
	var sent []byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		path, sent = r.URL.Path, b
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"rerank-1","model":"BAAI/bge-reranker-v2-m3","usage":{"total_tokens":42},`+
			`"results":[{"index":1,"document":{"text":"Paris is the capital of France."},"relevance_score":0.98},{"index":0,"document":{"text":"Bananas."},"relevance_score":0.01}]}`)
	}))
	defer up.Close()
	l := startLumen(t, `
model_list:
  - model_name: omni-moderation-latest
    litellm_params: {model: mock/omni-moderation-latest}
    model_info: {mode: moderation}
  - model_name: reranker
    litellm_params: {model: hosted_vllm/BAAI/bge-reranker-v2-m3, api_base: "`+up.URL+`/v1"}
    model_info: {mode: rerank, input_cost_per_token: 0.000001}
  - model_name: mock-reranker
    litellm_params: {model: mock/reranker}
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: sk-ant-x, api_base: "`+up.URL+`"}
`, nil)
	c := client(l, "anything")
	mod, err := c.Moderations.New(context.Background(), openai.ModerationNewParams{Model: "omni-moderation-latest",
		Input: openai.ModerationNewParamsInputUnion{OfStringArray: []string{"hello", "world"}}})
	if err != nil || len(mod.Results) != 2 || mod.Results[0].Flagged {
		t.Fatalf("moderation: %v %+v", err, mod)
	}

	r := rawPost(t, l, "/v1/rerank", "", `{"model":"reranker","query":"capital of France","documents":["Bananas.","Paris is the capital of France."],"top_n":2}`)
	mu.Lock()
	gotPath, gotBody := path, sent
	mu.Unlock()
	if r.status != 200 || gjson.Get(r.text, "results.0.index").Int() != 1 || gotPath != "/v1/rerank" ||
		gjson.GetBytes(gotBody, "model").Str != "BAAI/bge-reranker-v2-m3" || gjson.GetBytes(gotBody, "top_n").Int() != 2 {
		t.Fatalf("rerank: %d %s; upstream %s %s", r.status, r.text, gotPath, gotBody)
	}
	if cost := r.header.Get("x-lumen-cost-usd"); cost != "0.000042" {
		t.Errorf("rerank cost %q, want 0.000042 (42 tokens at $1/M)", cost)
	}
	r = rawPost(t, l, "/rerank", "", `{"model":"mock-reranker","query":"capital of France","documents":["Bananas.",{"text":"Paris is the capital of France."}],"top_n":1}`)
	if r.status != 200 || gjson.Get(r.text, "results.#").Int() != 1 || gjson.Get(r.text, "results.0.document.text").Str != "Paris is the capital of France." {
		t.Fatalf("mock rerank: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/rerank", "", `{"model":"reranker","query":"q"}`); r.status != 400 || !strings.Contains(r.text, `"param":"documents"`) {
		t.Fatalf("no documents: %d %s", r.status, r.text)
	}
	if r := rawPost(t, l, "/v1/rerank", "", `{"model":"claude","query":"q","documents":["d"]}`); r.status != 400 || !strings.Contains(r.text, "unsupported") {
		t.Fatalf("rerank on anthropic: %d %s", r.status, r.text)
	}
}

// /v1/audio/transcriptions: the OpenAI SDK's multipart upload against the
// mock, priced per second of audio; relayed to an OpenAI-shaped upstream
// with the model field set to the upstream id and the file intact, a text
// answer passing through with its media type; bad bodies are 400s.
func TestE2ETranscriptions(t *testing.T) {
	var mu sync.Mutex
	var gotModel string
	var gotFile []byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/audio/transcriptions" || r.ParseMultipartForm(1<<20) != nil {
			http.Error(w, `{"error":{"message":"bad request"}}`, 400)
			return
		}
		f, _, err := r.FormFile("file")
		if err != nil {
			http.Error(w, `{"error":{"message":"no file"}}`, 400)
			return
		}
		b, _ := io.ReadAll(f)
		mu.Lock()
		gotModel, gotFile = r.FormValue("model"), b
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "hello from the upstream\n")
	}))
	defer up.Close()
	l := startLumen(t, `
model_list:
  - model_name: ears
    litellm_params: {model: mock/ears}
    model_info: {mode: audio_transcription, input_cost_per_second: 0.0001}
  - model_name: whisper
    litellm_params: {model: openai/whisper-1, api_base: "`+up.URL+`/v1", api_key: sk-x}
    model_info: {mode: audio_transcription, input_cost_per_second: 0.0001}
`, nil)
	c := client(l, "anything")
	audio := bytes.Repeat([]byte{0x52, 0x49, 0x46, 0x46}, 8000) // 32,000 bytes
	var resp *http.Response
	tr, err := c.Audio.Transcriptions.New(context.Background(), openai.AudioTranscriptionNewParams{Model: "ears",
		File: openai.File(bytes.NewReader(audio), "hello.wav", "audio/wav")}, option.WithResponseInto(&resp))
	if err != nil || tr.AsTranscription().Text != "Mock transcription of 32000 bytes of audio." {
		t.Fatalf("mock transcription: %v %s", err, tr.RawJSON())
	}
	if cost := resp.Header.Get("x-lumen-cost-usd"); cost != "0.0002" {
		t.Errorf("2 s at $0.0001/s: %q", cost)
	}

	_, err = c.Audio.Transcriptions.New(context.Background(), openai.AudioTranscriptionNewParams{Model: "whisper",
		File: openai.File(bytes.NewReader(audio), "hello.wav", "audio/wav"), ResponseFormat: openai.AudioResponseFormatText},
		option.WithResponseInto(&resp))
	mu.Lock()
	model, file := gotModel, gotFile
	mu.Unlock()
	if model != "whisper-1" || !bytes.Equal(file, audio) || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("relay: err %v, model %q, %d bytes, %s", err, model, len(file), resp.Header.Get("Content-Type"))
	}

	if r := rawForm(t, l, "/v1/audio/transcriptions", "", map[string]string{"model": "ears"}, "file", nil); !strings.Contains(r.text, `"param":"file"`) {
		t.Errorf("no file: %s", r.text)
	}
	if r := rawForm(t, l, "/v1/audio/transcriptions", "", map[string]string{"model": "ears", "stream": "true"}, "file", audio[:100]); !strings.Contains(r.text, `"param":"stream"`) {
		t.Errorf("stream: %s", r.text)
	}
	if r := rawPost(t, l, "/v1/audio/transcriptions", "", `{"model":"ears"}`); r.status != 400 || !strings.Contains(r.text, "multipart/form-data") {
		t.Errorf("JSON body: %d %s", r.status, r.text)
	}
}

// A transcription's cost is held before the call: the recording's length
// is read from its container (2.5 s of WAV here), so a key whose budget
// cannot pay for it is refused without an upstream call.
func TestE2ETranscriptionBudgetHold(t *testing.T) {
	wav, err := os.ReadFile("../internal/audio/testdata/tone.wav")
	if err != nil {
		t.Fatal(err)
	}
	l := startLumen(t, strings.ReplaceAll(`
general_settings: {master_key: sk-master-test-000000}
model_list:
  - model_name: ears
    litellm_params: {model: mock/ears}
    model_info: {mode: audio_transcription, input_cost_per_second: 0.01}
ledger: {path: {{DIR}}/lumen.db}
audit: {enabled: false}
`, "{{DIR}}", t.TempDir()), nil)
	key := func(budget string) string {
		r := rawPost(t, l, "/admin/keys", master, `{"name":"k`+budget+`","budget_usd":`+budget+`}`)
		if r.status != 201 {
			t.Fatalf("create: %d %s", r.status, r.text)
		}
		return gjson.Get(r.text, "key").Str
	}
	poor, rich := key("0.02"), key("0.03")
	r := rawForm(t, l, "/v1/audio/transcriptions", poor, map[string]string{"model": "ears"}, "file", wav)
	if r.status != 429 || gjson.Get(r.text, "error.type").Str != "budget_exceeded" {
		t.Errorf("2.5 s at $0.01/s with $0.02 left: %d %s", r.status, r.text)
	}
	r = rawForm(t, l, "/v1/audio/transcriptions", rich, map[string]string{"model": "ears"}, "file", wav)
	if r.status != 200 || r.header.Get("x-lumen-cost-usd") != "0.025" {
		t.Errorf("with $0.03 left: %d %s cost %s", r.status, r.text, r.header.Get("x-lumen-cost-usd"))
	}
}

// A Gemini embeddings request goes up 100 inputs at a time. When a batch
// fails after others went through, the client gets the error, but Google
// bills the batches it embedded: the ledger row has their tokens
// (Lumen's estimate, Gemini reports none) at the deployment's price. When
// a retry then answers, the failed attempt's batches are in the cost on
// top of the answer's own.
func TestE2EGeminiEmbeddingsBillSpentBatches(t *testing.T) {
	var mu sync.Mutex
	flaked := false
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		texts := gjson.GetBytes(body, "requests.#.content.parts.0.text").Array()
		for _, tx := range texts {
			switch tx.Str {
			case "poison":
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}`)
				return
			case "flaky":
				mu.Lock()
				first := !flaked
				flaked = true
				mu.Unlock()
				if first {
					w.WriteHeader(http.StatusServiceUnavailable)
					fmt.Fprint(w, `{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}`)
					return
				}
			}
		}
		vals := make([]string, len(texts))
		for i := range vals {
			vals[i] = `{"values":[0.1,0.2,0.3]}`
		}
		fmt.Fprintf(w, `{"embeddings":[%s]}`, strings.Join(vals, ","))
	}))
	defer up.Close()
	l, dir, _ := ledgerLumenConfig(t, `
model_list:
  - model_name: embed
    litellm_params: {model: gemini/gemini-embedding-001, api_base: "`+up.URL+`", api_key: AIza-e2e}
    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0}
router_settings: {num_retries: 1}
ledger: {path: {{DIR}}/lumen.db}
`)
	inputs := func(bad string) ([]string, int, int) {
		in := make([]string, 150)
		first100, all := 0, 0
		for i := range in {
			in[i] = fmt.Sprintf("passage %d of the manual", i)
			if i == 120 {
				in[i] = bad
			}
			n := tokens.Count(in[i])
			all += n
			if i < 100 {
				first100 += n
			}
		}
		return in, first100, all
	}
	post := func(in []string) rawResponse {
		b, _ := json.Marshal(map[string]any{"model": "embed", "input": in})
		return rawPost(t, l, "/v1/embeddings", "", string(b))
	}

	poisoned, spent, _ := inputs("poison")
	if r := post(poisoned); r.status != http.StatusBadRequest {
		t.Fatalf("poisoned batch: %d %s", r.status, r.text)
	}
	flaky, first100, all := inputs("flaky")
	r := post(flaky)
	if r.status != http.StatusOK || len(gjson.Get(r.text, "data").Array()) != 150 {
		t.Fatalf("flaky batch, retried: %d %s", r.status, r.text)
	}
	cost, _ := strconv.ParseFloat(r.header.Get("X-Lumen-Cost-Usd"), 64)
	if want := float64(all+first100) * 0.000001; math.Abs(cost-want) > 1e-9 {
		t.Errorf("retried request cost %g USD, want %g: the %d tokens of the failed attempt's first batch are not counted", cost, want, first100)
	}

	recs := records(t, l, dir) // newest first
	if len(recs) != 2 {
		t.Fatalf("%d ledger rows, want 2", len(recs))
	}
	failed := recs[1]
	if failed.Status != http.StatusBadRequest || failed.Usage.PromptTokens != spent || math.Abs(failed.CostUSD-float64(spent)*0.000001) > 1e-9 {
		t.Errorf("failed request recorded as status %d, %d prompt tokens, %g USD; want 400, %d (the first batch), %g",
			failed.Status, failed.Usage.PromptTokens, failed.CostUSD, spent, float64(spent)*0.000001)
	}
	if ok := recs[0]; ok.Status != http.StatusOK || ok.Usage.PromptTokens != all || math.Abs(ok.CostUSD-float64(all+first100)*0.000001) > 1e-9 {
		t.Errorf("retried request recorded as status %d, %d prompt tokens, %g USD; want 200, %d, %g",
			ok.Status, ok.Usage.PromptTokens, ok.CostUSD, all, float64(all+first100)*0.000001)
	}
}
