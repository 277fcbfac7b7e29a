package cmd

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/lumengw/lumen/config"
)

func TestServeSettingPrecedence(t *testing.T) {
	file := t.TempDir() + "/c.yaml"
	os.WriteFile(file, []byte("model_list: [{model_name: m, params: {model: mock/m}}]\nserver: {port: 5001}\n"), 0o600)
	noPort := t.TempDir() + "/d.yaml"
	os.WriteFile(noPort, []byte("model_list: [{model_name: m, params: {model: mock/m}}]\n"), 0o600)
	tests := []struct {
		name string
		file string
		env  string
		args []string
		want int
	}{
		{"flag beats env and file", file, "5002", []string{"--port", "5003"}, 5003},
		{"env beats file", file, "5002", nil, 5002},
		{"file beats default", file, "", nil, 5001},
		{"default", noPort, "", nil, 4000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("LUMEN_PORT", tt.env)
			}
			var got *config.Config
			f := &Factory{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
			cmd := NewCmdServe(f, func(ctx context.Context, o *ServeOptions) error {
				cfg, _, _, err := loadConfig(o.v, o.f)
				if err != nil {
					return err
				}
				got = cfg
				return override(o.v, cfg)
			})
			cmd.SetArgs(append([]string{"--config", tt.file}, tt.args...))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if got.Server.Port != tt.want {
				t.Fatalf("port = %d, want %d", got.Server.Port, tt.want)
			}
		})
	}
}

func TestConfigValidateCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	f := &Factory{Out: &out, ErrOut: &errOut}
	root := NewCmdRoot(f)
	root.SetArgs([]string{"config", "validate", "--config", "../config/testdata/bad_types.bad.yaml"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "model_list[0].litellm_params.timeout: invalid duration") ||
		!strings.Contains(err.Error(), "model_list[0].litellm_params.rpm:") {
		t.Fatalf("validate error = %v", err)
	}
	out.Reset()
	root = NewCmdRoot(f)
	root.SetArgs([]string{"config", "validate", "--config", "../config.example.yaml"})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "OK (5 model groups, 5 deployments)") {
		t.Fatalf("example config: %v %q", err, out.String())
	}
	// An auto candidate the ability table does not know is valid, with a
	// warning naming it.
	path := t.TempDir() + "/auto.yaml"
	yaml := "model_list:\n  - model_name: mini\n    litellm_params: {model: mock/gpt-4o-mini}\n" +
		"  - model_name: house\n    litellm_params: {model: mock/house}\nrouter_settings:\n  auto: {candidates: [mini, house]}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	root = NewCmdRoot(f)
	root.SetArgs([]string{"config", "validate", "--config", path})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "OK (2 model groups, 2 deployments)") ||
		!strings.Contains(errOut.String(), `warning: auto route "auto": no known ability for house: scored at the default quality 0.70; set model_info.quality (0..1)`) {
		t.Fatalf("auto candidate without an ability: %v\nout %q\nerr %q", err, out.String(), errOut.String())
	}
	// A paid provider's model that no price reaches is valid, with a
	// warning that budgets cannot limit it.
	if err := os.WriteFile(path, []byte("model_list:\n  - model_name: claude\n    litellm_params: {model: anthropic/claude-opus-9, api_key: k}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	root = NewCmdRoot(f)
	root.SetArgs([]string{"config", "validate", "--config", path})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "OK (1 model group, 1 deployment)") ||
		!strings.Contains(errOut.String(), `warning: deployment "claude/0" (anthropic/claude-opus-9): no known price, so its calls cost 0 in the ledger and budgets do not limit them`) {
		t.Fatalf("unpriced deployment: %v\nout %q\nerr %q", err, out.String(), errOut.String())
	}
}

