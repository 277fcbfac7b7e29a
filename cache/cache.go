package cache

import (
	"context"
	"io"
	"time"

	"github.com/lumengw/lumen/providers"
)

// Cache is what the server uses per request: a Store, a Group that
// coalesces identical misses, and the rules that decide what is looked up
// and what is kept. It is safe for concurrent use.
type Cache struct {
	store    Store
	group    Group
	ttl      time.Duration
	maxTTL   time.Duration
	maxEntry int
}

// Options tune a Cache. Zero fields take the defaults.
type Options struct {
	// TTL is the default entry lifetime (default: the store's own).
	TTL time.Duration
	// MaxTTL caps a request's own "ttl"; 0 means no cap.
	MaxTTL time.Duration
	// MaxEntryBytes bounds one entry (default 4 MiB); larger answers are
	// served but not stored.
	MaxEntryBytes int
}

// New returns a Cache over store.
func New(store Store, o Options) *Cache {
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = DefaultMaxEntryBytes
	}
	return &Cache{store: store, ttl: o.TTL, maxTTL: o.MaxTTL, maxEntry: o.MaxEntryBytes}
}

// Store returns the cache's store (for its Stats).
func (c *Cache) Store() Store { return c.store }

// Lookup returns the entry that answers k, unless d skips the lookup or the
// entry is older than d.MaxAge. A streaming request (stream true) only hits
// entries that can be replayed as a stream.
func (c *Cache) Lookup(ctx context.Context, k Key, d Directive, stream bool) (*Entry, bool) {
	if d.Bypass() {
		return nil, false
	}
	e, ok := c.store.Get(ctx, k)
	if !ok || stream && !e.Streamable() || d.MaxAge > 0 && e.Age(time.Now()) > d.MaxAge {
		return nil, false
	}
	return e, true
}

func (c *Cache) ttlFor(d Directive) time.Duration {
	ttl := c.ttl
	if d.TTL > 0 {
		ttl = d.TTL
	}
	if c.maxTTL > 0 && ttl > c.maxTTL {
		ttl = c.maxTTL
	}
	return ttl
}

// Seal gives the form in which an answer is stored: it takes the answer's
// body (a chat.completion) and returns the body to keep, or an error to
// keep nothing. The server seals answers with the request's post_call
// guardrails, so that no store (a shared Redis too) holds text they mask.
// It must be safe to call from any goroutine. A nil Seal keeps the answer
// as it came.
type Seal func(body []byte) ([]byte, error)

// sealed is e in seal's form, or nil when seal refuses it or its form is
// not cacheable. An entry recorded from a stream becomes one whose chunks
// are synthesized from the sealed body.
func (c *Cache) sealed(e *Entry, seal Seal) *Entry {
	if seal == nil {
		return e
	}
	body, err := seal(e.Body("", 0))
	if err != nil {
		return nil
	}
	if e, err = NewEntry(body, c.maxEntry); err != nil {
		return nil
	}
	return e
}

// Do answers a non-streaming miss: it joins an in-flight identical call or
// makes one with fetch, and stores a cacheable answer (unless d.NoStore),
// in seal's form. With d.NoCache or d.NoStore it calls fetch itself, on
// ctx, sharing nothing.
func (c *Cache) Do(ctx context.Context, k Key, d Directive, seal Seal, fetch Fetch) (Result, error) {
	store := func(resp *providers.Response, _ any) {
		body := resp.Body
		if seal != nil {
			var err error
			if body, err = seal(body); err != nil {
				return
			}
		}
		if e, err := NewEntry(body, c.maxEntry); err == nil {
			c.store.Set(context.WithoutCancel(ctx), k, e, c.ttlFor(d))
		}
	}
	if d.Bypass() {
		resp, meta, err := fetch(ctx)
		if err == nil && !d.NoStore {
			store(resp, meta)
		}
		return Result{Response: resp, Meta: meta}, err
	}
	return c.group.Do(ctx, k, fetch, store)
}

// Stream answers a streaming miss: it joins an in-flight identical stream
// from its first chunk or opens one, records it, and stores it once it
// completes (unless d.NoStore), in seal's form. With d.NoCache or
// d.NoStore it opens its own stream on ctx. The caller must Close the
// returned stream.
func (c *Cache) Stream(ctx context.Context, k Key, d Directive, seal Seal, open Open) (StreamResult, error) {
	store := func(e *Entry) {
		if e = c.sealed(e, seal); e != nil {
			c.store.Set(context.WithoutCancel(ctx), k, e, c.ttlFor(d))
		}
	}
	if d.Bypass() {
		st, meta, err := open(ctx)
		if err != nil {
			return StreamResult{}, err
		}
		if !d.NoStore {
			st = &recording{Stream: st, rec: NewRecorder(c.maxEntry), store: store}
		}
		return StreamResult{Stream: st, Meta: meta}, nil
	}
	return c.group.Stream(ctx, k, open, NewRecorder(c.maxEntry), store)
}

// recording records a stream as its reader consumes it and stores the entry
// when it completes.
type recording struct {
	providers.Stream
	rec   *Recorder
	store func(*Entry)
}

// Buffered passes on the recorded stream's providers.Buffered.
func (r *recording) Buffered() int {
	if b, ok := r.Stream.(providers.Buffered); ok {
		return b.Buffered()
	}
	return 0
}

func (r *recording) Recv() ([]byte, error) {
	b, err := r.Stream.Recv()
	switch {
	case err == nil && r.rec != nil:
		r.rec.Add(b)
	case err == io.EOF && r.rec != nil:
		if e, ferr := r.rec.Finish(); ferr == nil {
			r.store(e)
		}
		r.rec = nil
	}
	return b, err
}
