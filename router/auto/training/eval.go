package training

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lumengw/lumen/router/auto"
	"github.com/lumengw/lumen/tokens"
)

// EvalConfig controls Evaluate.
type EvalConfig struct {
	Fit Config
	// Folds is the number of leave-task-out folds (default 5).
	Folds int
	// Seeds is how many fits (seeds Fit.Seed, Fit.Seed+1, …) every split is
	// evaluated with; the report gives each figure's mean over them and,
	// for more than one, its range (default 3: single fits of this scorer
	// differ by several points from seed to seed, see EVAL.md).
	Seeds int
	// Prices maps a model to USD per million input/output tokens, for the
	// sources without per-prompt cost (model_prices.json).
	Prices map[string]Price
	// OutputTokens is the assumed answer length for priced sources
	// (default 256).
	OutputTokens int
	// Log receives progress; Out the markdown report.
	Log, Out io.Writer
}

// Price is a model's list price in USD per million tokens.
type Price struct {
	Input  float64 `json:"input_per_mtok"`
	Output float64 `json:"output_per_mtok"`
}

// LoadPrices reads model_prices.json.
func LoadPrices(path string) (map[string]Price, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading prices: %w", err)
	}
	var p map[string]Price
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("loading prices: %w", err)
	}
	return p, nil
}

// prediction is what every method says about one row: a predicted success
// per model of the row.
type prediction map[string]float64

// method names, in report order.
const (
	mRouter   = "router (this scorer)"
	mDomain   = "domain-only"
	mPrior    = "per-task prior"
	mOracle   = "oracle"
	mRandom   = "random"
	mCheap    = "always-cheap"
	mStrong   = "always-strong"
	mRandMix  = "random mix"
	mAlwBest  = "always-best"
	mAlwCheap = "always-cheapest"

	priorUnknown = "prior: task unseen"
)

// diagMethods are logged (summary lines), not reported: the per-task
// prior plus a·(the router's logit minus its mean over the task's test
// rows), which needs the true task. They measure whether the scorer ranks
// prompts within a task better than chance once the task's level is known.
// The last one, "diag recognised prior", ranks by the training mean of the
// task the scorer's task table recognises (Score.Task) instead of the true
// task: the per-task prior as far as recognising the task can reach it.
var diagMethods = []string{"diag prior+0.25·router", "diag prior+0.50·router", "diag prior+1.00·router", diagRecognised}

const diagRecognised = "diag recognised prior"

