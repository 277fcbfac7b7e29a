package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// memStore is a Store in memory whose Insert can be held, failed or made
// to panic.
type memStore struct {
	mu      sync.Mutex
	recs    []Record
	batches []int
	gate    chan struct{} // when set, Insert waits for a value
	fail    func(batch []Record) error
	panics  func(batch []Record) bool
	pruned  []time.Time
}

func (m *memStore) Insert(_ context.Context, recs []Record) error {
	if m.gate != nil {
		<-m.gate
	}
	if m.panics != nil && m.panics(recs) {
		panic("disk on fire")
	}
	if m.fail != nil {
		if err := m.fail(recs); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, recs...)
	m.batches = append(m.batches, len(recs))
	return nil
}

func (m *memStore) Prune(_ context.Context, before time.Time, limit int) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruned = append(m.pruned, before)
	return 0, nil
}

func (m *memStore) ids() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.recs {
		out = append(out, r.RequestID)
	}
	return out
}

func TestWriterDrainsOnClose(t *testing.T) {
	st := &memStore{gate: make(chan struct{})}
	var logs bytes.Buffer
	w := NewWriter(st, WriterOptions{QueueSize: 1000, BatchSize: 100, Logger: zerolog.New(&logs)})
	for i := range 950 {
		if !w.Record(Record{RequestID: strconv.Itoa(i)}) {
			t.Fatalf("record %d dropped with room in the queue", i)
		}
	}
	close(st.gate) // let the store write
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	ids := st.ids()
	if len(ids) != 950 || w.Written() != 950 || w.QueueDepth() != 0 {
		t.Fatalf("wrote %d (Written %d, depth %d), want all 950", len(ids), w.Written(), w.QueueDepth())
	}
	for i, id := range ids {
		if id != strconv.Itoa(i) {
			t.Fatalf("record %d is %s: order lost", i, id)
		}
	}
	for _, n := range st.batches {
		if n > 100 {
			t.Errorf("batch of %d, BatchSize 100", n)
		}
	}
	if len(st.batches) >= 950 {
		t.Errorf("%d batches for 950 queued records: not batching", len(st.batches))
	}
	if w.Record(Record{RequestID: "late"}) || w.Dropped() != 1 {
		t.Errorf("Record after Close accepted (dropped %d)", w.Dropped())
	}
	w.Record(Record{RequestID: "later"})
	// After Close every drop is logged: nothing else would tell of it.
	for _, want := range []string{`"dropped_total":1,`, `"dropped_total":2,`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s after Close:\n%s", want, logs.String())
		}
	}
}

func TestWriterDropsWhenFull(t *testing.T) {
	st := &memStore{gate: make(chan struct{})}
	var logs bytes.Buffer
	w := NewWriter(st, WriterOptions{QueueSize: 10, BatchSize: 5, Logger: zerolog.New(&logs)})
	// The writer holds at most one batch while the store is stuck; the
	// queue holds 10 more; everything after that is dropped at once.
	accepted := 0
	for i := range 100 {
		if w.Record(Record{RequestID: strconv.Itoa(i)}) {
			accepted++
		}
	}
	if accepted < 10 || accepted > 15 {
		t.Errorf("accepted %d of 100 with a stuck store and a queue of 10", accepted)
	}
	if got := w.Dropped(); got != uint64(100-accepted) {
		t.Errorf("Dropped = %d, want %d", got, 100-accepted)
	}
	if w.QueueDepth() != 10 {
		t.Errorf("QueueDepth = %d with a stuck store, want the queue size, 10", w.QueueDepth())
	}
	close(st.gate)
	w.Close()
	if n := len(st.ids()); n != accepted {
		t.Errorf("wrote %d, accepted %d: an accepted record was lost", n, accepted)
	}
	if c := strings.Count(logs.String(), "ledger queue full"); c != 1 {
		t.Errorf("%d drop log lines for one burst, want 1 (rate-limited):\n%s", c, logs.String())
	}
	if !strings.Contains(logs.String(), `"dropped_total"`) {
		t.Errorf("drop log does not count: %s", logs.String())
	}
	// The drop lines are rate-limited; Close tells the whole count.
	if want := fmt.Sprintf(`"dropped_total":%d,"failed_total":0`, 100-accepted); !strings.Contains(logs.String(), want) ||
		!strings.Contains(logs.String(), "lost since start") {
		t.Errorf("Close does not log the %d drops in full:\n%s", 100-accepted, logs.String())
	}
}

