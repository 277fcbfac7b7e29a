package auto

import (
	"errors"
	"strings"
	"testing"
)

// Prices in USD per 1k tokens; requests of 1,000 in + 1,000 out tokens.
var (
	cheap  = Candidate{Name: "cheap", Provider: "groq", PSuccess: 0.70, InputPer1K: 0.0001, OutputPer1K: 0.0002, LatencyMS: 300}
	mid    = Candidate{Name: "mid", Provider: "anthropic", PSuccess: 0.85, InputPer1K: 0.001, OutputPer1K: 0.004, LatencyMS: 900}
	strong = Candidate{Name: "strong", Provider: "openai", PSuccess: 0.93, InputPer1K: 0.005, OutputPer1K: 0.015, LatencyMS: 1500}
	tok    = Tokens{In: 1000, Out: 1000}
)

func with(c Candidate, p float64) Candidate {
	c.PSuccess = p
	return c
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name     string
		cands    []Candidate
		c        Constraints
		mode     Mode
		want     string
		relaxed  bool
		order    []string
		inReason string
	}{
		{name: "floor picks the cheapest that clears", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.8}, want: "mid", order: []string{"mid", "strong", "cheap"}},
		{name: "zero floor means 0.8", cands: []Candidate{strong, mid, cheap}, want: "mid"},
		{name: "low floor takes the cheap one", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.6}, want: "cheap", order: []string{"cheap", "mid", "strong"}},
		{name: "high floor needs the strong one", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.9}, want: "strong"},
		{name: "hard prompt: nobody reaches the floor, small gain does not buy the strong model",
			cands: []Candidate{with(strong, 0.35), with(mid, 0.31), with(cheap, 0.30)},
			c:     Constraints{QualityFloor: 0.8}, want: "cheap", relaxed: true, inReason: "floor relaxed"},
		{name: "hard prompt with a real gain still pays for it",
			cands: []Candidate{with(strong, 0.70), with(mid, 0.50), with(cheap, 0.20)},
			c:     Constraints{QualityFloor: 0.8}, want: "strong", relaxed: true},
		{name: "best ignores cost", cands: []Candidate{cheap, mid, strong}, mode: ModeBest, want: "strong"},
		{name: "fast picks the lowest latency that clears", cands: []Candidate{strong, mid, with(cheap, 0.5)},
			c: Constraints{QualityFloor: 0.8}, mode: ModeFast, want: "mid"},
		{name: "fast puts unknown latency last", cands: []Candidate{with(Candidate{Name: "nolat", PSuccess: 0.9, InputPer1K: 0.00001}, 0.9), strong},
			c: Constraints{QualityFloor: 0.8}, mode: ModeFast, want: "strong"},
		{name: "price ceiling excludes", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.9, MaxCostPer1K: 0.005}, want: "mid", relaxed: true, inReason: "1 excluded"},
		{name: "latency SLO excludes", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.9, MaxLatencyMS: 1000}, want: "mid", relaxed: true},
		{name: "prefer wins among those that clear", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.8, Prefer: []string{"openai"}}, want: "strong"},
		{name: "prefer does not pass the floor", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.8, Prefer: []string{"groq"}}, want: "mid"},
		{name: "success value buys a gain worth its cost", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.6, SuccessValueUSD: 0.1}, want: "mid"},
		{name: "success value too low keeps the cheap one", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.6, SuccessValueUSD: 0.01}, want: "cheap"},
		{name: "smart without a bandit is floor", cands: []Candidate{strong, mid, cheap},
			c: Constraints{QualityFloor: 0.8}, mode: ModeSmart, want: "mid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decide(tt.cands, tok, tt.c, tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			if d.Choice.Name != tt.want {
				t.Errorf("chose %s, want %s (reason %q)", d.Choice.Name, tt.want, d.Reason)
			}
			if d.Ranking[0].Name != d.Choice.Name || len(d.Ranking) != len(tt.cands) {
				t.Errorf("ranking %v does not start with the choice or misses candidates", names(d.Ranking))
			}
			if d.Relaxed != tt.relaxed {
				t.Errorf("relaxed = %v, want %v", d.Relaxed, tt.relaxed)
			}
			if tt.order != nil && strings.Join(names(d.Ranking), ",") != strings.Join(tt.order, ",") {
				t.Errorf("ranking %v, want %v", names(d.Ranking), tt.order)
			}
			if !strings.Contains(d.Reason, tt.inReason) {
				t.Errorf("reason %q lacks %q", d.Reason, tt.inReason)
			}
			for _, r := range d.Ranking {
				if r.Reason == "" {
					t.Errorf("%s has no reason", r.Name)
				}
				if !r.Eligible && r.Name == d.Choice.Name {
					t.Errorf("chose excluded candidate %s", r.Name)
				}
			}
		})
	}
}

func TestDecideGainAndCost(t *testing.T) {
	d, err := Decide([]Candidate{strong, mid, cheap}, tok, Constraints{QualityFloor: 0.8}, ModeFloor)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range d.Ranking {
		switch r.Name {
		case "cheap":
			if r.Gain != 0 || r.ExtraCost != 0 {
				t.Errorf("cheap: gain %v extra %v, want 0 (it is the reference)", r.Gain, r.ExtraCost)
			}
		case "strong":
			if !near(r.Gain, 0.23) || !near(r.ExpectedCost, 0.020) || !near(r.CostPer1K, 0.010) {
				t.Errorf("strong: gain %v cost %v per1k %v", r.Gain, r.ExpectedCost, r.CostPer1K)
			}
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestDecideNothingQualifies(t *testing.T) {
	cands := []Candidate{strong, mid}
	c := Constraints{MaxCostPer1K: 0.001, MaxLatencyMS: 1000}
	_, err := Decide(cands, tok, c, ModeFloor)
	if !errors.Is(err, ErrNoCandidate) {
		t.Fatalf("err = %v, want ErrNoCandidate", err)
	}
	var nc *NoCandidateError
	if !errors.As(err, &nc) {
		t.Fatal("not a *NoCandidateError")
	}
	msg := err.Error()
	for _, want := range []string{"strong excluded by max_cost_per_1k", "mid excluded by max_cost_per_1k", "best_effort", "would serve strong"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if nc.BestEffort == nil || nc.BestEffort.Name != "strong" {
		t.Errorf("best effort = %+v, want strong", nc.BestEffort)
	}
	// Latency only: the message names that constraint.
	_, err = Decide([]Candidate{strong}, tok, Constraints{MaxLatencyMS: 1000}, ModeFloor)
	if err == nil || !strings.Contains(err.Error(), "strong excluded by max_latency_ms (1500ms > 1000ms)") {
		t.Errorf("err = %v", err)
	}
	// With best effort the best excluded candidate is served, flagged.
	c.BestEffort = true
	d, err := Decide(cands, tok, c, ModeFloor)
	if err != nil || !d.BestEffort || d.Choice.Name != "strong" || !strings.Contains(d.Reason, "best effort") {
		t.Errorf("best effort decision = %+v, %v", d, err)
	}
	if _, err := Decide(nil, tok, Constraints{}, ModeFloor); !errors.Is(err, ErrNoCandidate) {
		t.Errorf("no candidates: err = %v", err)
	}
}

func TestParseMode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Mode
		err  bool
	}{{"", ModeFloor, false}, {"floor", ModeFloor, false}, {"best", ModeBest, false}, {"FAST", ModeFast, false}, {"smart", ModeSmart, false}, {"cheap", 0, true}} {
		got, err := ParseMode(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil && tt.in != "" && !strings.EqualFold(got.String(), tt.in) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

func names(rs []Ranked) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}