// Evaluate runs the leave-task-out and known-task evaluations and writes a
// markdown report to cfg.Out.
func Evaluate(rows []Row, cfg EvalConfig) error {
	if cfg.Folds == 0 {
		cfg.Folds = 5
	}
	if cfg.OutputTokens == 0 {
		cfg.OutputTokens = 256
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Seeds < 1 {
		cfg.Seeds = 3
	}
	start := time.Now()
	// Only the seed is defaulted here: Fit applies the other defaults (and
	// withDefaults is not idempotent for K < 0).
	fit := cfg.Fit
	if fit.Seed == 0 {
		fit.Seed = 1
	}
	var unseenRuns, knownRuns [][]map[string]prediction
	for s := 0; s < cfg.Seeds; s++ {
		c := cfg
		c.Fit = fit
		c.Fit.Seed = fit.Seed + uint64(s)
		fmt.Fprintf(cfg.Log, "seed %d\n", c.Fit.Seed)
		unseen, known, err := evaluateSeed(rows, c)
		if err != nil {
			return err
		}
		unseenRuns = append(unseenRuns, unseen)
		knownRuns = append(knownRuns, known)
	}

	w := cfg.Out
	if cfg.Seeds > 1 {
		fmt.Fprintf(w, "Every figure of a fitted method is the mean over %d fits (seeds %d–%d) and, in brackets, its range.\n\n", cfg.Seeds, fit.Seed, fit.Seed+uint64(cfg.Seeds)-1)
	}
	fmt.Fprintf(w, "## Leave-task-out (every task held out of training in one of %d folds)\n\n", cfg.Folds)
	writePairs(w, rows, unseenRuns, cfg.Log, "unseen")
	writeBudgets(w, rows, unseenRuns, cfg, "unseen")
	writeLogLoss(w, rows, unseenRuns, cfg.Log, "unseen")
	fmt.Fprintf(w, "## Known tasks (1 row in 5 of every task held out; the prior sees the task's other rows)\n\n")
	writePairs(w, rows, knownRuns, cfg.Log, "known")
	writeBudgets(w, rows, knownRuns, cfg, "known")
	writeLogLoss(w, rows, knownRuns, cfg.Log, "known")
	fmt.Fprintf(cfg.Log, "evaluation done in %v\n", time.Since(start).Round(time.Second))
	return nil
}

// evaluateSeed fits every split with cfg.Fit and returns the predictions
// for the held-out rows of the leave-task-out folds and the known-task split.
func evaluateSeed(rows []Row, cfg EvalConfig) (unseen, known []map[string]prediction, err error) {
	// Leave-task-out: every task is in exactly one test fold.
	unseen = make([]map[string]prediction, len(rows))
	for fold := 0; fold < cfg.Folds; fold++ {
		var train, test []int
		for i, r := range rows {
			if int(hash64("fold/"+r.Source+"/"+r.Task)%uint64(cfg.Folds)) == fold {
				test = append(test, i)
			} else {
				train = append(train, i)
			}
		}
		fmt.Fprintf(cfg.Log, "leave-task-out fold %d/%d: %d train, %d test rows\n", fold+1, cfg.Folds, len(train), len(test))
		if err := predictFold(rows, train, test, cfg, unseen); err != nil {
			return nil, nil, err
		}
	}
	// Known tasks: 1 row in 5 of every task is held out.
	known = make([]map[string]prediction, len(rows))
	var train, test []int
	for i, r := range rows {
		if hash64("known/"+r.ID)%5 == 0 {
			test = append(test, i)
		} else {
			train = append(train, i)
		}
	}
	fmt.Fprintf(cfg.Log, "known-task split: %d train, %d test rows\n", len(train), len(test))
	if err := predictFold(rows, train, test, cfg, known); err != nil {
		return nil, nil, err
	}
	return unseen, known, nil
}

// stat formats a figure measured once per seed: the value, or the mean and
// the range in brackets. scale multiplies (100 for percentages) and
// suffix follows each number.
func stat(v []float64, prec int, scale float64, suffix string) string {
	f := func(x float64) string { return fmt.Sprintf("%.*f%s", prec, x*scale, suffix) }
	if len(v) == 1 {
		return f(v[0])
	}
	lo, hi, sum := v[0], v[0], 0.0
	for _, x := range v {
		lo, hi, sum = min(lo, x), max(hi, x), sum+x
	}
	// Equal at the printed precision (sums over maps may differ in the
	// last bits from run to run): one number.
	if f(lo) == f(hi) {
		return f(sum / float64(len(v)))
	}
	return fmt.Sprintf("%s [%s–%s]", f(sum/float64(len(v))), f(lo), f(hi))
}

// predictFold fits on train and fills preds[i] for every test row.
func predictFold(rows []Row, train, test []int, cfg EvalConfig, preds []map[string]prediction) error {
	tr := make([]Row, len(train))
	for j, i := range train {
		tr[j] = rows[i]
	}
	w, err := Fit(tr, cfg.Fit)
	if err != nil {
		return err
	}
	s, err := auto.NewScorer(w)
	if err != nil {
		return err
	}
	// Per-task and per-source means (the prior), per-domain means (the
	// domain-only baseline).
	type acc struct{ s, n float64 }
	taskMean := map[string]map[string]*acc{}
	srcMean := map[string]map[string]*acc{}
	domMean := map[string]map[int]*acc{}
	add := func(m map[string]*acc, k string, v float64) {
		a := m[k]
		if a == nil {
			a = &acc{}
			m[k] = a
		}
		a.s += v
		a.n++
	}
	for _, r := range tr {
		tk := r.Source + "/" + r.Task
		if taskMean[tk] == nil {
			taskMean[tk] = map[string]*acc{}
		}
		if srcMean[r.Source] == nil {
			srcMean[r.Source] = map[string]*acc{}
		}
		for m, v := range r.Scores {
			add(taskMean[tk], m, v)
			add(srcMean[r.Source], m, v)
			if domMean[m] == nil {
				domMean[m] = map[int]*acc{}
			}
			a := domMean[m][DomainOf(r.Task)]
			if a == nil {
				a = &acc{}
				domMean[m][DomainOf(r.Task)] = a
			}
			a.s += v
			a.n++
		}
	}
	domIndex := map[string]int{}
	for i, d := range Domains {
		domIndex[d] = i
	}
	out := make([]float64, 16)
	recognised := map[string][2]int{} // per source: rows whose task is recognised, rows of a known task
	for _, i := range test {
		r := rows[i]
		names := sortedModels(r)
		if len(out) < len(names) {
			out = make([]float64, len(names))
		}
		sc := s.Score(auto.Prompt{User: r.Prompt, Turns: 1}, names, out)
		tk := r.Source + "/" + r.Task
		tm := taskMean[tk]
		if tm != nil && sc.Task != "" {
			c := recognised[r.Source]
			c[1]++
			if sc.Task == tk {
				c[0]++
			}
			recognised[r.Source] = c
		}
		pr := map[string]prediction{mRouter: {}, mDomain: {}, mPrior: {}, mOracle: {}, mRandom: {}}
		for j, m := range names {
			pr[mRouter][m] = out[j]
			pr[mOracle][m] = r.Scores[m]
			pr[mRandom][m] = 0
			// Domain-only: the model's mean on the predicted domain,
			// shrunk to its source mean.
			sm := srcMean[r.Source][m]
			base := 0.5
			if sm != nil {
				base = sm.s / sm.n
			}
			d := domMean[m][domIndex[sc.Domain]]
			if d != nil {
				pr[mDomain][m] = (d.s + 5*base) / (d.n + 5)
			} else {
				pr[mDomain][m] = base
			}
			if tm != nil && tm[m] != nil {
				pr[mPrior][m] = tm[m].s / tm[m].n
			} else {
				// An unseen task: the prior knows only the source mean,
				// which is the same for every prompt of the view (no
				// ordering), so two-model views treat it as ties.
				pr[mPrior][m] = base
				pr[priorUnknown] = prediction{}
			}
		}
		if rm := taskMean[sc.Task]; rm != nil && tm != nil {
			d := prediction{}
			for _, m := range names {
				if a := rm[m]; a != nil {
					d[m] = a.s / a.n
				}
			}
			pr[diagRecognised] = d
		}
		preds[i] = pr
	}
	for _, src := range slices.Sorted(maps.Keys(recognised)) {
		c := recognised[src]
		fmt.Fprintf(cfg.Log, "recognised task: %s %d of %d known-task test rows (%.1f%%)\n", src, c[0], c[1], 100*float64(c[0])/float64(c[1]))
	}
	// Diagnostic: the prior plus the router's deviation from its mean
	// logit over the task's test rows.
	lm := map[string]map[string]*acc{}
	lg := func(p float64) float64 { p = min(0.99, max(0.01, p)); return math.Log(p / (1 - p)) }
	for _, i := range test {
		r := rows[i]
		tk := r.Source + "/" + r.Task
		if lm[tk] == nil {
			lm[tk] = map[string]*acc{}
		}
		for m, p := range preds[i][mRouter] {
			add(lm[tk], m, lg(p))
		}
	}
	for _, i := range test {
		r := rows[i]
		tk := r.Source + "/" + r.Task
		tm := taskMean[tk]
		if tm == nil {
			continue
		}
		for di, a := range []float64{0.25, 0.5, 1} {
			k := diagMethods[di]
			d := prediction{}
			for m, p := range preds[i][mRouter] {
				if tm[m] == nil {
					continue
				}
				d[m] = sigmoid(lg(tm[m].s/tm[m].n) + a*(lg(p)-lm[tk][m].s/lm[tk][m].n))
			}
			preds[i][k] = d
		}
	}
	return nil
}

func sortedModels(r Row) []string {
	names := make([]string, 0, len(r.Scores))
	for m := range r.Scores {
		names = append(names, m)
	}
	sort.Strings(names)
	return names
}

// pairView is a strong/weak comparison on a subset of rows.
type pairView struct {
	name         string
	strong, weak string
	match        func(Row) bool
}

var pairViews = []pairView{
	{"routellm MMLU: gpt-4-1106-preview vs Mixtral-8x7B", "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1",
		func(r Row) bool { return r.Source == "routellm" && strings.HasPrefix(r.Task, "mmlu-") }},
	{"routellm GSM8K: gpt-4-1106-preview vs Mixtral-8x7B", "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1",
		func(r Row) bool { return r.Source == "routellm" && r.Task == "gsm8k" }},
	{"routerbench: gpt-4-1106-preview vs mixtral-8x7b-chat", "gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat",
		func(r Row) bool { return r.Source == "routerbench" }},
	{"llmrouter: llama-3.1-nemotron-51b vs gemma-2-9b-it", "llama-3.1-nemotron-51b-instruct", "gemma-2-9b-it",
		func(r Row) bool { return r.Source == "llmrouter" }},
}

func writePairs(w io.Writer, rows []Row, runs [][]map[string]prediction, log io.Writer, tag string) {
	preds := runs[0]
	fmt.Fprintf(w, "### Two-model routing (APGR; share of calls to the strong model needed for 50%% / 80%% of the gap)\n\n")
	fmt.Fprintf(w, "| view | rows | weak → strong quality | method | APGR | calls @50%% | calls @80%% |\n|---|---|---|---|---|---|---|\n")
	for _, v := range pairViews {
		var weak, strong []float64
		var idx []int
		for i, r := range rows {
			if preds[i] == nil || !v.match(r) {
				continue
			}
			s, ok1 := r.Scores[v.strong]
			wk, ok2 := r.Scores[v.weak]
			if !ok1 || !ok2 {
				continue
			}
			strong = append(strong, s)
			weak = append(weak, wk)
			idx = append(idx, i)
		}
		if len(strong) == 0 {
			continue
		}
		for _, m := range append([]string{mRouter, mDomain, mPrior, mRandom, mOracle}, diagMethods...) {
			if runs[0][idx[0]][m] == nil {
				continue
			}
			var apgr, c50, c80 []float64
			var c Curve
			for _, preds := range runs {
				scores := make([]float64, len(idx))
				for j, i := range idx {
					p := preds[i][m]
					scores[j] = p[v.strong] - p[v.weak]
					if _, unknown := preds[i][priorUnknown]; unknown && m == mPrior {
						scores[j] = 0
					}
				}
				c = PairCurve(weak, strong, scores)
				apgr = append(apgr, c.APGR())
				c50 = append(c50, c.CallsFor(0.5))
				c80 = append(c80, c.CallsFor(0.8))
			}
			if m == mRouter || m == mPrior || slices.Contains(diagMethods, m) {
				fmt.Fprintf(log, "summary %s %-50s %-22s APGR %s calls@80 %s\n", tag, v.name, m, stat(apgr, 3, 1, ""), stat(c80, 1, 100, "%"))
			}
			if m == mRouter {
				// The same ranking with each task's mean predicted gain
				// taken out: what the scorer's order is worth without the
				// order it puts between tasks.
				var within []float64
				for _, preds := range runs {
					sc := make([]float64, len(idx))
					mean := map[string][2]float64{}
					for j, i := range idx {
						p := preds[i][m]
						sc[j] = p[v.strong] - p[v.weak]
						a := mean[rows[i].Task]
						mean[rows[i].Task] = [2]float64{a[0] + sc[j], a[1] + 1}
					}
					for j, i := range idx {
						a := mean[rows[i].Task]
						sc[j] -= a[0] / a[1]
					}
					within = append(within, PairCurve(weak, strong, sc).APGR())
				}
				fmt.Fprintf(log, "summary %s %-50s %-22s APGR, task means removed %s\n", tag, v.name, m, stat(within, 3, 1, ""))
			}
			if slices.Contains(diagMethods, m) {
				continue // in the log only
			}
			fmt.Fprintf(w, "| %s | %d | %.3f → %.3f | %s | %s | %s | %s |\n", v.name, len(strong), c.QWeak, c.QStrong,
				m, stat(apgr, 3, 1, ""), stat(c50, 1, 100, "%"), stat(c80, 1, 100, "%"))
		}
	}
	fmt.Fprintln(w)
}

// budgetView is a multi-model source where routing spends a third of the
// best model's cost.
type budgetView struct {
	name   string
	source string
}

var budgetViews = []budgetView{
	{"routerbench (11 models, real per-prompt cost_usd)", "routerbench"},
	{"llmrouter (9 models, model_prices.json × estimated tokens)", "llmrouter"},
}

func writeBudgets(w io.Writer, rows []Row, runs [][]map[string]prediction, cfg EvalConfig, tag string) {
	preds := runs[0]
	fmt.Fprintf(w, "### Quality at one third of the best model's cost\n\n")
	fmt.Fprintf(w, "| view | rows | best model (quality, mean cost) | method | quality | %% of best | mean cost |\n|---|---|---|---|---|---|---|\n")
	for _, v := range budgetViews {
		// Models measured on every row of the view.
		var idx []int
		count := map[string]int{}
		for i, r := range rows {
			if preds[i] == nil || r.Source != v.source {
				continue
			}
			idx = append(idx, i)
			for m := range r.Scores {
				count[m]++
			}
		}
		if len(idx) == 0 {
			continue
		}
		var models []string
		for m, n := range count {
			if float64(n) >= 0.98*float64(len(idx)) {
				models = append(models, m)
			}
		}
		sort.Strings(models)
		var keep []int
		cost := [][]float64{}
		y := [][]float64{}
		for _, i := range idx {
			r := rows[i]
			cs := make([]float64, len(models))
			ok := true
			for j, m := range models {
				if _, has := r.Scores[m]; !has {
					ok = false
				}
				if r.Cost != nil {
					c, has := r.Cost[m]
					if !has {
						ok = false
					}
					cs[j] = c
				} else {
					p, has := cfg.Prices[m]
					if !has {
						ok = false
					}
					in := float64(tokens.Count(r.Prompt))
					cs[j] = (in*p.Input + float64(cfg.OutputTokens)*p.Output) / 1e6
				}
			}
			if !ok {
				continue
			}
			keep = append(keep, i)
			cost = append(cost, cs)
			ys := make([]float64, len(models))
			for j, m := range models {
				ys[j] = r.Scores[m]
			}
			y = append(y, ys)
		}
		if len(keep) == 0 {
			continue
		}
		n := float64(len(keep))
		qual := make([]float64, len(models))
		mc := make([]float64, len(models))
		for i := range keep {
			for j := range models {
				qual[j] += y[i][j] / n
				mc[j] += cost[i][j] / n
			}
		}
		best, cheap := 0, 0
		for j := range models {
			if qual[j] > qual[best] {
				best = j
			}
			if mc[j] < mc[cheap] {
				cheap = j
			}
		}
		budget := mc[best] / 3
		row := func(method string, q, c []float64) {
			rel := make([]float64, len(q))
			for i := range q {
				rel[i] = q[i] / qual[best]
			}
			fmt.Fprintf(w, "| %s | %d | %s (%.3f, $%.6f) | %s | %s | %s | $%s |\n", v.name, len(keep), models[best], qual[best], mc[best],
				method, stat(q, 3, 1, ""), stat(rel, 1, 100, "%"), stat(c, 6, 1, ""))
		}
		one := func(x float64) []float64 { return []float64{x} }
		row(mAlwBest, one(qual[best]), one(mc[best]))
		row(mAlwCheap, one(qual[cheap]), one(mc[cheap]))
		f := math.Max(0, math.Min(1, (budget-mc[cheap])/(mc[best]-mc[cheap])))
		row(mRandMix+" (best/cheapest)", one(qual[cheap]+f*(qual[best]-qual[cheap])), one(mc[cheap]+f*(mc[best]-mc[cheap])))
		for _, m := range []string{mRouter, mDomain, mPrior, mOracle} {
			var qs, cs []float64
			for _, preds := range runs {
				pred := make([][]float64, len(keep))
				for i, ri := range keep {
					pred[i] = make([]float64, len(models))
					for j, mm := range models {
						pred[i][j] = preds[ri][m][mm]
					}
				}
				q, c := budgetPick(pred, y, cost, budget)
				qs, cs = append(qs, q), append(cs, c)
			}
			if m == mRouter || m == mDomain {
				fmt.Fprintf(cfg.Log, "summary budget %s %-12s %-22s %s of best\n", tag, v.source, m, stat(qs, 1, 100/qual[best], "%"))
			}
			row(m+" at ≤⅓ cost", qs, cs)
		}
	}
	fmt.Fprintln(w)
}

// writeLogLoss reports the mean log-loss of each method's per-model
// predictions, per source.
func writeLogLoss(w io.Writer, rows []Row, runs [][]map[string]prediction, log io.Writer, tag string) {
	fmt.Fprintf(w, "### Calibration: mean log-loss of P(success) over every (prompt, model) outcome (lower is better)\n\n")
	fmt.Fprintf(w, "| source | outcomes | router (this scorer) | domain-only | per-task prior |\n|---|---|---|---|---|\n")
	for _, src := range []string{"routellm", "routerbench", "llmrouter"} {
		lls := map[string][]float64{}
		var n float64
		for _, preds := range runs {
			ll := map[string]float64{}
			n = 0
			for i, r := range rows {
				if preds[i] == nil || r.Source != src {
					continue
				}
				for m, y := range r.Scores {
					for _, meth := range []string{mRouter, mDomain, mPrior} {
						p := math.Max(1e-6, math.Min(1-1e-6, preds[i][meth][m]))
						ll[meth] -= y*math.Log(p) + (1-y)*math.Log(1-p)
					}
					n++
				}
			}
			for _, meth := range []string{mRouter, mDomain, mPrior} {
				lls[meth] = append(lls[meth], ll[meth]/max(n, 1))
			}
		}
		if n == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", src, int(n), stat(lls[mRouter], 4, 1, ""), stat(lls[mDomain], 4, 1, ""), stat(lls[mPrior], 4, 1, ""))
		fmt.Fprintf(log, "summary %s logloss %-12s router %s domain %s prior %s\n", tag, src, stat(lls[mRouter], 4, 1, ""), stat(lls[mDomain], 4, 1, ""), stat(lls[mPrior], 4, 1, ""))
	}
	fmt.Fprintln(w)
}
