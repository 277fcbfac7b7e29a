package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
)

// eventually waits for cond, failing the test if it does not hold within a
// generous deadline. It synchronizes tests; it asserts no timing.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func callWaiters(g *Group, k Key) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.calls[k.Hash]; c != nil {
		return c.waiters
	}
	return 0
}

func streamWaiters(g *Group, k Key) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.streams[k.Hash]; f != nil {
		return f.waiters
	}
	return 0
}

// streamInFlight reports whether a stream flight for k is still known.
func streamInFlight(g *Group, k Key) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.streams[k.Hash] != nil
}

// fakeUpstream is a streaming upstream the test drives chunk by chunk.
type fakeUpstream struct {
	calls  atomic.Int32
	closed atomic.Int32
	chunks chan []byte // closing it ends the stream cleanly
	fail   chan error
	block  chan struct{} // non-nil: open waits for it (or ctx)

	mu       sync.Mutex
	ctx      context.Context
	errAtEOF error // the upstream context's state when the stream ended
}

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{chunks: make(chan []byte), fail: make(chan error)}
}

func (u *fakeUpstream) open(ctx context.Context) (providers.Stream, any, error) {
	u.calls.Add(1)
	u.mu.Lock()
	u.ctx = ctx
	u.mu.Unlock()
	if u.block != nil {
		select {
		case <-u.block:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return &fakeStream{u: u, ctx: ctx}, "deployment-1", nil
}

// send hands the flight one chunk, failing the test if nobody reads it.
func (u *fakeUpstream) send(t *testing.T, b []byte) {
	t.Helper()
	select {
	case u.chunks <- b:
	case <-time.After(10 * time.Second):
		t.Fatal("nobody reads the upstream stream")
	}
}

// waitClosed waits for ch to be closed, failing the test if it is not.
func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func (u *fakeUpstream) upstreamCtx() context.Context {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ctx
}

type fakeStream struct {
	u   *fakeUpstream
	ctx context.Context
}

func (s *fakeStream) Recv() ([]byte, error) {
	select {
	case b, ok := <-s.u.chunks:
		if !ok {
			s.u.mu.Lock()
			s.u.errAtEOF = s.ctx.Err()
			s.u.mu.Unlock()
			return nil, io.EOF
		}
		return b, nil
	case err := <-s.u.fail:
		return nil, err
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

func (s *fakeStream) Close() error { s.u.closed.Add(1); return nil }

// reader drains a waiter's stream in the background.
type reader struct {
	got  []string
	err  error
	done chan struct{}
}

func read(st providers.Stream) *reader {
	r := &reader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer st.Close()
		for {
			b, err := st.Recv()
			if err != nil {
				if err != io.EOF {
					r.err = err
				}
				return
			}
			r.got = append(r.got, string(b))
		}
	}()
	return r
}

func TestGroupDoCoalesces(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	release := make(chan struct{})
	var calls atomic.Int32
	fetch := func(ctx context.Context) (*providers.Response, any, error) {
		calls.Add(1)
		<-release
		return &providers.Response{Body: []byte(chatBody)}, "deployment-1", nil
	}
	var stored atomic.Int32
	const n = 50
	results := make([]Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = g.Do(context.Background(), k, fetch, func(*providers.Response, any) { stored.Add(1) })
		}()
	}
	eventually(t, "50 waiters", func() bool { return callWaiters(&g, k) == n })
	close(release)
	wg.Wait()
	if c := calls.Load(); c != 1 {
		t.Fatalf("%d upstream calls for %d identical requests, want 1", c, n)
	}
	shared := 0
	for i := range results {
		if errs[i] != nil || results[i].Response != results[0].Response || results[i].Meta != "deployment-1" {
			t.Fatalf("waiter %d: %+v, %v", i, results[i], errs[i])
		}
		if results[i].Shared {
			shared++
		}
	}
	if shared != n-1 || stored.Load() != 1 {
		t.Errorf("shared = %d, after calls = %d; want %d and 1", shared, stored.Load(), n-1)
	}
	// The flight is over: the next caller calls upstream again.
	if _, err := g.Do(context.Background(), k, func(context.Context) (*providers.Response, any, error) {
		calls.Add(1)
		return &providers.Response{}, nil, nil
	}, nil); err != nil || calls.Load() != 2 {
		t.Errorf("after the flight: err %v, calls %d", err, calls.Load())
	}
}

func TestGroupDoLeaderHangsUp(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	release := make(chan struct{})
	fetch := func(ctx context.Context) (*providers.Response, any, error) {
		<-release
		// Fails if the leader's hang-up reached the upstream call.
		return &providers.Response{Body: []byte("ok")}, nil, ctx.Err()
	}
	leaderCtx, hangUp := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() { _, err := g.Do(leaderCtx, k, fetch, nil); leader <- err }()
	eventually(t, "the leader", func() bool { return callWaiters(&g, k) == 1 })
	follower := make(chan Result, 1)
	go func() {
		r, err := g.Do(context.Background(), k, fetch, nil)
		if err != nil {
			t.Errorf("follower: %v", err)
		}
		follower <- r
	}()
	eventually(t, "the follower", func() bool { return callWaiters(&g, k) == 2 })

	hangUp()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Errorf("leader got %v, want context.Canceled", err)
	}
	close(release)
	if r := <-follower; r.Response == nil || string(r.Response.Body) != "ok" || !r.Shared {
		t.Errorf("follower got %+v after the leader hung up", r)
	}
}

func TestGroupDoAllLeaveCancelsUpstream(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	returned := make(chan error, 1)
	fetch := func(ctx context.Context) (*providers.Response, any, error) {
		<-ctx.Done()
		returned <- ctx.Err()
		return nil, nil, ctx.Err()
	}
	var cancels []context.CancelFunc
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := g.Do(ctx, k, fetch, nil); !errors.Is(err, context.Canceled) {
				t.Errorf("waiter got %v, want context.Canceled", err)
			}
		}()
	}
	eventually(t, "3 waiters", func() bool { return callWaiters(&g, k) == 3 })
	cancels[0]()
	cancels[1]()
	select {
	case <-returned:
		t.Fatal("upstream cancelled while a waiter remained")
	case <-time.After(20 * time.Millisecond):
	}
	cancels[2]()
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("upstream context: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream call outlived its last waiter")
	}
	wg.Wait()
}

