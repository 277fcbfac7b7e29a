package router

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/router/auto"
)

// autoUpstream records the bodies it is sent and answers with answer, or
// fails with err when set.
type autoUpstream struct {
	mu     sync.Mutex
	bodies [][]byte
	answer string
	err    error
}

func (u *autoUpstream) Name() string { return "auto-fake" }

func (u *autoUpstream) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.bodies = append(u.bodies, req.Body)
	if u.err != nil {
		return nil, u.err
	}
	a := u.answer
	if a == "" {
		a = "ok"
	}
	return &providers.Response{Body: fmt.Appendf(nil, `{"choices":[{"message":{"role":"assistant","content":%q}}]}`, a)}, nil
}

func (u *autoUpstream) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	return nil, errors.New("not streamed in these tests")
}

func (u *autoUpstream) calls() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

func (u *autoUpstream) last() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bodies[len(u.bodies)-1]
}

// Two candidates: cheap at Mixtral level ($0.6/M), strong at GPT-4o level
// ($10/M), plus an unknown local model and a named route.
const autoYAML = `
model_list:
  - model_name: cheap
    litellm_params: {model: openai/cheap-model, api_base: "http://127.0.0.1:1/v1"}
    model_info: {quality: 0.71, input_cost_per_token: 0.0000006, output_cost_per_token: 0.0000006}
  - model_name: strong
    litellm_params: {model: openai/strong-model, api_base: "http://127.0.0.1:1/v1"}
    model_info: {quality: 0.88, input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}
  - model_name: mystery
    litellm_params: {model: openai/mystery-model, api_base: "http://127.0.0.1:1/v1"}
  - model_name: backup
    litellm_params: {model: openai/backup-model, api_base: "http://127.0.0.1:1/v1"}
    model_info: {base_model: gpt-4o-mini, input_cost_per_token: 0.001, output_cost_per_token: 0.001}
  - model_name: auto-budget
    auto: {candidates: [cheap, strong], max_cost_per_1k: 0.001}
router_settings:
  num_retries: 0
  auto: {candidates: [cheap, strong]}
`

const (
	easyPrompt = "What is the capital of France?"
	hardPrompt = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24, and then derive the closed form of the sum over k of binomial(n,k)^2 using generating functions. Show all steps rigorously."
)

