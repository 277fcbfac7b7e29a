// Package config holds Lumen's typed configuration: the LiteLLM-compatible
// YAML file, its defaults and its validation.
//
// Load parses a file strictly (unknown keys are errors naming their path),
// resolves "os.environ/NAME" references, applies defaults and validates the
// whole, returning every problem at once. Nothing below cmd/ reads viper or
// the environment; they receive a *Config.
package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/internal/credentials"
	"github.com/lumengw/lumen/limits"
)

// Config is the whole configuration file.
type Config struct {
	// ModelList is the models Lumen serves; entries sharing a model_name form
	// one model group.
	ModelList []Model `yaml:"model_list"`
	// RouterSettings choose deployments and say how to retry and fall back.
	RouterSettings RouterSettings `yaml:"router_settings"`
	// GeneralSettings hold auth and request limits (LiteLLM's section name).
	GeneralSettings GeneralSettings `yaml:"general_settings"`
	// LiteLLMSettings is accepted for compatibility; see LiteLLMSettings.
	LiteLLMSettings LiteLLMSettings `yaml:"litellm_settings"`
	// Server is where and how Lumen listens.
	Server Server `yaml:"server"`
	// Log configures structured logging.
	Log Log `yaml:"log"`
	// Ledger configures the spend and request ledger.
	Ledger Ledger `yaml:"ledger"`
	// Cache configures the response cache; nil means off.
	Cache *Cache `yaml:"cache"`
	// Audit configures the tamper-evident audit log.
	Audit Audit `yaml:"audit"`
	// Privacy configures what Lumen may retain.
	Privacy Privacy `yaml:"privacy"`
	// Metrics configures the Prometheus endpoint.
	Metrics Metrics `yaml:"metrics"`
	// Tracing exports a span per request over OTLP; off without an endpoint.
	Tracing Tracing `yaml:"tracing"`
	// Limits are rate limits and budgets over all traffic, per model group
	// and per key tag, on top of each virtual key's own.
	Limits Limits `yaml:"limits"`
	// Guardrails are content filters run on requests and answers
	// (LiteLLM's guardrails list; see package guardrail).
	Guardrails []guardrail.Config `yaml:"guardrails"`
}

// Limits are gateway-wide rate limits (sliding one-minute windows) and
// budgets. A request must fit in every one that applies to it.
type Limits struct {
	// Global limits every request, whoever sends it.
	Global Limit `yaml:"global"`
	// ModelGroups limits the requests each model group answers or is
	// tried for, whichever name the client sent: its own, one that falls
	// back to it, an auto route that chooses it.
	ModelGroups map[string]Limit `yaml:"model_groups"`
	// Tags limits, together, the requests of every virtual key carrying a
	// tag, written "name=value" ("team=search"): a team's budget shared by
	// its keys.
	Tags map[string]Limit `yaml:"tags"`
	// Users limits each end user on its own: the requests whose "user"
	// field (Anthropic metadata.user_id) names them, whatever key sends
	// them. The client chooses the name, so this bounds an application's
	// users, not a key's holder.
	Users Limit `yaml:"users"`
	// RedisURL, when set, keeps every rate-limit window and budget (the
	// keys' own included) in Redis ("redis://host:6379/0"), shared by all
	// the Lumen instances using it; otherwise they are in memory.
	RedisURL URL `yaml:"redis_url"`
}

// Limit is requests and tokens (prompt plus max_tokens, then the real
// count) per minute, and USD per budget period; zero means unlimited.
type Limit struct {
	RPM int `yaml:"rpm"`
	TPM int `yaml:"tpm"`
	// BudgetUSD caps the spend per BudgetPeriod (daily, weekly, monthly
	// or total, the default).
	BudgetUSD    float64 `yaml:"budget_usd"`
	BudgetPeriod string  `yaml:"budget_period"`
}