func TestGroupDoErrorsAndPanics(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	boom := errors.New("upstream 500")
	if _, err := g.Do(context.Background(), k, func(context.Context) (*providers.Response, any, error) {
		return nil, nil, boom
	}, func(*providers.Response, any) { t.Error("after called for a failed call") }); !errors.Is(err, boom) {
		t.Errorf("error = %v, want %v", err, boom)
	}
	if _, err := g.Do(context.Background(), k, func(context.Context) (*providers.Response, any, error) {
		panic("bug")
	}, nil); err == nil {
		t.Error("a panicking fetch returned no error")
	}
	if n := callWaiters(&g, k); n != 0 || len(g.calls) != 0 {
		t.Errorf("flights left behind: %d waiters, %d calls", n, len(g.calls))
	}
}

// TestGroupDoJoinsWhileStoring checks that a request arriving while the
// answer is being stored joins the flight rather than calling, and gets
// the answer once it is stored (the store comes before the release, so a
// repeat after the answer always finds it cached).
func TestGroupDoJoinsWhileStoring(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	var calls atomic.Int32
	fetch := func(context.Context) (*providers.Response, any, error) {
		calls.Add(1)
		return &providers.Response{Body: []byte("x")}, nil, nil
	}
	storing, release := make(chan struct{}), make(chan struct{})
	leader := make(chan Result, 1)
	go func() {
		r, _ := g.Do(context.Background(), k, fetch, func(*providers.Response, any) { close(storing); <-release })
		leader <- r
	}()
	<-storing
	type outcome struct {
		r   Result
		err error
	}
	joined := make(chan outcome, 1)
	go func() {
		r, err := g.Do(context.Background(), k, fetch, nil)
		joined <- outcome{r, err}
	}()
	for callWaiters(&g, k) < 2 { // the joiner is on the flight
		runtime.Gosched()
	}
	select {
	case <-leader:
		t.Fatal("the leader was released before its answer was stored")
	default:
	}
	close(release)
	o := <-joined
	<-leader
	if o.err != nil || !o.r.Shared || calls.Load() != 1 {
		t.Errorf("late joiner: %+v, %v, %d calls", o.r, o.err, calls.Load())
	}
}

