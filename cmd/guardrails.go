package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/guardrail"
)

// NewCmdGuardrails builds `lumen guardrails`.
func NewCmdGuardrails(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guardrails",
		Short: "List the config's guardrails, or try them on a text",
		Long: `List the config's guardrails, or try them on a text without starting the
server: the text is checked as a request's message (or, with --answer, as an
answer) by every default_on guardrail and those named with --guardrail, and
the result is printed: the text as the upstream (or the client) would get
it, or what blocked it (exit status 2), and every rule that matched.
Moderation guardrails ask a model, so they are not run here.`,
	}
	cmd.AddCommand(newCmdGuardrailsList(f), newCmdGuardrailsTest(f))
	return cmd
}

func newCmdGuardrailsList(f *Factory) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the config's guardrails",
		Example: `  lumen guardrails list --config config.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, _, err := loadConfig(newViper(cmd.Flags()), f)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(f.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tMODE\tDEFAULT ON\tCHECKS")
			for _, g := range cfg.Guardrails {
				var checks []string
				for _, p := range g.Params.Patterns {
					name := p.Name
					if p.Type == "regex" {
						name = "regex " + p.Label
					}
					checks = append(checks, strings.TrimSpace(name)+":"+action(p.Action))
				}
				for _, w := range g.Params.BlockedWords {
					checks = append(checks, fmt.Sprintf("word %q:%s", w.Keyword, action(w.Action)))
				}
				if g.Params.Model != "" {
					checks = append(checks, "model "+g.Params.Model)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", g.Name, g.Params.Guardrail, strings.Join(g.Params.Mode, ","), g.Params.DefaultOn, strings.Join(checks, ", "))
			}
			return tw.Flush()
		},
	}
	configFlag(cmd.Flags(), &path)
	return cmd
}

// action is a config action as guardrails list shows it: block or mask.
func action(s string) string {
	a, _ := guardrail.ParseAction(s) // the config was validated
	return a.String()
}

func newCmdGuardrailsTest(f *Factory) *cobra.Command {
	var path string
	var named []string
	var answer bool
	cmd := &cobra.Command{
		Use:   "test [TEXT]",
		Short: "Check a text with the config's guardrails (TEXT or stdin)",
		Example: `  lumen guardrails test --config config.yaml "mail me at jane@example.com"
  lumen guardrails test --guardrail pii --answer < answer.txt`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, _, err := loadConfig(newViper(cmd.Flags()), f)
			if err != nil {
				return err
			}
			text := ""
			if len(args) == 1 {
				text = args[0]
			} else {
				b, err := io.ReadAll(f.In)
				if err != nil {
					return fmt.Errorf("reading the text: %w", err)
				}
				text = string(b)
			}
			set, err := guardrail.NewSet(cfg.Guardrails)
			if err != nil {
				return err
			}
			guards, err := set.Select(named)
			if err != nil {
				return err
			}
			return guardrailsTest(f, guards, text, answer)
		},
	}
	configFlag(cmd.Flags(), &path)
	cmd.Flags().StringSliceVar(&named, "guardrail", nil, "also run this guardrail (repeat, or comma-separate); default_on ones always run")
	cmd.Flags().BoolVar(&answer, "answer", false, "check the text as an answer (post_call) instead of a request (pre_call)")
	return cmd
}

// errBlocked ends a test whose text a guardrail blocked: exit status 2
// (a bad config or flag is 1).
var errBlocked = &exitError{code: 2, err: errors.New("a guardrail blocked the text")}

func guardrailsTest(f *Factory, guards []*guardrail.Guard, text string, answer bool) error {
	q, err := json.Marshal(text)
	if err != nil {
		return fmt.Errorf("encoding the text: %w", err)
	}
	body, path := []byte(`{"messages":[{"role":"user","content":`+string(q)+`}]}`), "messages.0.content"
	check, stage := guardrail.Input, "pre_call"
	if answer {
		body, path = []byte(`{"choices":[{"index":0,"message":{"role":"assistant","content":`+string(q)+`}}]}`), "choices.0.message.content"
		check, stage = guardrail.Output, "post_call"
	}
	var names []string
	for _, g := range guards {
		if (answer && g.Output()) || (!answer && g.Input()) {
			names = append(names, g.Name)
		}
	}
	if len(names) == 0 {
		fmt.Fprintf(f.Out, "no %s guardrail runs on this text (name one with --guardrail)\n", stage)
		return nil
	}
	out, hits, err := check(guards, body)
	fmt.Fprintf(f.Out, "guardrails: %s\n", strings.Join(names, ", "))
	for _, h := range hits {
		fmt.Fprintf(f.Out, "match: %s/%s (%s)\n", h.Guard, h.Rule, h.Action)
	}
	var be *guardrail.BlockedError
	if errors.As(err, &be) {
		fmt.Fprintf(f.Out, "blocked: %s\n", be.Error())
		return errBlocked
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(f.Out, "text: %s\n", gjson.GetBytes(out, path).Str)
	return nil
}
