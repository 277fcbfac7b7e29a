package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/limits"
)

// Strategies are the routing_strategy values Lumen knows (LiteLLM's names).
var Strategies = []string{"simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing", "cost-based-routing"}

// AutoModes are the auto route modes.
var AutoModes = []string{"floor", "best", "fast", "smart"}

// Validate checks the configuration as a whole and returns every problem,
// each naming its field. It expects defaults applied (Load does that).
func (c *Config) Validate() []string {
	var p problems
	groups := c.groups()
	if len(c.ModelList) == 0 {
		p.add("model_list", "at least one model is required")
	}
	ids := map[string]string{}
	for i := range c.ModelList {
		m := &c.ModelList[i]
		at := fmt.Sprintf("model_list[%d]", i)
		if strings.TrimSpace(m.ModelName) == "" {
			p.add(at+".model_name", "required: the name clients send as \"model\"")
		}
		if prev, dup := ids[m.ModelInfo.ID]; dup {
			p.add(at+".model_info.id", "%q is already used by %s", m.ModelInfo.ID, prev)
		}
		ids[m.ModelInfo.ID] = at
		c.validateInfo(&p, at+".model_info", &m.ModelInfo)
		switch {
		case m.LiteLLMParams != nil && m.Params != nil:
			p.add(at, "set litellm_params or params, not both")
		case m.Auto != nil && m.Deployment() != nil:
			p.add(at, "an entry is either a deployment (litellm_params) or an auto route (auto), not both")
		case m.Auto != nil:
			if m.ModelName == "auto" || strings.Contains(m.ModelName, ":") {
				p.add(at+".model_name", "an auto route may not be named %q: \"auto\" is configured in router_settings.auto and \":\" separates a route from its mode (auto-coding:best)", m.ModelName)
			}
			validateAuto(&p, at+".auto", m.Auto, groups)
		case m.Deployment() == nil:
			p.add(at+".litellm_params", "required: say which upstream serves %q", m.ModelName)
		default:
			block := at + ".litellm_params"
			if m.LiteLLMParams == nil {
				block = at + ".params"
			}
			validateParams(&p, block, m.Deployment())
		}
	}
	p = append(p, guardrail.Validate(c.Guardrails, groups)...)
	r := &c.RouterSettings
	if !oneOf(r.RoutingStrategy, Strategies) {
		p.add("router_settings.routing_strategy", "unknown strategy %q; use one of %s", r.RoutingStrategy, strings.Join(Strategies, ", "))
	}
	if *r.NumRetries < 0 || *r.NumRetries > 10 {
		p.add("router_settings.num_retries", "must be between 0 and 10, got %d", *r.NumRetries)
	}
	if *r.AllowedFails < 1 {
		p.add("router_settings.allowed_fails", "must be at least 1, got %d", *r.AllowedFails)
	}
	for _, fb := range []struct {
		name string
		list []map[string][]string
	}{{"fallbacks", r.Fallbacks}, {"context_window_fallbacks", r.ContextWindowFallbacks}, {"content_policy_fallbacks", r.ContentPolicyFallbacks}} {
		for i, m := range fb.list {
			for from, to := range m {
				at := fmt.Sprintf("router_settings.%s[%d].%s", fb.name, i, from)
				if !groups[from] {
					p.add(at, "unknown model group %q", from)
				}
				for j, t := range to {
					if !groups[t] {
						p.add(fmt.Sprintf("%s[%d]", at, j), "unknown model group %q", t)
					}
				}
			}
		}
	}
	for _, alias := range sortedKeys(r.ModelGroupAlias) {
		target, at := r.ModelGroupAlias[alias], "router_settings.model_group_alias."+alias
		switch {
		case groups[alias] || c.isAutoRoute(alias):
			p.add(at, "%q is already a model_name in model_list; an alias must be a new name", alias)
		case !groups[target] && !c.isAutoRoute(target) && target != "auto" && !strings.HasPrefix(target, "auto:"):
			p.add(at, "unknown model group %q", target)
		}
	}
	if r.HedgeAfterMS < 0 {
		p.add("router_settings.hedge_after_ms", "must be 0 (off) or more, got %d", r.HedgeAfterMS)
	}
	for _, name := range sortedKeys(r.ModelGroupHedgeAfter) {
		if !groups[name] {
			p.add("router_settings.model_group_hedge_after."+name, "unknown model group %q", name)
		}
	}
	validateAuto(&p, "router_settings.auto", &r.Auto, groups)
	if c.GeneralSettings.MaxRequestSizeMB <= 0 {
		p.add("general_settings.max_request_size_mb", "must be positive, got %g", c.GeneralSettings.MaxRequestSizeMB)
	}
	if c.Server.Port < 0 || c.Server.Port > 65535 {
		p.add("server.port", "must be between 0 (any free port) and 65535, got %d", c.Server.Port)
	}
	if !oneOf(c.Log.Level, []string{"trace", "debug", "info", "warn", "error"}) {
		p.add("log.level", "unknown level %q; use trace, debug, info, warn or error", c.Log.Level)
	}
	if !oneOf(c.Log.Format, []string{"json", "console"}) {
		p.add("log.format", "unknown format %q; use json or console", c.Log.Format)
	}
	if c.Ledger.Path == "" {
		p.add("ledger.path", "required")
	}
	if u := c.Ledger.PostgresURL.Value(); u != "" {
		if pu, err := url.Parse(u); err != nil || pu.Scheme != "postgres" && pu.Scheme != "postgresql" || pu.Host == "" {
			// Not the URL itself: it may hold a password.
			p.add("ledger.postgres_url", "invalid Postgres URL; use postgres://user:password@host:5432/lumen")
		}
	}
	if c.Ledger.RetentionDays < 0 {
		p.add("ledger.retention_days", "must not be negative")
	}
	if c.Ledger.QueueSize < 1 {
		p.add("ledger.queue_size", "must be at least 1, got %d", c.Ledger.QueueSize)
	}
	if _, err := time.LoadLocation(c.Ledger.BudgetTimezone); err != nil {
		p.add("ledger.budget_timezone", "unknown time zone %q", c.Ledger.BudgetTimezone)
	}
	if ca := c.Cache; ca != nil {
		if !oneOf(ca.Type, []string{"local", "redis", "semantic"}) {
			p.add("cache.type", "unknown type %q; use local, redis or semantic", ca.Type)
		}
		if !oneOf(ca.Scope, []string{"global", "key"}) {
			p.add("cache.scope", "unknown scope %q; use global or key", ca.Scope)
		}
		if ca.Type == "redis" && ca.RedisURL == "" && ca.Host == "" {
			p.add("cache.redis_url", "required for type redis (or host and port)")
		}
		if ca.RedisURL != "" {
			if _, err := url.Parse(ca.RedisURL.Value()); err != nil || !strings.HasPrefix(ca.RedisURL.Value(), "redis") {
				p.add("cache.redis_url", "invalid Redis URL; use redis://host:6379/0")
			}
		}
		if ca.SimilarityThreshold <= 0 || ca.SimilarityThreshold > 1 {
			p.add("cache.similarity_threshold", "must be in (0, 1], got %g", ca.SimilarityThreshold)
		}
		if ca.Type == "semantic" && !groups[ca.EmbeddingModel] {
			p.add("cache.embedding_model", "semantic cache needs an embedding model group from model_list, got %q", ca.EmbeddingModel)
		}
	}
	if c.Audit.CheckpointEvery < 1 {
		p.add("audit.checkpoint_every", "must be at least 1, got %d", c.Audit.CheckpointEvery)
	}
	checkLimit := func(at string, r Limit) {
		if r.RPM < 0 {
			p.add(at+".rpm", "must be 0 (unlimited) or more, got %d", r.RPM)
		}
		if r.TPM < 0 {
			p.add(at+".tpm", "must be 0 (unlimited) or more, got %d", r.TPM)
		}
		if r.BudgetUSD < 0 || math.IsNaN(r.BudgetUSD) || math.IsInf(r.BudgetUSD, 0) {
			p.add(at+".budget_usd", "must be 0 (no budget) or more, got %g", r.BudgetUSD)
		}
		if _, err := limits.ParsePeriod(r.BudgetPeriod); err != nil {
			p.add(at+".budget_period", "%v", err)
		}
	}
	if u := c.Limits.RedisURL.Value(); u != "" {
		if _, err := url.Parse(u); err != nil || !strings.HasPrefix(u, "redis") {
			p.add("limits.redis_url", "invalid Redis URL; use redis://host:6379/0")
		}
	}
	checkLimit("limits.global", c.Limits.Global)
	for _, name := range sortedKeys(c.Limits.ModelGroups) {
		at := "limits.model_groups." + name
		if !groups[name] {
			p.add(at, "no model group named %q in model_list", name)
		}
		checkLimit(at, c.Limits.ModelGroups[name])
	}
	checkLimit("limits.users", c.Limits.Users)
	for _, tag := range sortedKeys(c.Limits.Tags) {
		at := "limits.tags." + tag
		if k, v, ok := strings.Cut(tag, "="); !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(v) == "" {
			p.add(at, "a tag is written name=value, as on a key (lumen keys create --tags team=search), got %q", tag)
		}
		checkLimit(at, c.Limits.Tags[tag])
	}
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			p.add("metrics.listen", "invalid address %q; use host:port", l)
		}
	}
	if e := c.Tracing.OTLPEndpoint; e != "" {
		if u, err := url.Parse(e.Value()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("tracing.otlp_endpoint", "invalid URL %q; use the collector's OTLP/HTTP address, http://host:4318", e)
		}
	}
	if r := c.Tracing.SampleRatio; r < 0 || r > 1 {
		p.add("tracing.sample_ratio", "must be between 0 and 1, got %g", r)
	}
	return p
}

