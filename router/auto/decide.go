package auto

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Mode selects how Decide picks among the candidates that qualify.
type Mode int

// The modes of model "auto" (auto:floor, auto:best, auto:fast, auto:smart).
const (
	// ModeFloor picks the cheapest candidate that clears the quality floor.
	ModeFloor Mode = iota
	// ModeBest picks the highest predicted quality.
	ModeBest
	// ModeFast picks the lowest observed latency that clears the floor.
	ModeFast
	// ModeSmart is ModeFloor with Thompson sampling over observed outcomes
	// (Bandit.Decide); without a bandit it behaves as ModeFloor.
	ModeSmart
)

var modeNames = []string{"floor", "best", "fast", "smart"}

// String returns the mode's config name.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "floor", "best", "fast" or "smart"; "" is floor.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return ModeFloor, nil
	}
	for i, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("parsing auto mode: unknown mode %q; use floor, best, fast or smart", s)
}

// DefaultQualityFloor is the floor used when Constraints.QualityFloor is 0.
const DefaultQualityFloor = 0.8

// Candidate is one model group the router may choose.
type Candidate struct {
	// Name is the model group name (what the router calls).
	Name string
	// Model is the model whose ability applies (the scorer's table name);
	// empty means Name.
	Model string
	// Provider names the upstream provider, for Constraints.Prefer.
	Provider string
	// PSuccess is the predicted success probability (Scorer.Score).
	PSuccess float64
	// InputPer1K and OutputPer1K are prices in USD per 1,000 tokens.
	InputPer1K, OutputPer1K float64
	// LatencyMS is the observed recent latency (e.g. p90) in
	// milliseconds; zero means unknown, which never breaks an SLO.
	LatencyMS float64
}

func (c *Candidate) model() string {
	if c.Model != "" {
		return c.Model
	}
	return c.Name
}

// Tokens is a request's expected token counts, used to price candidates.
type Tokens struct {
	In, Out int
}

// Constraints bound a decision. Zero values mean "no constraint", except
// QualityFloor, whose zero means DefaultQualityFloor.
type Constraints struct {
	// QualityFloor is the predicted success probability a candidate must
	// reach (0..1). When no eligible candidate reaches it — a hard prompt —
	// the floor becomes that share of the best candidate's prediction, so
	// a costlier model is chosen only when its expected gain over a cheaper
	// one exceeds the slack the floor allows, not because the cheap one may
	// fail (the expensive one likely fails too).
	QualityFloor float64
	// MaxCostPer1K excludes candidates whose blended price for this
	// request's token mix exceeds it (USD per 1,000 tokens).
	MaxCostPer1K float64
	// MaxLatencyMS excludes candidates whose observed latency exceeds it.
	MaxLatencyMS float64
	// Prefer lists providers or model group names to choose first among
	// those that clear the floor.
	Prefer []string
	// SuccessValueUSD, when set, is what one successful answer is worth:
	// floor mode then picks, among the candidates that clear the floor, the
	// one with the highest PSuccess·SuccessValueUSD − expected cost, so a
	// pricier candidate wins exactly when its expected gain pays for its
	// extra cost. Zero means plain cheapest.
	SuccessValueUSD float64
	// BestEffort makes Decide return the best excluded candidate (flagged
	// Decision.BestEffort) instead of an error when none qualifies.
	BestEffort bool
}

// Ranked is a candidate with what the decision computed for it.
type Ranked struct {
	Candidate
	// ExpectedCost is the USD this request is expected to cost.
	ExpectedCost float64
	// CostPer1K is the blended USD per 1,000 tokens for this request.
	CostPer1K float64
	// Gain is PSuccess minus that of the cheapest eligible candidate, and
	// ExtraCost the matching difference in expected cost.
	Gain, ExtraCost float64
	// Eligible is false when a constraint excluded the candidate (Excluded
	// says which); ClearsFloor tells whether it reached the floor.
	Eligible, ClearsFloor bool
	Excluded              string
	// Sampled is the Thompson sample (smart mode only).
	Sampled float64
	// Reason explains the candidate's place in the ranking.
	Reason string
}

