package router

import (
	"math"
	"time"
)

// Strategy names, as router_settings.routing_strategy spells them
// (LiteLLM's names).
const (
	SimpleShuffle = "simple-shuffle"
	LeastBusy     = "least-busy"
	LatencyBased  = "latency-based-routing"
	UsageBased    = "usage-based-routing"
	CostBased     = "cost-based-routing"
)

// explore is the share of latency-based picks made uniformly at random, so
// a deployment whose average went bad (and has since recovered) is
// measured again.
const explore = 0.05

// resolveWeights sets each deployment's simple-shuffle weight: its weight
// when any deployment of the group sets one (unset counts 1), else its rpm
// when any sets rpm, else its tpm when any sets tpm (unset counts as the
// mean of those set), else 1.
func resolveWeights(g *Group) {
	field := func(get func(d *Deployment) float64) bool {
		sum, n := 0.0, 0
		for _, d := range g.Deployments {
			if v := get(d); v > 0 {
				sum += v
				n++
			}
		}
		if n == 0 {
			return false
		}
		for _, d := range g.Deployments {
			d.weight = get(d)
			if d.weight <= 0 {
				d.weight = sum / float64(n)
			}
		}
		return true
	}
	if anyWeight := field(func(d *Deployment) float64 { return d.Params.Weight }); anyWeight {
		for _, d := range g.Deployments {
			if d.Params.Weight <= 0 {
				d.weight = 1
			}
		}
		return
	}
	if field(func(d *Deployment) float64 { return float64(d.Params.RPM) }) {
		return
	}
	if field(func(d *Deployment) float64 { return float64(d.Params.TPM) }) {
		return
	}
	for _, d := range g.Deployments {
		d.weight = 1
	}
}

// choose returns the deployment of g the strategy prefers among cands
// (indexes into g.Deployments, none empty). It is O(len(cands)) and takes
// no lock; ties are broken at random.
func (r *Router) choose(g *Group, cands []int, stream bool, now time.Time) *Deployment {
	if len(cands) == 1 {
		return g.Deployments[cands[0]]
	}
	switch r.strategy {
	case LeastBusy:
		return r.argBest(g, cands, func(d *Deployment) float64 { return float64(d.inflight.Load()) })
	case LatencyBased:
		if r.float() < explore {
			return g.Deployments[cands[r.jitter(int64(len(cands)))]]
		}
		return r.argBest(g, cands, func(d *Deployment) float64 { return float64(expectedLatency(d, stream)) })
	case UsageBased:
		return r.argBest(g, cands, func(d *Deployment) float64 {
			frac, _ := d.headroom(now)
			return -frac
		})
	case CostBased:
		return r.argBest(g, cands, func(d *Deployment) float64 { return d.price })
	default:
		total := 0.0
		for _, i := range cands {
			total += g.Deployments[i].weight
		}
		x := r.float() * total
		for _, i := range cands {
			if x -= g.Deployments[i].weight; x < 0 {
				return g.Deployments[i]
			}
		}
		return g.Deployments[cands[len(cands)-1]]
	}
}

// expectedLatency is what latency-based-routing minimises: the moving
// average of TTFT for streams and of whole calls otherwise, either standing
// in for the other until it has a sample. Zero (never measured) ranks
// first, so every deployment gets measured; losing a hedge race counts as
// a measurement of at least the time the loser ran (tookAtLeast).
func expectedLatency(d *Deployment, stream bool) time.Duration {
	a, b := d.latency.value(), d.ttft.value()
	if stream {
		a, b = b, a
	}
	if a == 0 {
		return b
	}
	return a
}

// argBest returns the candidate with the lowest score, a uniformly random
// one among equals (reservoir sampling, one pass).
func (r *Router) argBest(g *Group, cands []int, score func(*Deployment) float64) *Deployment {
	var best *Deployment
	bestScore, ties := math.Inf(1), 0
	for _, i := range cands {
		d := g.Deployments[i]
		s := score(d)
		switch {
		case best == nil || s < bestScore:
			best, bestScore, ties = d, s, 1
		case s == bestScore:
			ties++
			if r.jitter(int64(ties)) == 0 {
				best = d
			}
		}
	}
	return best
}
