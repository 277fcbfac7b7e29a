package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/router"
)

// NewCmdConfig builds `lumen config` and its verbs.
func NewCmdConfig(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check and show configuration",
	}
	cmd.AddCommand(newCmdConfigValidate(f), newCmdConfigShow(f))
	return cmd
}

func newCmdConfigValidate(f *Factory) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a config file and list every problem",
		Long: `Check a config file as lumen serve would, with the LUMEN_* variables
(LUMEN_HOST, LUMEN_PORT, LUMEN_LOG_LEVEL, …) over it: unknown keys, missing
fields, bad URLs, unknown providers and unset os.environ/ references are
listed, each naming its field, and the command exits 1. Settings Lumen
accepts but does not implement are printed as warnings.`,
		Example: `  lumen config validate --config config.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := newViper(cmd.Flags())
			cfg, source, warnings, err := loadConfig(v, f)
			for _, w := range warnings {
				fmt.Fprintf(f.ErrOut, "warning: %s\n", w)
			}
			if err == nil {
				err = override(v, cfg) // LUMEN_* variables, as serve applies them
			}
			if err != nil {
				return err
			}
			r, err := router.New(cfg, router.Build)
			if err != nil {
				return fmt.Errorf("building routes: %w", err)
			}
			for _, w := range r.Warnings() {
				fmt.Fprintf(f.ErrOut, "warning: %s\n", w)
			}
			deployments := 0
			groups := map[string]bool{}
			for _, m := range cfg.ModelList {
				groups[m.ModelName] = true
				if m.Deployment() != nil {
					deployments++
				}
			}
			fmt.Fprintf(f.Out, "%s: OK (%s, %s)\n", source, plural(len(groups), "model group"), plural(deployments, "deployment"))
			return nil
		},
	}
	configFlag(cmd.Flags(), &path)
	return cmd
}

func newCmdConfigShow(f *Factory) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration, defaults applied and secrets redacted",
		Long: `Print the configuration lumen serve would run with: the file's, defaults
applied, the LUMEN_* variables (LUMEN_HOST, LUMEN_PORT, LUMEN_LOG_LEVEL,
LUMEN_LOG_FORMAT, LUMEN_GRACE_PERIOD) over it, relative paths resolved and
secrets redacted: keys as [redacted]; URLs and connection strings (api_base,
tracing.otlp_endpoint, the Redis and Postgres URLs) readable, with their
passwords and secret query parameters as xxxxx. Durations are Go durations
("30s").`,
		Example: `  lumen config show --config config.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := newViper(cmd.Flags())
			cfg, _, _, err := loadConfig(v, f)
			if err == nil {
				err = override(v, cfg)
			}
			if err != nil {
				return err
			}
			out, err := config.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = f.Out.Write(out)
			return err
		},
	}
	configFlag(cmd.Flags(), &path)
	return cmd
}
