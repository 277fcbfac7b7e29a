package cmd

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/server"
)

// ownCallRows checks the ledger rows of the gateway's own calls to group
// made for the client request parent: each has the request id
// "<parent>/<kind>", no key, the purpose tag alone, status 200, and the
// cost of its prompt tokens at price per token. It returns the rows'
// total cost and how many there were.
func ownCallRows(t *testing.T, rows []ledger.Entry, group, parent, kind, purpose string, price float64) (float64, int) {
	t.Helper()
	var total float64
	n := 0
	for _, e := range rows {
		if e.ModelGroup != group {
			continue
		}
		n++
		want := e.Usage.PromptTokens
		if e.RequestID != parent+"/"+kind || e.KeyID != "" || e.KeyName != "" ||
			!slices.Equal(e.Tags, []string{server.PurposeTag(purpose)}) || e.Status != 200 || e.Attempts != 1 ||
			want <= 0 || math.Abs(e.CostUSD-float64(want)*price) > 1e-12 {
			t.Errorf("own call row: %+v (want request id %s/%s, no key, tag %s, cost %d tokens × %g)",
				e.Record, parent, kind, server.PurposeTag(purpose), want, price)
		}
		total += e.CostUSD
	}
	return total, n
}

// spentBy is the live spend GET /admin/budgets reports for a budget.
func spentBy(t *testing.T, l *lumen, scope, name string) float64 {
	t.Helper()
	list := rawGet(t, l.URL, "/admin/budgets", master)
	b := gjson.GetBytes(list, fmt.Sprintf(`data.#(name==%q)`, name))
	if !b.Exists() || b.Get("scope").Str != scope {
		t.Fatalf("no %s budget %s in GET /admin/budgets: %s", scope, name, list)
	}
	return b.Get("spent_usd").Float()
}

// The semantic cache's prompt embeddings are the gateway's own calls: each
// is a ledger row (its request id the chat's plus "/embedding", no key,
// tagged lumen:purpose=semantic_cache) priced at the embedding model's
// input price, and its cost is in the embedding group's budget, not in
// the client key's.
func TestE2ESemanticCacheEmbeddingsInLedgerAndGroupBudget(t *testing.T) {
	const price = 0.001
	dir := t.TempDir()
	db, err := ledger.Open(t.Context(), dir+"/lumen.db")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := ledger.NewKeyring(t.Context(), db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := kr.Create(t.Context(), ledger.KeySpec{Name: "client"})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := fmt.Sprintf(`
general_settings: {master_key: %s}
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
  - model_name: embedder
    litellm_params: {model: openai/text-embedding-3-small, api_base: "{{FAKE}}/v1", api_key: sk-upstream-secret-123456}
    model_info: {input_cost_per_token: %g}
cache: {type: semantic, embedding_model: embedder, similarity_threshold: 0.95}
ledger: {path: %s/lumen.db}
limits: {model_groups: {embedder: {budget_usd: 10}}}
`, master, price, dir)
	fake := newFakeOpenAI(t)
	fake.releaseAll()
	l := startLumen(t, cfg, fake)
	r := rawPost(t, l, "/v1/chat/completions", key, `{"model":"gpt-4o","messages":[{"role":"user","content":"What is the capital of France?"}]}`)
	chatID := r.header.Get("x-lumen-request-id")
	if r.status != 200 || r.header.Get("x-lumen-cache") != "miss" || chatID == "" {
		t.Fatalf("chat: %d %v %s", r.status, r.header, r.text)
	}
	embeds := fake.callsTo("text-embedding-3-small")
	if embeds == 0 {
		t.Fatal("the semantic cache embedded nothing")
	}
	// Each embedding costs its 2 prompt tokens (the fake's usage).
	want := float64(embeds) * 2 * price
	if got := spentBy(t, l, "model_group", "embedder"); math.Abs(got-want) > 1e-12 {
		t.Errorf("the embedder group's budget spent $%g, want $%g (%d embeddings)", got, want, embeds)
	}
	info := rawGet(t, l.URL, "/admin/keys/client", master)
	chatCost := gjsonFloat(info, "usage.spent_usd")

	rows := records(t, l, dir)
	total, n := ownCallRows(t, rows, "embedder", chatID, "embedding", server.PurposeSemanticCache, price)
	if n != embeds || math.Abs(total-want) > 1e-12 {
		t.Errorf("ledger: %d embedding rows costing $%g, want %d costing $%g", n, total, embeds, want)
	}
	i := slices.IndexFunc(rows, func(e ledger.Entry) bool { return e.RequestID == chatID })
	if i < 0 || rows[i].KeyName != "client" || len(rows[i].Tags) != 0 || math.Abs(rows[i].CostUSD-chatCost) > 1e-12 {
		t.Errorf("the chat's row (key spent $%g): %+v", chatCost, rows)
	}
}

// A moderation guardrail's check is the gateway's own call: a ledger row
// (the chat's request id plus "/moderation", no key, tagged
// lumen:purpose=guardrail) priced at the moderation model's input price
// (its prompt estimated: moderation answers carry no usage), and its cost
// is in the moderation group's budget, not in the client key's.
func TestE2EGuardrailModerationInLedgerAndGroupBudget(t *testing.T) {
	const price = 0.001
	mod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":false,"categories":{"violence":false},"category_scores":{"violence":0}}]}`)
	}))
	t.Cleanup(mod.Close)
	cfg := `
general_settings: {master_key: ` + master + `}
model_list:
  - model_name: echo
    litellm_params: {model: mock/demo}
  - model_name: mod
    litellm_params: {model: openai/omni-moderation-latest, api_base: "` + mod.URL + `/v1", api_key: sk-x}
    model_info: {mode: moderation, input_cost_per_token: ` + fmt.Sprint(price) + `}
router_settings: {num_retries: 0}
guardrails:
  - guardrail_name: safety
    litellm_params: {guardrail: openai_moderation, mode: pre_call, default_on: true, model: mod}
ledger: {path: {{DIR}}/lumen.db}
limits: {model_groups: {mod: {budget_usd: 10}}}
`
	l, dir, raws := ledgerLumenConfig(t, cfg, ledger.KeySpec{Name: "client"})
	r := rawPost(t, l, "/v1/chat/completions", raws[0], chatBody("echo", "hello there", ""))
	chatID := r.header.Get("x-lumen-request-id")
	if r.status != 200 || chatID == "" {
		t.Fatalf("chat: %d %s", r.status, r.text)
	}
	spent := spentBy(t, l, "model_group", "mod")
	if info := rawGet(t, l.URL, "/admin/keys/client", master); gjsonFloat(info, "usage.spent_usd") != 0 {
		t.Errorf("the client's key was charged: %s", info)
	}
	rows := records(t, l, dir)
	total, n := ownCallRows(t, rows, "mod", chatID, "moderation", "guardrail", price)
	if n != 1 || total <= 0 || math.Abs(spent-total) > 1e-12 {
		t.Errorf("ledger: %d moderation rows costing $%g; the mod group's budget spent $%g", n, total, spent)
	}
	if !slices.ContainsFunc(rows, func(e ledger.Entry) bool { return e.RequestID == chatID && e.KeyName == "client" }) {
		t.Errorf("no row for the chat: %+v", rows)
	}
	if strings.Contains(l.Logs.String(), "charging the gateway's own call") {
		t.Errorf("charging the budget failed:\n%s", l.Logs)
	}
}
