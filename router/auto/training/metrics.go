package training

import (
	"math"
	"sort"
)

// Curve is the performance-gap-recovered curve of a two-model router: the
// prompts are sent to the strong model in decreasing order of the router's
// score (expected gain), ties broken at random — computed exactly as the
// expectation over tie orders.
type Curve struct {
	// PGR[k] is the share of the strong−weak quality gap recovered with k
	// calls to the strong model (k = 0..N).
	PGR []float64
	// QWeak and QStrong are the qualities of always-weak and always-strong.
	QWeak, QStrong float64
}

// PairCurve builds the curve from each prompt's weak and strong outcome and
// the router's score (higher = send to strong first).
func PairCurve(weak, strong, score []float64) Curve {
	n := len(score)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] > score[idx[b]] })
	var qw, qs float64
	for i := 0; i < n; i++ {
		qw += weak[i]
		qs += strong[i]
	}
	c := Curve{PGR: make([]float64, n+1), QWeak: qw / float64(n), QStrong: qs / float64(n)}
	gap := qs - qw
	cum := 0.0
	k := 0
	for g := 0; g < n; {
		e := g
		var sum float64
		for e < n && score[idx[e]] == score[idx[g]] {
			sum += strong[idx[e]] - weak[idx[e]]
			e++
		}
		size := float64(e - g)
		for j := g; j < e; j++ {
			k++
			part := cum + sum*float64(j-g+1)/size
			c.PGR[k] = pgr(part, gap)
		}
		cum += sum
		g = e
	}
	return c
}

func pgr(recovered, gap float64) float64 {
	if gap == 0 {
		return 1
	}
	return recovered / gap
}

// APGR is the average PGR over call shares 0..1 (trapezoid rule).
func (c Curve) APGR() float64 {
	n := len(c.PGR) - 1
	if n <= 0 {
		return 0
	}
	var s float64
	for k := 0; k < n; k++ {
		s += (c.PGR[k] + c.PGR[k+1]) / 2
	}
	return s / float64(n)
}

// CallsFor is the smallest share of strong-model calls whose PGR reaches
// target.
func (c Curve) CallsFor(target float64) float64 {
	n := len(c.PGR) - 1
	for k, v := range c.PGR {
		if v >= target-1e-12 {
			return float64(k) / float64(n)
		}
	}
	return 1
}

// budgetPick chooses, per prompt, the model maximising p − λ·cost with λ set
// by bisection so the total cost stays within budget; it returns the mean
// realised quality and cost. pred/y/cost are [prompt][model].
func budgetPick(pred, y, cost [][]float64, budget float64) (quality, spent float64) {
	run := func(lambda float64) (q, c float64) {
		for i := range pred {
			best, bv := 0, math.Inf(-1)
			for m := range pred[i] {
				v := pred[i][m] - lambda*cost[i][m]
				if v > bv || v == bv && cost[i][m] < cost[i][best] {
					best, bv = m, v
				}
			}
			q += y[i][best]
			c += cost[i][best]
		}
		return q / float64(len(pred)), c / float64(len(pred))
	}
	lo, hi := 0.0, 1.0
	for {
		_, c := run(hi)
		if c <= budget || hi > 1e12 {
			break
		}
		hi *= 4
	}
	if _, c := run(lo); c <= budget {
		return run(lo)
	}
	for it := 0; it < 60; it++ {
		mid := (lo + hi) / 2
		if _, c := run(mid); c <= budget {
			hi = mid
		} else {
			lo = mid
		}
	}
	return run(hi)
}
