package auto_test

import (
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/lumengw/lumen/router/auto"
	"github.com/lumengw/lumen/router/auto/training"
)

// trainPath is shared/routing/train.jsonl beside the repository root.
var trainPath = filepath.Join("..", "..", "..", "shared", "routing", "train.jsonl")

// TestShippedWeightsBeatDomainOnly checks the embedded weights on the slice
// of the training file they were not trained on (training.RegressionSlice)
// against the domain-only baseline: each model's mean success on the
// predicted domain, measured on the rows the weights were trained on.
func TestShippedWeightsBeatDomainOnly(t *testing.T) {
	if _, err := os.Stat(trainPath); err != nil {
		t.Skipf("training data not found at %s (shared/ must sit beside the clone); skipping the shipped-weights regression test", trainPath)
	}
	rows, err := training.Load(trainPath)
	if err != nil {
		t.Fatal(err)
	}
	s := auto.Default()
	type key struct{ model, domain string }
	sum, n := map[key]float64{}, map[key]float64{}
	msum, mn := map[string]float64{}, map[string]float64{}
	var slice []training.Row
	var sliceDomains []string
	out := make([]float64, 1)
	for _, r := range rows {
		d := s.Score(auto.Prompt{User: r.Prompt}, nil, out).Domain
		if training.RegressionSlice(r.ID) {
			slice = append(slice, r)
			sliceDomains = append(sliceDomains, d)
			continue
		}
		for m, v := range r.Scores {
			sum[key{m, d}] += v
			n[key{m, d}]++
			msum[m] += v
			mn[m]++
		}
	}
	if len(slice) < 500 {
		t.Fatalf("regression slice has %d rows; the split rule changed?", len(slice))
	}
	domainOnly := func(m, d string) float64 {
		base := msum[m] / mn[m]
		return (sum[key{m, d}] + 5*base) / (n[key{m, d}] + 5)
	}
	var llRouter, llDomain, pairs float64
	// Two-model routing on the routellm rows of the slice.
	const strong, weak = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
	var ws, ss, gRouter, gDomain []float64
	for i, r := range slice {
		models := make([]string, 0, len(r.Scores))
		for m := range r.Scores {
			models = append(models, m)
		}
		sort.Strings(models)
		ps := make([]float64, len(models))
		s.Score(auto.Prompt{User: r.Prompt}, models, ps)
		pr := map[string]float64{}
		for j, m := range models {
			y := r.Scores[m]
			pd := domainOnly(m, sliceDomains[i])
			llRouter += logLoss(y, ps[j])
			llDomain += logLoss(y, pd)
			pairs++
			pr[m] = ps[j]
		}
		if r.Source == "routellm" && strings.HasPrefix(r.Task, "mmlu-") {
			ss = append(ss, r.Scores[strong])
			ws = append(ws, r.Scores[weak])
			gRouter = append(gRouter, pr[strong]-pr[weak])
			gDomain = append(gDomain, domainOnly(strong, sliceDomains[i])-domainOnly(weak, sliceDomains[i]))
		}
	}
	llRouter /= pairs
	llDomain /= pairs
	aRouter := training.PairCurve(ws, ss, gRouter).APGR()
	aDomain := training.PairCurve(ws, ss, gDomain).APGR()
	t.Logf("slice: %d rows, %d outcomes; log-loss router %.4f vs domain-only %.4f; routellm MMLU APGR router %.3f vs domain-only %.3f (%d rows)",
		len(slice), int(pairs), llRouter, llDomain, aRouter, aDomain, len(ss))
	if llRouter >= llDomain {
		t.Errorf("shipped weights' log-loss %.4f does not beat the domain-only baseline's %.4f", llRouter, llDomain)
	}
	if aRouter <= aDomain {
		t.Errorf("shipped weights' MMLU APGR %.3f does not beat the domain-only baseline's %.3f", aRouter, aDomain)
	}
}

func logLoss(y, p float64) float64 {
	p = math.Max(1e-6, math.Min(1-1e-6, p))
	return -(y*math.Log(p) + (1-y)*math.Log(1-p))
}
