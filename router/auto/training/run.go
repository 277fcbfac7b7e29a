package training

import (
	"fmt"
	"os"
)

// RunTrain fits on every row of the data file except the regression slice
// (RegressionSlice), which router/auto's test uses to check the shipped
// weights, and writes the encoded weights to out.
func RunTrain(data, out string, cfg Config) error {
	rows, err := Load(data)
	if err != nil {
		return err
	}
	var tr []Row
	for _, r := range rows {
		if !RegressionSlice(r.ID) {
			tr = append(tr, r)
		}
	}
	cfg = cfg.withDefaults()
	fmt.Fprintf(cfg.Log, "training on %d of %d rows (the other %d are the regression slice)\n", len(tr), len(rows), len(rows)-len(tr))
	w, err := Fit(tr, cfg)
	if err != nil {
		return err
	}
	b, err := w.MarshalBinary()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("writing weights: %w", err)
	}
	fmt.Fprintf(cfg.Log, "wrote %s (%d bytes)\n", out, len(b))
	return nil
}

// RunEval loads the data file and runs Evaluate.
func RunEval(data string, cfg EvalConfig) error {
	rows, err := Load(data)
	if err != nil {
		return err
	}
	return Evaluate(rows, cfg)
}