// Budget is l's budget as the budget stores take it.
func (l Limit) Budget() limits.Budget {
	return limits.Budget{LimitUSD: l.BudgetUSD, Period: limits.Period(l.BudgetPeriod)}
}

// Model is one model_list entry: a deployment of an upstream model under a
// client-facing model name, or a named auto route.
type Model struct {
	// ModelName is the name clients send as "model". Required.
	ModelName string `yaml:"model_name"`
	// LiteLLMParams says how to reach the upstream. `params` is Lumen's own
	// spelling of the same block.
	LiteLLMParams *Params `yaml:"litellm_params"`
	Params        *Params `yaml:"params"`
	// ModelInfo is metadata: id, limits, prices, quality.
	ModelInfo ModelInfo `yaml:"model_info"`
	// Auto makes this entry a named auto route over other model groups
	// instead of a deployment.
	Auto *AutoRoute `yaml:"auto"`
}

// Deployment returns the entry's upstream parameters, whichever spelling
// the file used.
func (m *Model) Deployment() *Params {
	if m.LiteLLMParams != nil {
		return m.LiteLLMParams
	}
	return m.Params
}

// Params are a deployment's upstream parameters (LiteLLM's litellm_params).
type Params struct {
	// Model is "provider/upstream-model", e.g. "openai/gpt-4o". Required.
	Model string `yaml:"model"`
	// CustomLLMProvider names the provider when Model has no prefix.
	CustomLLMProvider string `yaml:"custom_llm_provider"`
	// APIBase is the upstream root URL; empty means the provider default.
	APIBase URL `yaml:"api_base"`
	// APIKey is sent upstream; empty means the provider's usual env var.
	APIKey Secret `yaml:"api_key"`
	// APIVersion is Azure's api-version or Anthropic's anthropic-version.
	APIVersion string `yaml:"api_version"`
	// ExtraHeaders are sent upstream with every request.
	ExtraHeaders Headers `yaml:"extra_headers"`
	// RPM and TPM are this deployment's requests/tokens per minute; they
	// weight simple-shuffle and cap usage-based routing. Zero means unknown.
	RPM int `yaml:"rpm"`
	TPM int `yaml:"tpm"`
	// Weight biases simple-shuffle; zero means 1 (or rpm/tpm when set).
	Weight float64 `yaml:"weight"`
	// Timeout bounds a call (seconds, or a duration like "90s"). Zero means
	// router_settings.timeout.
	Timeout Duration `yaml:"timeout"`
	// StreamTimeout bounds the gap between stream events. Zero means
	// router_settings.stream_timeout.
	StreamTimeout Duration `yaml:"stream_timeout"`
	// MaxRetries overrides router_settings.num_retries for this deployment.
	MaxRetries *int `yaml:"max_retries"`
	// InputCostPerToken and OutputCostPerToken are accepted here too, as
	// LiteLLM does; model_info wins when both are set.
	InputCostPerToken  *float64 `yaml:"input_cost_per_token"`
	OutputCostPerToken *float64 `yaml:"output_cost_per_token"`
	// AWS settings for bedrock/; empty falls back to the AWS_* env vars.
	AWSRegionName      string `yaml:"aws_region_name"`
	AWSAccessKeyID     Secret `yaml:"aws_access_key_id"`
	AWSSecretAccessKey Secret `yaml:"aws_secret_access_key"`
	AWSSessionToken    Secret `yaml:"aws_session_token"`
	// MockResponse is the mock provider's fixed answer; empty echoes the
	// last user message. (LiteLLM's name.)
	MockResponse string `yaml:"mock_response"`
	// MockLatency is the mock provider's time to first token.
	MockLatency Duration `yaml:"mock_latency"`
	// MockChunkInterval is the mock provider's pause between stream chunks.
	MockChunkInterval Duration `yaml:"mock_chunk_interval"`
	// MockFailureRate is the fraction (0..1) of mock calls that fail with 500.
	MockFailureRate float64 `yaml:"mock_failure_rate"`
	// ResponsesAPI sends /v1/responses requests to the upstream's own
	// Responses API ({api_base}/responses) instead of translating them to
	// chat completions. Nil means on for openai/ at OpenAI's endpoint and
	// off elsewhere; only OpenAI-shaped providers can set it.
	ResponsesAPI *bool `yaml:"responses_api"`
	// CacheControlInjectionPoints mark messages of each request for
	// Anthropic's prompt cache (Anthropic and Bedrock Claude deployments),
	// as LiteLLM's option of that name: [{location: message, role: system},
	// {location: message, index: -1}]. A request that marks its own is left
	// as it is.
	CacheControlInjectionPoints []CacheInjectionPoint `yaml:"cache_control_injection_points"`
}