func TestEveryCommandHasHelpAndExample(t *testing.T) {
	root := NewCmdRoot(&Factory{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	for _, c := range root.Commands() {
		cmds := append(c.Commands(), c)
		for _, sc := range cmds {
			if sc.Short == "" {
				t.Errorf("%s has no Short help", sc.CommandPath())
			}
			if sc.Runnable() && sc.Example == "" && sc.Name() != "help" && sc.Name() != "completion" {
				t.Errorf("%s has no Example", sc.CommandPath())
			}
		}
	}
}

// A store that cannot be opened stops serve with an error naming it, not a
// panic.
func TestServeStoreFailsCleanly(t *testing.T) {
	missing := t.TempDir() + "/no/such/dir"
	for name, section := range map[string]string{
		"ledger path": "ledger: {path: " + missing + "/lumen.db}",
		"audit key":   "ledger: {path: " + t.TempDir() + "/lumen.db}\naudit: {signing_key: " + missing + "/audit.key}",
	} {
		t.Run(name, func(t *testing.T) {
			file := t.TempDir() + "/c.yaml"
			os.WriteFile(file, []byte("model_list: [{model_name: m, params: {model: mock/m}}]\n"+section+"\n"), 0o600)
			f := &Factory{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
			cmd := NewCmdServe(f, serveRun)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			cmd.SetArgs([]string{"--config", file, "--port", "0"})
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), "no/such/dir") {
				t.Fatalf("serve: %v", err)
			}
		})
	}
}

// TestConfigCommandsApplyEnv: config show prints, and config validate
// checks, the config serve would run with: LUMEN_* over the file.
func TestConfigCommandsApplyEnv(t *testing.T) {
	file := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(file, []byte("model_list: [{model_name: m, params: {model: mock/m}}]\nserver: {port: 5001}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LUMEN_PORT", "5055")
	t.Setenv("LUMEN_HOST", "0.0.0.0")
	t.Setenv("LUMEN_GRACE_PERIOD", "7s")
	var out bytes.Buffer
	root := NewCmdRoot(&Factory{Out: &out, ErrOut: &bytes.Buffer{}})
	root.SetArgs([]string{"config", "show", "--config", file})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if want := "server:\n  host: 0.0.0.0\n  port: 5055\n  grace_period: 7s\n"; !strings.Contains(out.String(), want) {
		t.Errorf("config show lacks %q:\n%s", want, out.String())
	}
	t.Setenv("LUMEN_LOG_LEVEL", "loud")
	root = NewCmdRoot(&Factory{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	root.SetArgs([]string{"config", "validate", "--config", file})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), `log.level: unknown level "loud"`) {
		t.Errorf("config validate with LUMEN_LOG_LEVEL=loud: %v", err)
	}
}

// TestEnvSettingsRead: a LUMEN_* variable reads as the file's setting does
// (a duration in seconds or Go's form), and one that does not read is an
// error naming it, never a zero port or grace period.
func TestEnvSettingsRead(t *testing.T) {
	file := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(file, []byte("model_list: [{model_name: m, params: {model: mock/m}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		env, value, want, err string
	}{
		{"LUMEN_GRACE_PERIOD", "60", "grace_period: 1m0s\n", ""},
		{"LUMEN_GRACE_PERIOD", "90s", "grace_period: 1m30s\n", ""},
		{"LUMEN_GRACE_PERIOD", "abc", "", `--grace-period / LUMEN_GRACE_PERIOD: invalid duration "abc"`},
		{"LUMEN_PORT", "4500", "port: 4500\n", ""},
		{"LUMEN_PORT", "abc", "", `--port / LUMEN_PORT: "abc" is not a port number`},
	} {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			var out bytes.Buffer
			root := NewCmdRoot(&Factory{Out: &out, ErrOut: &bytes.Buffer{}})
			root.SetArgs([]string{"config", "show", "--config", file})
			err := root.Execute()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !strings.Contains(out.String(), tt.want) {
				t.Fatalf("%v; config show lacks %q:\n%s", err, tt.want, out.String())
			}
		})
	}
}

// TestConfigShowRedactsURLCredentials: config show and models print every
// URL and connection string readable, with the passwords and secret
// query parameters they carry replaced.
func TestConfigShowRedactsURLCredentials(t *testing.T) {
	file := t.TempDir() + "/c.yaml"
	cfg := `model_list:
  - model_name: m
    params: {model: hosted_vllm/llama, api_base: "https://vllm:hunter2-api@vllm.internal:8000/v1", api_key: sk-hunter2-key}
general_settings:
  database_url: "postgres://lumen:hunter2-db@db:5432/lumen?sslpassword=hunter2-ssl"
ledger:
  postgres_url: "postgres://lumen@db2:5432/lumen?password=hunter2-pg&sslmode=require"
limits:
  redis_url: "redis://:hunter2-limits@redis:6379/0"
cache:
  type: redis
  redis_url: "redis://default:hunter2-cache@redis:6379/1"
tracing:
  otlp_endpoint: "https://tenant:hunter2-otlp@otel.example.com:4318"
`
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	root := NewCmdRoot(&Factory{Out: &out, ErrOut: &bytes.Buffer{}})
	root.SetArgs([]string{"config", "show", "--config", file})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	shown := out.String()
	for _, want := range []string{
		"api_base: https://vllm:xxxxx@vllm.internal:8000/v1\n",
		"database_url: postgres://lumen:xxxxx@db:5432/lumen?sslpassword=xxxxx\n",
		"postgres_url: postgres://lumen@db2:5432/lumen?password=xxxxx&sslmode=require\n",
		"redis_url: redis://:xxxxx@redis:6379/0\n",
		"redis_url: redis://default:xxxxx@redis:6379/1\n",
		"otlp_endpoint: https://tenant:xxxxx@otel.example.com:4318\n",
	} {
		if !strings.Contains(shown, want) {
			t.Errorf("config show lacks %q", want)
		}
	}
	if strings.Contains(shown, "hunter2") {
		t.Errorf("config show prints a secret:\n%s", shown)
	}

	out.Reset()
	root = NewCmdRoot(&Factory{Out: &out, ErrOut: &bytes.Buffer{}})
	root.SetArgs([]string{"models", "--config", file})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "https://vllm:xxxxx@vllm.internal:8000/v1") || strings.Contains(out.String(), "hunter2") {
		t.Errorf("models prints the api_base as:\n%s", out.String())
	}
}
