package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"unknown_key.bad.yaml", []string{
			`model_list[0].litellm_params.api_bsae: unknown key (did you mean "api_base"?)`,
		}},
		{"missing_model_name.bad.yaml", []string{
			`model_list[0].model_name: required: the name clients send as "model"`,
		}},
		{"bad_url.bad.yaml", []string{
			`model_list[0].litellm_params.api_base: invalid URL "localhost:8000/v1": use http(s)://host[:port][/path]`,
		}},
		{"unknown_provider.bad.yaml", []string{
			`model_list[0].litellm_params.model: unknown provider "foogle" in "foogle/x-large"; known: anthropic, azure, bedrock, cerebras, deepseek, fireworks_ai, gemini, groq, hosted_vllm, lm_studio, mistral, mock, ollama, ollama_chat, openai, openai_compatible, openrouter, perplexity, together_ai, vllm, xai`,
		}},
		{"unset_env.bad.yaml", []string{
			`model_list[0].litellm_params.api_key: environment variable LUMEN_TEST_SURELY_UNSET_KEY is not set`,
		}},
		// Values of the wrong type, then what Validate finds in the rest:
		// one run lists every mistake.
		{"bad_types.bad.yaml", []string{
			`model_list[0].litellm_params.timeout: invalid duration "soon": use seconds (60) or a duration ("90s")`,
			"model_list[0].litellm_params.rpm: cannot unmarshal !!str `lots` into int",
			`server.read_timeout: invalid duration "-5s": use seconds (60) or a duration ("90s")`,
			`router_settings.routing_strategy: unknown strategy "fastest"; use one of simple-shuffle, least-busy, latency-based-routing, usage-based-routing, cost-based-routing`,
			`router_settings.fallbacks[0].m[0]: unknown model group "nope"`,
			`server.port: must be between 0 (any free port) and 65535, got 70000`,
		}},
		{"bad_mode.bad.yaml", []string{
			`cache.ttl: invalid duration "forever": use seconds (60) or a duration ("90s")`,
			`model_list[0].model_info.mode: unknown mode "chatty"; use one of chat, completion, embedding, moderation, rerank, image_generation, audio_speech, audio_transcription, responses, batch, realtime`,
			`cache.type: unknown type "memcached"; use local, redis or semantic`,
		}},
		{"alias.bad.yaml", []string{
			`router_settings.model_group_alias.claude-sonnet-4-5-20250929: unknown model group "claude-sonnet"`,
			`router_settings.model_group_alias.gpt-4o: "gpt-4o" is already a model_name in model_list; an alias must be a new name`,
		}},
		{"hedge.bad.yaml", []string{
			`router_settings.hedge_after: invalid hedge delay "p200": use seconds (0.5), a duration ("250ms") or a percentile of observed time to first byte ("p95", 50 to 99.9)`,
		}},
		{"limits.bad.yaml", []string{
			`limits.redis_url: invalid Redis URL; use redis://host:6379/0`,
			`limits.global.rpm: must be 0 (unlimited) or more, got -1`,
			`limits.global.budget_period: unknown budget period "yearly" (want daily, weekly, monthly or total)`,
			`limits.model_groups.gpt-4o.budget_usd: must be 0 (no budget) or more, got -5`,
			`limits.model_groups.gpt-5: no model group named "gpt-5" in model_list`,
			`limits.users.rpm: must be 0 (unlimited) or more, got -2`,
			`limits.tags.team: a tag is written name=value, as on a key (lumen keys create --tags team=search), got "team"`,
		}},
		{"router.bad.yaml", []string{
			`router_settings.model_group_hedge_after.gpt-5: unknown model group "gpt-5"`,
		}},
		{"auto.bad.yaml", []string{
			`model_list[1].model_name: an auto route may not be named "auto:cheap": "auto" is configured in router_settings.auto and ":" separates a route from its mode (auto-coding:best)`,
			`model_list[1].auto.candidates[1]: unknown model group "gpt-5"`,
			`model_list[1].auto.quality_floor: must be between 0 and 1, got 1.5`,
			`model_list[1].auto.mode: unknown mode "cheapest"; use floor, best, fast, smart`,
			`router_settings.auto.max_cost_per_1k: must not be negative`,
		}},
		{"responses_api.bad.yaml", []string{
			`model_list[0].litellm_params.responses_api: only OpenAI-shaped providers take Responses API requests natively; anthropic gets them translated to its own API`,
		}},
		{"cache_injection.bad.yaml", []string{
			`model_list[0].litellm_params.cache_control_injection_points[1].location: must be message, got "tools"`,
			`model_list[0].litellm_params.cache_control_injection_points[2]: needs a role (system, user, assistant, tool) or an index (negative counts from the end)`,
			`model_list[0].litellm_params.cache_control_injection_points[3].role: must be system, user, assistant or tool, got "bot"`,
		}},
		{"ledger.bad.yaml", []string{
			`ledger.postgres_url: invalid Postgres URL; use postgres://user:password@host:5432/lumen`,
			`ledger.retention_days: must not be negative`,
		}},
		{"tracing.bad.yaml", []string{
			`tracing.otlp_endpoint: invalid URL "localhost:4318"; use the collector's OTLP/HTTP address, http://host:4318`,
			`tracing.sample_ratio: must be between 0 and 1, got 2`,
		}},
		// A value quoted in a problem keeps its URL readable and its
		// credentials out.
		{"credentials.bad.yaml", []string{
			`server: must be a mapping, got "postgres://lumen:xxxxx@db:5432/lumen"`,
			"ledger.queue_size: cannot unmarshal !!str `redis:/...` into int",
			`model_list[0].litellm_params.api_base: invalid URL "ftp://vllm:xxxxx@vllm.internal/v1": use http(s)://host[:port][/path]`,
			`tracing.otlp_endpoint: invalid URL "grpc://collector:4317?api_key=xxxxx"; use the collector's OTLP/HTTP address, http://host:4318`,
		}},
		{"empty.bad.yaml", []string{
			`model_list: at least one model is required`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, _, err := Load(filepath.Join("testdata", tt.file))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load error = %v, want *Error", err)
			}
			if got := strings.Join(ce.Problems, "\n"); got != strings.Join(tt.want, "\n") {
				t.Fatalf("problems:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
		})
	}
}

