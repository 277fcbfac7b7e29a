package router

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/lumengw/lumen/providers"
)

const fallbackGroups = `
model_list:
  - {model_name: main, params: {model: openai/main, api_base: "http://x"}}
  - {model_name: second, params: {model: openai/second, api_base: "http://x"}}
  - {model_name: third, params: {model: openai/third, api_base: "http://x"}}
  - {model_name: long, params: {model: openai/long, api_base: "http://x"}}
  - {model_name: safe, params: {model: openai/safe, api_base: "http://x"}}
  - {model_name: small, params: {model: openai/small, api_base: "http://x"}, model_info: {max_input_tokens: 20}}
router_settings:
  num_retries: 1
  allowed_fails: 100
  fallbacks: [{main: [second, third]}, {small: [third]}]
  context_window_fallbacks: [{main: [long]}, {small: [long]}]
  content_policy_fallbacks: [{main: [safe]}]
`

var (
	dead          = upstream(500, 0)
	badRequest    = upstream(400, 0)
	tooLong       = &providers.UpstreamError{Status: 400, Code: "context_length_exceeded", Message: "This model's maximum context length is 8192 tokens"}
	policyRefusal = &providers.UpstreamError{Status: 400, Code: "content_filter", Message: "The response was filtered"}
)

func TestFallbacks(t *testing.T) {
	longPrompt := `,"messages":[{"role":"user","content":"` + strings.Repeat("many words here ", 40) + `"}]`
	tests := []struct {
		name      string
		group     string
		body      string // replaces the default messages when it sets them
		fakes     map[string]*fake
		wantGroup string
		wantErr   string
		attempts  int
		calls     map[string]int
	}{
		{name: "config chain in order", group: "main",
			fakes:     map[string]*fake{"main": failing(dead), "second": failing(dead), "third": answers(`{}`)},
			wantGroup: "third", attempts: 5, calls: map[string]int{"main": 2, "second": 2, "third": 1}},
		{name: "a 400 does not fall back", group: "main",
			fakes:   map[string]*fake{"main": failing(badRequest), "second": answers(`{}`)},
			wantErr: "returned 400", attempts: 1, calls: map[string]int{"main": 1, "second": 0}},
		{name: "upstream context window", group: "main",
			fakes:     map[string]*fake{"main": failing(tooLong), "long": answers(`{}`), "second": answers(`{}`)},
			wantGroup: "long", attempts: 2, calls: map[string]int{"main": 1, "long": 1, "second": 0}},
		{name: "content policy", group: "main",
			fakes:     map[string]*fake{"main": failing(policyRefusal), "safe": answers(`{}`), "second": answers(`{}`)},
			wantGroup: "safe", attempts: 2, calls: map[string]int{"main": 1, "safe": 1, "second": 0}},
		{name: "own estimate over max_input_tokens: not called", group: "small", body: longPrompt,
			fakes:     map[string]*fake{"small": answers(`{}`), "long": answers(`{}`)},
			wantGroup: "long", attempts: 1, calls: map[string]int{"small": 0, "long": 1}},
		{name: "short prompt fits max_input_tokens", group: "small",
			fakes:     map[string]*fake{"small": answers(`{}`), "long": answers(`{}`)},
			wantGroup: "small", attempts: 1, calls: map[string]int{"small": 1, "long": 0}},
		{name: "per-request models replace the config chain", group: "main", body: `,"models":["main","safe","second"]`,
			fakes:     map[string]*fake{"main": failing(dead), "safe": failing(dead), "second": answers(`{}`), "third": answers(`{}`)},
			wantGroup: "second", attempts: 5, calls: map[string]int{"main": 2, "safe": 2, "second": 1, "third": 0}},
		{name: "per-request fallbacks", group: "main", body: `,"fallbacks":["third"]`,
			fakes:     map[string]*fake{"main": failing(dead), "second": answers(`{}`), "third": answers(`{}`)},
			wantGroup: "third", attempts: 3, calls: map[string]int{"second": 0, "third": 1}},
		{name: "chain exhausted returns the last error", group: "main",
			fakes:   map[string]*fake{"main": failing(dead), "second": failing(dead), "third": failing(upstream(503, 0))},
			wantErr: "returned 503", attempts: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakes := map[string]providers.Provider{}
			for _, m := range []string{"main", "second", "third", "long", "safe", "small"} {
				if f, ok := tt.fakes[m]; ok {
					fakes[m] = f
				} else {
					fakes[m] = failing(errors.New(m + " must not be called"))
				}
			}
			r, _ := newTestRouter(t, fallbackGroups, fakes)
			call := chat(tt.group, false, tt.body)
			if strings.HasPrefix(tt.body, `,"messages"`) {
				call.Body = []byte(`{"model":"` + tt.group + `"` + tt.body + `}`)
			}
			res, err := r.Do(context.Background(), call)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if from := tt.group; res.Group != tt.wantGroup || tt.wantGroup == tt.group && res.FallbackFrom != "" ||
				tt.wantGroup != tt.group && res.FallbackFrom != from {
				t.Fatalf("answered by %q (fallback from %q), want %q", res.Group, res.FallbackFrom, tt.wantGroup)
			}
			if res != nil && res.Attempts != tt.attempts {
				t.Fatalf("attempts %d, want %d", res.Attempts, tt.attempts)
			}
			for m, n := range tt.calls {
				if got := tt.fakes[m].Calls(); got != n {
					t.Fatalf("%s got %d calls, want %d", m, got, n)
				}
			}
		})
	}
}

