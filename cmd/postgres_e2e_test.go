package cmd

import (
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/internal/pgtest"
)

// Instances on one Postgres ledger (ledger.postgres_url) are one gateway's
// books: a key made on one works on the other, both instances' requests
// are in one spend report, an instance started later loads the key's
// spend from them, and a revocation on one stops the key on the others.
func TestE2EPostgresLedgerSharedByInstances(t *testing.T) {
	url := pgtest.Schema(t)
	cfg := strings.Replace(ledgerConfig, "ledger: {path: {{DIR}}/lumen.db}",
		`ledger: {path: {{DIR}}/lumen.db, postgres_url: "`+url+`"}`, 1)
	if cfg == ledgerConfig {
		t.Fatal("ledgerConfig has no ledger line to replace")
	}
	start := func() *lumen { return startLumen(t, strings.ReplaceAll(cfg, "{{DIR}}", t.TempDir()), nil) }
	a, b := start(), start()

	created := rawPost(t, a, "/admin/keys", master, `{"name":"shared","budget_usd":5}`)
	key := gjson.Get(created.text, "key").Str
	if created.status != 201 || key == "" {
		t.Fatalf("create on A: %d %s", created.status, created.text)
	}
	body := chatBody("priced", "count these words please", "")
	// B learns of the key at its next refresh (keysRefresh).
	waitFor(t, func() bool {
		return rawPost(t, b, "/v1/chat/completions", key, body).status == 200
	})
	var cost float64
	for i, l := range []*lumen{a, b, a} {
		r := rawPost(t, l, "/v1/chat/completions", key, body)
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.text)
		}
		c, _ := gjson.Parse(r.header.Get("x-lumen-cost-usd")).Value().(float64)
		cost += c
	}
	if cost <= 0 {
		t.Fatal("requests cost nothing")
	}
	// 4 requests of the key (B's first one included), however the
	// instances split them, in each instance's report.
	for _, l := range []*lumen{a, b} {
		waitFor(t, func() bool {
			return gjson.GetBytes(rawGet(t, l.URL, "/admin/spend?by=key", master), `data.#(name=="shared").requests`).Int() == 4
		})
	}
	spent := gjson.GetBytes(rawGet(t, a.URL, "/admin/spend?by=key", master), `data.#(name=="shared").cost_usd`).Float()
	if math.Abs(spent-cost*4/3) > cost/3/2 {
		t.Errorf("ledger cost %v, want about %v (4 requests of %v)", spent, cost*4/3, cost/3)
	}

	c := start()
	if got := gjson.GetBytes(rawGet(t, c.URL, "/admin/keys/shared", master), "usage.spent_usd").Float(); math.Abs(got-spent) > 1e-9 {
		t.Errorf("a later instance loaded spend %v, want the ledger's %v", got, spent)
	}

	// The keys command, pointed at any instance's config, works on the
	// shared ledger too.
	out, errOut, err := runRoot(t, "", "keys", "create", "--name", "from-cli", "--config", c.Config)
	cliKey := regexp.MustCompile(`lumen-sk-\w+`).FindString(out)
	if err != nil || cliKey == "" {
		t.Fatalf("keys create: %v\n%s%s", err, out, errOut)
	}
	waitFor(t, func() bool { return rawPost(t, a, "/v1/chat/completions", cliKey, body).status == 200 })

	if r := rawPost(t, b, "/admin/keys/shared/revoke", master, ""); r.status != 200 {
		t.Fatalf("revoke on B: %d %s", r.status, r.text)
	}
	for _, l := range []*lumen{a, c} {
		waitFor(t, func() bool {
			return rawPost(t, l, "/v1/chat/completions", key, body).status == 401
		})
	}
}