// CacheInjectionPoint selects the messages to mark: by role (every message
// of it) or by index (negative counts from the end).
type CacheInjectionPoint struct {
	Location string `yaml:"location"` // "message", the only one
	Role     string `yaml:"role"`
	Index    *int   `yaml:"index"`
}

// ModelInfo is a deployment's metadata (LiteLLM's model_info).
type ModelInfo struct {
	// ID identifies the deployment in headers, logs and metrics; default is
	// "<model_name>/<index>".
	ID string `yaml:"id"`
	// Mode is chat, completion, embedding, moderation, rerank,
	// image_generation, audio_speech or audio_transcription: what the
	// health check asks the deployment (image and audio models are not
	// checked).
	Mode string `yaml:"mode"`
	// BaseModel names the priced model when the upstream id is custom.
	BaseModel string `yaml:"base_model"`
	// MaxInputTokens triggers context_window_fallbacks when Lumen's own
	// estimate of a prompt exceeds it. Zero means unknown.
	MaxInputTokens int `yaml:"max_input_tokens"`
	// MaxOutputTokens is the model's output cap: a request's max_tokens
	// above it is lowered to it before the call (router/outputcap.go), so
	// budgets and tpm windows hold no more than it (the largest of a
	// group's), and hold it for a request that sets no max_tokens. Zero
	// means unknown (no cap; budgets hold max_tokens, else 4096).
	MaxOutputTokens int `yaml:"max_output_tokens"`
	MaxTokens       int `yaml:"max_tokens"`
	// Prices in USD per token; nil means the embedded price table.
	InputCostPerToken           *float64 `yaml:"input_cost_per_token"`
	OutputCostPerToken          *float64 `yaml:"output_cost_per_token"`
	CacheReadInputTokenCost     *float64 `yaml:"cache_read_input_token_cost"`
	CacheCreationInputTokenCost *float64 `yaml:"cache_creation_input_token_cost"`
	// OutputCostPerImage is USD per generated image (images/generations).
	OutputCostPerImage *float64 `yaml:"output_cost_per_image"`
	// InputCostPerCharacter is USD per character read out (audio/speech).
	InputCostPerCharacter *float64 `yaml:"input_cost_per_character"`
	// InputCostPerSecond is USD per second of audio transcribed
	// (audio/transcriptions).
	InputCostPerSecond *float64 `yaml:"input_cost_per_second"`
	// Quality (0..1) overrides the auto router's ability table for this
	// model; Abilities sets it per domain.
	Quality   *float64           `yaml:"quality"`
	Abilities map[string]float64 `yaml:"abilities"`
}