// TestGroupDoFinishedFlightIsGone: once a caller has its answer, the
// flight is forgotten, so a repeat starts afresh (and, with the cache
// down, calls upstream) instead of joining the finished flight. Before
// the fix the flight was forgotten after the waiters were released, and
// a quick repeat could still join it.
func TestGroupDoFinishedFlightIsGone(t *testing.T) {
	var g Group
	k := testKey(t, 2)
	fetch := func(context.Context) (*providers.Response, any, error) {
		return &providers.Response{Body: []byte("x")}, nil, nil
	}
	for i := range 2000 {
		if _, err := g.Do(context.Background(), k, fetch, func(*providers.Response, any) {}); err != nil {
			t.Fatal(err)
		}
		g.mu.Lock()
		_, joinable := g.calls[k.Hash]
		g.mu.Unlock()
		if joinable {
			t.Fatalf("round %d: the finished flight is still joinable", i)
		}
	}
}

func chunkN(i int) []byte { return fmt.Appendf(nil, `{"n":%d}`, i) }

func TestGroupStreamTailsFromStart(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	u := newFakeUpstream()
	var want []string
	send := func(i int) {
		u.send(t, chunkN(i))
		want = append(want, string(chunkN(i)))
	}
	var readers []*reader
	join := func(n int) {
		for i := 0; i < n; i++ {
			before := streamWaiters(&g, k)
			res, err := g.Stream(context.Background(), k, u.open, nil, nil)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if res.Meta != "deployment-1" || res.Shared != (before > 0) {
				t.Errorf("result %+v with %d waiters before", res, before)
			}
			readers = append(readers, read(res.Stream))
		}
	}
	join(3)
	send(0)
	send(1)
	join(3) // late: they must still get chunks 0 and 1
	for i := 2; i < 50; i++ {
		send(i)
		if i == 25 {
			join(3)
		}
	}
	close(u.chunks)
	for i, r := range readers {
		<-r.done
		if r.err != nil || !reflect.DeepEqual(r.got, want) {
			t.Errorf("waiter %d: %d chunks, err %v; want all %d", i, len(r.got), r.err, len(want))
		}
	}
	if u.calls.Load() != 1 || u.closed.Load() != 1 {
		t.Errorf("upstream opened %d times, closed %d; want 1, 1", u.calls.Load(), u.closed.Load())
	}
}

