package cmd

import (
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lumengw/lumen/pricing"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/router/auto"
	"github.com/lumengw/lumen/router/auto/training"
)

// NewCmdRoute builds `lumen route`: the auto router's scorer from the
// command line.
func NewCmdRoute(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Score prompts, explain and train the auto router (model \"auto\")",
		Long: `Model "auto" scores each prompt in-process and sends it to the cheapest
candidate model group whose predicted quality clears the quality floor,
within the route's price ceiling and latency SLO. These commands show what
it predicts and retrain its weights.`,
	}
	cmd.AddCommand(NewCmdRouteScore(f, nil), NewCmdRouteExplain(f, nil), NewCmdRouteTrain(f, nil))
	return cmd
}

// RouteScoreOptions are the inputs of lumen route score.
type RouteScoreOptions struct {
	In          io.Reader
	Out, ErrOut io.Writer
	Candidates  []string
}

// NewCmdRouteScore builds `lumen route score`. runF replaces the work in
// tests.
func NewCmdRouteScore(f *Factory, runF func(*RouteScoreOptions) error) *cobra.Command {
	opts := &RouteScoreOptions{}
	cmd := &cobra.Command{
		Use:   "score",
		Short: "Score JSON-lines prompts from stdin with the embedded weights",
		Long: `Read JSON lines {"id": "...", "prompt": "..."} on stdin and write one JSON
line per input on stdout:

  {"id": "...", "difficulty": float, "domain": "...", "p_success": {"<model>": float, ...}}

difficulty is 0..1 (0.5 is a prompt of median difficulty); p_success is
each model's predicted probability of answering well. Without --candidates
the models are every model of the embedded ability table: those learned
from the training data under their exact names, then the public table.

Each line is written as soon as it is scored. A line that is not such an
object is reported on stderr with its line number and skipped; the other
lines are still scored, and the command then exits non-zero.`,
		Example: `  echo '{"id":"1","prompt":"What is 2+2?"}' | lumen route score
  lumen route score --candidates gpt-4o,gpt-4o-mini < prompts.jsonl > scores.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.In, opts.Out, opts.ErrOut = f.In, f.Out, f.ErrOut
			if runF != nil {
				return runF(opts)
			}
			return auto.RunScore(opts.In, opts.Out, opts.ErrOut, opts.Candidates)
		},
	}
	cmd.Flags().StringSliceVar(&opts.Candidates, "candidates", nil, "models to predict, comma-separated (default: every model of the ability table)")
	return cmd
}

// RouteExplainOptions are the inputs of lumen route explain.
type RouteExplainOptions struct {
	f          *Factory
	cmd        *cobra.Command
	Prompt     string
	Model      string
	Mode       string
	Candidates []string
}

// NewCmdRouteExplain builds `lumen route explain`. runF replaces the work
// in tests.
func NewCmdRouteExplain(f *Factory, runF func(*RouteExplainOptions) error) *cobra.Command {
	opts := &RouteExplainOptions{f: f}
	var path string
	cmd := &cobra.Command{
		Use:   "explain <prompt>",
		Short: "Show how model \"auto\" would route a prompt",
		Long: `Score the prompt and print the ranking of the candidates: each one's
predicted quality, expected cost for this prompt (the configured prices,
300 output tokens), observed latency, and why it was chosen or not.

The candidates are those of --model ("auto" or a named auto route) in the
config, with their prices and limits; or, with --candidates, the named
models of the ability table priced from the embedded price table. As in
the config, a model without a known price costs $+Inf: it ranks after
every priced candidate on cost and fails any price ceiling.`,
		Example: `  lumen route explain "Prove that sqrt(2) is irrational" --config config.yaml
  lumen route explain "hi" --config config.yaml --model auto-coding --mode best
  lumen route explain "What is the capital of France?" --candidates gpt-4o,gpt-4o-mini`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Prompt, opts.cmd = args[0], cmd
			if opts.Mode != "" {
				if _, err := auto.ParseMode(opts.Mode); err != nil {
					return err
				}
			}
			if strings.Contains(opts.Model, ":") {
				return fmt.Errorf("--model %q: give the mode with --mode", opts.Model)
			}
			if runF != nil {
				return runF(opts)
			}
			return routeExplainRun(opts)
		},
	}
	fs := cmd.Flags()
	configFlag(fs, &path)
	fs.StringVar(&opts.Model, "model", "auto", `"auto" or a named auto route of the config`)
	fs.StringVar(&opts.Mode, "mode", "", "floor, best, fast or smart (default: the route's)")
	fs.StringSliceVar(&opts.Candidates, "candidates", nil, "rank these models of the ability table instead of the config's")
	return cmd
}

func routeExplainRun(opts *RouteExplainOptions) error {
	var ex auto.Explanation
	if len(opts.Candidates) > 0 {
		mode, _ := auto.ParseMode(opts.Mode)
		cands := make([]auto.Candidate, len(opts.Candidates))
		for i, m := range opts.Candidates {
			// As for a configured group: an unknown price is +Inf, never free.
			cands[i] = auto.Candidate{Name: m, Model: m, InputPer1K: math.Inf(1), OutputPer1K: math.Inf(1)}
			if p, ok := pricing.Lookup("", m); ok {
				cands[i].InputPer1K, cands[i].OutputPer1K = p.Input*1000, p.Output*1000
			} else {
				fmt.Fprintf(opts.f.ErrOut, "lumen: no price known for %s; its cost counts as unknown ($+Inf): it ranks after every priced candidate on cost\n", m)
			}
		}
		ex = auto.Default().Explain(auto.Prompt{User: opts.Prompt, Turns: 1}, cands, auto.Tokens{}, auto.Constraints{}, mode)
	} else {
		cfg, _, _, err := loadConfig(newViper(opts.cmd.Flags()), opts.f)
		if err != nil {
			return err
		}
		r, err := router.New(cfg, router.Build)
		if err != nil {
			return fmt.Errorf("building routes: %w", err)
		}
		model := opts.Model
		if opts.Mode != "" {
			model += ":" + opts.Mode
		}
		if ex, err = r.ExplainAuto(model, opts.Prompt); err != nil {
			var ug *router.UnknownGroupError
			if errors.As(err, &ug) {
				return fmt.Errorf("%q is not an auto route in this config; auto routes: %s", opts.Model, strings.Join(ug.Available, ", "))
			}
			var nc *auto.NoCandidateError
			if errors.As(err, &nc) && len(nc.Exclusions) == 0 {
				return fmt.Errorf("%w; or rank models of the ability table without a config: --candidates gpt-4o,gpt-4o-mini", err)
			}
			return err
		}
	}
	return ex.Format(opts.f.Out)
}

// RouteTrainOptions are the inputs of lumen route train.
type RouteTrainOptions struct {
	Data, Out, Prices, Report string
	Eval                      bool
	Seeds                     int
	Fit                       training.Config
	Log, Stdout               io.Writer
}

// NewCmdRouteTrain builds `lumen route train`. runF replaces the work in
// tests.
func NewCmdRouteTrain(f *Factory, runF func(*RouteTrainOptions) error) *cobra.Command {
	opts := &RouteTrainOptions{}
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Fit the auto router's weights from routing outcomes, or evaluate them",
		Long: `Fit the scorer on a JSON-lines file of routing outcomes (prompt, task,
per-model scores; see ../shared/routing/README.md) and write the weights
that router/auto embeds (router/auto/weights.bin; rebuild Lumen to ship
them). Every row but a fixed 5% regression slice is used; the same seed
gives the same bytes. The fit includes the task classifier, whose blend is
tuned on 5 inner refits: about a minute on 2 cores (--task-dims -1 skips it).

With --eval nothing is written: leave-task-out folds report APGR, the calls
to the strong model needed for 50% and 80% of the quality gap, and quality
at a third of the best model's cost, against always-cheap, always-strong,
random, per-task prior and oracle baselines (about 10 minutes for 3 seeds).`,
		Example: `  lumen route train --data ../shared/routing/train.jsonl --out router/auto/weights.bin
  lumen route train --data ../shared/routing/train.jsonl --eval --report EVAL.md`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Data == "" {
				return errors.New("--data is required: the routing outcomes (JSON lines)")
			}
			if !opts.Eval && opts.Out == "" {
				return errors.New("--out is required: where to write the weights")
			}
			opts.Log, opts.Stdout = f.ErrOut, f.Out
			if runF != nil {
				return runF(opts)
			}
			return routeTrainRun(opts)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Data, "data", "", "routing outcomes, JSON lines (required)")
	fs.StringVar(&opts.Out, "out", "", "where to write the weights (required unless --eval)")
	fs.BoolVar(&opts.Eval, "eval", false, "evaluate with leave-task-out folds instead of writing weights")
	fs.StringVar(&opts.Prices, "prices", "", "model_prices.json for the eval (default: beside --data)")
	fs.StringVar(&opts.Report, "report", "", "with --eval, write the markdown report here instead of stdout")
	fs.IntVar(&opts.Seeds, "seeds", 0, "with --eval: fits per split (seeds --seed, --seed+1, …; default 3); figures are their mean and range")
	gofs := goflag.NewFlagSet("fit", goflag.ContinueOnError)
	training.FitFlags(gofs, &opts.Fit)
	fs.AddGoFlagSet(gofs)
	return cmd
}

func routeTrainRun(opts *RouteTrainOptions) error {
	opts.Fit.Log = opts.Log
	if !opts.Eval {
		return training.RunTrain(opts.Data, opts.Out, opts.Fit)
	}
	prices := opts.Prices
	if prices == "" {
		prices = opts.Data[:strings.LastIndexByte(opts.Data, '/')+1] + "model_prices.json"
	}
	pr, err := training.LoadPrices(prices)
	if err != nil {
		return err
	}
	cfg := training.EvalConfig{Fit: opts.Fit, Seeds: opts.Seeds, Prices: pr, Log: opts.Log, Out: opts.Stdout}
	if opts.Report == "" {
		return training.RunEval(opts.Data, cfg)
	}
	w, err := os.Create(opts.Report)
	if err != nil {
		return fmt.Errorf("creating the eval report: %w", err)
	}
	cfg.Out = w
	err = training.RunEval(opts.Data, cfg)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing the eval report: %w", cerr)
	}
	return err
}
