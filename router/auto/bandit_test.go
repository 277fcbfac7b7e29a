package auto

import (
	"encoding/json"
	"reflect"
	"sync"
	"testing"
)

func TestBanditFeedbackMovesChoice(t *testing.T) {
	b := NewBandit(7)
	// The scorer thinks the cheap model is fine (0.85 > floor 0.8).
	cands := []Candidate{with(cheap, 0.85), with(strong, 0.93)}
	c := Constraints{QualityFloor: 0.8}
	count := func() int {
		n := 0
		for i := 0; i < 400; i++ {
			d, err := b.Decide("code", cands, tok, c)
			if err != nil {
				t.Fatal(err)
			}
			if d.Choice.Name == "cheap" {
				n++
			}
		}
		return n
	}
	before := count()
	if before < 150 {
		t.Fatalf("cheap chosen %d/400 before feedback; the prior should favour it", before)
	}
	// Feedback: the cheap model keeps failing on code.
	for i := 0; i < 40; i++ {
		b.Observe("code", "cheap", 0)
		b.Observe("code", "strong", 1)
	}
	after := count()
	if after != 0 {
		t.Errorf("cheap chosen %d/400 after 40 failures; its posterior mean is below the floor, so never", after)
	}
	// Other domains are untouched.
	d, _ := b.Decide("math", cands, tok, c)
	al, be := b.Posterior("math", "cheap", 0.85)
	if al+be != 10 || d.Ranking == nil {
		t.Errorf("math arm changed: %v %v", al, be)
	}
	// Successes bring it back.
	for i := 0; i < 200; i++ {
		b.Observe("code", "cheap", 1)
	}
	if n := count(); n < 200 {
		t.Errorf("cheap chosen %d/400 after it recovered", n)
	}
}

func TestBanditNeverBelowFloor(t *testing.T) {
	b := NewBandit(1)
	// The cheap model's prediction is under the floor; lucky successes that
	// leave its posterior mean under the floor must not get it chosen.
	cands := []Candidate{with(cheap, 0.4), with(strong, 0.95)}
	for i := 0; i < 3; i++ {
		b.Observe("", "cheap", 1)
	}
	for i := 0; i < 500; i++ {
		d, err := b.Decide("", cands, tok, Constraints{QualityFloor: 0.8})
		if err != nil {
			t.Fatal(err)
		}
		if d.Choice.Name != "strong" {
			t.Fatalf("chose %s with posterior mean %.2f under the floor", d.Choice.Name, d.Choice.PSuccess)
		}
	}
}

func TestBanditSnapshotRestore(t *testing.T) {
	b := NewBandit(1)
	b.Observe("code", "m1", 1)
	b.Observe("code", "m1", 0.5)
	b.Observe("math", "m2", 0)
	snap := b.Snapshot()
	want := []Arm{{"code", "m1", 1.5, 0.5}, {"math", "m2", 0, 1}}
	if !reflect.DeepEqual(snap, want) {
		t.Fatalf("snapshot = %+v", snap)
	}
	js, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var back []Arm
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	r := NewBandit(2)
	r.Restore(append(back, Arm{"x", "bad", -1, 0}))
	if got := r.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Errorf("restored = %+v, want %+v", got, want)
	}
	a1, b1 := b.Posterior("code", "m1", 0.5)
	a2, b2 := r.Posterior("code", "m1", 0.5)
	if a1 != a2 || b1 != b2 {
		t.Errorf("posteriors differ after restore")
	}
}

// TakePending hands out each outcome once; Restore puts the store's sum
// in place but keeps what was observed since; Requeue puts back what
// could not be stored.
func TestBanditPending(t *testing.T) {
	b := NewBandit(1)
	b.Observe("code", "m1", 1)
	b.Observe("code", "m1", 0)
	if got, want := b.TakePending(), []Arm{{"code", "m1", 1, 1}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("pending = %+v, want %+v", got, want)
	}
	if got := b.TakePending(); len(got) != 0 {
		t.Fatalf("pending twice: %+v", got)
	}
	b.Observe("code", "m1", 1) // after the take, before the store answers
	b.Restore([]Arm{{"code", "m1", 10, 5}, {"math", "m2", 2, 2}})
	if got, want := b.Snapshot(), []Arm{{"code", "m1", 11, 5}, {"math", "m2", 2, 2}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after Restore = %+v, want %+v", got, want)
	}
	taken := b.TakePending()
	b.Requeue(taken)
	b.Add([]Arm{{"math", "m2", 3, 0}, {"x", "bad", -1, 0}})
	if got, want := b.TakePending(), []Arm{{"code", "m1", 1, 0}, {"math", "m2", 3, 0}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("requeued and added = %+v, want %+v", got, want)
	}
}

func TestBanditCapsCounts(t *testing.T) {
	b := NewBandit(1)
	b.MaxCount = 100
	for i := 0; i < 1000; i++ {
		b.Observe("d", "m", 1)
	}
	s := b.Snapshot()[0]
	if s.Alpha+s.Beta > 100.0001 {
		t.Errorf("counts %v+%v exceed the cap", s.Alpha, s.Beta)
	}
}

func TestBanditConcurrent(t *testing.T) {
	b := NewBandit(1)
	b.MaxCount = 0 // no cap, so the count is exact
	cands := []Candidate{cheap, strong}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				b.Observe("d", "cheap", float64(i%2))
				if _, err := b.Decide("d", cands, tok, Constraints{QualityFloor: 0.5}); err != nil {
					t.Error(err)
					return
				}
				_ = b.Snapshot()
			}
		}()
	}
	wg.Wait()
	if s := b.Snapshot(); len(s) != 1 || s[0].Alpha+s[0].Beta != 800 {
		t.Errorf("snapshot after concurrent use = %+v", s)
	}
}

func TestBetaSampleMean(t *testing.T) {
	b := NewBandit(3)
	for _, ab := range [][2]float64{{2, 8}, {0.5, 0.5}, {30, 10}} {
		var s float64
		const n = 20000
		for i := 0; i < n; i++ {
			s += betaSample(b.rng, ab[0], ab[1])
		}
		want := ab[0] / (ab[0] + ab[1])
		if got := s / n; got < want-0.01 || got > want+0.01 {
			t.Errorf("Beta(%v,%v) mean %.3f, want %.3f", ab[0], ab[1], got, want)
		}
	}
}
