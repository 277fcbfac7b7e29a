package cache

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Local is the in-process Store: an LRU bounded by the bytes it holds, with
// a TTL per entry. Expired entries are misses and are removed when found;
// each Set also sweeps a few expired entries from the cold end, so expired
// entries do not outlive their TTL by much under traffic and never push out
// live ones.
type Local struct {
	mu    sync.Mutex
	lru   *simplelru.LRU[[32]byte, *localItem]
	bytes int64
	max   int64
	ttl   time.Duration
	now   func() time.Time
	c     counters
}

var (
	_ Store         = (*Local)(nil)
	_ StatsReporter = (*Local)(nil)
)

type localItem struct {
	e       *Entry
	expires int64 // unix nanoseconds
	size    int64
}

// itemOverhead is what an LRU item costs beyond its entry: the key in the
// map and the list element, the map slot, the localItem.
const itemOverhead = 32 + 48 + 48 + 32

// NewLocal returns a Local that holds at most maxBytes (0: DefaultMaxBytes),
// counting each entry's Size plus its key and bookkeeping, and keeps entries
// for ttl unless Set says otherwise (0: DefaultTTL).
func NewLocal(maxBytes int64, ttl time.Duration) *Local {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	// The byte bound is the real limit; the LRU's count bound never bites.
	lru, _ := simplelru.NewLRU[[32]byte, *localItem](math.MaxInt, nil)
	return &Local{lru: lru, max: maxBytes, ttl: ttl, now: time.Now}
}

// Get implements Store.
func (l *Local) Get(_ context.Context, k Key) (*Entry, bool) {
	now := l.now().UnixNano()
	l.mu.Lock()
	it, ok := l.lru.Get(k.Hash)
	if ok && now >= it.expires {
		l.lru.Remove(k.Hash)
		l.bytes -= it.size
		ok = false
		l.c.expired.Add(1)
	}
	l.mu.Unlock()
	if !ok {
		l.c.misses.Add(1)
		return nil, false
	}
	l.c.hits.Add(1)
	return it.e, true
}

// Set implements Store. An entry larger than the whole bound is dropped.
func (l *Local) Set(_ context.Context, k Key, e *Entry, ttl time.Duration) {
	if ttl <= 0 {
		ttl = l.ttl
	}
	now := l.now().UnixNano()
	it := &localItem{e: e, expires: now + int64(ttl), size: int64(e.Size()) + itemOverhead}
	if it.size > l.max {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.lru.Peek(k.Hash); ok {
		l.bytes -= old.size
	}
	l.lru.Add(k.Hash, it)
	l.bytes += it.size
	l.c.sets.Add(1)
	// Sweep a few expired entries from the cold end.
	for i := 0; i < 2; i++ {
		_, old, ok := l.lru.GetOldest()
		if !ok || old == it || now < old.expires {
			break
		}
		l.lru.RemoveOldest()
		l.bytes -= old.size
		l.c.expired.Add(1)
	}
	for l.bytes > l.max {
		_, old, ok := l.lru.RemoveOldest()
		if !ok {
			break
		}
		l.bytes -= old.size
		l.c.evictions.Add(1)
	}
}

// Stats implements StatsReporter.
func (l *Local) Stats() Stats {
	s := l.c.stats()
	l.mu.Lock()
	s.Entries, s.Bytes = int64(l.lru.Len()), l.bytes
	l.mu.Unlock()
	return s
}
