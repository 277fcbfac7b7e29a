package config

import (
	"testing"
	"time"
)

// Every routing and resilience setting is acted on by the router, so none
// of them warns "not implemented".
func TestRoutingSettingsDoNotWarn(t *testing.T) {
	cfg, warns, err := Parse([]byte(`
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_key: sk-x, weight: 2, rpm: 100, tpm: 10000, timeout: 30, stream_timeout: 5, max_retries: 1}
    model_info: {max_input_tokens: 1000}
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: sk-y}
router_settings:
  routing_strategy: latency-based-routing
  num_retries: 3
  retry_after: 0.5
  allowed_fails: 2
  cooldown_time: 45
  fallbacks: [{gpt-4o: [claude]}]
  context_window_fallbacks: [{gpt-4o: [claude]}]
  content_policy_fallbacks: [{gpt-4o: [claude]}]
  stream_failover: false
  hedge_after: 0.8
  model_group_hedge_after: {claude: 2}
  health_check_interval: 60
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("routing settings warn: %q", warns)
	}
	rs := cfg.RouterSettings
	if rs.HedgeAfter.After != 800*time.Millisecond || rs.ModelGroupHedgeAfter["claude"].After != 2*time.Second ||
		rs.HealthCheckInterval.D() != time.Minute || *rs.StreamFailover || rs.Fallbacks[0]["gpt-4o"][0] != "claude" {
		t.Fatalf("router_settings parsed as %+v", rs)
	}
}