// AutoRoute configures a named auto route (a model_list entry with auto:).
type AutoRoute struct {
	// Candidates are the model groups the route chooses among. Empty means
	// every deployment-backed model group for a named route and, for
	// router_settings.auto (model "auto"), every group whose model has a
	// known ability: in the scorer's learned or public table (by
	// model_info.base_model, else the upstream model id), or given by
	// model_info.quality/abilities.
	Candidates []string `yaml:"candidates"`
	// QualityFloor is the predicted success probability a candidate must
	// reach (0..1). Zero means router_settings.auto.quality_floor.
	QualityFloor float64 `yaml:"quality_floor"`
	// MaxCostPer1K caps the expected USD per 1,000 tokens; zero means none.
	MaxCostPer1K float64 `yaml:"max_cost_per_1k"`
	// MaxLatencyMS excludes candidates whose recent latency exceeds it; zero
	// means none.
	MaxLatencyMS int `yaml:"max_latency_ms"`
	// Mode is floor (default), best, fast or smart.
	Mode string `yaml:"mode"`
	// BestEffort serves the best excluded candidate, with a header saying
	// so, instead of a 422 when no candidate qualifies.
	BestEffort bool `yaml:"best_effort"`
}

// RouterSettings configure deployment selection and resilience.
type RouterSettings struct {
	// RoutingStrategy is simple-shuffle (default), least-busy,
	// latency-based-routing, usage-based-routing or cost-based-routing.
	RoutingStrategy string `yaml:"routing_strategy"`
	// NumRetries is how many times a failed retryable call is retried
	// (default 2). Zero disables retries.
	NumRetries *int `yaml:"num_retries"`
	// RetryAfter is the minimum wait before a retry (default 0: exponential
	// backoff from 100ms with jitter; an upstream Retry-After is honoured).
	RetryAfter Duration `yaml:"retry_after"`
	// Timeout bounds a call when the deployment sets none (default 600s).
	Timeout Duration `yaml:"timeout"`
	// StreamTimeout bounds the gap between stream events when the
	// deployment sets none (default 0: no limit).
	StreamTimeout Duration `yaml:"stream_timeout"`
	// AllowedFails is how many failures within CooldownTime cool a
	// deployment down (default 3).
	AllowedFails *int `yaml:"allowed_fails"`
	// CooldownTime is how long a deployment stays cooled down before one
	// probe decides (default 30s).
	CooldownTime Duration `yaml:"cooldown_time"`
	// Fallbacks map a model group to the groups tried, in order, when it
	// fails: [{gpt-4o: [claude-sonnet, llama-70b]}].
	Fallbacks []map[string][]string `yaml:"fallbacks"`
	// ContextWindowFallbacks apply when the prompt is too long.
	ContextWindowFallbacks []map[string][]string `yaml:"context_window_fallbacks"`
	// ContentPolicyFallbacks apply when the upstream refuses on policy.
	ContentPolicyFallbacks []map[string][]string `yaml:"content_policy_fallbacks"`
	// HealthCheckInterval enables active health checks; zero (default)
	// means off. Checks send a cheap request to every deployment.
	HealthCheckInterval Duration `yaml:"health_check_interval"`
	// StreamFailover continues a broken stream from another deployment
	// (default true).
	StreamFailover *bool `yaml:"stream_failover"`
	// HedgeAfter sends a second attempt, to another deployment of the
	// group, when no first byte arrived within this duration (seconds or a
	// duration like "300ms"); zero (default) means off.
	HedgeAfter HedgeDelay `yaml:"hedge_after"`
	// HedgeAfterMS is hedge_after in milliseconds; it wins when set.
	HedgeAfterMS int `yaml:"hedge_after_ms"`
	// ModelGroupHedgeAfter sets hedge_after per model group, overriding
	// HedgeAfter: {gpt-4o: 0.5}. Zero turns hedging off for that group.
	ModelGroupHedgeAfter map[string]HedgeDelay `yaml:"model_group_hedge_after"`
	// ModelGroupAlias maps extra model names to a model group or auto
	// route (LiteLLM's setting, string form): {"claude-sonnet-4-5-20250929":
	// claude} lets a client that sends a provider's exact model id (Claude
	// Code, an SDK default) reach a group named otherwise.
	ModelGroupAlias map[string]string `yaml:"model_group_alias"`
	// Auto holds defaults for model "auto".
	Auto AutoRoute `yaml:"auto"`
}

