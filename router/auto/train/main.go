// Command train fits the auto router's scorer and writes the weights that
// router/auto embeds, or evaluates it with leave-task-out splits.
//
//	go run ./router/auto/train --data ../shared/routing/train.jsonl --out router/auto/weights.bin
//	go run ./router/auto/train --data ../shared/routing/train.jsonl --eval --prices ../shared/routing/model_prices.json
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lumengw/lumen/router/auto/training"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "train:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	data := fs.String("data", "../shared/routing/train.jsonl", "routing outcomes (JSON lines)")
	out := fs.String("out", "router/auto/weights.bin", "where to write the weights")
	eval := fs.Bool("eval", false, "evaluate with leave-task-out folds instead of writing weights")
	prices := fs.String("prices", "", "model_prices.json for the eval's priced sources (default: beside --data)")
	report := fs.String("report", "", "also write the eval report (markdown) to this file")
	seeds := fs.Int("seeds", 0, "with --eval: fits per split (seeds --seed, --seed+1, …; default 3); figures are their mean and range")
	var cfg training.Config
	fs.IntVar(&cfg.BucketBits, "bucket-bits", 0, "log2 of hashed rows (default 15)")
	fs.IntVar(&cfg.K, "k", 0, "prompt embedding width for the per-model residual (default 4, -1 for none)")
	fs.IntVar(&cfg.Epochs, "epochs", 0, "epochs (default 2)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed (default 1)")
	fs.Float64Var(&cfg.LR, "lr", 0, "AdaGrad step for prompt weights (default 0.05)")
	fs.Float64Var(&cfg.L2, "l2", 0, "weight decay of prompt weights (default 1e-5)")
	fs.Float64Var(&cfg.ModelLR, "model-lr", 0, "AdaGrad step for per-model parameters (default 0.05)")
	fs.BoolVar(&cfg.SharedAbility, "shared-ability", false, "fit per-domain abilities as the model's overall ability plus a shrunk deviation")
	fs.Float64Var(&cfg.DomainShrink, "domain-shrink", 0, "with --shared-ability: weight decay pulling per-domain abilities to the overall one (default 1e-3)")
	fs.Float64Var(&cfg.ResidualL2, "residual-l2", 0, "weight decay of the per-model residual weights (default 1e-4)")
	fs.Float64Var(&cfg.ResidualTasks, "residual-tasks", 0, "shrink a model's residual by n/(n+c), n its task count (c; 0 = none)")
	fs.Float64Var(&cfg.ResidualDropout, "residual-dropout", 0, "share of training examples fit without the residual u·z (0 = none)")
	fs.Float64Var(&cfg.ResidualInit, "residual-init", 0, "standard deviation of the initial per-model residual weights (default 0.3)")
	fs.Float64Var(&cfg.TaskCentre, "task-centre", 0, "fit the residual on task-centred z and pull task means of z to zero with this weight (0 = off)")
	fs.IntVar(&cfg.TaskDims, "task-dims", 0, "task-identity component: sketch width of the task centroids (power of two; 0 = none)")
	fs.Float64Var(&cfg.TaskShrink, "task-shrink", 0, "shrink of a task's model offsets towards the scorer's mean, c in n/(n+c) (default 10)")
	fs.StringVar(&cfg.TaskObjective, "task-objective", "", "what the task blend's shape is fitted to: logloss (default) or gain (squared error of pairwise predicted gains)")
	fs.BoolVar(&cfg.TaskMargin, "task-margin", false, "gate the task blend on the nearest task's lead over the second nearest (default: on its similarity)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Log = os.Stderr
	if *eval {
		p := *prices
		if p == "" {
			p = dirOf(*data) + "model_prices.json"
		}
		pr, err := training.LoadPrices(p)
		if err != nil {
			return err
		}
		w := os.Stdout
		if *report != "" {
			f, err := os.Create(*report)
			if err != nil {
				return fmt.Errorf("creating report: %w", err)
			}
			defer f.Close()
			w = f
		}
		return training.RunEval(*data, training.EvalConfig{Fit: cfg, Seeds: *seeds, Prices: pr, Log: os.Stderr, Out: w})
	}
	return training.RunTrain(*data, *out, cfg)
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[:i+1]
		}
	}
	return ""
}