// The per-request lists never reach an upstream; the rest of the body is
// unchanged.
func TestPerRequestListsStripped(t *testing.T) {
	main, second := failing(dead), answers(`{}`)
	r, _ := newTestRouter(t, fallbackGroups, map[string]providers.Provider{"main": main, "second": second})
	_, err := r.Do(context.Background(), chat("main", false, `,"models":["second"],"fallbacks":[],"temperature":0.5`))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{main.Body(0), second.Body(0)} {
		if strings.Contains(b, "models") || strings.Contains(b, "fallbacks") || !strings.Contains(b, `"temperature":0.5`) {
			t.Fatalf("upstream body %s", b)
		}
	}
}

func TestPerRequestListErrors(t *testing.T) {
	r, _ := newTestRouter(t, fallbackGroups, map[string]providers.Provider{"main": answers(`{}`)})
	_, err := r.Do(context.Background(), chat("main", false, `,"models":["second","gpt-9"]`))
	var ug *UnknownGroupError
	if !errors.As(err, &ug) || ug.Model != "gpt-9" {
		t.Fatalf("unknown group in models: %v", err)
	}
	_, err = r.Do(context.Background(), chat("main", false, `,"fallbacks":"second"`))
	var re *RequestError
	if !errors.As(err, &re) || re.Param != "fallbacks" || !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("malformed fallbacks: %v", err)
	}
}

// Every group tried must pass Call.Allow: a refused requested group is a
// NotAllowedError, a refused config fallback is skipped, and a request's
// own list naming a refused group is a NotAllowedError.
func TestAllow(t *testing.T) {
	second, third := answers(`{}`), answers(`{}`)
	r, _ := newTestRouter(t, fallbackGroups, map[string]providers.Provider{"main": failing(dead), "second": second, "third": third})
	allow := func(g string) bool { return g != "second" }
	call := chat("second", false, "")
	call.Allow = allow
	_, err := r.Do(context.Background(), call)
	var na *NotAllowedError
	if !errors.As(err, &na) || na.Group != "second" || !errors.Is(err, ErrModelNotAllowed) || second.Calls() != 0 {
		t.Fatalf("disallowed group: %v", err)
	}
	call = chat("main", false, "")
	call.Allow = allow
	res, err := r.Do(context.Background(), call)
	if err != nil || res.Group != "third" || second.Calls() != 0 {
		t.Fatalf("config fallback: %v %v, second called %d times", res, err, second.Calls())
	}
	call = chat("main", false, `,"models":["second","third"]`)
	call.Allow = allow
	if _, err = r.Do(context.Background(), call); !errors.As(err, &na) || na.Group != "second" || second.Calls() != 0 {
		t.Fatalf("request list naming a refused group: %v", err)
	}
}