func validateParams(p *problems, at string, d *Params) {
	if d.Model == "" {
		p.add(at+".model", "required, e.g. \"openai/gpt-4o\" or \"mock/demo\"")
		return
	}
	provider, upstream := SplitModel(d)
	switch {
	case provider == "":
		p.add(at+".model", "%q has no provider prefix; write it as provider/model, e.g. \"openai/%s\" (providers: %s)", d.Model, d.Model, strings.Join(KnownProviders(), ", "))
	case !isProvider(provider):
		p.add(at+".model", "unknown provider %q in %q; known: %s", provider, d.Model, strings.Join(KnownProviders(), ", "))
	case upstream == "":
		p.add(at+".model", "%q names no upstream model after the provider prefix", d.Model)
	}
	if d.APIBase != "" {
		u, err := url.Parse(d.APIBase.Value())
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add(at+".api_base", "invalid URL %q: use http(s)://host[:port][/path]", d.APIBase)
		}
	} else if oneOf(provider, []string{"azure", "hosted_vllm", "vllm", "openai_compatible"}) {
		p.add(at+".api_base", "required for provider %s", provider)
	}
	if d.RPM < 0 {
		p.add(at+".rpm", "must not be negative")
	}
	if d.TPM < 0 {
		p.add(at+".tpm", "must not be negative")
	}
	if d.Weight < 0 {
		p.add(at+".weight", "must not be negative")
	}
	if d.MaxRetries != nil && (*d.MaxRetries < 0 || *d.MaxRetries > 10) {
		p.add(at+".max_retries", "must be between 0 and 10")
	}
	for j, ip := range d.CacheControlInjectionPoints {
		pat := fmt.Sprintf("%s.cache_control_injection_points[%d]", at, j)
		switch {
		case ip.Location != "message":
			p.add(pat+".location", "must be message, got %q", ip.Location)
		case ip.Role == "" && ip.Index == nil:
			p.add(pat, "needs a role (system, user, assistant, tool) or an index (negative counts from the end)")
		case ip.Role != "" && !slices.Contains([]string{"system", "user", "assistant", "tool"}, ip.Role):
			p.add(pat+".role", "must be system, user, assistant or tool, got %q", ip.Role)
		}
	}
	if d.ResponsesAPI != nil && *d.ResponsesAPI && provider != "" && !IsOpenAIShaped(provider) {
		p.add(at+".responses_api", "only OpenAI-shaped providers take Responses API requests natively; %s gets them translated to its own API", provider)
	}
	if d.MockFailureRate < 0 || d.MockFailureRate > 1 {
		p.add(at+".mock_failure_rate", "must be between 0 and 1, got %g", d.MockFailureRate)
	}
	for name, v := range map[string]*float64{"input_cost_per_token": d.InputCostPerToken, "output_cost_per_token": d.OutputCostPerToken} {
		if v != nil && *v < 0 {
			p.add(at+"."+name, "must not be negative")
		}
	}
}

