package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/server"
)

// buildCache makes the response cache the config asks for. It returns nil
// when the cache is off, and a close function for what it opened.
// A semantic cache embeds prompts through call (the server's OwnCall).
func buildCache(cfg *config.Config, call callFunc, log zerolog.Logger) (*cache.Cache, func(), error) {
	c := cfg.Cache
	if c == nil {
		return nil, func() {}, nil
	}
	if cfg.Privacy.ZeroRetention && !cfg.Privacy.AllowCache {
		log.Info().Msg("cache: off because privacy.zero_retention is set (set privacy.allow_cache to keep it)")
		return nil, func() {}, nil
	}
	ttl := c.TTL.D()
	switch c.Type {
	case "local":
		return cache.New(cache.NewLocal(int64(c.MaxBytes), ttl), cacheOptions(ttl)), func() {}, nil
	case "redis":
		addr := c.RedisURL.Value()
		if addr == "" {
			u := url.URL{Scheme: "redis", Host: net.JoinHostPort(c.Host, strconv.Itoa(portOr(c.Port, 6379)))}
			if c.Password != "" {
				u.User = url.UserPassword("", c.Password.Value())
			}
			addr = u.String()
		}
		opts, err := cache.RedisClientOptions(addr)
		if err != nil {
			return nil, nil, fmt.Errorf("cache.redis_url: %w", err)
		}
		// go-redis logs every failed dial through a process-wide logger;
		// the cache store already counts failures and logs them once a
		// minute, so the library's own lines go to debug.
		redis.SetLogger(redisLogger{log})
		client := redis.NewClient(opts)
		store := cache.NewRedis(client, cache.RedisOptions{TTL: ttl, Logger: log})
		return cache.New(store, cacheOptions(ttl)), func() { _ = client.Close() }, nil
	case "semantic":
		store := cache.NewSemantic(&embedder{call: call, group: c.EmbeddingModel}, cache.NewLocal(int64(c.MaxBytes), ttl),
			cache.SemanticOptions{Threshold: c.SimilarityThreshold, TTL: ttl, Logger: log})
		return cache.New(store, cacheOptions(ttl)), func() {}, nil
	default:
		return nil, nil, fmt.Errorf("cache.type %q is not available in this build (use local, redis or semantic)", c.Type)
	}
}

// callFunc makes a call on the gateway's own behalf: server.OwnCall.
type callFunc func(ctx context.Context, purpose string, call *router.Call) (*router.Result, error)

// embedder embeds prompts for the semantic cache with a configured
// embedding model group, through the server's router (the one a reload
// swapped in), counted in the group's limits.model_groups rpm/tpm window
// (server.OwnCall). A full window skips the embedding
// (cache.ErrEmbeddingSkipped): the request is looked up exactly only.
// Each embedding is in the ledger (tagged lumen:purpose=semantic_cache,
// its request id the client request's plus "/embedding") and charged to
// the group's budget.
type embedder struct {
	call  callFunc
	group string
}

func (e *embedder) Embed(ctx context.Context, text string) ([]float32, error) {
	body, err := json.Marshal(map[string]string{"model": e.group, "input": text})
	if err != nil {
		return nil, fmt.Errorf("encoding embedding request: %w", err)
	}
	res, err := e.call(ctx, server.PurposeSemanticCache, &router.Call{Group: e.group, Op: providers.OpEmbedding, Body: body})
	if errors.Is(err, server.ErrGroupWindowFull) {
		return nil, fmt.Errorf("embedding with %s: %w: %w", e.group, cache.ErrEmbeddingSkipped, err)
	}
	if err != nil {
		return nil, fmt.Errorf("embedding with %s: %w", e.group, err)
	}
	var out struct {
		Data []struct {
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(res.Response.Body, &out); err != nil || len(out.Data) == 0 {
		return nil, fmt.Errorf("embedding with %s: no embedding in the answer", e.group)
	}
	return out.Data[0].Embedding, nil
}

// MaxRequestTTL caps a request's own "cache": {"ttl": …}, so a client
// cannot pin entries for longer than a day.
const MaxRequestTTL = 24 * time.Hour

func cacheOptions(ttl time.Duration) cache.Options {
	return cache.Options{TTL: ttl, MaxTTL: max(ttl, MaxRequestTTL)}
}

// redisLogger sends go-redis's own log lines to zerolog at debug level.
type redisLogger struct{ log zerolog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug().Str("component", "go-redis").Msgf(format, v...)
}

func portOr(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}