// Validation problems are all reported together.
func TestValidateListsEveryProblem(t *testing.T) {
	cfg, _, err := Parse([]byte(`
model_list:
  - model_name: m
    litellm_params: {model: mock/m}
server: {port: 70000}
router_settings:
  routing_strategy: fastest
  fallbacks: [{m: [nope]}]
`))
	if cfg != nil {
		t.Fatal("want no config")
	}
	want := []string{
		`router_settings.routing_strategy: unknown strategy "fastest"; use one of simple-shuffle, least-busy, latency-based-routing, usage-based-routing, cost-based-routing`,
		`router_settings.fallbacks[0].m[0]: unknown model group "nope"`,
		`server.port: must be between 0 (any free port) and 65535, got 70000`,
	}
	if got := err.(*Error).Problems; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLiteLLMConfigLoads(t *testing.T) {
	t.Setenv("LUMEN_TEST_OPENAI_KEY", "sk-test-123")
	t.Setenv("LUMEN_TEST_MASTER", "sk-master")
	t.Setenv("LUMEN_TEST_DATABASE_URL", "postgresql://lumen:pw@db:5432/litellm")
	cfg, warns, err := Load("testdata/litellm.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ledger.PostgresURL.Value() != "postgresql://lumen:pw@db:5432/litellm" {
		t.Fatalf("database_url is not the ledger's: %q", cfg.Ledger.PostgresURL.Value())
	}
	if len(cfg.ModelList) != 4 || cfg.ModelList[0].Deployment().APIKey.Value() != "sk-test-123" {
		t.Fatalf("model_list not loaded: %+v", cfg.ModelList)
	}
	if got := cfg.ModelList[0].Deployment().Timeout.D(); got != 60*time.Second {
		t.Fatalf("timeout = %v, want 60s", got)
	}
	if cfg.GeneralSettings.MasterKey.Value() != "sk-master" || cfg.GeneralSettings.MasterKey.String() != "[redacted]" {
		t.Fatal("master key not resolved or not redacted")
	}
	if *cfg.RouterSettings.NumRetries != 3 || cfg.RouterSettings.RoutingStrategy != "usage-based-routing" {
		t.Fatalf("router settings: %+v", cfg.RouterSettings)
	}
	if p, m := SplitModel(cfg.ModelList[3].Deployment()); p != "hosted_vllm" || m != "meta-llama/Llama-3.1-8B-Instruct" {
		t.Fatalf("SplitModel = %s, %s", p, m)
	}
	for _, want := range []string{
		`litellm_settings.success_callback: callbacks are not supported; Lumen logs one structured line per request`,
	} {
		if !contains(warns, want) {
			t.Fatalf("warnings %q lack %q", warns, want)
		}
	}
	for _, w := range warns {
		// Routing strategies, rpm and fallbacks are implemented: no warning.
		for _, quiet := range []string{"supports_vision", "routing_strategy", "fallbacks", ".rpm"} {
			if strings.Contains(w, quiet) {
				t.Fatalf("%s warns: %q", quiet, w)
			}
		}
	}
	out, err := Marshal(cfg)
	if err != nil || strings.Contains(string(out), "sk-test-123") || strings.Contains(string(out), "sk-master") ||
		strings.Contains(string(out), "gw-token-secret-99") || !strings.Contains(string(out), "X-Gateway-Token: '[redacted]'") {
		t.Fatalf("Marshal leaks a secret or fails: %v\n%s", err, out)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	if _, err := os.Stat("../config.example.yaml"); err != nil {
		t.Skip("config.example.yaml not present")
	}
	_, warns, err := Load("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) > 0 {
		t.Fatalf("the example config must start clean, got warnings %q", warns)
	}
}

func TestDurationAndSize(t *testing.T) {
	cfg, _, err := Parse([]byte("model_list: [{model_name: m, params: {model: mock/m, timeout: 0.5, stream_timeout: 2m}}]\ncache: {max_bytes: 64MiB, ttl: 600}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.ModelList[0].Deployment()
	if d.Timeout.D() != 500*time.Millisecond || d.StreamTimeout.D() != 2*time.Minute {
		t.Fatalf("durations: %v %v", d.Timeout.D(), d.StreamTimeout.D())
	}
	if cfg.Cache.MaxBytes != 64<<20 || cfg.Cache.TTL.D() != 10*time.Minute || cfg.Cache.Type != "local" {
		t.Fatalf("cache: %+v", cfg.Cache)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// A guardrails list in LiteLLM's shape loads (mode as one value or a
// list); a mistake in it is reported at its field.
func TestGuardrailsConfig(t *testing.T) {
	base := "model_list:\n  - model_name: demo\n    litellm_params: {model: mock/demo}\nguardrails:\n"
	cfg, _, err := Parse([]byte(base + `
  - guardrail_name: pii
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      default_on: true
      patterns: [{pattern_type: prebuilt, pattern_name: email, action: MASK}]
  - guardrail_name: words
    litellm_params:
      guardrail: litellm_content_filter
      mode: [pre_call, post_call]
      blocked_words: [{keyword: falcon}]
    guardrail_info: {owner: security}
`))
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Guardrails; len(g) != 2 || len(g[0].Params.Mode) != 1 || len(g[1].Params.Mode) != 2 || !g[0].Params.DefaultOn || g[1].Info["owner"] != "security" {
		t.Errorf("parsed %+v", g)
	}
	_, _, err = Parse([]byte(base + `
  - guardrail_name: pii
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      patterns: [{pattern_type: regex, pattern: '(?i)secret(?=s)', actoin: MASK}]
`))
	for _, want := range []string{
		`guardrails[0].litellm_params.patterns[0].actoin: unknown key (did you mean "action"?)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	_, _, err = Parse([]byte(base + `
  - guardrail_name: pii
    litellm_params:
      guardrail: litellm_content_filter
      mode: pre_call
      patterns: [{pattern_type: regex, pattern: '(?i)secret(?=s)'}]
`))
	if want := `guardrails[0].litellm_params.patterns[0].pattern: not a valid regular expression`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("want %q in %v", want, err)
	}
}

// TestMarshalledDurationsReadBack: lumen config show writes durations as Go
// durations, which read back as the same; as nanosecond numbers they read
// back as that many seconds.
func TestMarshalledDurationsReadBack(t *testing.T) {
	cfg, _, err := Parse([]byte("model_list: [{model_name: m, params: {model: mock/m, timeout: 0.5}}]\n" +
		"server: {grace_period: 45s}\nrouter_settings: {cooldown_time: 60}\ncache: {ttl: 600}\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"grace_period: 45s\n", "cooldown_time: 1m0s\n", "ttl: 10m0s\n", "timeout: 500ms\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Marshal does not write %q:\n%s", want, out)
		}
	}
	back, _, err := Parse(out)
	if err != nil {
		t.Fatalf("the marshalled config does not parse: %v\n%s", err, out)
	}
	if back.Server.GracePeriod != cfg.Server.GracePeriod || back.RouterSettings.CooldownTime != cfg.RouterSettings.CooldownTime ||
		back.Cache.TTL != cfg.Cache.TTL || back.ModelList[0].Deployment().Timeout != cfg.ModelList[0].Deployment().Timeout {
		t.Errorf("durations read back as grace %v cooldown %v ttl %v timeout %v", back.Server.GracePeriod.D(),
			back.RouterSettings.CooldownTime.D(), back.Cache.TTL.D(), back.ModelList[0].Deployment().Timeout.D())
	}
}