// GeneralSettings hold auth and request limits.
type GeneralSettings struct {
	// MasterKey authenticates clients and the admin API ("Bearer <key>").
	// Empty means the gateway is open, which is logged loudly at start.
	MasterKey Secret `yaml:"master_key"`
	// MaxRequestSizeMB bounds a request body (default 32).
	MaxRequestSizeMB float64 `yaml:"max_request_size_mb"`
	// DatabaseURL is LiteLLM's Postgres URL: ledger.postgres_url when that
	// is not set.
	DatabaseURL URL `yaml:"database_url"`
}

// LiteLLMSettings is LiteLLM's section; Lumen reads the cache switch.
type LiteLLMSettings struct {
	// Cache: true turns the response cache on with CacheParams.
	Cache       bool   `yaml:"cache"`
	CacheParams *Cache `yaml:"cache_params"`
	// DropParams is accepted; Lumen passes unknown params through.
	DropParams bool `yaml:"drop_params"`
}

// Server configures the HTTP listener.
type Server struct {
	// Host is the address to bind (default 127.0.0.1).
	Host string `yaml:"host"`
	// Port is the TCP port (default 4000; 0 picks a free one).
	Port int `yaml:"port"`
	// GracePeriod bounds how long shutdown waits for in-flight requests and
	// streams (default 30s); those still running then are answered 503
	// gateway_shutting_down.
	GracePeriod Duration `yaml:"grace_period"`
	// DrainDelay is how long, after the shutdown signal, Lumen goes on
	// serving with /health/readiness at 503, so a load balancer stops
	// sending it requests before it stops accepting them (default 0).
	DrainDelay Duration `yaml:"drain_delay"`
	// ReadTimeout bounds how long a client may take to send a request,
	// headers and body (default 60s; 0 means no bound but the headers'
	// 30s): a client that trickles its body is answered 408 and
	// disconnected instead of holding a connection and its buffer
	// forever. Once the body is in, it no longer applies: answers and
	// streams may take as long as they take.
	ReadTimeout Duration `yaml:"read_timeout"`
}

// Log configures logging.
type Log struct {
	// Level is trace, debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is json (default) or console.
	Format string `yaml:"format"`
}

// Ledger configures the request and spend ledger.
type Ledger struct {
	// Path is the SQLite file (default ./lumen.db).
	Path string `yaml:"path"`
	// PostgresURL, when set, keeps the ledger (requests, virtual keys,
	// spend) in this Postgres database instead of the file at Path, so
	// that every instance pointed at it shares them
	// ("postgres://user:password@host:5432/lumen"). LiteLLM's
	// general_settings.database_url is read as this.
	PostgresURL URL `yaml:"postgres_url"`
	// RetentionDays prunes older rows; zero (default) keeps everything.
	// Budgets keep the spend of the pruned rows (the ledger rolls it up).
	RetentionDays int `yaml:"retention_days"`
	// StorePayloads keeps request and response bodies (default false).
	StorePayloads bool `yaml:"store_payloads"`
	// QueueSize bounds the writer's queue (default 10000 records).
	QueueSize int `yaml:"queue_size"`
	// BudgetTimezone is the IANA zone budget periods reset in (default UTC),
	// and the zone spend reports cut days and read dates in.
	BudgetTimezone string `yaml:"budget_timezone"`
}

// Location returns the time zone BudgetTimezone names.
func (l Ledger) Location() (*time.Location, error) {
	loc, err := time.LoadLocation(l.BudgetTimezone)
	if err != nil {
		return nil, fmt.Errorf("ledger.budget_timezone: %w", err)
	}
	return loc, nil
}

