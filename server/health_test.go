package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/router"
)

// healthConfig has a group of two deployments, one always failing, and a
// group only the operator's keys may use.
const healthConfig = `model_list:
  - {model_name: demo, params: {model: mock/demo}}
  - {model_name: demo, params: {model: mock/demo-broken, mock_failure_rate: 1}}
  - {model_name: internal, params: {model: mock/internal-only}}
router_settings: {allowed_fails: 1, num_retries: 0}
`

// TestHealthShowsAKeyOnlyItsGroups: /health gives the operator (the master
// key; anyone but a virtual key on an open gateway) every deployment's
// state, and a virtual key only the groups it may use, each as one status.
func TestHealthShowsAKeyOnlyItsGroups(t *testing.T) {
	for _, master := range []string{testMaster, ""} {
		name := "master key"
		if master == "" {
			name = "open gateway"
		}
		t.Run(name, func(t *testing.T) {
			yaml := healthConfig
			if master != "" {
				yaml += "general_settings: {master_key: " + master + "}\n"
			}
			cfg, r := routed(t, yaml)
			ctx := context.Background()
			db, err := ledger.Open(ctx, t.TempDir()+"/lumen.db")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			keys, err := ledger.NewKeyring(ctx, db, ledger.KeyringOptions{})
			if err != nil {
				t.Fatal(err)
			}
			restricted, _, err := keys.Create(ctx, ledger.KeySpec{Name: "app", Models: []string{"demo"}})
			if err != nil {
				t.Fatal(err)
			}
			unrestricted, _, err := keys.Create(ctx, ledger.KeySpec{Name: "all"})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(New(Options{Config: cfg, Router: r, Logger: zerolog.Nop(), Keys: keys, Version: "v-test"}))
			defer srv.Close()
			get := func(path, key, body string) (int, string) {
				t.Helper()
				method := http.MethodGet
				if body != "" {
					method = http.MethodPost
				}
				req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
				if key != "" {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			// Open the broken deployment's circuit: one failure does.
			for i := 0; i < 100 && r.Snapshot()[1].State != router.StateOpen; i++ {
				get("/v1/chat/completions", master, `{"model":"demo","messages":[{"role":"user","content":"x"}]}`)
			}
			if st := r.Snapshot()[1]; st.Model != "demo-broken" || st.State != router.StateOpen {
				t.Fatalf("the broken deployment is %+v, want its circuit open", st)
			}

			// The operator sees every deployment, as before.
			status, body := get("/health", master, "")
			if status != 200 || !strings.Contains(body, `"internal"`) || !strings.Contains(body, `"model":"demo-broken"`) ||
				!strings.Contains(body, `"in_flight"`) {
				t.Fatalf("the operator's /health: %d %s", status, body)
			}

			type group struct {
				Status      string `json:"status"`
				Deployments int    `json:"deployments"`
				Available   int    `json:"available"`
			}
			for _, tt := range []struct {
				name, key string
				want      map[string]group
			}{
				{"restricted key", restricted, map[string]group{
					"demo": {Status: "degraded", Deployments: 2, Available: 1}}},
				{"unrestricted key", unrestricted, map[string]group{
					"demo":     {Status: "degraded", Deployments: 2, Available: 1},
					"internal": {Status: "healthy", Deployments: 1, Available: 1}}},
			} {
				status, body := get("/health", tt.key, "")
				var got struct {
					Status      string           `json:"status"`
					Version     string           `json:"version"`
					ModelGroups map[string]group `json:"model_groups"`
				}
				if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
					t.Fatalf("%s: %d %s", tt.name, status, body)
				}
				if got.Status != "ok" || got.Version != "v-test" || len(got.ModelGroups) != len(tt.want) {
					t.Errorf("%s: %s", tt.name, body)
				}
				for g, want := range tt.want {
					if got.ModelGroups[g] != want {
						t.Errorf("%s: group %s is %+v, want %+v", tt.name, g, got.ModelGroups[g], want)
					}
				}
				// Nothing of the upstreams or of others' traffic.
				for _, not := range []string{"mock", "demo-broken", "in_flight", "requests_this_minute", "last_check"} {
					if strings.Contains(body, not) {
						t.Errorf("%s: /health shows %q: %s", tt.name, not, body)
					}
				}
			}

			if master != "" {
				if status, _ := get("/health", "", ""); status != http.StatusUnauthorized {
					t.Errorf("/health without a key: %d, want 401", status)
				}
			}
		})
	}
}
