package config

import (
	"fmt"
	"os"
	"time"
)

// Default returns the configuration used where the file says nothing.
func Default() *Config {
	return &Config{
		Server: Server{Host: "127.0.0.1", Port: 4000, GracePeriod: Duration(30 * time.Second), ReadTimeout: Duration(time.Minute)},
		Log:    Log{Level: "info", Format: "json"},
		Ledger: Ledger{Path: "./lumen.db", QueueSize: 10000, BudgetTimezone: "UTC"},
		GeneralSettings: GeneralSettings{
			MaxRequestSizeMB: 32,
		},
		RouterSettings: RouterSettings{
			RoutingStrategy: "simple-shuffle",
			Timeout:         Duration(600 * time.Second),
			CooldownTime:    Duration(30 * time.Second),
			Auto:            AutoRoute{QualityFloor: 0.8, Mode: "floor"},
		},
		Audit: Audit{SigningKey: "./lumen-audit.key", CheckpointEvery: 1000},
	}
}

// Default values of optional settings whose zero value means something.
const (
	DefaultNumRetries          = 2
	DefaultAllowedFails        = 3
	DefaultCacheTTL            = time.Hour
	DefaultCacheMaxBytes       = 256 << 20
	DefaultSimilarityThreshold = 0.95
	DefaultMaxOutputTokens     = 4096
)

func (c *Config) applyDefaults() {
	r := &c.RouterSettings
	if r.HedgeAfterMS > 0 {
		r.HedgeAfter = HedgeDelay{After: time.Duration(r.HedgeAfterMS) * time.Millisecond}
	}
	if r.NumRetries == nil {
		r.NumRetries = ptr(DefaultNumRetries)
	}
	if r.AllowedFails == nil {
		r.AllowedFails = ptr(DefaultAllowedFails)
	}
	if r.StreamFailover == nil {
		r.StreamFailover = ptr(true)
	}
	if r.Auto.QualityFloor == 0 {
		r.Auto.QualityFloor = 0.8
	}
	if r.Auto.Mode == "" {
		r.Auto.Mode = "floor"
	}
	if c.Ledger.PostgresURL == "" {
		c.Ledger.PostgresURL = c.GeneralSettings.DatabaseURL
	}
	if c.Audit.Enabled == nil {
		c.Audit.Enabled = ptr(true)
	}
	if c.Metrics.Enabled == nil {
		c.Metrics.Enabled = ptr(true)
	}
	if c.Cache == nil && c.LiteLLMSettings.Cache {
		c.Cache = c.LiteLLMSettings.CacheParams
		if c.Cache == nil {
			c.Cache = &Cache{}
		}
	}
	if ca := c.Cache; ca != nil {
		if ca.Type == "" {
			ca.Type = "local"
		}
		if ca.TTL == 0 {
			ca.TTL = Duration(DefaultCacheTTL)
		}
		if ca.MaxBytes == 0 {
			ca.MaxBytes = DefaultCacheMaxBytes
		}
		if ca.Scope == "" {
			ca.Scope = "global"
		}
		if ca.SimilarityThreshold == 0 {
			ca.SimilarityThreshold = DefaultSimilarityThreshold
		}
	}
	for i := range c.ModelList {
		m := &c.ModelList[i]
		if m.ModelInfo.ID == "" {
			m.ModelInfo.ID = fmt.Sprintf("%s/%d", m.ModelName, i)
		}
		if p := m.Deployment(); p != nil && p.APIKey == "" {
			provider, _ := SplitModel(p)
			p.APIKey = envKey(provider)
		}
		if m.ModelInfo.MaxOutputTokens == 0 {
			m.ModelInfo.MaxOutputTokens = m.ModelInfo.MaxTokens
		}
	}
}

// pending are settings this build parses and validates but does not act on
// yet, keyed by path ([] for any list index). Setting one prints a warning,
// so nothing is silently ignored.
var pending = []struct{ path, msg string }{}

// warnings name the pending settings the file sets.
func (c *Config) warnings(present map[string]bool) []string {
	var w []string
	for _, p := range pending {
		if present[p.path] {
			w = append(w, p.path+": "+p.msg)
		}
	}
	return w
}

func ptr[T any](v T) *T { return &v }

// KeyEnv is the environment variable each provider's key is read from when
// a deployment sets no api_key (LiteLLM's names).
var KeyEnv = map[string][]string{
	"openai":       {"OPENAI_API_KEY"},
	"azure":        {"AZURE_API_KEY", "AZURE_OPENAI_API_KEY"},
	"groq":         {"GROQ_API_KEY"},
	"together_ai":  {"TOGETHERAI_API_KEY", "TOGETHER_API_KEY"},
	"mistral":      {"MISTRAL_API_KEY"},
	"deepseek":     {"DEEPSEEK_API_KEY"},
	"fireworks_ai": {"FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"},
	"openrouter":   {"OPENROUTER_API_KEY"},
	"xai":          {"XAI_API_KEY"},
	"perplexity":   {"PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"},
	"cerebras":     {"CEREBRAS_API_KEY"},
	"hosted_vllm":  {"HOSTED_VLLM_API_KEY"},
	"anthropic":    {"ANTHROPIC_API_KEY"},
	"gemini":       {"GEMINI_API_KEY", "GOOGLE_API_KEY"},
}

func envKey(provider string) Secret {
	for _, name := range KeyEnv[provider] {
		if v := os.Getenv(name); v != "" {
			return Secret(v)
		}
	}
	return ""
}
