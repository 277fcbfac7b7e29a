// Package cmd is Lumen's command line: cobra commands, with flags, LUMEN_*
// environment variables and the config file bound through viper here and
// nowhere else.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/lumengw/lumen/cmd.Version=v1.2.3".
var Version = "dev"

// Factory carries what every command shares.
type Factory struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// DefaultConfig is the embedded config.example.yaml, served when no
	// --config is given.
	DefaultConfig []byte
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Main runs the lumen command line and returns the process exit code. It
// is the only place errors become exit codes and messages.
func Main(defaultConfig []byte) int {
	f := &Factory{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, DefaultConfig: defaultConfig}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewCmdRoot(f)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(f.ErrOut, "lumen:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// NewCmdRoot builds the lumen command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "lumen",
		Short: "Lumen is a self-hosted LLM gateway with an OpenAI-compatible API",
		Long: `Lumen is a self-hosted LLM gateway: one binary that serves an
OpenAI-compatible API (and Anthropic's Messages API) on localhost and routes
each request to the providers in your config (OpenAI and every
OpenAI-compatible server, Azure, Ollama, vLLM, Anthropic, Gemini, Bedrock,
and an in-process mock), with pass-through streaming, retries, fallbacks,
mid-stream failover, model "auto", a response cache, virtual keys with
budgets and rate limits, a spend ledger, an audit chain, metrics and a
dashboard.

Configuration is a LiteLLM-style YAML file (see config.example.yaml).
Flags override LUMEN_* environment variables, which override the file.`,
		Example: `  # run on the embedded example config (a mock model named "demo")
  lumen serve

  # run your own config, on all interfaces
  lumen serve --config config.yaml --host 0.0.0.0

  # check a config without starting
  lumen config validate --config config.yaml

  # try the config's guardrails on a text
  lumen guardrails test --guardrail pii "card 4111 1111 1111 1111"`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(f.In)
	root.SetOut(f.Out)
	root.SetErr(f.ErrOut)
	root.AddCommand(
		NewCmdServe(f, nil),
		NewCmdConfig(f),
		NewCmdModels(f, nil),
		NewCmdRoute(f),
		NewCmdGuardrails(f),
		NewCmdKeys(f),
		NewCmdSpend(f),
		NewCmdLedger(f),
		NewCmdAudit(f),
		NewCmdVersion(f),
	)
	return root
}