func TestWriterSurvivesFailuresAndPanics(t *testing.T) {
	var logs bytes.Buffer
	st := &memStore{
		fail: func(b []Record) error {
			if b[0].RequestID == "fail" {
				return errors.New("disk full")
			}
			return nil
		},
		panics: func(b []Record) bool { return b[0].RequestID == "panic" },
	}
	var committed []string
	w := NewWriter(st, WriterOptions{BatchSize: 1, Logger: zerolog.New(&logs),
		OnCommit: func(b []Record) {
			committed = append(committed, b[0].RequestID) // only the writer goroutine calls this
			if b[0].RequestID == "callback-panics" {
				panic("callback bug")
			}
		}})
	for _, id := range []string{"a", "fail", "b", "panic", "c", "callback-panics", "d"} {
		w.Record(Record{RequestID: id})
	}
	w.Close()
	if got, want := strings.Join(st.ids(), ","), "a,b,c,callback-panics,d"; got != want {
		t.Errorf("stored %s, want %s", got, want)
	}
	if got, want := strings.Join(committed, ","), "a,b,c,callback-panics,d"; got != want {
		t.Errorf("OnCommit saw %s, want %s", got, want)
	}
	if w.Failed() != 2 || w.Written() != 5 {
		t.Errorf("Failed %d Written %d, want 2 and 5", w.Failed(), w.Written())
	}
	for _, want := range []string{"disk full", "disk on fire", "callback bug"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestWriterPayloadsOnlyWhenAsked(t *testing.T) {
	for _, store := range []bool{false, true} {
		st := &memStore{}
		w := NewWriter(st, WriterOptions{StorePayloads: store})
		w.Record(Record{RequestID: "r", Request: []byte("prompt"), Response: []byte("answer")})
		w.Close()
		got := st.recs[0]
		if kept := got.Request != nil && got.Response != nil; kept != store {
			t.Errorf("StorePayloads=%v: payload kept = %v", store, kept)
		}
	}
}

func TestWriterSetsTime(t *testing.T) {
	now := time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)
	st := &memStore{}
	w := NewWriter(st, WriterOptions{Now: func() time.Time { return now }})
	w.Record(Record{RequestID: "r"})
	w.Close()
	if !st.recs[0].Time.Equal(now) {
		t.Errorf("Time = %v, want %v", st.recs[0].Time, now)
	}
}

// TestWriterRetention runs the writer's start-up prune against SQLite:
// rows past retention_days go, in chunks, newer ones stay.
func TestWriterRetention(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	now := time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)
	var recs []Record
	for i := range 120 {
		recs = append(recs, sampleRecord("old-"+strconv.Itoa(i), now.AddDate(0, 0, -31).Add(-time.Duration(i)*time.Hour)))
	}
	for i := range 5 {
		recs = append(recs, sampleRecord("new-"+strconv.Itoa(i), now.AddDate(0, 0, -29)))
	}
	if err := s.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(s, WriterOptions{RetentionDays: 30, PruneChunk: 50, Now: func() time.Time { return now }})
	w.Record(sampleRecord("during", now))
	// The first prune runs at start, a chunk at a time between batches.
	// Close would stop it after the current chunk, so wait for it first.
	for deadline := time.Now().Add(10 * time.Second); w.Pruned() < 120 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	w.Close()
	if w.Pruned() != 120 {
		t.Errorf("Pruned = %d, want 120", w.Pruned())
	}
	page, err := s.Requests(ctx, RequestFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range page.Entries {
		ids = append(ids, e.RequestID)
	}
	if got := strings.Join(ids, ","); got != "during,new-4,new-3,new-2,new-1,new-0" {
		t.Errorf("left %s, want the 5 recent records and the one written while pruning", got)
	}
}

func TestWriterNoRetention(t *testing.T) {
	st := &memStore{}
	w := NewWriter(st, WriterOptions{})
	w.Close()
	if len(st.pruned) != 0 {
		t.Errorf("pruned with retention_days 0: %v", st.pruned)
	}
}

// A store that fails for a while (a database restarting) loses nothing:
// the batch is retried while new records queue behind it.
func TestWriterRetriesUntilTheStoreIsBack(t *testing.T) {
	var logs bytes.Buffer // written before the commit that Written observes
	var mu sync.Mutex
	calls := 0
	st := &memStore{fail: func([]Record) error {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls <= 3 {
			return errors.New("connection refused")
		}
		return nil
	}}
	w := NewWriter(st, WriterOptions{Logger: zerolog.New(&logs)})
	defer w.Close()
	for i := range 5 {
		w.Record(Record{RequestID: strconv.Itoa(i)})
	}
	deadline := time.Now().Add(10 * time.Second)
	for w.Written() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if w.Written() != 5 || w.Failed() != 0 || len(st.ids()) != 5 {
		t.Fatalf("written %d failed %d stored %v, want all 5 written", w.Written(), w.Failed(), st.ids())
	}
	if n := strings.Count(logs.String(), "retrying"); n != 1 {
		t.Errorf("%d retry warnings, want 1 per failed batch:\n%s", n, logs.String())
	}
	// The warning's answer: the store is back, and nothing was lost.
	if !strings.Contains(logs.String(), `"attempts":4,`) || !strings.Contains(logs.String(), "ledger works again") {
		t.Errorf("the log does not say the writes work again after 4 attempts:\n%s", logs.String())
	}
}

// A batch that keeps failing counts as failed after RetryFor, and the
// writer goes on with the next.
func TestWriterGivesUpAfterRetryFor(t *testing.T) {
	st := &memStore{fail: func(b []Record) error {
		if b[0].RequestID == "bad" {
			return errors.New("value too long")
		}
		return nil
	}}
	w := NewWriter(st, WriterOptions{BatchSize: 1, RetryFor: 300 * time.Millisecond})
	w.Record(Record{RequestID: "bad"})
	w.Record(Record{RequestID: "good"})
	deadline := time.Now().Add(10 * time.Second)
	for w.Written() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	w.Close()
	if w.Failed() != 1 || strings.Join(st.ids(), ",") != "good" {
		t.Fatalf("failed %d stored %v, want bad failed and good stored", w.Failed(), st.ids())
	}
}

// Close does not wait out the retries: a failing batch gets one last
// attempt and counts as failed.
func TestWriterCloseCutsRetriesShort(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	st := &memStore{fail: func([]Record) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return errors.New("connection refused")
	}}
	w := NewWriter(st, WriterOptions{RetryFor: time.Hour})
	w.Record(Record{RequestID: "x"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := calls
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited out the retries")
	}
	mu.Lock()
	defer mu.Unlock()
	if w.Failed() != 1 || calls < 2 {
		t.Fatalf("failed %d after %d attempts, want 1 failed after a last attempt", w.Failed(), calls)
	}
}

// Flush returns once the records queued before it are in the store, and
// gives up when its context ends first.
func TestWriterFlush(t *testing.T) {
	st := &memStore{gate: make(chan struct{})}
	w := NewWriter(st, WriterOptions{})
	defer w.Close()
	for i := range 3 {
		w.Record(Record{RequestID: strconv.Itoa(i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := w.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with the store stuck = %v, want the deadline", err)
	}
	close(st.gate)
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(st.ids()); got != 3 {
		t.Fatalf("after Flush the store holds %d records, want 3", got)
	}
}