// modelModes are model_info.mode's values: Lumen's, and LiteLLM's others
// (batch, realtime, responses), which a LiteLLM config may carry.
var modelModes = []string{"chat", "completion", "embedding", "moderation", "rerank", "image_generation",
	"audio_speech", "audio_transcription", "responses", "batch", "realtime"}

func (c *Config) validateInfo(p *problems, at string, mi *ModelInfo) {
	if mi.Mode != "" && !slices.Contains(modelModes, mi.Mode) {
		p.add(at+".mode", "unknown mode %q; use one of %s", mi.Mode, strings.Join(modelModes, ", "))
	}
	if mi.Quality != nil && (*mi.Quality < 0 || *mi.Quality > 1) {
		p.add(at+".quality", "must be between 0 and 1, got %g", *mi.Quality)
	}
	for name, v := range map[string]*float64{
		"input_cost_per_token": mi.InputCostPerToken, "output_cost_per_token": mi.OutputCostPerToken,
		"cache_read_input_token_cost": mi.CacheReadInputTokenCost, "cache_creation_input_token_cost": mi.CacheCreationInputTokenCost,
	} {
		if v != nil && *v < 0 {
			p.add(at+"."+name, "must not be negative")
		}
	}
	if mi.MaxInputTokens < 0 || mi.MaxOutputTokens < 0 {
		p.add(at, "token limits must not be negative")
	}
}