func TestGroupStreamLeaderHangsUp(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	u := newFakeUpstream()
	leaderCtx, hangUp := context.WithCancel(context.Background())
	leader, err := g.Stream(leaderCtx, k, u.open, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var followers []*reader
	for i := 0; i < 2; i++ {
		res, err := g.Stream(context.Background(), k, u.open, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		followers = append(followers, read(res.Stream))
	}
	u.send(t, chunkN(0))
	if b, err := leader.Stream.Recv(); err != nil || string(b) != `{"n":0}` {
		t.Fatalf("leader Recv: %s, %v", b, err)
	}
	hangUp()
	// The leader's next Recv returns at once, whatever the upstream does.
	if _, err := leader.Stream.Recv(); !errors.Is(err, context.Canceled) {
		t.Errorf("leader Recv after hang-up: %v", err)
	}
	leader.Stream.Close()
	eventually(t, "the leader to leave", func() bool { return streamWaiters(&g, k) == 2 })
	for i := 1; i < 5; i++ {
		u.send(t, chunkN(i))
	}
	close(u.chunks)
	for i, r := range followers {
		<-r.done
		if r.err != nil || len(r.got) != 5 {
			t.Errorf("follower %d: %d chunks, %v", i, len(r.got), r.err)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.errAtEOF != nil {
		t.Errorf("the upstream context was cancelled (%v) while followers remained", u.errAtEOF)
	}
}

func TestGroupStreamAllLeaveCancelsUpstream(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	u := newFakeUpstream()
	var streams []providers.Stream
	for i := 0; i < 3; i++ {
		res, err := g.Stream(context.Background(), k, u.open, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, res.Stream)
	}
	u.send(t, chunkN(0))
	streams[0].Close()
	streams[1].Close()
	streams[1].Close() // twice is fine
	if err := u.upstreamCtx().Err(); err != nil {
		t.Fatalf("upstream cancelled with a waiter left: %v", err)
	}
	streams[2].Close()
	waitClosed(t, "the upstream context to be cancelled", u.upstreamCtx().Done())
	eventually(t, "the upstream stream to close", func() bool { return u.closed.Load() == 1 })
	// A new request starts a new flight.
	u2 := newFakeUpstream()
	res, err := g.Stream(context.Background(), k, u2.open, nil, nil)
	if err != nil || u2.calls.Load() != 1 {
		t.Fatalf("after all left: %v, %d calls", err, u2.calls.Load())
	}
	res.Stream.Close()
}

// TestGroupStreamLeaveWhileOpening covers waiters that give up before the
// upstream has even answered.
func TestGroupStreamLeaveWhileOpening(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	u := newFakeUpstream()
	u.block = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := g.Stream(ctx, k, u.open, nil, nil); errc <- err }()
	eventually(t, "open to be called", func() bool { return u.calls.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Stream() error = %v", err)
	}
	waitClosed(t, "the upstream context to be cancelled", u.upstreamCtx().Done())
}

func TestGroupStreamErrors(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	boom := errors.New("connection reset")
	openFail := func(context.Context) (providers.Stream, any, error) { return nil, nil, boom }
	if _, err := g.Stream(context.Background(), k, openFail, NewRecorder(0), func(*Entry) { t.Error("stored") }); !errors.Is(err, boom) {
		t.Errorf("open error = %v", err)
	}

	u := newFakeUpstream()
	rec := NewRecorder(0)
	res, err := g.Stream(context.Background(), k, u.open, rec, func(*Entry) { t.Error("a broken stream was stored") })
	if err != nil {
		t.Fatal(err)
	}
	r := read(res.Stream)
	u.send(t, []byte(textStream[0]))
	u.send(t, []byte(textStream[1]))
	select {
	case u.fail <- boom:
	case <-time.After(10 * time.Second):
		t.Fatal("nobody reads the upstream")
	}
	<-r.done
	if !errors.Is(r.err, boom) || len(r.got) != 2 {
		t.Errorf("reader got %d chunks and %v; want 2 and the upstream error", len(r.got), r.err)
	}
	if n := streamWaiters(&g, k); n != 0 {
		t.Errorf("%d waiters left on a failed flight", n)
	}
}

func TestGroupStreamRecords(t *testing.T) {
	var g Group
	k := testKey(t, 1)
	u := newFakeUpstream()
	stored := make(chan *Entry, 1)
	res, err := g.Stream(context.Background(), k, u.open, NewRecorder(0), func(e *Entry) { stored <- e })
	if err != nil {
		t.Fatal(err)
	}
	r := read(res.Stream)
	for _, c := range textStream {
		u.send(t, []byte(c))
	}
	close(u.chunks)
	<-r.done
	e := <-stored
	if !reflect.DeepEqual(r.got, textStream) {
		t.Error("waiter chunks differ from upstream")
	}
	if got := collect(t, e.Stream("chatcmpl-A1", 1700000000)); !reflect.DeepEqual(got, textStream) {
		t.Errorf("recorded entry replays\n%q\nwant\n%q", got, textStream)
	}
}
