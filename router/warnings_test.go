package router

import (
	"strings"
	"testing"
)

// A deployment no price reaches is named once, in group order; table
// models, local providers, model_info prices and a priced base_model are
// not.
func TestPriceWarnings(t *testing.T) {
	r, _ := autoRouter(t, `
model_list:
  - model_name: mini
    litellm_params: {model: openai/gpt-4o-mini, api_key: k}
  - model_name: house
    litellm_params: {model: openai/acme-house-7b, api_key: k}
  - model_name: house
    litellm_params: {model: openai/acme-house-7b-v2, api_key: k}
    model_info: {id: house-v2, input_cost_per_token: 0.0000001, output_cost_per_token: 0.0000002}
  - model_name: azure
    litellm_params: {model: azure/my-deployment, api_key: k, api_base: "http://a", api_version: "2024-10-21"}
    model_info: {base_model: gpt-4o}
  - model_name: azure-custom
    litellm_params: {model: azure/other-deployment, api_key: k, api_base: "http://a", api_version: "2024-10-21"}
  - model_name: local
    litellm_params: {model: ollama/llama3.1}
`)
	want := []string{
		`deployment "azure-custom/4" (azure/other-deployment): no known price`,
		`deployment "house/1" (openai/acme-house-7b): no known price`,
	}
	got := r.Warnings()
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) || !strings.Contains(got[i], "budgets do not limit them") {
			t.Errorf("warning %d = %q, want it to start %q", i, got[i], want[i])
		}
	}
}
