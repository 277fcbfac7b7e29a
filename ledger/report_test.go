package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/providers"
)

// reportFixture is a small ledger whose reports are worked out by hand.
type reportFixture struct {
	s            *DB
	alpha, beta  string // key ids
	since, until time.Time
}

func newReportFixture(t *testing.T) *reportFixture {
	t.Helper()
	return newReportFixtureIn(t, openTest(t))
}

// newReportFixtureIn is newReportFixture in the empty ledger s.
func newReportFixtureIn(t *testing.T, s *DB) *reportFixture {
	t.Helper()
	ctx := context.Background()
	kr := newKeyring(t, s, nil)
	_, a, err := kr.Create(ctx, KeySpec{Name: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := kr.Create(ctx, KeySpec{Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ms := time.Millisecond
	recs := []Record{
		{Time: at("2025-03-10T10:00:00Z"), RequestID: "r1", KeyID: a.ID, ModelGroup: "gpt-4o", Deployment: "gpt-4o/0",
			Provider: "openai", User: "u1", Tags: []string{"team=a", "x"}, Status: 200, CostUSD: 1.0,
			Usage: providers.Usage{PromptTokens: 100, CompletionTokens: 10, CachedTokens: 50}, Latency: 100 * ms},
		{Time: at("2025-03-10T23:30:00Z"), RequestID: "r2", KeyID: a.ID, ModelGroup: "claude", Deployment: "claude/0",
			Provider: "anthropic", User: "u2", Tags: []string{"team=a"}, Status: 200, CostUSD: 2.0,
			Usage: providers.Usage{PromptTokens: 200, CompletionTokens: 20, CacheWriteTokens: 100}, Latency: 300 * ms},
		{Time: at("2025-03-11T01:00:00Z"), RequestID: "r3", KeyID: b.ID, ModelGroup: "gpt-4o", Deployment: "gpt-4o/1",
			Provider: "azure", User: "u1", Status: 500, ErrorType: "api_error", Latency: 50 * ms},
		{Time: at("2025-03-11T12:00:00Z"), RequestID: "r4", KeyID: b.ID, ModelGroup: "gpt-4o", Deployment: "gpt-4o/0",
			Provider: "openai", Status: 200, CacheHit: true, SavedUSD: 0.5, Latency: 1 * ms},
		{Time: at("2025-02-01T00:00:00Z"), RequestID: "r5-old", KeyID: a.ID, ModelGroup: "gpt-4o", Status: 200, CostUSD: 100},
		{Time: at("2025-03-12T02:00:00Z"), RequestID: "r6-master", ModelGroup: "mini", Deployment: "mini/0",
			Provider: "openai", Status: 200, CostUSD: 0.25, Latency: 10 * ms},
	}
	if err := s.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	return &reportFixture{s: s, alpha: a.ID, beta: b.ID, since: at("2025-03-01T00:00:00Z"), until: at("2025-04-01T00:00:00Z")}
}

// brief renders rows as "group:requests/errors/$cost" for comparison.
func brief(rows []Row) string {
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%s:%d/%d/$%g", r.Group, r.Requests, r.Errors, math.Round(r.CostUSD*1000)/1000))
	}
	return strings.Join(parts, " ")
}

func TestSpend(t *testing.T) {
	ctx := context.Background()
	f := newReportFixture(t)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip(err)
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Skip(err)
	}
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"by key", Query{By: ByKey}, fmt.Sprintf("%s:2/0/$3 :1/0/$0.25 %s:2/1/$0", f.alpha, f.beta)},
		{"by model", Query{By: ByModel}, "claude:1/0/$2 gpt-4o:3/1/$1 mini:1/0/$0.25"},
		{"by deployment", Query{By: ByDeployment}, "claude/0:1/0/$2 gpt-4o/0:2/0/$1 mini/0:1/0/$0.25 gpt-4o/1:1/1/$0"},
		{"by provider", Query{By: ByProvider}, "anthropic:1/0/$2 openai:3/0/$1.25 azure:1/1/$0"},
		{"by user", Query{By: ByUser}, "u2:1/0/$2 u1:2/1/$1 :2/0/$0.25"},
		{"by tag", Query{By: ByTag}, "team=a:2/0/$3 x:1/0/$1"},
		{"by day utc", Query{By: ByDay}, "2025-03-10:2/0/$3 2025-03-11:2/1/$0 2025-03-12:1/0/$0.25"},
		{"by day new york", Query{By: ByDay, Location: ny}, "2025-03-10:3/1/$3 2025-03-11:2/0/$0.25"},
		{"by day kolkata", Query{By: ByDay, Location: kolkata}, "2025-03-10:1/0/$1 2025-03-11:3/1/$2 2025-03-12:1/0/$0.25"},
		{"one key by name", Query{By: ByModel, KeyName: "alpha"}, "claude:1/0/$2 gpt-4o:1/0/$1"},
		{"one key by id", Query{By: ByDay, KeyID: f.beta}, "2025-03-11:2/1/$0"},
		{"until", Query{By: ByKey, Until: time.Date(2025, 3, 11, 0, 0, 0, 0, time.UTC)}, f.alpha + ":2/0/$3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.Since = f.since
			rows, err := f.s.Spend(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if got := brief(rows); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}

	rows, err := f.s.Spend(ctx, Query{By: ByKey, KeyName: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	r := rows[0]
	if len(rows) != 1 || r.Name != "alpha" || r.CostUSD != 103 || r.PromptTokens != 300 || r.CompletionTokens != 30 ||
		r.CachedTokens != 50 || r.CacheWriteTokens != 100 {
		t.Errorf("alpha over all time: %+v", rows)
	}
	rows, _ = f.s.Spend(ctx, Query{By: ByModel, KeyID: f.beta, Since: f.since})
	if len(rows) != 1 || rows[0].SavedUSD != 0.5 {
		t.Errorf("beta's saved cost: %+v", rows)
	}
	if _, err := f.s.Spend(ctx, Query{KeyName: "nobody"}); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("unknown key name: %v", err)
	}
	if _, err := ParseBy("week"); err == nil {
		t.Error("ParseBy(week) succeeded")
	}
	if b, err := ParseBy(""); err != nil || b != ByKey {
		t.Errorf("ParseBy(\"\") = %q, %v", b, err)
	}
}

func TestRequestsPages(t *testing.T) {
	ctx := context.Background()
	f := newReportFixture(t)
	var ids []string
	cursor := ""
	for range 10 {
		p, err := f.s.Requests(ctx, RequestFilter{Since: f.since, Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) > 2 {
			t.Fatalf("page of %d, limit 2", len(p.Entries))
		}
		for _, e := range p.Entries {
			ids = append(ids, e.RequestID)
		}
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	if got := strings.Join(ids, ","); got != "r6-master,r4,r3,r2,r1" {
		t.Errorf("pages gave %s", got)
	}

	tests := []struct {
		name string
		f    RequestFilter
		want string
	}{
		{"errors only", RequestFilter{ErrorsOnly: true}, "r3"},
		{"model group", RequestFilter{ModelGroup: "gpt-4o", Since: f.since}, "r4,r3,r1"},
		{"key name and group", RequestFilter{KeyName: "alpha", ModelGroup: "gpt-4o"}, "r1,r5-old"},
		{"deployment and user", RequestFilter{Deployment: "gpt-4o/1", User: "u1"}, "r3"},
		{"until", RequestFilter{Until: f.since}, "r5-old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.s.Requests(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range p.Entries {
				ids = append(ids, e.RequestID)
			}
			if got := strings.Join(ids, ","); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := f.s.Requests(ctx, RequestFilter{Cursor: "garbage!"}); err == nil {
		t.Error("a bad cursor was accepted")
	}
}

func TestTotals(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	base := time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)
	var recs []Record
	for i := 1; i <= 100; i++ { // latencies 1..100 ms, shuffled in time
		recs = append(recs, Record{Time: base.Add(time.Duration((i*37)%100) * time.Minute), RequestID: "p",
			ModelGroup: "gpt-4o", Status: 200, CostUSD: 0.01, Latency: time.Duration(i) * time.Millisecond})
	}
	for i := 0; i < 10; i++ { // failures do not count towards latency
		recs = append(recs, Record{Time: base, RequestID: "e", ModelGroup: "gpt-4o", Status: 502, Latency: time.Hour})
	}
	recs = append(recs, Record{Time: base, RequestID: "one", ModelGroup: "claude", Status: 200, Latency: 7 * time.Millisecond})
	if err := s.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Totals(ctx, Query{Since: base})
	if err != nil {
		t.Fatal(err)
	}
	want := []Total{
		{ModelGroup: "gpt-4o", Requests: 110, Errors: 10, CostUSD: 1, LatencyP50: 50 * time.Millisecond, LatencyP95: 95 * time.Millisecond},
		{ModelGroup: "claude", Requests: 1, LatencyP50: 7 * time.Millisecond, LatencyP95: 7 * time.Millisecond},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		g := got[i]
		g.CostUSD = math.Round(g.CostUSD*1e6) / 1e6
		if g != want[i] {
			t.Errorf("total %d = %+v, want %+v", i, g, want[i])
		}
	}
}

// TestSpendSinceLoadsBudgets wires the ledger into limits.MemoryBudgets the
// way the server does on start.
// ByKeyTag groups by the tags the requests' keys carry now.
func TestSpendByKeyTag(t *testing.T) {
	ctx := context.Background()
	f := newReportFixture(t)
	kr := newKeyring(t, f.s, nil)
	for name, tags := range map[string]map[string]string{"alpha": {"team": "search", "env": "prod"}, "beta": {"team": "search"}} {
		if _, err := kr.Update(ctx, name, KeyUpdate{Tags: &tags}); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := f.s.Spend(ctx, Query{By: ByKeyTag, Since: f.since})
	if err != nil {
		t.Fatal(err)
	}
	// March: alpha 2 requests $3, beta 2 requests (one error) $0; the
	// master key's request has no key and is left out.
	if got, want := brief(rows), "env=prod:2/0/$3 team=search:4/1/$3"; got != want {
		t.Fatalf("by key tag: %s, want %s", got, want)
	}
	if _, err := ParseBy("key_tag"); err != nil {
		t.Fatal(err)
	}
}

// countScopes counts the accounts of spend that are not keys.
func countScopes(spend map[string]float64) int {
	n := 0
	for id := range spend {
		if !strings.HasPrefix(id, "key_") {
			n++
		}
	}
	return n
}

// SpendSince also sums the spend of the gateway, of each model group and
// of each tag that keys carry, for the budgets in config's limits.
func TestSpendSinceScopes(t *testing.T) {
	ctx := context.Background()
	f := newReportFixture(t)
	kr := newKeyring(t, f.s, nil)
	tags := map[string]string{"team": "search", "env": "prod"}
	if _, err := kr.Update(ctx, "alpha", KeyUpdate{Tags: &tags}); err != nil {
		t.Fatal(err)
	}
	got, err := f.s.SpendSince(ctx, f.since)
	if err != nil {
		t.Fatal(err)
	}
	// March: alpha $1 on gpt-4o and $2 on claude, the master key $0.25 on
	// mini, beta nothing.
	want := map[string]float64{
		f.alpha: 3, f.beta: 0,
		limits.GlobalAccount:          3.25,
		limits.GroupAccount("gpt-4o"): 1, limits.GroupAccount("claude"): 2, limits.GroupAccount("mini"): 0.25,
		limits.TagAccount("team=search"): 3, limits.TagAccount("env=prod"): 3,
		limits.UserAccount("u1"): 1, limits.UserAccount("u2"): 2, // r3, u1's, cost nothing
	}
	for id, usd := range want {
		if got[id] != usd {
			t.Errorf("SpendSince(March)[%s] = %v, want %v (all: %v)", id, got[id], usd, got)
		}
	}
	if n := countScopes(got); n != 8 {
		t.Errorf("%d accounts that are not keys, want 8: %v", n, got)
	}
	// A tag's budget reloads from its keys' spend.
	b := limits.NewMemoryBudgets(limits.BudgetOptions{Now: func() time.Time { return f.since.AddDate(0, 0, 15) }})
	team := limits.Budget{LimitUSD: 3.5, Period: limits.Monthly}
	if err := b.Load(ctx, f.s, map[string]limits.Budget{limits.TagAccount("team=search"): team}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, limits.TagAccount("team=search"), team, 1); !errors.Is(err, limits.ErrBudgetExceeded) {
		t.Errorf("team=search with $3 of $3.50 spent reserved $1: %v", err)
	}
}

func TestSpendSinceLoadsBudgets(t *testing.T) {
	ctx := context.Background()
	f := newReportFixture(t)
	got, err := f.s.SpendSince(ctx, f.since)
	if err != nil {
		t.Fatal(err)
	}
	if keys := len(got) - countScopes(got); keys != 2 || got[f.alpha] != 3 || got[f.beta] != 0 {
		t.Errorf("SpendSince(March) = %v, want alpha 3 and beta 0 (the master key's spend is no key's)", got)
	}
	all, _ := f.s.SpendSince(ctx, time.Time{})
	if all[f.alpha] != 103 {
		t.Errorf("SpendSince(all time) = %v", all)
	}

	// A persisted snapshot for the same period raises the sum (rows were
	// dropped); one for another period is ignored.
	if err := f.s.SaveSpend(ctx, []KeySpend{
		{KeyID: f.alpha, PeriodStart: f.since, USD: 5},
		{KeyID: f.beta, PeriodStart: f.since.AddDate(0, -1, 0), USD: 9},
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = f.s.SpendSince(ctx, f.since)
	if got[f.alpha] != 5 || got[f.beta] != 0 {
		t.Errorf("with snapshots: %v, want alpha 5 and beta 0", got)
	}

	now := time.Date(2025, 3, 20, 0, 0, 0, 0, time.UTC)
	b := limits.NewMemoryBudgets(limits.BudgetOptions{Now: func() time.Time { return now }})
	budgets := map[string]limits.Budget{
		f.alpha: {LimitUSD: 6, Period: limits.Monthly},
		f.beta:  {LimitUSD: 1, Period: limits.Total},
	}
	if err := b.Load(ctx, f.s, budgets); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, f.alpha, budgets[f.alpha], 1.5); !errors.Is(err, limits.ErrBudgetExceeded) {
		t.Errorf("alpha with $5 of $6 spent reserved $1.50: %v", err)
	}
	if _, err := b.Reserve(ctx, f.alpha, budgets[f.alpha], 0.5); err != nil {
		t.Errorf("alpha reserving $0.50: %v", err)
	}

	keys, err := f.s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == f.alpha && (k.SpendUSD != 5 || !k.SpendPeriodStart.Equal(f.since)) {
			t.Errorf("alpha's persisted spend: %v since %v", k.SpendUSD, k.SpendPeriodStart)
		}
	}
}

// Retention deletes rows, not the spend of budgets: SpendSince gives the
// same figures after the rows a budget period (or all time, for a total
// budget) counts were pruned, for periods starting at midnight in UTC and
// in a zone half an hour off UTC. Two stores pruning the same rows at once
// (two instances on one Postgres) count them once.
func TestPruneKeepsBudgetSpend(t *testing.T) {
	ctx := context.Background()
	pair := openPair(t) // two stores, as two instances on one database
	f := newReportFixtureIn(t, pair[0])
	kr := newKeyring(t, f.s, nil)
	tags := map[string]string{"team": "search"}
	if _, err := kr.Update(ctx, "alpha", KeyUpdate{Tags: &tags}); err != nil {
		t.Fatal(err)
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Skipf("time zone Asia/Kolkata not available: %v", err)
	}
	// All time (total budgets); the month; days in UTC and in Kolkata
	// (UTC+5:30) that the pruned rows fall in or straddle.
	sinces := []time.Time{
		{}, f.since,
		time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC), time.Date(2025, 3, 11, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 3, 10, 0, 0, 0, 0, kolkata), time.Date(2025, 3, 11, 0, 0, 0, 0, kolkata),
	}
	before := map[time.Time]map[string]float64{}
	for _, since := range sinces {
		if before[since], err = f.s.SpendSince(ctx, since); err != nil {
			t.Fatal(err)
		}
	}
	// Everything before March 11 01:00 UTC goes (r5-old, r1, r2), in
	// chunks of 2, by two stores at once.
	cutoff := time.Date(2025, 3, 11, 1, 0, 0, 0, time.UTC)
	var pruned atomic.Int64
	var wg sync.WaitGroup
	for _, s := range pair {
		wg.Go(func() {
			for {
				n, err := s.Prune(ctx, cutoff, 2)
				if err != nil {
					t.Error(err)
					return
				}
				pruned.Add(n)
				if n < 2 {
					return
				}
			}
		})
	}
	wg.Wait()
	if n := pruned.Load(); n != 3 {
		t.Fatalf("pruned %d rows, want 3", n)
	}
	for _, since := range sinces {
		after, err := f.s.SpendSince(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		for id, usd := range before[since] {
			if math.Abs(after[id]-usd) > 1e-9 {
				t.Errorf("SpendSince(%v)[%s] = %v after the prune, %v before", since, id, after[id], usd)
			}
		}
		for id, usd := range after {
			if _, ok := before[since][id]; !ok && usd != 0 {
				t.Errorf("SpendSince(%v)[%s] = %v after the prune, none before", since, id, usd)
			}
		}
	}
	if all := before[time.Time{}]; all[f.alpha] != 103 || all[limits.UserAccount("u2")] != 2 || all[limits.GlobalAccount] != 103.25 {
		t.Errorf("the fixture's all-time spend: %v", all)
	}

	// Forty days on, the rest goes, and every quarter is folded into one
	// sum per account: all-time spend is unchanged, and no period current
	// then counts any of it.
	later := cutoff.AddDate(0, 0, 40)
	if n, err := f.s.Prune(ctx, later, 100); err != nil || n != 3 {
		t.Fatalf("the later prune: %d rows, %v; want 3", n, err)
	}
	var quarters, accounts int
	if err := f.s.db.QueryRow(`SELECT count(*) FROM spend_rollup WHERE quarter != 0`).Scan(&quarters); err != nil {
		t.Fatal(err)
	}
	if err := f.s.db.QueryRow(`SELECT count(*) FROM spend_rollup`).Scan(&accounts); err != nil {
		t.Fatal(err)
	}
	// Keys alpha and beta (beta's rows cost nothing: none), groups gpt-4o,
	// claude, mini, users u1 and u2.
	if quarters != 0 || accounts != 6 {
		t.Errorf("after folding: %d rollup rows, %d of them quarters; want 6 and 0", accounts, quarters)
	}
	all, err := f.s.SpendSince(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for id, usd := range before[time.Time{}] {
		if math.Abs(all[id]-usd) > 1e-9 {
			t.Errorf("SpendSince(all time)[%s] = %v with every row pruned, %v before", id, all[id], usd)
		}
	}
	month, err := f.s.SpendSince(ctx, later.AddDate(0, 0, -30))
	if err != nil {
		t.Fatal(err)
	}
	for id, usd := range month {
		if usd != 0 {
			t.Errorf("SpendSince(a month before the last prune)[%s] = %v, want 0", id, usd)
		}
	}
}

func TestParseTime(t *testing.T) {
	lima, err := time.LoadLocation("America/Lima")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		in   string
		loc  *time.Location
		want string // RFC 3339 in UTC; "" for not a time
	}{
		{"2026-11-28", lima, "2026-11-28T05:00:00Z"},
		{"2026-11-28", nil, "2026-11-28T00:00:00Z"},
		{"2026-11-28T04:50:00Z", lima, "2026-11-28T04:50:00Z"},
		{"2026-11-28T04:50:00.5-05:00", time.UTC, "2026-11-28T09:50:00.5Z"},
		{"yesterday", lima, ""},
	} {
		got, ok := ParseTime(tt.in, tt.loc)
		if s := got.UTC().Format(time.RFC3339Nano); ok != (tt.want != "") || ok && s != tt.want {
			t.Errorf("ParseTime(%q, %v) = %s, %v; want %q", tt.in, tt.loc, s, ok, tt.want)
		}
	}
}
