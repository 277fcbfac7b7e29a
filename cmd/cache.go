package cmd

import (
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/config"
)

// buildCache makes the response cache the config asks for. It returns nil
// when the cache is off, and a close function for what it opened.
func buildCache(cfg *config.Config, log zerolog.Logger) (*cache.Cache, func(), error) {
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
		return cache.New(cache.NewLocal(int64(c.MaxBytes), ttl), cache.Options{TTL: ttl}), func() {}, nil
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
			return nil, nil, err
		}
		client := redis.NewClient(opts)
		store := cache.NewRedis(client, cache.RedisOptions{TTL: ttl, Logger: log})
		return cache.New(store, cache.Options{TTL: ttl}), func() { _ = client.Close() }, nil
	default:
		return nil, nil, fmt.Errorf("cache.type %q is not available in this build (use local or redis)", c.Type)
	}
}

func portOr(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}
