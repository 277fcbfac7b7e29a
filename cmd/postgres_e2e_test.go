package cmd

import (
	"database/sql"
	"io"
	"math"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/internal/pgtest"
	"github.com/lumengw/lumen/ledger"
)

// Instances on one Postgres ledger (ledger.postgres_url) are one gateway's
// books: a key made on one works on the other, both instances' requests
// are in one spend report, an instance started later loads the key's
// spend from them, and a revocation on one stops the key on the others.
func TestE2EPostgresLedgerSharedByInstances(t *testing.T) {
	url := pgtest.Schema(t)
	cfg := strings.Replace(ledgerConfig, "ledger: {path: {{DIR}}/lumen.db}",
		`ledger: {path: {{DIR}}/lumen.db, postgres_url: "`+url+`"}`, 1)
	// One audit signing key for all, as one chain's checkpoints need.
	cfg = strings.Replace(cfg, "audit: {signing_key: {{DIR}}/audit.key}", "audit: {signing_key: "+t.TempDir()+"/audit.key}", 1)
	if !strings.Contains(cfg, "postgres_url") || strings.Contains(cfg, "{{DIR}}/audit.key") {
		t.Fatal("ledgerConfig has no ledger or audit line to replace")
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

	// The three instances wrote one audit chain in Postgres, which
	// verifies with the shared key once they have stopped.
	for _, l := range []*lumen{a, b, c} {
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, err = runRoot(t, "", "audit", "verify", "--config", c.Config)
	if err != nil || !strings.Contains(out, "ok: entries 1..") {
		t.Fatalf("audit verify: %v\n%s%s", err, out, errOut)
	}
	// The chain holds every instance's entries: the key made on A and the
	// one made with lumen keys, and the revocation on B.
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var made, revoked int
	if err := db.QueryRow(`SELECT count(*) FILTER (WHERE action = 'key.created'), count(*) FILTER (WHERE action = 'key.revoked') FROM audit_entries`).Scan(&made, &revoked); err != nil || made != 2 || revoked != 1 {
		t.Errorf("audit entries: %d created, %d revoked (%v), want 2 and 1", made, revoked, err)
	}
}

// A Postgres that goes away and comes back (a restart, a failover) costs
// no request and no ledger row: requests are served meanwhile, and the
// writer retries their batch until the database answers again.
func TestE2EPostgresOutageLosesNoRows(t *testing.T) {
	target := pgtest.Schema(t)
	u, err := neturl.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := newCutProxy(t, u.Host)
	u.Host = p.addr
	cfg := strings.Replace(ledgerConfig, "ledger: {path: {{DIR}}/lumen.db}",
		`ledger: {path: {{DIR}}/lumen.db, postgres_url: "`+u.String()+`"}`, 1)
	l := startLumen(t, strings.ReplaceAll(cfg, "{{DIR}}", t.TempDir()), nil)
	body := chatBody("priced", "still there?", "")
	if r := rawPost(t, l, "/v1/chat/completions", master, body); r.status != 200 {
		t.Fatalf("before the outage: %d %s", r.status, r.text)
	}

	p.cut()
	for i := range 5 {
		if r := rawPost(t, l, "/v1/chat/completions", master, body); r.status != 200 {
			t.Fatalf("request %d during the outage: %d %s", i, r.status, r.text)
		}
	}
	// Reports need the database: the admin API says it is out of reach.
	spendReq, _ := http.NewRequest(http.MethodGet, l.URL+"/admin/spend?by=model", nil)
	if r := rawDo(t, spendReq, master); r.status != 503 || !strings.Contains(r.text, "ledger_unavailable") {
		t.Errorf("/admin/spend during the outage: %d %s", r.status, r.text)
	}
	time.Sleep(300 * time.Millisecond) // the writer meets the outage and backs off
	p.restore()

	db, err := sql.Open("pgx", target)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitFor(t, func() bool {
		var n int
		return db.QueryRow(`SELECT count(*) FROM requests WHERE model_group = 'priced'`).Scan(&n) == nil && n == 6
	})
	if !strings.Contains(l.Logs.String(), "retrying while new records queue") {
		t.Errorf("no retry was logged:\n%s", l.Logs.String())
	}
	// The audit log, in the same database, lost nothing either.
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	var requests int
	if err := db.QueryRow(`SELECT count(*) FROM audit_entries WHERE action = 'request'`).Scan(&requests); err != nil || requests != 6 {
		t.Errorf("audit request entries: %d (%v), want 6", requests, err)
	}
	if out, errOut, err := runRoot(t, "", "audit", "verify", "--config", l.Config); err != nil || !strings.Contains(out, "ok: entries 1..") {
		t.Errorf("audit verify: %v\n%s%s", err, out, errOut)
	}
}

// cutProxy forwards TCP to a target until cut, which closes its listener
// and every connection; restore listens again on the same address.
type cutProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, target: target, addr: ln.Addr().String()}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("listening again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// lumen ledger copy moves one instance's SQLite ledger into Postgres: the
// key made on the old ledger authenticates on an instance of the new one,
// whose reports and budget include the old requests; a second copy is
// refused.
func TestE2ELedgerCopyToPostgres(t *testing.T) {
	old, dir, raws := ledgerLumen(t, "", ledger.KeySpec{Name: "mover", BudgetUSD: 10})
	body := chatBody("priced", "move me", "")
	var cost float64
	for i := range 3 {
		r := rawPost(t, old, "/v1/chat/completions", raws[0], body)
		if r.status != 200 {
			t.Fatalf("request %d on the old ledger: %d %s", i, r.status, r.text)
		}
		c, _ := gjson.Parse(r.header.Get("x-lumen-cost-usd")).Value().(float64)
		cost += c
	}
	if err := old.stop(); err != nil { // drains the writer
		t.Fatal(err)
	}

	url := pgtest.Schema(t)
	cfg := strings.Replace(ledgerConfig, "ledger: {path: {{DIR}}/lumen.db}",
		`ledger: {path: {{DIR}}/lumen.db, postgres_url: "`+url+`"}`, 1)
	// The old instance's signing key, which signed the chain being moved.
	cfg = strings.Replace(cfg, "audit: {signing_key: {{DIR}}/audit.key}", "audit: {signing_key: "+dir+"/audit.key}", 1)
	cfg = strings.ReplaceAll(cfg, "{{DIR}}", t.TempDir())
	cfgPath := filepath.Join(t.TempDir(), "shared.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	from := filepath.Join(dir, "lumen.db")
	out, errOut, err := runRoot(t, "", "ledger", "copy", "--from", from, "--config", cfgPath)
	if err != nil || !strings.Contains(out, "copied 1 keys, 3 requests (0 with payloads) and 0 auto:smart arms") ||
		!strings.Contains(out, "copied the audit chain: 3 entries") {
		t.Fatalf("ledger copy: %v\n%s%s", err, out, errOut)
	}

	l := startLumen(t, cfg, nil)
	if r := rawPost(t, l, "/v1/chat/completions", raws[0], body); r.status != 200 {
		t.Fatalf("the copied key on the Postgres ledger: %d %s", r.status, r.text)
	}
	if got := gjson.GetBytes(rawGet(t, l.URL, "/admin/keys/mover", master), "usage.spent_usd").Float(); math.Abs(got-cost*4/3) > cost/3/2 {
		t.Errorf("the key's spend after the copy and one request: %v, want about %v", got, cost*4/3)
	}
	waitFor(t, func() bool {
		return gjson.GetBytes(rawGet(t, l.URL, "/admin/spend?by=key", master), `data.#(name=="mover").requests`).Int() == 4
	})
	// The moved audit chain verifies in Postgres and goes on there.
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := runRoot(t, "", "audit", "verify", "--config", cfgPath); err != nil || !strings.Contains(out, "ok: entries 1..") || strings.Contains(out, "1..3 ") {
		t.Errorf("audit verify after the move: %v\n%s%s", err, out, errOut)
	}

	if _, _, err := runRoot(t, "", "ledger", "copy", "--from", from, "--config", cfgPath); err == nil || !strings.Contains(err.Error(), "already holds keys or requests") {
		t.Errorf("a second copy: %v", err)
	}
	if _, _, err := runRoot(t, "", "ledger", "copy", "--from", from, "--config", old.Config); err == nil || !strings.Contains(err.Error(), "the config's own ledger") {
		t.Errorf("a copy onto itself: %v", err)
	}
}
