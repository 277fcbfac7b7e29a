package cmd

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/providers"
)

// spendFixture creates two keys with the CLI and inserts requests for them
// with ledger's Insert. Costs are binary fractions, so every sum is exact
// whatever the order of addition.
func spendFixture(t *testing.T) (e *ledgerEnv, alpha, beta *ledger.Key) {
	t.Helper()
	e = newLedgerEnv(t, true)
	e.mustRun(t, "keys", "create", "--name", "alpha")
	e.mustRun(t, "keys", "create", "--name", "beta")
	kr := e.keyring(t)
	alpha, _ = kr.Get("alpha")
	beta, _ = kr.Get("beta")
	db, err := ledger.Open(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	rec := func(ago time.Duration, k *ledger.Key, group, dep, prov string, status, in, out, cached int, cost float64, tags ...string) ledger.Record {
		return ledger.Record{Time: now.Add(-ago), RequestID: "r", KeyID: k.ID, KeyName: k.Name, ModelGroup: group,
			Deployment: dep, Provider: prov, Status: status, Tags: tags, CostUSD: cost,
			Usage: providers.Usage{PromptTokens: in, CompletionTokens: out, CachedTokens: cached}}
	}
	err = db.Insert(context.Background(), []ledger.Record{
		rec(time.Hour, alpha, "gpt-4o", "oa-1", "openai", 200, 1000, 200, 100, 0.5, "team=search"),
		rec(2*time.Hour, alpha, "gpt-4o", "az-1", "azure", 200, 2000, 300, 0, 0.25, "team=search", "env=prod"),
		rec(3*time.Hour, alpha, "llama", "ol-1", "ollama", 500, 10, 0, 0, 0),
		rec(26*time.Hour, beta, "gpt-4o", "oa-1", "openai", 200, 400, 100, 0, 0.125, "team=ads"),
		rec(10*24*time.Hour, beta, "llama", "ol-1", "ollama", 200, 50, 50, 0, 2), // outside --since 7d
	})
	if err != nil {
		t.Fatal(err)
	}
	return e, alpha, beta
}

type spendJSON struct {
	By    string       `json:"by"`
	Since time.Time    `json:"since"`
	Rows  []ledger.Row `json:"rows"`
	Total ledger.Row   `json:"total"`
}

func spendRows(t *testing.T, e *ledgerEnv, args ...string) spendJSON {
	t.Helper()
	var rep spendJSON
	out := e.mustRun(t, append([]string{"spend", "--format", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return rep
}

func TestSpendJSON(t *testing.T) {
	e, alpha, beta := spendFixture(t)

	rep := spendRows(t, e, "--by", "model", "--since", "7d")
	want := []ledger.Row{
		{Group: "gpt-4o", Requests: 3, PromptTokens: 3400, CompletionTokens: 600, CachedTokens: 100, CostUSD: 0.875},
		{Group: "llama", Requests: 1, Errors: 1, PromptTokens: 10},
	}
	if len(rep.Rows) != len(want) {
		t.Fatalf("rows = %+v", rep.Rows)
	}
	for i := range want {
		if rep.Rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rep.Rows[i], want[i])
		}
	}
	if tot := rep.Total; tot.Requests != 4 || tot.Errors != 1 || tot.CostUSD != 0.875 || tot.PromptTokens != 3410 {
		t.Errorf("total = %+v", tot)
	}
	if rep.By != "model" || time.Since(rep.Since) < 7*24*time.Hour-time.Minute || time.Since(rep.Since) > 7*24*time.Hour+time.Minute {
		t.Errorf("by %q since %v", rep.By, rep.Since)
	}

	// All time, by key, with names.
	rep = spendRows(t, e)
	if len(rep.Rows) != 2 || rep.Rows[0].Group != beta.ID || rep.Rows[0].Name != "beta" || rep.Rows[0].CostUSD != 2.125 ||
		rep.Rows[1].Group != alpha.ID || rep.Rows[1].Name != "alpha" || rep.Rows[1].CostUSD != 0.75 || rep.Total.CostUSD != 2.875 {
		t.Fatalf("by key: %+v", rep.Rows)
	}

	// One key, by name or id, by deployment.
	for _, ref := range []string{"alpha", alpha.ID} {
		rep = spendRows(t, e, "--by", "deployment", "--key", ref)
		if len(rep.Rows) != 3 || rep.Rows[0].Group != "oa-1" || rep.Rows[0].CostUSD != 0.5 || rep.Total.Requests != 3 {
			t.Fatalf("--key %s by deployment: %+v", ref, rep.Rows)
		}
	}

	// By tag: each tag of a request counts; untagged ones are left out.
	rep = spendRows(t, e, "--by", "tag")
	got := map[string]float64{}
	for _, r := range rep.Rows {
		got[r.Group] = r.CostUSD
	}
	if len(got) != 3 || got["team=search"] != 0.75 || got["env=prod"] != 0.25 || got["team=ads"] != 0.125 {
		t.Fatalf("by tag: %+v", rep.Rows)
	}

	// By day: oldest first, days in the budget time zone (UTC here).
	rep = spendRows(t, e, "--by", "day", "--until", "2d")
	if len(rep.Rows) != 1 || rep.Rows[0].Group != time.Now().UTC().Add(-10*24*time.Hour).Format(time.DateOnly) || rep.Rows[0].CostUSD != 2 {
		t.Fatalf("by day until 2d ago: %+v", rep.Rows)
	}

	// Nothing matches: an empty list, not null.
	if out := e.mustRun(t, "spend", "--format", "json", "--since", "2099-01-01"); !strings.Contains(out, `"rows": []`) {
		t.Fatalf("empty report: %s", out)
	}
}

func TestSpendCSV(t *testing.T) {
	e, alpha, _ := spendFixture(t)
	out := e.mustRun(t, "spend", "--format", "csv", "--by", "provider", "--key", "alpha")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"group", "name", "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "cost_usd", "saved_usd"},
		{"openai", "", "1", "0", "1000", "200", "100", "0", "0.5", "0"},
		{"azure", "", "1", "0", "2000", "300", "0", "0", "0.25", "0"},
		{"ollama", "", "1", "1", "10", "0", "0", "0", "0", "0"},
	}
	if len(recs) != len(want) {
		t.Fatalf("csv:\n%s", out)
	}
	for i := range want {
		if strings.Join(recs[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("csv line %d = %q, want %q", i, recs[i], want[i])
		}
	}
	out = e.mustRun(t, "spend", "--format", "csv")
	if !strings.Contains(out, alpha.ID+",alpha,3,1,3010,500,100,0,0.75,0\n") {
		t.Fatalf("csv by key:\n%s", out)
	}
}

func TestSpendTable(t *testing.T) {
	e, alpha, _ := spendFixture(t)
	out := e.mustRun(t, "spend", "--since", "7d")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want header, two keys and a totals row:\n%s", out)
	}
	// Numbers are right-aligned, so every line has the header's width.
	for i, l := range lines {
		if len(l) != len(lines[0]) {
			t.Errorf("line %d is %d wide, header %d:\n%s", i, len(l), len(lines[0]), out)
		}
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "KEY NAME REQUESTS ERRORS PROMPT COMPLETION CACHED COST USD SAVED USD" {
		t.Errorf("header = %q", lines[0])
	}
	if f := strings.Fields(lines[1]); f[0] != alpha.ID || f[1] != "alpha" || f[2] != "3" || f[4] != "3,010" || f[7] != "0.750000" {
		t.Errorf("alpha row = %q", f)
	}
	if f := strings.Fields(lines[3]); f[0] != "TOTAL" || f[1] != "4" || f[2] != "1" || f[3] != "3,410" || f[6] != "0.875000" {
		t.Errorf("totals row = %q", f)
	}
	out = e.mustRun(t, "spend", "--by", "tag")
	if !strings.Contains(out, "counts under each") || !strings.Contains(out, "team=search") {
		t.Errorf("by tag table:\n%s", out)
	}
}

func TestSpendBadInput(t *testing.T) {
	e, _, _ := spendFixture(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--by", "hour"}, `--by: cannot group spend by "hour"`},
		{[]string{"--since", "last week"}, `--since: cannot read "last week"`},
		{[]string{"--until", "x"}, `--until: cannot read "x"`},
		{[]string{"--since", "1d", "--until", "2d"}, "is not after --since"},
		{[]string{"--key", "nobody"}, `--key: no key has the id or name "nobody"`},
		{[]string{"--format", "xml"}, `--format: unknown format "xml" (want table, json or csv)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := e.run(t, append([]string{"spend"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
