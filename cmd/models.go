package cmd

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers/openai"
)

// NewCmdModels builds `lumen models`.
func NewCmdModels(f *Factory, runF func(*config.Config) error) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "models",
		Short: "List the model groups and deployments Lumen would serve",
		Example: `  lumen models --config config.yaml
  lumen models            # the embedded example config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, _, err := loadConfig(newViper(cmd.Flags()), f)
			if err != nil {
				return err
			}
			if runF != nil {
				return runF(cfg)
			}
			return modelsRun(f, cfg)
		},
	}
	configFlag(cmd.Flags(), &path)
	return cmd
}

func modelsRun(f *Factory, cfg *config.Config) error {
	tw := tabwriter.NewWriter(f.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL GROUP\tDEPLOYMENT ID\tPROVIDER\tUPSTREAM MODEL\tAPI BASE")
	for _, m := range cfg.ModelList {
		if m.Auto != nil {
			fmt.Fprintf(tw, "%s\t-\tauto\t%v\t-\n", m.ModelName, m.Auto.Candidates)
			continue
		}
		p := m.Deployment()
		provider, model := config.SplitModel(p)
		base := p.APIBase.String() // its credentials redacted
		if base == "" {
			base = openai.DefaultBase[provider]
		}
		if base == "" {
			base = "(default)"
		}
		if provider == "mock" {
			base = "(in-process)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ModelName, m.ModelInfo.ID, provider, model, base)
	}
	return tw.Flush()
}