func autoRouter(t *testing.T, yaml string) (*Router, map[string]*autoUpstream) {
	t.Helper()
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ups := map[string]*autoUpstream{}
	r, err := New(cfg, func(pc providers.Config) (providers.Provider, error) {
		u := &autoUpstream{}
		ups[pc.Model] = u
		return u, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, ups
}

func autoChat(prompt, extra string) []byte {
	return fmt.Appendf(nil, `{"model":"auto","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":%q}]%s}`, prompt, extra)
}

func TestAutoDecisions(t *testing.T) {
	tests := []struct {
		name     string
		model    string
		prompt   string
		extra    string // appended to the body's fields
		header   http.Header
		allow    func(string) bool
		want     string // group called
		mode     string
		wantErr  string // substring; the error must match auto.ErrNoCandidate unless wantReq
		wantReq  bool   // a *RequestError
		deniedOK bool   // a *NotAllowedError
	}{
		{name: "easy prompt goes to the cheap model", model: "auto", prompt: easyPrompt, want: "cheap", mode: "floor"},
		{name: "hard prompt goes to the strong model", model: "auto", prompt: hardPrompt, want: "strong", mode: "floor"},
		{name: "auto:best takes the strongest even when easy", model: "auto:best", prompt: easyPrompt, want: "strong", mode: "best"},
		{name: "auto:fast without latency data is cheapest that clears", model: "auto:fast", prompt: easyPrompt, want: "cheap", mode: "fast"},
		{name: "body quality floor raises the bar", model: "auto", prompt: easyPrompt, extra: `,"lumen":{"quality_floor":0.9}`, want: "strong"},
		{name: "header quality floor raises the bar", model: "auto", prompt: easyPrompt,
			header: http.Header{"X-Lumen-Quality-Floor": {"0.9"}}, want: "strong"},
		{name: "body wins over header", model: "auto", prompt: easyPrompt, extra: `,"lumen":{"quality_floor":0.5}`,
			header: http.Header{"X-Lumen-Quality-Floor": {"0.9"}}, want: "cheap"},
		{name: "price ceiling keeps a hard prompt on the cheap model", model: "auto", prompt: hardPrompt,
			extra: `,"lumen":{"max_cost_per_1k":0.001}`, want: "cheap"},
		{name: "named route's price ceiling", model: "auto-budget", prompt: hardPrompt, want: "cheap"},
		{name: "named route with a mode suffix", model: "auto-budget:best", prompt: easyPrompt, want: "cheap", mode: "best"},
		{name: "prefer picks a preferred group that clears", model: "auto", prompt: easyPrompt,
			extra: `,"lumen":{"prefer":["strong"]}`, want: "strong"},
		{name: "disallowed candidate is never chosen", model: "auto", prompt: easyPrompt,
			allow: func(g string) bool { return g != "cheap" }, want: "strong"},
		{name: "nothing allowed", model: "auto", prompt: easyPrompt, allow: func(string) bool { return false }, deniedOK: true},
		{name: "price ceiling excluding everything", model: "auto", prompt: easyPrompt,
			extra: `,"lumen":{"max_cost_per_1k":0.0001}`, wantErr: "cheap excluded by max_cost_per_1k"},
		{name: "header price ceiling excluding everything", model: "auto", prompt: easyPrompt,
			header: http.Header{"X-Lumen-Max-Cost-Per-1k": {"0.0001"}}, wantErr: "strong excluded by max_cost_per_1k"},
		{name: "quality floor out of range", model: "auto", prompt: easyPrompt, extra: `,"lumen":{"quality_floor":2}`, wantReq: true},
		{name: "unknown lumen field", model: "auto", prompt: easyPrompt, extra: `,"lumen":{"floor":0.5}`, wantReq: true},
		{name: "bad header", model: "auto", prompt: easyPrompt, header: http.Header{"X-Lumen-Max-Latency-Ms": {"fast"}}, wantReq: true},
		{name: "unknown mode", model: "auto:cheapest", prompt: easyPrompt, wantReq: true},
		{name: "a pinned model wins over lumen limits", model: "strong", prompt: easyPrompt,
			extra: `,"lumen":{"max_cost_per_1k":0.0001}`, want: "strong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ups := autoRouter(t, autoYAML)
			body := autoChat(tt.prompt, tt.extra)
			res, err := r.Do(context.Background(), &Call{Group: tt.model, Op: providers.OpChat, Body: body,
				Header: tt.header, Allow: tt.allow, RequestID: "req-1"})
			var re *RequestError
			var na *NotAllowedError
			switch {
			case tt.wantReq:
				if !errors.As(err, &re) {
					t.Fatalf("err = %v, want a *RequestError", err)
				}
				return
			case tt.deniedOK:
				if !errors.As(err, &na) {
					t.Fatalf("err = %v, want a *NotAllowedError", err)
				}
				return
			case tt.wantErr != "":
				if !errors.Is(err, auto.ErrNoCandidate) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrNoCandidate naming %q", err, tt.wantErr)
				}
				for _, u := range ups {
					if u.calls() != 0 {
						t.Fatal("an upstream was called although nothing qualified")
					}
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if res.Group != tt.want {
				t.Fatalf("served by %q, want %q (decision %+v)", res.Group, tt.want, res.Auto)
			}
			u := ups[tt.want+"-model"]
			if u.calls() != 1 {
				t.Fatalf("%s called %d times", tt.want, u.calls())
			}
			if sent := u.last(); gjson.GetBytes(sent, "lumen").Exists() {
				t.Fatalf("the lumen object went upstream: %s", sent)
			}
			if tt.model == "strong" {
				if res.Auto != nil {
					t.Fatalf("pinned call has an auto decision %+v", res.Auto)
				}
				return
			}
			a := res.Auto
			if a == nil || a.Selected != tt.want || a.Route != tt.model || a.Reason == "" || a.Domain == "" ||
				a.Difficulty <= 0 || a.Difficulty >= 1 || a.PredictedQuality <= 0 || a.PredictedQuality >= 1 {
				t.Fatalf("decision %+v", a)
			}
			if tt.mode != "" && a.Mode != tt.mode {
				t.Fatalf("mode %q, want %q", a.Mode, tt.mode)
			}
		})
	}
}

func TestAutoLatencySLO(t *testing.T) {
	r, _ := autoRouter(t, autoYAML)
	g, _ := r.Group("cheap")
	g.Deployments[0].latency.observe(900_000_000) // 900ms
	res, err := r.Do(context.Background(), &Call{Group: "auto", Op: providers.OpChat, Body: autoChat(easyPrompt, `,"lumen":{"max_latency_ms":500}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Group != "strong" || !strings.Contains(res.Auto.Reason, "1 excluded") {
		t.Fatalf("served by %s (%s), want strong with cheap excluded by latency", res.Group, res.Auto.Reason)
	}
}

func TestAutoDefaultCandidatesAreKnownModels(t *testing.T) {
	r, _ := autoRouter(t, strings.Replace(autoYAML, "auto: {candidates: [cheap, strong]}", "auto: {}", 1))
	got := strings.Join(r.AutoCandidates(), ",")
	// mystery-model is in no ability table; backup's base_model is.
	if got != "backup,cheap,strong" {
		t.Fatalf("default candidates %s", got)
	}
	if names := strings.Join(r.AutoNames(), ","); names != "auto,auto-budget" {
		t.Fatalf("auto names %s", names)
	}
}

func TestAutoFallbackAfterSelection(t *testing.T) {
	y := strings.Replace(autoYAML, "num_retries: 0", "num_retries: 0\n  fallbacks: [{cheap: [strong]}]", 1)
	r, ups := autoRouter(t, y)
	ups["cheap-model"].err = &providers.UpstreamError{Status: 500, Message: "boom", Retryable: true}
	res, err := r.Do(context.Background(), &Call{Group: "auto", Op: providers.OpChat, Body: autoChat(easyPrompt, ""), RequestID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Auto.Selected != "cheap" || res.Group != "strong" || res.FallbackFrom != "cheap" {
		t.Fatalf("selected %s, served by %s from %s", res.Auto.Selected, res.Group, res.FallbackFrom)
	}
	// The failure counted against the chosen model.
	arms := r.autoRT.learn.bandit.Snapshot()
	if len(arms) != 1 || arms[0].Model != "cheap" || arms[0].Beta != 1 || arms[0].Alpha != 0 {
		t.Fatalf("bandit %+v", arms)
	}
}

func TestAutoInvalidJSONCountsAsFailure(t *testing.T) {
	r, ups := autoRouter(t, autoYAML)
	ups["cheap-model"].answer = "not json"
	if _, err := r.Do(context.Background(), &Call{Group: "auto", Op: providers.OpChat,
		Body: autoChat(easyPrompt, `,"response_format":{"type":"json_object"}`)}); err != nil {
		t.Fatal(err)
	}
	ups["cheap-model"].answer = `{"ok":true}`
	if _, err := r.Do(context.Background(), &Call{Group: "auto", Op: providers.OpChat,
		Body: autoChat(easyPrompt, `,"response_format":{"type":"json_object"}`)}); err != nil {
		t.Fatal(err)
	}
	arms := r.autoRT.learn.bandit.Snapshot()
	if len(arms) != 1 || arms[0].Beta != 1 {
		t.Fatalf("bandit %+v, want one failure", arms)
	}
}

func TestFeedbackMovesBandit(t *testing.T) {
	r, _ := autoRouter(t, autoYAML)
	res, err := r.Do(context.Background(), &Call{Group: "auto:smart", Op: providers.OpChat, Body: autoChat(easyPrompt, ""), RequestID: "req-42", Caller: "key_a"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Auto.Mode != "smart" {
		t.Fatalf("mode %s", res.Auto.Mode)
	}
	dom, model := res.Auto.Domain, r.autoRT.ability[res.Auto.Selected]
	a0, b0 := r.autoRT.learn.bandit.Posterior(dom, model, 0.5)
	// Another key cannot score key_a's request; key_a and the master key can.
	if err := r.Feedback("req-42", 0.25, "key_b"); !errors.Is(err, ErrUnknownRequest) {
		t.Fatalf("another caller's feedback: %v", err)
	}
	if err := r.Feedback("req-42", 0.25, "key_a"); err != nil {
		t.Fatal(err)
	}
	a1, b1 := r.autoRT.learn.bandit.Posterior(dom, model, 0.5)
	if a1-a0 != 0.25 || b1-b0 != 0.75 {
		t.Fatalf("posterior moved by (%v, %v), want (0.25, 0.75)", a1-a0, b1-b0)
	}
	if err := r.Feedback("req-unknown", 1, "*"); !errors.Is(err, ErrUnknownRequest) {
		t.Fatalf("unknown id: %v", err)
	}
	var re *RequestError
	if err := r.Feedback("req-42", 1.5, "*"); !errors.As(err, &re) {
		t.Fatalf("bad score: %v", err)
	}

	// Repeated bad feedback on the cheap model drives auto:smart to the
	// strong one for easy prompts of that domain.
	for i := 0; i < 200; i++ {
		r.autoRT.learn.bandit.Observe(dom, "cheap", 0)
	}
	res, err = r.Do(context.Background(), &Call{Group: "auto:smart", Op: providers.OpChat, Body: autoChat(easyPrompt, "")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Group != "strong" {
		t.Fatalf("after failures on cheap, smart chose %s (%s)", res.Group, res.Auto.Reason)
	}
}

// memArms is an ArmStore in memory, as the ledger's bandit_arms table
// behaves; fail makes MergeArms fail.
type memArms struct {
	arms map[string]auto.Arm
	fail bool
}

func (m *memArms) MergeArms(_ context.Context, deltas []auto.Arm, maxCount float64) ([]auto.Arm, error) {
	if m.fail {
		return nil, errors.New("database is down")
	}
	if m.arms == nil {
		m.arms = map[string]auto.Arm{}
	}
	for _, d := range deltas {
		a := m.arms[d.Domain+"/"+d.Model]
		a.Domain, a.Model = d.Domain, d.Model
		a.Alpha += d.Alpha
		a.Beta += d.Beta
		if n := a.Alpha + a.Beta; n > maxCount {
			a.Alpha, a.Beta = a.Alpha*maxCount/n, a.Beta*maxCount/n
		}
		m.arms[d.Domain+"/"+d.Model] = a
	}
	var out []auto.Arm
	for _, a := range m.arms {
		out = append(out, a)
	}
	return out, nil
}

// What auto:smart learns goes to the store and comes back to every router
// syncing with it (a restart, another instance); a failed sync keeps the
// outcomes for the next; an old state file is imported; a config reload
// keeps the bandit.
func TestBanditSyncsAndSurvivesReload(t *testing.T) {
	ctx := context.Background()
	store := &memArms{}
	r, _ := autoRouter(t, autoYAML)
	if _, err := r.Do(ctx, &Call{Group: "auto", Op: providers.OpChat, Body: autoChat(easyPrompt, ""), RequestID: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Feedback("a", 1, "*"); err != nil {
		t.Fatal(err)
	}
	store.fail = true
	if err := r.SyncLearning(ctx, store); err == nil {
		t.Fatal("a failed sync reported no error")
	}
	store.fail = false
	if err := r.SyncLearning(ctx, store); err != nil {
		t.Fatal(err)
	}
	arms := r.autoRT.learn.bandit.Snapshot()
	if len(arms) != 1 || arms[0].Alpha != 1 || arms[0].Beta != 0 || len(store.arms) != 1 {
		t.Fatalf("after sync: router %v, store %v", arms, store.arms)
	}

	// Another instance (or this one restarted) learns it from the store,
	// and what it learns reaches the first.
	other, _ := autoRouter(t, autoYAML)
	if _, err := other.Do(ctx, &Call{Group: "auto", Op: providers.OpChat, Body: autoChat(easyPrompt, ""), RequestID: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := other.Feedback("b", 0, "*"); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Router{other, r} {
		if err := x.SyncLearning(ctx, store); err != nil {
			t.Fatal(err)
		}
	}
	for name, x := range map[string]*Router{"first": r, "other": other} {
		if got := x.autoRT.learn.bandit.Snapshot(); len(got) != 1 || got[0].Alpha != 1 || got[0].Beta != 1 {
			t.Errorf("%s router after both synced: %v", name, got)
		}
	}

	// An older Lumen's state file is added once.
	path := BanditPath(t.TempDir() + "/lumen.db")
	if n, err := r.ImportBandit(path); n != 0 || err != nil {
		t.Fatalf("a missing file: %d %v", n, err)
	}
	os.WriteFile(path, []byte(`[{"domain":"`+arms[0].Domain+`","model":"`+arms[0].Model+`","alpha":3,"beta":2}]`), 0o600)
	if n, err := r.ImportBandit(path); n != 1 || err != nil {
		t.Fatalf("import: %d %v", n, err)
	}
	if err := r.SyncLearning(ctx, store); err != nil {
		t.Fatal(err)
	}
	if a := store.arms[arms[0].Domain+"/"+arms[0].Model]; a.Alpha != 4 || a.Beta != 3 {
		t.Fatalf("after the import: %+v", a)
	}
	os.WriteFile(path, []byte("{broken"), 0o600)
	if _, err := r.ImportBandit(path); err == nil {
		t.Fatal("a corrupt file imported")
	}

	// A reload keeps the bandit and the decisions feedback refers to.
	reloaded, _ := autoRouter(t, autoYAML)
	reloaded.KeepLearning(r)
	if err := reloaded.Feedback("a", 0, "*"); err != nil {
		t.Fatalf("feedback after reload: %v", err)
	}
	if r.autoRT.learn.bandit.Snapshot()[0].Beta != 4 {
		t.Fatal("feedback after reload did not reach the shared bandit")
	}
}

func TestRecentDecisionsAreBounded(t *testing.T) {
	l := newLearning()
	for i := 0; i <= recentDecisions; i++ {
		l.remember(fmt.Sprint(i), armRef{domain: "d", model: "m"})
	}
	if _, ok := l.lookup("0"); ok {
		t.Fatal("the oldest decision was kept beyond the bound")
	}
	if _, ok := l.lookup(fmt.Sprint(recentDecisions)); !ok || len(l.recent) != recentDecisions {
		t.Fatalf("kept %d decisions", len(l.recent))
	}
}

func TestExplainAuto(t *testing.T) {
	r, _ := autoRouter(t, autoYAML)
	ex, err := r.ExplainAuto("auto", hardPrompt)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Err != nil || ex.Decision.Choice.Name != "strong" || len(ex.Decision.Ranking) != 2 {
		t.Fatalf("explanation %+v", ex)
	}
	if _, err := r.ExplainAuto("cheap", hardPrompt); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("a pinned group explained: %v", err)
	}
}

func TestPromptOf(t *testing.T) {
	p := promptOf([]byte(`{"messages":[{"role":"system","content":"S1"},{"role":"user","content":"first"},
		{"role":"assistant","content":"x"},{"role":"developer","content":"S2"},
		{"role":"user","content":[{"type":"text","text":"last"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"part"}]}]}`))
	if p.System != "S1\nS2" || p.User != "last\npart" || p.Turns != 5 {
		t.Fatalf("%+v", p)
	}
	if p := promptOf([]byte(`{"prompt":"complete me"}`)); p.User != "complete me" || p.Turns != 1 {
		t.Fatalf("%+v", p)
	}
}

// TestAutoWarnings: a candidate whose model the ability table does not know
// and that sets no model_info.quality is named, per auto route; known
// models, models with a quality, and groups the default route leaves out
// are not.
func TestAutoWarnings(t *testing.T) {
	r, _ := autoRouter(t, `
model_list:
  - model_name: mini
    litellm_params: {model: openai/gpt-4o-mini, api_key: k}
  - model_name: house
    litellm_params: {model: openai/acme-house-7b, api_key: k}
  - model_name: rated
    litellm_params: {model: openai/acme-rated-7b, api_key: k}
    model_info: {quality: 0.8}
  - model_name: auto-all
    auto: {}
  - model_name: auto-known
    auto: {candidates: [mini, rated]}
router_settings:
  auto: {candidates: [mini, house]}
`)
	want := []string{
		`auto route "auto": no known ability for house: scored at the default quality 0.70; set model_info.quality (0..1)`,
		`auto route "auto-all": no known ability for house: scored at the default quality 0.70; set model_info.quality (0..1)`,
	}
	if got := r.autoWarnings(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Without a candidate list, "auto" leaves unknown groups out: no warning.
	r, _ = autoRouter(t, `
model_list:
  - model_name: mini
    litellm_params: {model: openai/gpt-4o-mini, api_key: k}
  - model_name: house
    litellm_params: {model: openai/acme-house-7b, api_key: k}
`)
	if got := r.autoWarnings(); len(got) != 0 {
		t.Errorf("default auto route warned: %v", got)
	}
}

// A named route over every group leaves out the groups that do not
// answer chat (model_info.mode embedding, moderation, rerank), however
// good their quality reads.
func TestAutoRouteSkipsNonChatGroups(t *testing.T) {
	r, _ := autoRouter(t, `
model_list:
  - model_name: cheap
    litellm_params: {model: openai/cheap-model}
    model_info: {quality: 0.6, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}
  - model_name: reranker
    litellm_params: {model: openai/rr}
    model_info: {mode: rerank, quality: 0.99, input_cost_per_token: 0.0000001, output_cost_per_token: 0.0000001}
  - model_name: auto-any
    auto: {mode: best}
`)
	res, err := r.Do(context.Background(), &Call{Group: "auto-any", Op: providers.OpChat, Body: autoChat(easyPrompt, ""), RequestID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Auto.Selected != "cheap" {
		t.Fatalf("selected %s, want cheap (the reranker answers no chat)", res.Auto.Selected)
	}
}

// A JSON answer is checked for depth before gjson's validator, which
// recurses once per level: content nested millions of levels deep counts
// as a failed answer instead of overflowing the stack, which is fatal.
func TestFailedDeepJSONAnswer(t *testing.T) {
	const depth = 20_000_000
	content := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	body, err := sjson.SetBytes([]byte(`{"choices":[{"message":{}}]}`), "choices.0.message.content", content)
	if err != nil {
		t.Fatal(err)
	}
	call := &Call{Body: []byte(`{"response_format":{"type":"json_object"}}`)}
	if !failed(context.Background(), &Result{Response: &providers.Response{Body: body}}, nil, call) {
		t.Error("an answer nested too deep counts as valid JSON")
	}
	ok := []byte(`{"choices":[{"message":{"content":"{\"a\":[1,[2]]}"}}]}`)
	if failed(context.Background(), &Result{Response: &providers.Response{Body: ok}}, nil, call) {
		t.Error("a JSON answer counts as failed")
	}
}