// An unknown model names only the groups the caller may use: a restricted
// key is not told which others exist.
func TestUnknownGroupListsAllowedOnly(t *testing.T) {
	r, _ := newTestRouter(t, fallbackGroups, map[string]providers.Provider{"main": answers(`{}`)})
	allow := func(g string) bool { return g == "main" || g == "third" }
	tests := []struct {
		name  string
		call  *Call
		allow func(string) bool
		model string
		want  string
	}{
		{"restricted key", chat("gpt-9", false, ""), allow, "gpt-9", "main,third"},
		{"restricted key, request list", chat("main", false, `,"models":["gpt-9"]`), allow, "gpt-9", "main,third"},
		{"open", chat("gpt-9", false, ""), nil, "gpt-9", "long,main,safe,second,small,third"},
		{"nothing allowed", chat("gpt-9", false, ""), func(string) bool { return false }, "gpt-9", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call.Allow = tt.allow
			_, err := r.Do(context.Background(), tt.call)
			var ug *UnknownGroupError
			if !errors.As(err, &ug) || ug.Model != tt.model {
				t.Fatalf("err %v, want an unknown group %q", err, tt.model)
			}
			if got := strings.Join(ug.Available, ","); got != tt.want {
				t.Fatalf("available %q, want %q", got, tt.want)
			}
		})
	}
}

// With its own estimate over every deployment's max_input_tokens and no
// fallback, the request fails as the upstream would, without a call.
func TestContextWindowWithoutFallback(t *testing.T) {
	small := answers(`{}`)
	r, _ := newTestRouter(t, `
model_list:
  - {model_name: small, params: {model: openai/small, api_base: "http://x"}, model_info: {max_input_tokens: 10}}
`, map[string]providers.Provider{"small": small})
	call := chat("small", false, "")
	call.Body = []byte(`{"model":"small","messages":[{"role":"user","content":"` + strings.Repeat("word ", 50) + `"}]}`)
	_, err := r.Do(context.Background(), call)
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 400 || ue.Code != "context_length_exceeded" || small.Calls() != 0 {
		t.Fatalf("err %v, calls %d", err, small.Calls())
	}
}

// An attempt that fails after its upstream did part of the work (a
// Gemini embeddings batch went through before the next failed) is billed
// by the upstream: when a retry or a fallback follows, what it spent is
// in Result.Abandoned at its deployment's price; the failure that ends
// the request keeps it in its error, for the server to bill, and not in
// Abandoned too.
func TestSpentAttemptsAreCounted(t *testing.T) {
	const cfg = `
model_list:
  - {model_name: main, params: {model: openai/main, api_base: "http://x"}, model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0}}
  - {model_name: second, params: {model: openai/second, api_base: "http://x"}, model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0}}
router_settings: {num_retries: 1, allowed_fails: 100, fallbacks: [{main: [second]}]}
`
	spent := func(n int) error {
		return &providers.SpentError{Err: upstream(503, 0), Usage: providers.Usage{PromptTokens: n}}
	}
	// failsFirst fails its first k calls with spent(n), then answers.
	failsFirst := func(k, n int) *fake {
		return &fake{do: func(_ context.Context, call int, _ *providers.Request) (*providers.Response, error) {
			if call <= k {
				return nil, spent(n)
			}
			return &providers.Response{Body: []byte(`{}`)}, nil
		}}
	}
	for _, tt := range []struct {
		name          string
		main, second  *fake
		wantAbandoned float64
		wantSpent     int // in the error that ends the request; 0: it succeeds
	}{
		{"retry answers", failsFirst(1, 1000), answers(`{}`), 1000 * 0.000001, 0},
		{"fallback answers", failsFirst(2, 1000), answers(`{}`), 2 * 1000 * 0.000001, 0},
		{"everything fails", failsFirst(2, 1000), failsFirst(2, 500), 2*1000*0.000001 + 500*0.00001, 500},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestRouter(t, cfg, map[string]providers.Provider{"main": tt.main, "second": tt.second})
			res, err := r.Do(context.Background(), chat("main", false, ""))
			if (err != nil) != (tt.wantSpent > 0) || providers.Spent(err).PromptTokens != tt.wantSpent {
				t.Fatalf("err = %v (spent %+v), want spent %d", err, providers.Spent(err), tt.wantSpent)
			}
			if res == nil || math.Abs(res.Abandoned-tt.wantAbandoned) > 1e-12 {
				t.Fatalf("abandoned %+v, want %g USD", res, tt.wantAbandoned)
			}
		})
	}
}
