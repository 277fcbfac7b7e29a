package cache

import (
	"context"
	"sync/atomic"
	"time"
)

// Store keeps entries by Key.Hash. Implementations are safe for concurrent
// use.
//
// A Store never fails a request: a backend that can fail (Redis, an
// embedder) counts and logs the failure and reports a miss, or drops the
// write. That is why Get and Set return no error.
type Store interface {
	// Get returns the live entry stored under k. Expired entries are
	// misses. The entry is shared and must not be modified.
	Get(ctx context.Context, k Key) (*Entry, bool)
	// Set stores e under k for ttl; ttl <= 0 means the store's default.
	// The store keeps e; the caller must not modify it afterwards.
	Set(ctx context.Context, k Key, e *Entry, ttl time.Duration)
}

// Stats are a store's counters since it was created.
type Stats struct {
	Hits, Misses, Sets int64
	// Evictions counts entries dropped to stay under the byte bound;
	// Expired counts entries found or swept after their TTL.
	Evictions, Expired int64
	// Errors counts backend failures (Redis unreachable, an embedder
	// error); each one was served as a miss.
	Errors int64
	// Entries and Bytes are the current contents (local store only).
	Entries, Bytes int64
}

// A StatsReporter reports its counters; the metrics endpoint finds it by
// type assertion on a Store.
type StatsReporter interface {
	Stats() Stats
}

// counters are the atomic counters behind Stats.
type counters struct {
	hits, misses, sets, evictions, expired, errors atomic.Int64
}

func (c *counters) stats() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Sets: c.sets.Load(),
		Evictions: c.evictions.Load(), Expired: c.expired.Load(), Errors: c.errors.Load(),
	}
}

// DefaultTTL is how long an entry lives when neither the config nor the
// request says.
const DefaultTTL = time.Hour

// DefaultMaxBytes bounds the local store when the config does not.
const DefaultMaxBytes = 256 << 20