// Decision is the outcome of Decide.
type Decision struct {
	// Choice is the chosen candidate.
	Choice Ranked
	// Ranking lists every candidate: eligible ones that clear the floor in
	// the mode's order (Choice first), then the rest.
	Ranking []Ranked
	Mode    Mode
	// Floor is the floor that was applied (possibly relaxed, see
	// Constraints.QualityFloor); Relaxed tells.
	Floor   float64
	Relaxed bool
	// BestEffort is true when nothing qualified and Constraints.BestEffort
	// chose the best excluded candidate.
	BestEffort bool
	// Reason is one line for x-lumen-route-reason.
	Reason string
}

// ErrNoCandidate is matched (errors.Is) by the error Decide returns when no
// candidate qualifies.
var ErrNoCandidate = errors.New("no auto candidate qualifies")

// Exclusion is one candidate and the constraint that excluded it.
type Exclusion struct {
	Candidate  string
	Constraint string // "max_cost_per_1k", "max_latency_ms"
	Detail     string
}

// NoCandidateError says which constraint excluded which candidate. BestEffort
// is the candidate that would be served under best_effort.
type NoCandidateError struct {
	Exclusions []Exclusion
	BestEffort *Ranked
}

// Error lists the exclusions.
func (e *NoCandidateError) Error() string {
	if len(e.Exclusions) == 0 {
		return "no auto candidate qualifies: no candidates configured"
	}
	var b strings.Builder
	b.WriteString("no auto candidate qualifies: ")
	for i, x := range e.Exclusions {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s excluded by %s (%s)", x.Candidate, x.Constraint, x.Detail)
	}
	if e.BestEffort != nil {
		fmt.Fprintf(&b, "; relax a constraint or enable best_effort (would serve %s)", e.BestEffort.Name)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNoCandidate) true.
func (e *NoCandidateError) Is(target error) bool { return target == ErrNoCandidate }

// Decide chooses among candidates. It is a pure function: the same input
// gives the same decision (ModeSmart without a bandit is ModeFloor).
func Decide(cands []Candidate, tok Tokens, c Constraints, mode Mode) (Decision, error) {
	return decide(cands, tok, c, mode, nil)
}

// sampleFunc draws a Thompson sample and posterior mean for a candidate.
type sampleFunc func(c *Candidate) (sample, mean float64)

func decide(cands []Candidate, tok Tokens, c Constraints, mode Mode, sample sampleFunc) (Decision, error) {
	floor := c.QualityFloor
	if floor <= 0 {
		floor = DefaultQualityFloor
	}
	rs := make([]Ranked, len(cands))
	var excl []Exclusion
	for i, cand := range cands {
		r := Ranked{Candidate: cand, Eligible: true}
		r.ExpectedCost = (float64(tok.In)*cand.InputPer1K + float64(tok.Out)*cand.OutputPer1K) / 1000
		if n := tok.In + tok.Out; n > 0 {
			r.CostPer1K = r.ExpectedCost * 1000 / float64(n)
		} else {
			r.CostPer1K = (cand.InputPer1K + cand.OutputPer1K) / 2
		}
		if sample != nil {
			r.Sampled, r.PSuccess = sample(&cand)
		}
		switch {
		case c.MaxCostPer1K > 0 && r.CostPer1K > c.MaxCostPer1K:
			r.Eligible = false
			r.Excluded = fmt.Sprintf("max_cost_per_1k: $%.4f/1k > $%.4f/1k", r.CostPer1K, c.MaxCostPer1K)
			excl = append(excl, Exclusion{cand.Name, "max_cost_per_1k", fmt.Sprintf("$%.4f/1k > $%.4f/1k", r.CostPer1K, c.MaxCostPer1K)})
		case c.MaxLatencyMS > 0 && cand.LatencyMS > c.MaxLatencyMS:
			r.Eligible = false
			r.Excluded = fmt.Sprintf("max_latency_ms: %.0fms > %.0fms", cand.LatencyMS, c.MaxLatencyMS)
			excl = append(excl, Exclusion{cand.Name, "max_latency_ms", fmt.Sprintf("%.0fms > %.0fms", cand.LatencyMS, c.MaxLatencyMS)})
		}
		rs[i] = r
	}
	d := Decision{Mode: mode, Floor: floor}
	// Gains are measured against the cheapest eligible candidate.
	cheapest, bestP := -1, math.Inf(-1)
	for i := range rs {
		if !rs[i].Eligible {
			continue
		}
		if cheapest < 0 || rs[i].ExpectedCost < rs[cheapest].ExpectedCost {
			cheapest = i
		}
		bestP = max(bestP, rs[i].PSuccess)
	}
	if cheapest < 0 {
		err := &NoCandidateError{Exclusions: excl}
		if len(rs) == 0 {
			return d, err
		}
		be := 0
		for i := range rs {
			if rs[i].PSuccess > rs[be].PSuccess {
				be = i
			}
		}
		for i := range rs {
			rs[i].Reason = "excluded: " + rs[i].Excluded
		}
		rs[be].Reason = "best effort: highest predicted quality, although " + rs[be].Excluded
		be0 := rs[be]
		err.BestEffort = &be0
		if !c.BestEffort {
			d.Ranking = append([]Ranked{rs[be]}, without(rs, be)...)
			return d, err
		}
		d.Choice, d.BestEffort = rs[be], true
		d.Ranking = append([]Ranked{rs[be]}, without(rs, be)...)
		d.Reason = fmt.Sprintf("best effort: nothing qualifies (%s)", err.Error())
		return d, nil
	}
	if bestP < floor {
		d.Floor, d.Relaxed = floor*bestP, true
	}
	for i := range rs {
		if !rs[i].Eligible {
			continue
		}
		rs[i].Gain = rs[i].PSuccess - rs[cheapest].PSuccess
		rs[i].ExtraCost = rs[i].ExpectedCost - rs[cheapest].ExpectedCost
		rs[i].ClearsFloor = rs[i].PSuccess >= d.Floor-1e-12
	}
	preferred := func(r *Ranked) bool {
		for _, p := range c.Prefer {
			if strings.EqualFold(p, r.Provider) || strings.EqualFold(p, r.Name) {
				return true
			}
		}
		return false
	}
	anyPreferred := false
	for i := range rs {
		if rs[i].ClearsFloor && preferred(&rs[i]) {
			anyPreferred = true
		}
	}
	// Order: eligible and clearing (mode order), eligible below the floor
	// (by quality), excluded (by quality).
	tier := func(r *Ranked) int {
		switch {
		case r.ClearsFloor && (!anyPreferred || preferred(r)):
			return 0
		case r.ClearsFloor:
			return 1
		case r.Eligible:
			return 2
		}
		return 3
	}
	less := func(a, b *Ranked) int {
		if ta, tb := tier(a), tier(b); ta != tb {
			return ta - tb
		}
		if tier(a) >= 2 {
			return cmpDesc(a.PSuccess, b.PSuccess)
		}
		switch mode {
		case ModeBest:
			if v := cmpDesc(a.PSuccess, b.PSuccess); v != 0 {
				return v
			}
		case ModeFast:
			if v := cmpAsc(latencyKey(a.LatencyMS), latencyKey(b.LatencyMS)); v != 0 {
				return v
			}
		case ModeSmart:
			if sample != nil {
				// Thompson: a candidate whose sampled quality clears
				// the floor is ranked by cost; the others follow.
				ca, cb := a.Sampled >= d.Floor, b.Sampled >= d.Floor
				if ca != cb {
					if ca {
						return -1
					}
					return 1
				}
				if !ca {
					return cmpDesc(a.Sampled, b.Sampled)
				}
			}
		}
		if c.SuccessValueUSD > 0 && (mode == ModeFloor || mode == ModeSmart) {
			ua := a.PSuccess*c.SuccessValueUSD - a.ExpectedCost
			ub := b.PSuccess*c.SuccessValueUSD - b.ExpectedCost
			if v := cmpDesc(ua, ub); v != 0 {
				return v
			}
		}
		if v := cmpAsc(a.ExpectedCost, b.ExpectedCost); v != 0 {
			return v
		}
		return cmpDesc(a.PSuccess, b.PSuccess)
	}
	order := make([]*Ranked, len(rs))
	for i := range rs {
		order[i] = &rs[i]
	}
	slices.SortStableFunc(order, less)
	d.Ranking = make([]Ranked, len(rs))
	for i, r := range order {
		d.Ranking[i] = *r
	}
	choice := &d.Ranking[0]
	for i := range d.Ranking {
		d.Ranking[i].Reason = reason(&d.Ranking[i], choice, i == 0, &d, c)
	}
	d.Choice = *choice
	d.Reason = decisionReason(&d, c)
	return d, nil
}

func without(rs []Ranked, i int) []Ranked {
	out := make([]Ranked, 0, len(rs)-1)
	out = append(out, rs[:i]...)
	return append(out, rs[i+1:]...)
}

func latencyKey(ms float64) float64 {
	if ms <= 0 {
		return math.Inf(1)
	}
	return ms
}

func cmpAsc(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpDesc(a, b float64) int { return cmpAsc(b, a) }

func reason(r, choice *Ranked, chosen bool, d *Decision, c Constraints) string {
	switch {
	case !r.Eligible:
		return "excluded: " + r.Excluded
	case !r.ClearsFloor:
		return fmt.Sprintf("below floor %.2f (p=%.2f)", d.Floor, r.PSuccess)
	case chosen:
		switch d.Mode {
		case ModeBest:
			return fmt.Sprintf("chosen: highest predicted quality (p=%.2f, $%.5f)", r.PSuccess, r.ExpectedCost)
		case ModeFast:
			return fmt.Sprintf("chosen: fastest that clears floor %.2f (%.0fms, p=%.2f)", d.Floor, r.LatencyMS, r.PSuccess)
		case ModeSmart:
			return fmt.Sprintf("chosen: cheapest whose sampled quality %.2f clears floor %.2f (p=%.2f, $%.5f)", r.Sampled, d.Floor, r.PSuccess, r.ExpectedCost)
		}
		if c.SuccessValueUSD > 0 {
			return fmt.Sprintf("chosen: best value at $%.4f per success (p=%.2f, $%.5f)", c.SuccessValueUSD, r.PSuccess, r.ExpectedCost)
		}
		return fmt.Sprintf("chosen: cheapest that clears floor %.2f (p=%.2f, $%.5f)", d.Floor, r.PSuccess, r.ExpectedCost)
	}
	dg, dc := r.PSuccess-choice.PSuccess, r.ExpectedCost-choice.ExpectedCost
	return fmt.Sprintf("clears floor; %+.2f quality for %+.5f USD vs %s", dg, dc, choice.Name)
}

func decisionReason(d *Decision, c Constraints) string {
	ch := d.Choice
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s p=%.2f $%.5f", d.Mode, ch.Name, ch.PSuccess, ch.ExpectedCost)
	if d.Relaxed {
		fmt.Fprintf(&b, "; no candidate reaches %.2f, floor relaxed to %.2f", d.Floor/max(bestOf(d.Ranking), 1e-9), d.Floor)
	} else {
		fmt.Fprintf(&b, "; floor %.2f", d.Floor)
	}
	// The best gain a pricier candidate would have bought.
	var gain, cost float64
	for _, r := range d.Ranking {
		if r.Eligible && r.ExpectedCost > ch.ExpectedCost && r.PSuccess-ch.PSuccess > gain {
			gain, cost = r.PSuccess-ch.PSuccess, r.ExpectedCost-ch.ExpectedCost
		}
	}
	if gain > 0 {
		fmt.Fprintf(&b, "; best upgrade +%.2f for +$%.5f", gain, cost)
	}
	n := 0
	for _, r := range d.Ranking {
		if !r.Eligible {
			n++
		}
	}
	if n > 0 {
		fmt.Fprintf(&b, "; %d excluded by constraints", n)
	}
	return b.String()
}

func bestOf(rs []Ranked) float64 {
	b := 0.0
	for _, r := range rs {
		if r.Eligible {
			b = max(b, r.PSuccess)
		}
	}
	return b
}