func validateAuto(p *problems, at string, a *AutoRoute, groups map[string]bool) {
	for i, c := range a.Candidates {
		if !groups[c] {
			p.add(fmt.Sprintf("%s.candidates[%d]", at, i), "unknown model group %q", c)
		}
	}
	if a.QualityFloor < 0 || a.QualityFloor > 1 {
		p.add(at+".quality_floor", "must be between 0 and 1, got %g", a.QualityFloor)
	}
	if a.MaxCostPer1K < 0 {
		p.add(at+".max_cost_per_1k", "must not be negative")
	}
	if a.MaxLatencyMS < 0 {
		p.add(at+".max_latency_ms", "must not be negative")
	}
	if a.Mode != "" && !oneOf(a.Mode, AutoModes) {
		p.add(at+".mode", "unknown mode %q; use %s", a.Mode, strings.Join(AutoModes, ", "))
	}
}

// groups returns the names of deployment-backed model groups.
// isAutoRoute reports whether name is a model_list entry with an auto block.
func (c *Config) isAutoRoute(name string) bool {
	for i := range c.ModelList {
		if c.ModelList[i].Auto != nil && c.ModelList[i].ModelName == name {
			return true
		}
	}
	return false
}

func (c *Config) groups() map[string]bool {
	g := map[string]bool{}
	for i := range c.ModelList {
		if c.ModelList[i].Auto == nil && c.ModelList[i].ModelName != "" {
			g[c.ModelList[i].ModelName] = true
		}
	}
	return g
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type problems []string

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, field+": "+fmt.Sprintf(format, args...))
}

func oneOf(s string, list []string) bool {
	for _, v := range list {
		if s == v {
			return true
		}
	}
	return false
}
