package cache

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/lumengw/lumen/providers"
)

// Group coalesces concurrent identical upstream calls (single-flight): while
// a call for a key is in flight, callers with the same key wait for it
// instead of making their own.
//
// Context ownership: the upstream call belongs to the flight, not to the
// caller that started it. It runs on a goroutine the flight owns, with a
// context that keeps the first caller's values but not its cancellation, and
// that is cancelled when the last waiter leaves. So a leader that hangs up
// does not break its followers, and a flight nobody waits for any more
// stops its upstream call instead of leaking it. A waiter whose context ends
// leaves at once with ctx.Err().
//
// Streaming and non-streaming calls never share a flight. The zero Group is
// ready to use; a Group must not be copied after first use.
type Group struct {
	mu      sync.Mutex
	calls   map[[32]byte]*call
	streams map[[32]byte]*flight
}

// Fetch is a non-streaming upstream call made on behalf of every waiter.
// meta is anything the waiters need besides the response (which deployment
// answered); it is shared, like the response.
type Fetch func(ctx context.Context) (resp *providers.Response, meta any, err error)

// Open starts a streaming upstream call on behalf of every waiter.
type Open func(ctx context.Context) (st providers.Stream, meta any, err error)

// Result is what a waiter of a non-streaming flight gets.
type Result struct {
	// Response is shared by every waiter: never modify it.
	Response *providers.Response
	Meta     any
	// Shared is true for waiters that joined another's flight: they made
	// no upstream call of their own.
	Shared bool
}

// StreamResult is what a waiter of a streaming flight gets.
type StreamResult struct {
	// Stream yields every chunk of the flight from the first, then the
	// live ones. Its payloads are shared: never modify them. The caller
	// must Close it; that is how the waiter leaves the flight.
	Stream providers.Stream
	Meta   any
	Shared bool
}

type call struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int // guarded by Group.mu
	done    chan struct{}
	resp    *providers.Response
	meta    any
	err     error
}

// Do returns the result of fetch for k, calling it once for all concurrent
// callers with the same k. After a successful fetch and before later callers
// stop joining the flight, it calls after (if non-nil) on the flight's
// goroutine: that is where the caller stores the answer, so that a request
// arriving meanwhile joins the finished flight instead of calling upstream.
func (g *Group) Do(ctx context.Context, k Key, fetch Fetch, after func(*providers.Response, any)) (Result, error) {
	g.mu.Lock()
	if c, ok := g.calls[k.Hash]; ok {
		c.waiters++
		g.mu.Unlock()
		return g.wait(ctx, k, c, true)
	}
	if g.calls == nil {
		g.calls = make(map[[32]byte]*call)
	}
	c := &call{done: make(chan struct{}), waiters: 1}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	g.calls[k.Hash] = c
	g.mu.Unlock()
	go g.run(k, c, fetch, after)
	return g.wait(ctx, k, c, false)
}

func (g *Group) run(k Key, c *call, fetch Fetch, after func(*providers.Response, any)) {
	defer c.cancel()
	func() {
		defer func() {
			if r := recover(); r != nil {
				c.resp, c.meta, c.err = nil, nil, fmt.Errorf("upstream call panicked: %v", r)
			}
		}()
		c.resp, c.meta, c.err = fetch(c.ctx)
	}()
	if c.err != nil {
		g.forgetCall(k, c) // nobody may join a failed flight
		close(c.done)
		return
	}
	// Store before releasing the waiters: a client that repeats the
	// request as soon as it has the answer must find it cached. The cost
	// (building the entry, one store write) falls on a miss that has just
	// paid for an upstream call. Requests arriving while it stores join
	// this flight; once it is forgotten, before the waiters have their
	// answer, a repeat goes to the cache (or, when the store failed,
	// upstream) rather than joining a finished flight.
	if after != nil {
		after(c.resp, c.meta)
	}
	g.forgetCall(k, c)
	close(c.done)
}

func (g *Group) forgetCall(k Key, c *call) {
	g.mu.Lock()
	if g.calls[k.Hash] == c {
		delete(g.calls, k.Hash)
	}
	g.mu.Unlock()
}

func (g *Group) wait(ctx context.Context, k Key, c *call, shared bool) (Result, error) {
	select {
	case <-c.done:
		g.leaveCall(k, c)
		return Result{Response: c.resp, Meta: c.meta, Shared: shared}, c.err
	case <-ctx.Done():
		g.leaveCall(k, c)
		return Result{}, ctx.Err()
	}
}

func (g *Group) leaveCall(k Key, c *call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.waiters--
	if c.waiters > 0 {
		return
	}
	select {
	case <-c.done:
	default:
		// The last waiter left an unfinished call: stop it, and let the
		// next caller start afresh.
		c.cancel()
		if g.calls[k.Hash] == c {
			delete(g.calls, k.Hash)
		}
	}
}

// flight is one shared upstream stream. Its chunks are kept, one after the
// other in arena, for as long as a waiter may still need them.
type flight struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int // guarded by Group.mu

	ready   chan struct{} // closed when open has returned
	meta    any           // set before ready is closed
	openErr error         // set before ready is closed

	mu    sync.Mutex
	arena []byte
	ends  []int
	done  bool
	err   error         // why the stream broke
	wake  chan struct{} // closed and replaced when a chunk arrives or the stream ends
}

