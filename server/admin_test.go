package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/internal/syncbuf"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/providers"
)

const testMaster = "sk-master-admin-test-0123456789"

// adminFixture is a Server with real stores on a temp SQLite file.
type adminFixture struct {
	srv     *httptest.Server
	db      *ledger.DB
	keys    *ledger.Keyring
	budgets *limits.MemoryBudgets
	audit   *audit.Log
	auditDB string
	logs    *syncbuf.Buffer
}

// newAdminFixture starts the Server; extra is more config YAML.
func newAdminFixture(t *testing.T, master string, extra ...string) *adminFixture {
	t.Helper()
	ctx := context.Background()
	yaml := "model_list: [{model_name: demo, params: {model: mock/demo}}]\n"
	if master != "" {
		yaml += "general_settings: {master_key: " + master + "}\n"
	}
	yaml += strings.Join(extra, "")
	cfg, r := routed(t, yaml)
	dir := t.TempDir()
	db, err := ledger.Open(ctx, dir+"/lumen.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := ledger.NewKeyring(ctx, db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	auditPath := dir + "/audit.db"
	al, err := audit.Open(ctx, audit.Options{Path: auditPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	f := &adminFixture{db: db, keys: keys, budgets: limits.NewMemoryBudgets(limits.BudgetOptions{}),
		audit: al, auditDB: auditPath, logs: &syncbuf.Buffer{}}
	s := New(Options{Config: cfg, Router: r, Logger: zerolog.New(f.logs), Keys: keys, Budgets: f.budgets,
		Reports: db, Audit: al})
	f.srv = httptest.NewServer(s)
	t.Cleanup(f.srv.Close)
	return f
}

// call sends a request with key as Bearer and decodes a JSON answer into out
// (when not nil). It returns the status and the raw body.
func (f *adminFixture) call(t *testing.T, method, path, key, body string, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// errorOf decodes an OpenAI error body.
func errorOf(t *testing.T, body string) errorFields {
	t.Helper()
	var e struct {
		Error errorFields `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error body: %s", body)
	}
	return e.Error
}

type keyOut struct {
	Secret       string            `json:"key"`
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Prefix       string            `json:"prefix"`
	BudgetUSD    float64           `json:"budget_usd"`
	BudgetPeriod string            `json:"budget_period"`
	RPM          int               `json:"rpm"`
	TPM          int               `json:"tpm"`
	Models       []string          `json:"models"`
	Tags         map[string]string `json:"tags"`
	ExpiresAt    time.Time         `json:"expires_at"`
	RevokedAt    time.Time         `json:"revoked_at"`
	Usage        struct {
		Period       string   `json:"period"`
		SpentUSD     float64  `json:"spent_usd"`
		ReservedUSD  float64  `json:"reserved_usd"`
		RemainingUSD *float64 `json:"remaining_usd"`
		Live         bool     `json:"live"`
	} `json:"usage"`
}

var adminEndpoints = []struct{ method, path, body string }{
	{"GET", "/admin/keys", ""},
	{"POST", "/admin/keys", `{"name":"x"}`},
	{"GET", "/admin/keys/x", ""},
	{"PATCH", "/admin/keys/x", `{"rpm":1}`},
	{"POST", "/admin/keys/x/revoke", ""},
	{"DELETE", "/admin/keys/x", ""},
	{"POST", "/admin/keys/x/rotate", ""},
	{"GET", "/admin/spend?by=model", ""},
	{"GET", "/admin/requests", ""},
	{"GET", "/admin/totals", ""},
	{"GET", "/admin/nothing-here", ""},
}

func TestAdminRefusesAllButTheMasterKey(t *testing.T) {
	f := newAdminFixture(t, testMaster)
	virtual, _, err := f.keys.Create(context.Background(), ledger.KeySpec{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range adminEndpoints {
		for _, tt := range []struct{ name, key string }{
			{"no key", ""},
			{"valid virtual key", virtual},
			{"wrong key", "sk-not-the-master-key"},
		} {
			t.Run(ep.method+" "+ep.path+"/"+tt.name, func(t *testing.T) {
				status, body := f.call(t, ep.method, ep.path, tt.key, ep.body, nil)
				if status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401: %s", status, body)
				}
				if e := errorOf(t, body); e.Type != "authentication_error" {
					t.Errorf("type %q", e.Type)
				}
			})
		}
	}
	// Nothing above changed a key.
	if n := len(f.keys.List()); n != 1 {
		t.Errorf("%d keys after refused calls, want 1", n)
	}
}

func TestAdminOffWithoutMasterKey(t *testing.T) {
	f := newAdminFixture(t, "")
	for _, ep := range adminEndpoints {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			status, body := f.call(t, ep.method, ep.path, "anything", ep.body, nil)
			if status != http.StatusForbidden {
				t.Fatalf("status %d, want 403: %s", status, body)
			}
			if e := errorOf(t, body); e.Type != "permission_error" {
				t.Errorf("type %q", e.Type)
			}
		})
	}
}

func TestAdminKeyLifecycle(t *testing.T) {
	f := newAdminFixture(t, testMaster)
	ctx := context.Background()

	var created keyOut
	status, createdBody := f.call(t, "POST", "/admin/keys", testMaster,
		`{"name":"search","budget_usd":5,"budget_period":"daily","rpm":60,"tpm":1000,"models":["demo"],"expires_in":"30d","tags":{"team":"search"}}`, &created)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, createdBody)
	}
	if !strings.HasPrefix(created.Secret, ledger.KeyPrefix) || !strings.HasPrefix(created.Secret, created.Prefix) {
		t.Fatalf("created key %q (prefix %q)", created.Secret, created.Prefix)
	}
	if created.BudgetUSD != 5 || created.BudgetPeriod != "daily" || created.RPM != 60 || created.TPM != 1000 ||
		!slices.Equal(created.Models, []string{"demo"}) || created.Tags["team"] != "search" {
		t.Errorf("created settings: %+v", created)
	}
	if d := time.Until(created.ExpiresAt); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("expires_at %v, want in 30 days", created.ExpiresAt)
	}
	if created.Usage.RemainingUSD == nil || *created.Usage.RemainingUSD != 5 || created.Usage.Period != "daily" {
		t.Errorf("usage %+v", created.Usage)
	}
	k, err := f.keys.Authenticate(created.Secret)
	if err != nil || k.ID != created.ID {
		t.Fatalf("the created secret does not authenticate: %v", err)
	}

	// Live spend: money held and spent shows in list and info.
	res, err := f.budgets.Reserve(ctx, created.ID, limits.Budget{LimitUSD: 5, Period: limits.Daily}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.budgets.Settle(ctx, res, 0.75); err != nil {
		t.Fatal(err)
	}
	if _, err := f.budgets.Reserve(ctx, created.ID, limits.Budget{LimitUSD: 5, Period: limits.Daily}, 0.5); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []keyOut `json:"data"`
	}
	status, listBody := f.call(t, "GET", "/admin/keys", testMaster, "", &list)
	if status != 200 || len(list.Data) != 1 {
		t.Fatalf("list: %d %s", status, listBody)
	}
	u := list.Data[0].Usage
	if !u.Live || u.SpentUSD != 0.75 || u.ReservedUSD != 0.5 || u.RemainingUSD == nil || *u.RemainingUSD != 3.75 {
		t.Errorf("list usage %+v", u)
	}
	for _, ref := range []string{created.ID, "search"} {
		var info keyOut
		status, infoBody := f.call(t, "GET", "/admin/keys/"+ref, testMaster, "", &info)
		if status != 200 || info.ID != created.ID || info.Usage.SpentUSD != 0.75 {
			t.Fatalf("info %s: %d %s", ref, status, infoBody)
		}
		if strings.Contains(infoBody, created.Secret) {
			t.Errorf("info shows the secret: %s", infoBody)
		}
	}
	if strings.Contains(listBody, created.Secret) || strings.Contains(listBody, created.Secret[len(ledger.KeyPrefix)+4:]) {
		t.Errorf("list shows the secret: %s", listBody)
	}

	// Update: budget, models cleared, rename; by name.
	var updated keyOut
	status, body := f.call(t, "PATCH", "/admin/keys/search", testMaster,
		`{"budget_usd":20,"budget_period":"monthly","models":[],"name":"search-v2","expires_in":"never"}`, &updated)
	if status != 200 {
		t.Fatalf("update: %d %s", status, body)
	}
	if updated.BudgetUSD != 20 || updated.BudgetPeriod != "monthly" || len(updated.Models) != 0 ||
		updated.Name != "search-v2" || !updated.ExpiresAt.IsZero() || updated.RPM != 60 || updated.Tags["team"] != "search" {
		t.Errorf("updated: %+v", updated)
	}

	// Rotate: a new secret, the old one refused.
	var rotated keyOut
	status, body = f.call(t, "POST", "/admin/keys/search-v2/rotate", testMaster, "", &rotated)
	if status != 200 || rotated.ID != created.ID || !strings.HasPrefix(rotated.Secret, ledger.KeyPrefix) || rotated.Secret == created.Secret {
		t.Fatalf("rotate: %d %s", status, body)
	}
	if _, err := f.keys.Authenticate(created.Secret); err == nil {
		t.Error("the old secret still authenticates after rotate")
	}
	if _, err := f.keys.Authenticate(rotated.Secret); err != nil {
		t.Errorf("the rotated secret: %v", err)
	}

	// Revoke with POST .../revoke, and a second key with DELETE.
	var revoked keyOut
	status, body = f.call(t, "POST", "/admin/keys/"+created.ID+"/revoke", testMaster, "", &revoked)
	if status != 200 || revoked.RevokedAt.IsZero() {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if _, err := f.keys.Authenticate(rotated.Secret); err == nil {
		t.Error("a revoked key still authenticates")
	}
	status, body = f.call(t, "POST", "/admin/keys/"+created.ID+"/revoke", testMaster, "", nil)
	if status != http.StatusConflict || errorOf(t, body).Code == nil || *errorOf(t, body).Code != "key_revoked" {
		t.Errorf("revoking twice: %d %s", status, body)
	}
	var other keyOut
	if status, body := f.call(t, "POST", "/admin/keys", testMaster, `{"name":"batch"}`, &other); status != 201 {
		t.Fatalf("create batch: %d %s", status, body)
	}
	if other.Usage.RemainingUSD != nil {
		t.Errorf("a key without budget has remaining_usd %v", *other.Usage.RemainingUSD)
	}
	if status, body := f.call(t, "DELETE", "/admin/keys/batch", testMaster, "", nil); status != 200 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if _, err := f.keys.Authenticate(other.Secret); err == nil {
		t.Error("a deleted key still authenticates")
	}

	// The audit log has every change, by admin, and no secret.
	if err := f.audit.Close(); err != nil {
		t.Fatal(err)
	}
	var exp bytes.Buffer
	if err := audit.ExportFile(ctx, f.auditDB, &exp, time.Time{}, audit.FormatJSONL); err != nil {
		t.Fatal(err)
	}
	var actions []string
	sc := bufio.NewScanner(&exp)
	for sc.Scan() {
		var e audit.ExportedEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Actor != audit.ActorAdmin {
			t.Errorf("entry %d actor %q", e.Seq, e.Actor)
		}
		actions = append(actions, e.Action+" "+e.Target)
	}
	want := []string{
		"key.created " + created.ID, "key.updated " + created.ID, "budget.changed " + created.ID,
		"key.rotated " + created.ID, "key.revoked " + created.ID, "key.created " + other.ID, "key.revoked " + other.ID,
	}
	if !slices.Equal(actions, want) {
		t.Errorf("audit actions\n got %q\nwant %q", actions, want)
	}
	for _, secret := range []string{created.Secret, rotated.Secret, other.Secret} {
		if strings.Contains(exp.String(), secret) {
			t.Errorf("the audit log holds a secret")
		}
		if strings.Contains(f.logs.String(), secret) {
			t.Errorf("the server log holds a secret: %s", f.logs.String())
		}
	}
	if !strings.Contains(f.logs.String(), "admin: key created") {
		t.Errorf("the server log does not record the change: %s", f.logs.String())
	}
}

func TestAdminKeyErrors(t *testing.T) {
	f := newAdminFixture(t, testMaster)
	if status, body := f.call(t, "POST", "/admin/keys", testMaster, `{"name":"taken"}`, nil); status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	for _, tt := range []struct {
		name, method, path, body string
		status                   int
		param, code              string
	}{
		{"no name", "POST", "/admin/keys", `{"budget_usd":1}`, 400, "name", ""},
		{"empty body", "POST", "/admin/keys", ``, 400, "", ""},
		{"bad JSON", "POST", "/admin/keys", `{"name":`, 400, "", ""},
		{"unknown field", "POST", "/admin/keys", `{"name":"a","budget":1}`, 400, "", ""},
		{"bad period", "POST", "/admin/keys", `{"name":"a","budget_period":"hourly"}`, 400, "budget_period", ""},
		{"negative budget", "POST", "/admin/keys", `{"name":"a","budget_usd":-1}`, 400, "budget_usd", ""},
		{"negative rpm", "PATCH", "/admin/keys/taken", `{"rpm":-5}`, 400, "rpm", ""},
		{"bad expiry", "POST", "/admin/keys", `{"name":"a","expires_in":"soon"}`, 400, "expires_in", ""},
		{"name taken", "POST", "/admin/keys", `{"name":"taken"}`, 409, "name", "name_taken"},
		{"name like an id", "POST", "/admin/keys", `{"name":"key_0123456789abcdef"}`, 400, "name", ""},
		{"rename like an id", "PATCH", "/admin/keys/taken", `{"name":"key_0123456789abcdef"}`, 400, "name", ""},
		{"unknown key", "GET", "/admin/keys/nope", ``, 404, "", "key_not_found"},
		{"update unknown key", "PATCH", "/admin/keys/nope", `{"rpm":1}`, 404, "", "key_not_found"},
		{"revoke unknown key", "DELETE", "/admin/keys/nope", ``, 404, "", "key_not_found"},
		{"rotate unknown key", "POST", "/admin/keys/nope/rotate", ``, 404, "", "key_not_found"},
		{"spend by nonsense", "GET", "/admin/spend?by=color", ``, 400, "by", ""},
		{"spend since nonsense", "GET", "/admin/spend?since=yesterday", ``, 400, "since", ""},
		{"spend unknown key", "GET", "/admin/spend?key=ghost", ``, 404, "key", "key_not_found"},
		{"requests bad limit", "GET", "/admin/requests?limit=-1", ``, 400, "limit", ""},
		{"requests bad errors", "GET", "/admin/requests?errors=maybe", ``, 400, "errors", ""},
		{"requests bad cursor", "GET", "/admin/requests?cursor=zzz", ``, 400, "cursor", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.call(t, tt.method, tt.path, testMaster, tt.body, nil)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			e := errorOf(t, body)
			if got := deref(e.Param); got != tt.param {
				t.Errorf("param %q, want %q (%s)", got, tt.param, e.Message)
			}
			if tt.code != "" && deref(e.Code) != tt.code {
				t.Errorf("code %q, want %q", deref(e.Code), tt.code)
			}
		})
	}
	if n := len(f.keys.List()); n != 1 {
		t.Errorf("%d keys after refused creates, want 1", n)
	}
}

func TestAdminWithoutStores(t *testing.T) {
	cfg, r := routed(t, "model_list: [{model_name: demo, params: {model: mock/demo}}]\ngeneral_settings: {master_key: "+testMaster+"}\n")
	f := &adminFixture{srv: httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop()}))}
	defer f.srv.Close()
	for _, ep := range adminEndpoints[:len(adminEndpoints)-1] {
		status, body := f.call(t, ep.method, ep.path, testMaster, ep.body, nil)
		if status != http.StatusNotImplemented {
			t.Errorf("%s %s: %d, want 501: %s", ep.method, ep.path, status, body)
		}
	}
}

// reportsFixture records a few requests of the last days straight into the
// ledger, as the writer would.
func reportsFixture(t *testing.T) (*adminFixture, string) {
	t.Helper()
	f := newAdminFixture(t, testMaster)
	ctx := context.Background()
	_, k, err := f.keys.Create(ctx, ledger.KeySpec{Name: "search"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	ms := time.Millisecond
	day := 24 * time.Hour
	recs := []ledger.Record{
		{Time: now.Add(-2 * day), RequestID: "old", KeyID: k.ID, KeyName: "search", ModelGroup: "demo", Deployment: "demo/0",
			Provider: "mock", Status: 200, CostUSD: 1, Usage: providers.Usage{PromptTokens: 10, CompletionTokens: 5}, Latency: 100 * ms, Tags: []string{"team=search"}},
		{Time: now.Add(-time.Hour), RequestID: "s1", KeyID: k.ID, KeyName: "search", ModelGroup: "demo", Deployment: "demo/0",
			Provider: "mock", Status: 200, CostUSD: 0.5, Usage: providers.Usage{PromptTokens: 10, CompletionTokens: 5}, Latency: 200 * ms,
			TTFT: 40 * ms, Stream: true, Tags: []string{"team=search"}},
		{Time: now.Add(-50 * time.Minute), RequestID: "s2", KeyID: k.ID, KeyName: "search", ModelGroup: "demo", Deployment: "demo/0",
			Provider: "mock", Status: 200, CostUSD: 0.5, Latency: 400 * ms, TTFT: 80 * ms, Stream: true},
		{Time: now.Add(-40 * time.Minute), RequestID: "hit", KeyID: k.ID, KeyName: "search", ModelGroup: "demo", Status: 200,
			CacheHit: true, SavedUSD: 0.5, Latency: 1 * ms},
		{Time: now.Add(-30 * time.Minute), RequestID: "err", ModelGroup: "demo", Deployment: "demo/0", Provider: "mock",
			Status: 500, ErrorType: "api_error", Latency: 30 * ms},
		{Time: now.Add(-20 * time.Minute), RequestID: "other", ModelGroup: "big", Deployment: "big/0", Provider: "mock",
			Status: 200, CostUSD: 3, Latency: 900 * ms},
	}
	if err := f.db.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	return f, k.ID
}

func TestAdminSpend(t *testing.T) {
	f, keyID := reportsFixture(t)
	type row struct {
		Group    string  `json:"group"`
		Name     string  `json:"name"`
		Requests int64   `json:"requests"`
		Errors   int64   `json:"errors"`
		CostUSD  float64 `json:"cost_usd"`
		SavedUSD float64 `json:"saved_usd"`
	}
	// The newest request is 20 minutes old and the oldest two days: their
	// days, not today's (shortly after midnight they differ).
	newest := time.Now().Add(-20 * time.Minute).UTC().Format(time.DateOnly)
	oldest := time.Now().Add(-48 * time.Hour).UTC().Format(time.DateOnly)
	for _, tt := range []struct {
		query string
		want  []row
	}{
		{"by=model&since=7d", []row{{Group: "big", Requests: 1, CostUSD: 3}, {Group: "demo", Requests: 5, Errors: 1, CostUSD: 2, SavedUSD: 0.5}}},
		{"by=model&since=24h", []row{{Group: "big", Requests: 1, CostUSD: 3}, {Group: "demo", Requests: 4, Errors: 1, CostUSD: 1, SavedUSD: 0.5}}},
		{"by=key&since=24h", []row{{Group: "", Requests: 2, Errors: 1, CostUSD: 3}, {Group: keyID, Name: "search", Requests: 3, CostUSD: 1, SavedUSD: 0.5}}},
		{"by=key&since=7d&key=search", []row{{Group: keyID, Name: "search", Requests: 4, CostUSD: 2, SavedUSD: 0.5}}},
		{"by=model&key=" + keyID, []row{{Group: "demo", Requests: 4, CostUSD: 2, SavedUSD: 0.5}}},
		{"by=tag&since=7d", []row{{Group: "team=search", Requests: 2, CostUSD: 1.5}}},
		{"by=provider&since=1h", []row{{Group: "mock", Requests: 3, Errors: 1, CostUSD: 3.5}, {Group: "", Requests: 1, SavedUSD: 0.5}}},
		{"by=model&since=1d&until=" + time.Now().Add(-45*time.Minute).UTC().Format(time.RFC3339), []row{{Group: "demo", Requests: 2, CostUSD: 1}}},
	} {
		t.Run(tt.query, func(t *testing.T) {
			var out struct {
				By   string `json:"by"`
				Data []row  `json:"data"`
			}
			status, body := f.call(t, "GET", "/admin/spend?"+tt.query, testMaster, "", &out)
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			if !strings.HasPrefix(tt.query, "by="+out.By) {
				t.Errorf("by %q", out.By)
			}
			if !slices.Equal(out.Data, tt.want) {
				t.Errorf("\n got %+v\nwant %+v", out.Data, tt.want)
			}
		})
	}
	// By day: the recent requests in their day's row, the old one two days
	// back in its own.
	var days struct {
		Data []row `json:"data"`
	}
	if status, body := f.call(t, "GET", "/admin/spend?by=day&since=7d", testMaster, "", &days); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if n := len(days.Data); n < 2 || days.Data[n-1].Group != newest || days.Data[0].Group != oldest || days.Data[0].CostUSD != 1 {
		t.Fatalf("days %+v, want the first %s ($1) and the last %s", days.Data, oldest, newest)
	}
	var total float64
	for _, d := range days.Data {
		total += d.CostUSD
	}
	if total != 5 {
		t.Errorf("days add up to %v, want 5: %+v", total, days.Data)
	}
}

// /admin/spend cuts days and reads a date-only since or until in
// ledger.budget_timezone, as lumen spend does: 04:50 UTC on 2026-11-28 is
// 23:50 on the 27th in Lima.
func TestAdminSpendInBudgetTimezone(t *testing.T) {
	f := newAdminFixture(t, testMaster, "ledger: {budget_timezone: America/Lima}\n")
	at := time.Date(2026, 11, 28, 4, 50, 0, 0, time.UTC)
	if err := f.db.Insert(context.Background(), []ledger.Record{
		{Time: at, RequestID: "late", ModelGroup: "demo", Status: 200, CostUSD: 1},
		{Time: at.Add(-24 * time.Hour), RequestID: "day-before", ModelGroup: "demo", Status: 200, CostUSD: 2},
	}); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Group    string `json:"group"`
		Requests int64  `json:"requests"`
	}
	for _, tt := range []struct {
		query string
		want  []row
	}{
		{"by=day", []row{{"2026-11-26", 1}, {"2026-11-27", 1}}},
		{"by=day&since=2026-11-28", []row{}},
		{"by=day&since=2026-11-27", []row{{"2026-11-27", 1}}},
		{"by=day&until=2026-11-27", []row{{"2026-11-26", 1}}},
		{"by=model&since=2026-11-27&until=2026-11-28", []row{{"demo", 1}}},
	} {
		t.Run(tt.query, func(t *testing.T) {
			var out struct {
				Timezone string `json:"timezone"`
				Data     []row  `json:"data"`
			}
			if status, body := f.call(t, "GET", "/admin/spend?"+tt.query, testMaster, "", &out); status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			if !slices.Equal(out.Data, tt.want) || out.Timezone != "America/Lima" {
				t.Errorf("got %+v in %q, want %+v in America/Lima", out.Data, out.Timezone, tt.want)
			}
		})
	}
}

func TestAdminRequests(t *testing.T) {
	f, _ := reportsFixture(t)
	type page struct {
		Entries []struct {
			RequestID string        `json:"request_id"`
			Status    int           `json:"status"`
			KeyName   string        `json:"key_name"`
			Latency   time.Duration `json:"latency"`
		} `json:"entries"`
		Next string `json:"next"`
	}
	ids := func(p page) []string {
		var out []string
		for _, e := range p.Entries {
			out = append(out, e.RequestID)
		}
		return out
	}
	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"since=7d", []string{"other", "err", "hit", "s2", "s1", "old"}},
		{"since=24h&model=demo", []string{"err", "hit", "s2", "s1"}},
		{"errors=true", []string{"err"}},
		{"key=search&deployment=demo/0", []string{"s2", "s1", "old"}},
	} {
		t.Run(tt.query, func(t *testing.T) {
			var p page
			if status, body := f.call(t, "GET", "/admin/requests?"+tt.query, testMaster, "", &p); status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			if got := ids(p); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	// Paging: two at a time, following next.
	var all []string
	cursor := ""
	for range 10 {
		var p page
		if status, body := f.call(t, "GET", "/admin/requests?limit=2&cursor="+cursor, testMaster, "", &p); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		all = append(all, ids(p)...)
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	if want := []string{"other", "err", "hit", "s2", "s1", "old"}; !slices.Equal(all, want) {
		t.Errorf("paged %q, want %q", all, want)
	}
}

// TestAdminReportsFindAKeyByANameLikeAnID: key= is an id when a key has
// it, else a name, as lumen spend --key reads it; a name that starts with
// key_ is still a name (one of an id's whole form is refused).
func TestAdminReportsFindAKeyByANameLikeAnID(t *testing.T) {
	f, searchID := reportsFixture(t)
	ctx := context.Background()
	_, bot, err := f.keys.Create(ctx, ledger.KeySpec{Name: "key_bot"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.Insert(ctx, []ledger.Record{{Time: time.Now().Add(-time.Minute), RequestID: "bot1", KeyID: bot.ID,
		KeyName: "key_bot", ModelGroup: "demo", Deployment: "demo/0", Provider: "mock", Status: 200, CostUSD: 0.25}}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ref      string
		requests int64
		cost     float64
	}{
		{"key_bot", 1, 0.25},
		{bot.ID, 1, 0.25},
		{searchID, 4, 2},
	} {
		t.Run(tt.ref, func(t *testing.T) {
			var spend struct {
				Data []struct {
					Requests int64   `json:"requests"`
					CostUSD  float64 `json:"cost_usd"`
				} `json:"data"`
			}
			if status, body := f.call(t, "GET", "/admin/spend?since=7d&key="+tt.ref, testMaster, "", &spend); status != 200 ||
				len(spend.Data) != 1 || spend.Data[0].Requests != tt.requests || spend.Data[0].CostUSD != tt.cost {
				t.Errorf("spend: %d %s, want %d requests costing %v", status, body, tt.requests, tt.cost)
			}
			var page struct {
				Entries []json.RawMessage `json:"entries"`
			}
			if status, body := f.call(t, "GET", "/admin/requests?since=7d&key="+tt.ref, testMaster, "", &page); status != 200 ||
				int64(len(page.Entries)) != tt.requests {
				t.Errorf("requests: %d %s, want %d", status, body, tt.requests)
			}
		})
	}
}

func TestAdminTotals(t *testing.T) {
	f, _ := reportsFixture(t)
	type total struct {
		ModelGroup   string  `json:"model_group"`
		Requests     int64   `json:"requests"`
		Errors       int64   `json:"errors"`
		CostUSD      float64 `json:"cost_usd"`
		CacheHits    int64   `json:"cache_hits"`
		SavedUSD     float64 `json:"saved_usd"`
		LatencyP50ms float64 `json:"latency_p50_ms"`
		LatencyP95ms float64 `json:"latency_p95_ms"`
		TTFTP50ms    float64 `json:"ttft_p50_ms"`
		TTFTP95ms    float64 `json:"ttft_p95_ms"`
		ErrorRate    float64 `json:"error_rate"`
		CacheHitRate float64 `json:"cache_hit_rate"`
	}
	var out struct {
		Data []total `json:"data"`
	}
	// The default range is 24 hours: the two-day-old request is left out.
	if status, body := f.call(t, "GET", "/admin/totals", testMaster, "", &out); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	want := []total{
		// demo: successes s1 (200 ms), s2 (400), hit (1): p50 200, p95 400;
		// streams s1 (TTFT 40) and s2 (80): p50 40, p95 80.
		{ModelGroup: "demo", Requests: 4, Errors: 1, CostUSD: 1, CacheHits: 1, SavedUSD: 0.5, LatencyP50ms: 200, LatencyP95ms: 400,
			TTFTP50ms: 40, TTFTP95ms: 80, ErrorRate: 0.25, CacheHitRate: 0.25},
		{ModelGroup: "big", Requests: 1, CostUSD: 3, LatencyP50ms: 900, LatencyP95ms: 900},
	}
	if !slices.Equal(out.Data, want) {
		t.Errorf("\n got %+v\nwant %+v", out.Data, want)
	}
	if status, body := f.call(t, "GET", "/admin/totals?since=7d", testMaster, "", &out); status != 200 || out.Data[0].Requests != 5 {
		t.Errorf("since=7d: %d %s", status, body)
	}
}

func TestDashboardIsServed(t *testing.T) {
	f := newAdminFixture(t, testMaster)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(f.srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui: %d to %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, tt := range []struct{ path, ctype, contains string }{
		{"/ui/", "text/html", `<script src="app.js"`},
		{"/ui/app.js", "javascript", "/admin/spend?by=day"},
		{"/ui/app.css", "text/css", ".chart"},
	} {
		// No key: the files are public, the data is not.
		resp, err := http.Get(f.srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), tt.ctype) || !strings.Contains(string(body), tt.contains) {
			t.Errorf("%s: %d %q, body has %q: %v", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), tt.contains, strings.Contains(string(body), tt.contains))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", tt.path, csp)
		}
	}
	// Nothing in the dashboard loads from elsewhere: it works offline.
	for _, name := range []string{"/ui/", "/ui/app.js", "/ui/app.css"} {
		resp, err := http.Get(f.srv.URL + name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if bytes.Contains(bytes.ReplaceAll(body, []byte("http://www.w3.org/2000/svg"), nil), []byte(bad)) {
				t.Errorf("%s refers to %q: the dashboard must work offline", name, bad)
			}
		}
	}
}