// Cache configures the response cache.
type Cache struct {
	// Type is local (default), redis or semantic.
	Type string `yaml:"type"`
	// TTL is how long an entry lives (default 1h).
	TTL Duration `yaml:"ttl"`
	// MaxBytes bounds the local cache ("256MiB" or a byte count; default
	// 256 MiB).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// Scope is global (the default, set when empty: every caller shares a
	// model group's answers, but for virtual keys tagged tenant=<name>,
	// which share with their tenant only, and cache_scope=key, which share
	// with no one) or key (a namespace per API key as presented, whatever
	// its tags; requests without a key share one). See cache.Scope.
	Scope string `yaml:"scope"`
	// RedisURL is the Redis address for type redis ("redis://host:6379/0").
	RedisURL URL `yaml:"redis_url"`
	// Host, Port and Password are LiteLLM's spelling of the Redis address.
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Password Secret `yaml:"password"`
	// SimilarityThreshold is the cosine similarity a semantic hit needs
	// (default 0.95). Lower values serve answers to different questions.
	SimilarityThreshold float64 `yaml:"similarity_threshold"`
	// EmbeddingModel is the model group that embeds prompts for semantic.
	EmbeddingModel string `yaml:"embedding_model"`
}

// Audit configures the audit log.
type Audit struct {
	// Enabled turns the audit log on (default true).
	Enabled *bool `yaml:"enabled"`
	// Path is the audit database (default: the ledger file).
	Path string `yaml:"path"`
	// SigningKey is the Ed25519 private key file for checkpoints (default
	// ./lumen-audit.key, generated on first start).
	SigningKey string `yaml:"signing_key"`
	// CheckpointEvery signs a checkpoint every N entries (default 1000).
	CheckpointEvery int `yaml:"checkpoint_every"`
	// CheckpointFile receives each signed checkpoint (JSON, replaced
	// atomically), the last one `lumen audit verify` then requires the log
	// to reach: keep it (or copies) out of reach of whoever can write the
	// database. Empty (the default) means none.
	CheckpointFile string `yaml:"checkpoint_file"`
}

