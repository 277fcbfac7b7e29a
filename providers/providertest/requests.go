package providertest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lumengw/lumen/providers"
)

// Requests are the OpenAI-format requests whose translation every provider
// pins in golden files (testdata/requests/NAME.json: the exact body Lumen
// sends upstream).
var Requests = []struct{ Name, Body string }{
	{"plain", `{"model":"alias","messages":[{"role":"user","content":"Hello"}]}`},
	{"system_and_parameters", `{"model":"alias","messages":[{"role":"system","content":"You are terse."},{"role":"developer","content":"Answer in French."},
		{"role":"user","content":"What is 2+2?"}],"max_completion_tokens":256,"temperature":0.2,"top_p":0.9,"stop":"\n\n","user":"user-42",
		"seed":7,"presence_penalty":0.5,"frequency_penalty":0.1,"logprobs":true}`},
	{"merged_turns", `{"model":"alias","messages":[{"role":"user","content":"First."},{"role":"user","content":[{"type":"text","text":"Second."}]},
		{"role":"assistant","content":"Reply one."},{"role":"assistant","content":""},{"role":"assistant","content":"Reply two."},{"role":"user","content":"Third."}],"max_tokens":100}`},
	{"images", `{"model":"alias","messages":[{"role":"user","content":[{"type":"text","text":"Compare these <images> & say which is bigger."},
		{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4DwABAQEABRjYTgAAAABJRU5ErkJggg=="}},
		{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}}]}]}`},
	{"documents", `{"model":"alias","messages":[{"role":"user","content":[{"type":"text","text":"Summarise both."},
		{"type":"file","file":{"filename":"q3_report.pdf","file_data":"data:application/pdf;base64,JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK"}},
		{"type":"file","file":{"filename":"notes.txt","file_data":"data:text/plain;base64,TWVldGluZyBtb3ZlZCB0byBUdWVzZGF5Lg=="}}]}]}`},
	{"tool_round_trip", `{"model":"alias","messages":[{"role":"user","content":"What's the weather in Paris and Tokyo?"},
		{"role":"assistant","content":"Let me look that up.","tool_calls":[
			{"id":"toolu_01A","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}},
			{"id":"toolu_01B","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Tokyo\",\"unit\":\"celsius\"}"}}]},
		{"role":"tool","tool_call_id":"toolu_01A","content":"{\"temp\":18,\"sky\":\"sunny\"}"},
		{"role":"tool","tool_call_id":"toolu_01B","content":[{"type":"text","text":"22C, rain"}]},
		{"role":"user","content":"Thanks. Which is warmer?"}],
		"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the current weather for a city.",
			"parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"],"additionalProperties":false},"strict":true}}],
		"tool_choice":"auto"}`},
	{"tool_choice_named", `{"model":"alias","messages":[{"role":"user","content":"Weather in Oslo?"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
			{"type":"function","function":{"name":"get_time"}}],
		"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false}`},
	{"tool_choice_required", `{"model":"alias","messages":[{"role":"user","content":"Weather in Oslo?"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
		"tool_choice":"required"}`},
	{"json_schema", `{"model":"alias","messages":[{"role":"user","content":"Extract: Alice is 30."}],
		"response_format":{"type":"json_schema","json_schema":{"name":"person","description":"A person.","strict":true,
			"schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}}}}`},
	{"json_object", `{"model":"alias","messages":[{"role":"user","content":"Give me a JSON object with a greeting."}],"response_format":{"type":"json_object"}}`},
	{"stream", `{"model":"alias","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Count to three."}]}`},
}

// FileRejects are file parts a translating provider cannot send: an OpenAI
// file id, and a type no provider reads. Each must be refused with a 400
// naming Param, never sent without the file.
var FileRejects = []struct{ Name, Body, Param string }{
	{"file_id", `{"model":"alias","messages":[{"role":"user","content":[{"type":"text","text":"Read it."},{"type":"file","file":{"file_id":"file-abc123"}}]}]}`,
		"messages[0].content[1].file"},
	{"zip", `{"model":"alias","messages":[{"role":"user","content":[{"type":"file","file":{"filename":"a.zip","file_data":"data:application/zip;base64,UEsDBA=="}}]}]}`,
		"messages[0].content[0].file.file_data"},
}

// CheckFileRejects runs translate on each of FileRejects and fails t
// unless it returns an *providers.InvalidRequestError for its Param.
func CheckFileRejects(t *testing.T, translate func(body []byte) error) {
	t.Helper()
	for _, r := range FileRejects {
		err := translate([]byte(r.Body))
		var ie *providers.InvalidRequestError
		if !errors.As(err, &ie) || ie.Param != r.Param {
			t.Errorf("%s: err = %v, want an invalid request error for %s", r.Name, err, r.Param)
		}
	}
}

// ExampleImage is what the golden tests' image client serves for
// https://example.com/cat.jpg, so that goldens of providers that fetch
// images are stable and offline.
var ExampleImage = JPEG

// ExampleImageClient is an http.Client that answers every request with
// ExampleImage, without any network.
var ExampleImageClient = &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, ".jpg") {
		return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	}
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{"Content-Type": {"image/jpeg"}},
		Body: io.NopCloser(bytes.NewReader(ExampleImage)), Request: r}, nil
})}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// StreamGolden renders a translated stream for a golden file: one chunk
// per line, then the error that ended it, if any.
func StreamGolden(chunks [][]byte, err error) []byte {
	var b bytes.Buffer
	for _, c := range chunks {
		b.Write(c)
		b.WriteByte('\n')
	}
	if err != nil {
		b.WriteString("error: " + err.Error() + "\n")
	}
	return b.Bytes()
}
