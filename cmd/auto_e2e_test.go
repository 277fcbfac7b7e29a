package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// Two candidates on the fake upstream: cheap at Mixtral level for $0.6 per
// million tokens, strong at GPT-4o level for $10.
const autoE2EConfig = `
model_list:
  - model_name: cheap
    litellm_params: {model: openai/cheap-model, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {quality: 0.71, input_cost_per_token: 0.0000006, output_cost_per_token: 0.0000006}
  - model_name: strong
    litellm_params: {model: openai/strong-model, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {quality: 0.88, input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}
  - model_name: auto-budget
    auto: {candidates: [cheap, strong], max_cost_per_1k: 0.0001}
router_settings:
  num_retries: 0
  auto: {candidates: [cheap, strong], quality_floor: 0.8}
general_settings:
  master_key: sk-master-test-0000
`

func TestE2EAutoRouting(t *testing.T) {
	fake := newFakeOpenAI(t)
	l := startLumen(t, autoE2EConfig, fake)
	c := client(l, "sk-master-test-0000")
	ask := func(model, prompt string, opts ...option.RequestOption) (*http.Response, error) {
		var raw *http.Response
		_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		}, append(opts, option.WithResponseInto(&raw))...)
		return raw, err
	}
	tests := []struct {
		name, model, prompt string
		opts                []option.RequestOption
		want                string // upstream model called
	}{
		{"easy prompt to the cheap model", "auto", "What is the capital of France?", nil, "cheap-model"},
		{"hard prompt to the strong model", "auto", "Prove that for every prime p > 3, p^2 - 1 is divisible by 24, and then derive the closed form of the sum over k of binomial(n,k)^2 using generating functions. Show all steps rigorously.", nil, "strong-model"},
		{"per-request floor in the lumen object", "auto", "What is the capital of France?",
			[]option.RequestOption{option.WithJSONSet("lumen", map[string]any{"quality_floor": 0.9})}, "strong-model"},
		{"auto:best", "auto:best", "What is the capital of France?", nil, "strong-model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fake.callsTo(tt.want)
			raw, err := ask(tt.model, tt.prompt, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if fake.callsTo(tt.want) != before+1 {
				t.Fatalf("%s was not called; headers %v", tt.want, raw.Header)
			}
			if sent := fake.lastBody(); sent["lumen"] != nil || sent["model"] != tt.want {
				t.Fatalf("upstream got %v", sent)
			}
			h := raw.Header
			group := strings.TrimSuffix(tt.want, "-model")
			if h.Get("x-lumen-selected-model") != group || h.Get("x-lumen-model-group") != group {
				t.Fatalf("selected %q / group %q, want %s", h.Get("x-lumen-selected-model"), h.Get("x-lumen-model-group"), group)
			}
			for _, name := range []string{"x-lumen-difficulty", "x-lumen-predicted-quality"} {
				if v, err := strconv.ParseFloat(h.Get(name), 64); err != nil || v <= 0 || v >= 1 {
					t.Errorf("%s = %q", name, h.Get(name))
				}
			}
			if !strings.Contains(h.Get("x-lumen-route-reason"), group) {
				t.Errorf("x-lumen-route-reason = %q", h.Get("x-lumen-route-reason"))
			}
		})
	}

	t.Run("price ceiling excluding everything is 422", func(t *testing.T) {
		calls := fake.callsTo("cheap-model") + fake.callsTo("strong-model")
		for _, model := range []string{"auto-budget", "auto"} {
			var opts []option.RequestOption
			if model == "auto" {
				opts = append(opts, option.WithJSONSet("lumen", map[string]any{"max_cost_per_1k": 0.0001}))
			}
			_, err := ask(model, "What is the capital of France?", opts...)
			var ae *openai.Error
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnprocessableEntity || ae.Code != "no_auto_candidate" ||
				!strings.Contains(ae.Message, "cheap excluded by max_cost_per_1k") || !strings.Contains(ae.Message, "strong excluded by max_cost_per_1k") {
				t.Fatalf("%s: err = %v", model, err)
			}
		}
		if fake.callsTo("cheap-model")+fake.callsTo("strong-model") != calls {
			t.Fatal("an upstream was called although nothing qualified")
		}
	})

	t.Run("feedback on an auto-routed request", func(t *testing.T) {
		raw, err := ask("auto:smart", "What is the capital of France?")
		if err != nil {
			t.Fatal(err)
		}
		id := raw.Header.Get("x-lumen-request-id")
		if r := rawPost(t, l, "/v1/feedback", "sk-master-test-0000", `{"request_id":"`+id+`","score":0.2}`); r.status != 200 {
			t.Fatalf("feedback: %d %s", r.status, r.text)
		}
		if r := rawPost(t, l, "/v1/feedback", "sk-master-test-0000", `{"request_id":"req-unknown","score":0.2}`); r.status != 404 ||
			r.json()["error"] == nil {
			t.Fatalf("unknown id: %d %s", r.status, r.text)
		}
	})
}

// TestE2EAutoOnTheExampleConfig: a fresh install (the embedded
// config.example.yaml) answers model "auto", sending an easy prompt to the
// cheap mock and a hard one to the strong mock, as the README's quickstart
// shows.
func TestE2EAutoOnTheExampleConfig(t *testing.T) {
	example, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := startLumen(t, strings.ReplaceAll(string(example), "./lumen", t.TempDir()+"/lumen"), nil)
	for _, tt := range []struct{ prompt, want string }{
		{"What is the capital of France?", "demo"},
		{"Prove that for every prime p > 3, p^2 - 1 is divisible by 24, then derive the closed form of the sum over k of binomial(n,k)^2 using generating functions. Show all steps rigorously.", "demo-pro"},
	} {
		body, _ := json.Marshal(map[string]any{"model": "auto", "messages": []map[string]string{{"role": "user", "content": tt.prompt}}})
		r := rawPost(t, l, "/v1/chat/completions", "", string(body))
		if r.status != http.StatusOK {
			t.Fatalf("%q: status %d: %s", tt.prompt, r.status, r.text)
		}
		if got := r.header.Get("X-Lumen-Selected-Model"); got != tt.want || r.header.Get("X-Lumen-Route-Reason") == "" {
			t.Errorf("%q: selected %q (reason %q), want %q", tt.prompt, got, r.header.Get("X-Lumen-Route-Reason"), tt.want)
		}
	}
}