// Stream returns a stream of the upstream answer for k, opening it once for
// all concurrent callers with the same k. Each caller's stream starts at the
// first chunk, whenever it joined. If rec is non-nil, the flight feeds it
// every chunk; when the upstream stream completes (io.EOF) and rec yields an
// entry, after is called with it on the flight's goroutine before later
// callers stop joining the flight.
//
// Stream returns once open has returned; open's error is every waiter's
// error. A failure later in the stream is returned by Recv.
func (g *Group) Stream(ctx context.Context, k Key, open Open, rec *Recorder, after func(*Entry)) (StreamResult, error) {
	g.mu.Lock()
	f, shared := g.streams[k.Hash]
	if shared {
		f.waiters++
	} else {
		if g.streams == nil {
			g.streams = make(map[[32]byte]*flight)
		}
		f = &flight{ready: make(chan struct{}), wake: make(chan struct{}), waiters: 1}
		f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
		g.streams[k.Hash] = f
	}
	g.mu.Unlock()
	if !shared {
		go g.pump(k, f, open, rec, after)
	}
	t := &tail{g: g, k: k, f: f, ctx: ctx}
	select {
	case <-f.ready:
	case <-ctx.Done():
		t.Close()
		return StreamResult{}, ctx.Err()
	}
	if f.openErr != nil {
		t.Close()
		return StreamResult{}, f.openErr
	}
	return StreamResult{Stream: t, Meta: f.meta, Shared: shared}, nil
}

func (g *Group) pump(k Key, f *flight, open Open, rec *Recorder, after func(*Entry)) {
	defer f.cancel()
	var st providers.Stream
	err := protect(func() (err error) {
		st, f.meta, err = open(f.ctx)
		return err
	})
	if err != nil {
		f.openErr = err
		g.forgetStream(k, f)
		f.finish(err)
		close(f.ready)
		return
	}
	close(f.ready)
	defer st.Close()
	for {
		var b []byte
		err := protect(func() (err error) {
			b, err = st.Recv()
			return err
		})
		if err == io.EOF {
			break
		}
		if err != nil {
			g.forgetStream(k, f)
			f.finish(err)
			return
		}
		f.mu.Lock()
		f.arena = append(f.arena, b...)
		f.ends = append(f.ends, len(f.arena))
		wake := f.wake
		f.wake = make(chan struct{})
		f.mu.Unlock()
		close(wake)
		if rec != nil {
			rec.Add(b)
		}
	}
	f.finish(nil)
	if rec != nil && after != nil {
		if e, err := rec.Finish(); err == nil {
			after(e)
		}
	}
	g.forgetStream(k, f)
}

// protect runs fn, turning a panic into an error: the flight's goroutine
// must always finish, or its waiters would hang.
func protect(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("upstream call panicked: %v", r)
		}
	}()
	return fn()
}

func (f *flight) finish(err error) {
	f.mu.Lock()
	f.done = true
	if err != nil {
		f.err = err
	}
	wake := f.wake
	f.mu.Unlock()
	close(wake)
}

func (g *Group) forgetStream(k Key, f *flight) {
	g.mu.Lock()
	if g.streams[k.Hash] == f {
		delete(g.streams, k.Hash)
	}
	g.mu.Unlock()
}

func (g *Group) leaveStream(k Key, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	f.mu.Lock()
	done := f.done
	f.mu.Unlock()
	if !done {
		f.cancel()
		if g.streams[k.Hash] == f {
			delete(g.streams, k.Hash)
		}
	}
}

// tail is one waiter's view of a flight.
type tail struct {
	g    *Group
	k    Key
	f    *flight
	ctx  context.Context
	i    int
	once sync.Once
}

var (
	_ providers.Stream   = (*tail)(nil)
	_ providers.Buffered = (*tail)(nil)
)

// Buffered implements providers.Buffered: the chunks that arrived and this
// waiter has not read yet.
func (t *tail) Buffered() int {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return len(t.f.ends) - t.i
}

// Recv returns the next chunk of the flight, waiting for it if need be. It
// returns ctx.Err() and leaves the flight if the waiter's context ends.
func (t *tail) Recv() ([]byte, error) {
	f := t.f
	for {
		f.mu.Lock()
		if t.i < len(f.ends) {
			start := 0
			if t.i > 0 {
				start = f.ends[t.i-1]
			}
			end := f.ends[t.i]
			b := f.arena[start:end:end]
			t.i++
			f.mu.Unlock()
			return b, nil
		}
		if f.done {
			err := f.err
			f.mu.Unlock()
			if err == nil {
				err = io.EOF
			}
			return nil, err
		}
		wake := f.wake
		f.mu.Unlock()
		select {
		case <-wake:
		case <-t.ctx.Done():
			t.Close()
			return nil, t.ctx.Err()
		}
	}
}

// Close leaves the flight; the last waiter to leave an unfinished flight
// cancels its upstream call. It is safe to call twice.
func (t *tail) Close() error {
	t.once.Do(func() { t.g.leaveStream(t.k, t.f) })
	return nil
}
