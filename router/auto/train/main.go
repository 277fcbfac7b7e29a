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
	training.FitFlags(fs, &cfg)
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
