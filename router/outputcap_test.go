package router

import (
	"context"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
)

func TestCapOutput(t *testing.T) {
	tests := []struct {
		name, body string
		limit      int
		want       map[string]int64 // path: value after; absent paths must stay absent
		same       bool             // the very same bytes come back
	}{
		{"over", `{"max_tokens":128000,"messages":[]}`, 16384, map[string]int64{"max_tokens": 16384}, false},
		{"under", `{"max_tokens":1000}`, 16384, map[string]int64{"max_tokens": 1000}, true},
		{"at", `{"max_tokens":16384}`, 16384, map[string]int64{"max_tokens": 16384}, true},
		{"completion field", `{"max_completion_tokens":32000}`, 8192, map[string]int64{"max_completion_tokens": 8192}, false},
		{"both", `{"max_tokens":32000,"max_completion_tokens":64000}`, 8192, map[string]int64{"max_tokens": 8192, "max_completion_tokens": 8192}, false},
		{"none", `{"messages":[{"role":"user","content":"max_tokens 99999"}]}`, 100, nil, true},
		{"no cap", `{"max_tokens":128000}`, 0, map[string]int64{"max_tokens": 128000}, true},
		{"thinking budget", `{"max_tokens":64000,"thinking":{"type":"enabled","budget_tokens":32000}}`, 8192,
			map[string]int64{"max_tokens": 8192, "thinking.budget_tokens": 8191}, false},
		{"thinking budget under", `{"max_tokens":64000,"thinking":{"type":"enabled","budget_tokens":4000}}`, 8192,
			map[string]int64{"max_tokens": 8192, "thinking.budget_tokens": 4000}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.body)
			out := capOutput(in, tt.limit)
			if string(in) != tt.body {
				t.Fatalf("the input was changed: %s", in)
			}
			if same := len(out) > 0 && &out[0] == &in[0] && len(out) == len(in); same != tt.same {
				t.Errorf("same bytes = %v, want %v (%s)", same, tt.same, out)
			}
			for path, v := range tt.want {
				if got := gjson.GetBytes(out, path); got.Int() != v {
					t.Errorf("%s = %s, want %d", path, got.Raw, v)
				}
			}
			if tt.want == nil && gjson.GetBytes(out, "max_tokens").Exists() {
				t.Errorf("max_tokens appeared: %s", out)
			}
		})
	}
}

// A deployment that declares model_info.max_output_tokens gets the limit
// lowered to it, in the OpenAI body and in an Anthropic client's native
// body alike; one without a cap gets the request as sent.
func TestDeploymentOutputCap(t *testing.T) {
	var native []string
	capped := answers(`{"id":"a"}`)
	capped.do = func(_ context.Context, _ int, req *providers.Request) (*providers.Response, error) {
		native = append(native, string(req.Native))
		return &providers.Response{Body: []byte(`{"id":"a"}`)}, nil
	}
	open := answers(`{"id":"b"}`)
	r, _ := newTestRouter(t, `
model_list:
  - {model_name: small, params: {model: openai/small, api_base: "http://a"}, model_info: {max_output_tokens: 16384}}
  - {model_name: big, params: {model: openai/big, api_base: "http://b"}}
`, map[string]providers.Provider{"small": capped, "big": open})

	call := chat("small", false, `,"max_tokens":128000`)
	call.Native = []byte(`{"model":"small","max_tokens":128000,"thinking":{"type":"enabled","budget_tokens":100000},"messages":[]}`)
	sent := string(call.Body)
	if _, err := r.Do(context.Background(), call); err != nil {
		t.Fatal(err)
	}
	if got := gjson.Get(capped.Body(0), "max_tokens").Int(); got != 16384 {
		t.Errorf("capped deployment got max_tokens %d, want 16384", got)
	}
	if got := gjson.Get(native[0], "max_tokens").Int(); got != 16384 {
		t.Errorf("native body max_tokens %d, want 16384", got)
	}
	if got := gjson.Get(native[0], "thinking.budget_tokens").Int(); got != 16383 {
		t.Errorf("native thinking budget %d, want 16383", got)
	}
	if string(call.Body) != sent {
		t.Error("the call's own body was changed")
	}

	if _, err := r.Do(context.Background(), chat("big", false, `,"max_tokens":128000`)); err != nil {
		t.Fatal(err)
	}
	if got := gjson.Get(open.Body(0), "max_tokens").Int(); got != 128000 {
		t.Errorf("a deployment without a cap got max_tokens %d, want the request's 128000", got)
	}
}