// Privacy configures retention.
type Privacy struct {
	// ZeroRetention writes no prompt or completion text anywhere and turns
	// the cache off unless AllowCache is set.
	ZeroRetention bool `yaml:"zero_retention"`
	AllowCache    bool `yaml:"allow_cache"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Enabled serves /metrics (default true).
	Enabled *bool `yaml:"enabled"`
	// Listen serves metrics on a separate address ("127.0.0.1:9090")
	// instead of the main port.
	Listen string `yaml:"listen"`
}

// Tracing configures OpenTelemetry traces.
type Tracing struct {
	// OTLPEndpoint is the collector's OTLP/HTTP base URL
	// ("http://localhost:4318"); empty means no tracing.
	OTLPEndpoint URL `yaml:"otlp_endpoint"`
	// Headers go with every export (a vendor's API key).
	Headers map[string]Secret `yaml:"headers"`
	// ServiceName names Lumen in the traces (default "lumen").
	ServiceName string `yaml:"service_name"`
	// SampleRatio is the share of new traces recorded, 0 to 1 (default 1);
	// a request whose client sampled its trace is always recorded.
	SampleRatio float64 `yaml:"sample_ratio"`
}

// HedgeDelay is when a hedged request starts its second attempt: a fixed
// delay (seconds, or a duration such as "250ms"), or "pNN", that percentile
// of the group's recently observed time to first byte (TTFT for streams,
// the whole answer otherwise; a hedge loser's or a timed-out attempt's
// time as a lower bound) — "p95" hedges only the slowest 5%.
type HedgeDelay struct {
	After time.Duration
	// Percentile, when set (50 to 99.9), replaces After.
	Percentile float64
}

// IsZero reports whether d turns hedging off.
func (d HedgeDelay) IsZero() bool { return d.After <= 0 && d.Percentile == 0 }

// MarshalText writes d as it is configured.
func (d HedgeDelay) MarshalText() ([]byte, error) {
	if d.Percentile > 0 {
		return []byte("p" + strconv.FormatFloat(d.Percentile, 'f', -1, 64)), nil
	}
	return []byte(d.After.String()), nil
}

// Headers are extra HTTP headers sent upstream. Their values often carry
// credentials (Authorization, a gateway's token), so YAML output shows
// every value as "[redacted]".
type Headers map[string]string

// MarshalYAML hides the values from `config show`.
func (h Headers) MarshalYAML() (any, error) {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = Secret(v).String()
	}
	return out, nil
}

// Secret is a string that never prints. fmt, logs and YAML output show
// "[redacted]" when it is set.
type Secret string

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// MarshalText hides the value from encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Value returns the secret itself, for the one place that sends it.
func (s Secret) Value() string { return string(s) }

// URL is a URL or connection string that may carry credentials: a
// password in its userinfo (postgres://user:password@host/db), in a query
// parameter (?sslpassword=…, ?api_key=…) or in a key=value DSN. fmt, logs,
// config errors and YAML output show it with those replaced by "xxxxx"
// (credentials.Redact) and the rest readable.
type URL string

// String implements fmt.Stringer with the credentials redacted.
func (u URL) String() string { return credentials.Redact(string(u)) }

// MarshalText hides the credentials from encoders.
func (u URL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// Value returns the URL itself, credentials included, for the code that
// connects with it.
func (u URL) Value() string { return string(u) }

// Duration is a time.Duration read from YAML as seconds (LiteLLM's numbers,
// e.g. 60 or 0.5) or a Go duration string ("90s", "1h").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalYAML writes d as a Go duration ("30s", "10m0s"), which
// UnmarshalYAML reads back: as a number it would be read as seconds.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ByteSize is a size read from YAML as a byte count or with a unit
// ("256MiB", "1GB", "512KiB").
type ByteSize int64

// String formats a byte size for messages.
func (b ByteSize) String() string { return fmt.Sprintf("%d bytes", int64(b)) }

// Provider ids Lumen can serve, by the model prefix that selects them.
var openAIShaped = []string{
	"openai", "azure", "groq", "together_ai", "mistral", "deepseek",
	"fireworks_ai", "openrouter", "hosted_vllm", "vllm", "ollama", "ollama_chat",
	"lm_studio", "openai_compatible", "xai", "perplexity", "cerebras",
}

// Translated are providers Lumen reaches through a format translator.
var translated = []string{"anthropic", "gemini", "bedrock"}

// KnownProviders lists every provider prefix Lumen accepts, sorted.
func KnownProviders() []string {
	out := append(append([]string{"mock"}, openAIShaped...), translated...)
	return sortedCopy(out)
}

// SplitModel returns the provider and upstream model of a litellm_params
// block: "openai/gpt-4o" → ("openai", "gpt-4o"). A model without a known
// prefix uses custom_llm_provider, or openai when api_base is set or the
// name is an OpenAI model.
func SplitModel(p *Params) (provider, model string) {
	if prefix, rest, ok := strings.Cut(p.Model, "/"); ok && isProvider(prefix) {
		return prefix, rest
	}
	if p.CustomLLMProvider != "" {
		return p.CustomLLMProvider, p.Model
	}
	m := p.Model
	if p.APIBase != "" || strings.HasPrefix(m, "gpt-") || strings.HasPrefix(m, "o1") ||
		strings.HasPrefix(m, "o3") || strings.HasPrefix(m, "o4") || strings.HasPrefix(m, "text-embedding-") ||
		strings.HasPrefix(m, "chatgpt-") {
		return "openai", m
	}
	if prefix, _, ok := strings.Cut(m, "/"); ok {
		return prefix, m // unknown prefix: Validate names it
	}
	return "", m
}

func isProvider(name string) bool {
	for _, p := range KnownProviders() {
		if p == name {
			return true
		}
	}
	return false
}

// IsOpenAIShaped reports whether provider speaks the OpenAI wire format.
func IsOpenAIShaped(provider string) bool {
	for _, p := range openAIShaped {
		if p == provider {
			return true
		}
	}
	return false
}
