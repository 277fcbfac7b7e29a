package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// Copy moves a SQLite ledger, keys and requests and payloads, into an
// empty ledger (Postgres under TestPostgres) that then answers as the
// original did, and refuses a ledger that is not empty.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	src, err := Open(ctx, filepath.Join(t.TempDir(), "old.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	kr := newKeyring(t, src, nil)
	raw, search, err := kr.Create(ctx, KeySpec{Name: "search", BudgetUSD: 50, BudgetPeriod: "monthly", RPM: 60,
		Models: []string{"gpt-4o"}, Tags: map[string]string{"team": "search"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := kr.Create(ctx, KeySpec{Name: "ads", ExpiresAt: time.Now().Add(48 * time.Hour).Truncate(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Revoke(ctx, "ads"); err != nil {
		t.Fatal(err)
	}
	if err := src.SaveSpend(ctx, []KeySpend{{KeyID: search.ID, PeriodStart: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), USD: 1.25}}); err != nil {
		t.Fatal(err)
	}
	// More than two chunks of requests, a few with payloads.
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var recs []Record
	for i := range 2*copyChunk + 7 {
		r := sampleRecord(fmt.Sprintf("req-%05d", i), base.Add(time.Duration(i)*time.Second))
		r.KeyID, r.KeyName = search.ID, search.Name
		if i%3 == 0 {
			r.ModelGroup, r.Tags, r.User = "claude", nil, ""
		}
		if i%1000 == 0 {
			r.Request, r.Response = []byte(`{"messages":[]}`), []byte(fmt.Sprintf(`{"n":%d}`, i))
		}
		recs = append(recs, r)
	}
	if err := src.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// Retention took the first 100: their spend is in the rollup.
	pruned, err := src.Prune(ctx, base.Add(100*time.Second), 1000)
	if err != nil || pruned != 100 {
		t.Fatalf("pruning the source: %d %v", pruned, err)
	}
	kept := len(recs) - 100
	arms := []Arm{{"code", "gpt-4o", 3, 1}, {"math", "claude", 0.5, 2.5}}
	if _, err := src.MergeArms(ctx, arms, 500); err != nil {
		t.Fatal(err)
	}

	dst := openTest(t)
	var seen []int
	st, err := Copy(ctx, dst, src, func(n int) { seen = append(seen, n) })
	if err != nil {
		t.Fatal(err)
	}
	if st != (CopyStats{Keys: 2, Requests: kept, Payloads: 10, Arms: 2, Rollups: 4}) || !reflect.DeepEqual(seen, []int{copyChunk, kept}) {
		t.Fatalf("copied %+v, progress %v", st, seen)
	}

	if got, err := dst.MergeArms(ctx, nil, 500); err != nil || !reflect.DeepEqual(got, arms) {
		t.Errorf("arms after the copy: %v %+v", err, got)
	}
	srcKeys, _ := src.ListKeys(ctx)
	dstKeys, err := dst.ListKeys(ctx)
	if err != nil || !reflect.DeepEqual(srcKeys, dstKeys) {
		t.Fatalf("keys differ: %v\nsrc %+v\ndst %+v", err, srcKeys, dstKeys)
	}
	if _, err := newKeyring(t, dst, nil).Authenticate(raw); err != nil {
		t.Errorf("the copied key does not authenticate: %v", err)
	}
	for _, by := range []By{ByKey, ByModel, ByUser, ByTag, ByKeyTag, ByDay} {
		want, err1 := src.Spend(ctx, Query{By: by})
		got, err2 := dst.Spend(ctx, Query{By: by})
		if err1 != nil || err2 != nil || !reflect.DeepEqual(roundRows(want), roundRows(got)) {
			t.Errorf("spend by %s: %v %v\nsrc %+v\ndst %+v", by, err1, err2, want, got)
		}
	}
	for _, since := range []time.Time{{}, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)} {
		wantSince, _ := src.SpendSince(ctx, since)
		gotSince, err := dst.SpendSince(ctx, since)
		if err != nil || !reflect.DeepEqual(roundMap(wantSince), roundMap(gotSince)) {
			t.Errorf("SpendSince(%v): %v\nsrc %v\ndst %v", since, err, wantSince, gotSince)
		}
	}
	page, err := dst.Requests(ctx, RequestFilter{Limit: 1, Since: base.Add(3000 * time.Second), Until: base.Add(3001 * time.Second)})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].RequestID != "req-03000" {
		t.Fatalf("request 3000: %v %+v", err, page)
	}
	if req, resp, err := dst.Payload(ctx, page.Entries[0].ID); err != nil || string(req) != `{"messages":[]}` || string(resp) != `{"n":3000}` {
		t.Errorf("payload of request 3000: %q %q %v", req, resp, err)
	}

	if _, err := Copy(ctx, dst, src, nil); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("a second copy: %v, want ErrNotEmpty", err)
	}
}

// roundRows and roundMap drop the last bits of float sums, which the
// two databases may add in different orders; roundMap drops the accounts
// that spent nothing, which SpendSince may leave out.
func roundRows(rows []Row) []Row {
	out := append([]Row(nil), rows...)
	for i := range out {
		out[i].CostUSD = float64(int64(out[i].CostUSD*1e9+0.5)) / 1e9
		out[i].SavedUSD = float64(int64(out[i].SavedUSD*1e9+0.5)) / 1e9
	}
	return out
}

func roundMap(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if v != 0 {
			out[k] = float64(int64(v*1e9+0.5)) / 1e9
		}
	}
	return out
}

// MergeArms adds every instance's outcomes, caps an arm as the bandit
// does, and returns them all.
func TestMergeArms(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if got, err := s.MergeArms(ctx, nil, 500); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	if _, err := s.MergeArms(ctx, []Arm{{"code", "a", 1, 0}, {"code", "b", 0, 1}}, 10); err != nil {
		t.Fatal(err)
	}
	got, err := s.MergeArms(ctx, []Arm{{"code", "a", 2, 1}}, 10) // another instance
	if err != nil || !reflect.DeepEqual(got, []Arm{{"code", "a", 3, 1}, {"code", "b", 0, 1}}) {
		t.Fatalf("after two merges: %v %+v", err, got)
	}
	got, err = s.MergeArms(ctx, []Arm{{"code", "a", 12, 4}}, 10)
	if err != nil || len(got) != 2 || math.Abs(got[0].Alpha+got[0].Beta-10) > 1e-9 || math.Abs(got[0].Alpha/got[0].Beta-15.0/5) > 1e-9 {
		t.Fatalf("capped: %v %+v", err, got)
	}
}
