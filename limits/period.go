// Package limits enforces budgets and rate limits in memory, before a
// request reaches an upstream.
//
// Two small interfaces carry the policy: BudgetStore (reserve a request's
// worst-case cost, settle its real cost) and Limiter (requests and tokens
// per minute, sliding window). MemoryBudgets and MemoryLimiter implement
// them for one process; RedisBudgets and RedisLimiter, the same rules in
// Redis, for several Lumen instances that share them.
//
// # Per request
//
// The server, after authenticating the key:
//
//  1. Limiter.Allow(ctx, "key:"+id, Limit{RPM, TPM}, estimatedTokens); on a
//     refusal answer 429 with Retry-After and the x-ratelimit-* headers
//     (Decision.Headers). Tag, model-group and global limits are more calls
//     with other ids ("tag:team=search", "group:"+name, "global"); refund
//     the earlier charges with Adjust when a later check refuses.
//  2. BudgetStore.Reserve(ctx, account, budget, worstCaseUSD) for each
//     budget that applies (the key's, its tags', the model group's, the
//     gateway's); a *BudgetError is a 429 of type budget_exceeded, and the
//     reservations already made are settled at zero.
//  3. Call the upstream (retries, fallbacks and hedges all inside the one
//     reservation, which must cover the dearest deployment tried).
//  4. BudgetStore.Settle(ctx, res, actualUSD) exactly once, also when the
//     call failed (actualUSD 0 for an answer that cost nothing).
//  5. Optionally Limiter.Adjust by the difference between the estimated
//     and the real tokens.
//
// Spend is enforced from memory (or Redis); the ledger persists it (one
// row per request). On start Load sums the ledger's current period per
// budget account (a key id, GlobalAccount, GroupAccount, TagAccount), and
// again for a key whose budget period changes: the store holds only the
// spend of the window it was counting.
package limits

import (
	"fmt"
	"time"
)

// Period is how often a budget starts again.
type Period string

// Budget periods. Each starts on a calendar boundary in the budget time
// zone: midnight, Monday midnight, the first of the month. Total never
// resets.
const (
	Daily   Period = "daily"
	Weekly  Period = "weekly"
	Monthly Period = "monthly"
	Total   Period = "total"
)

// ParsePeriod parses a period name; the empty string is Total.
func ParsePeriod(s string) (Period, error) {
	switch p := Period(s); p {
	case Daily, Weekly, Monthly, Total:
		return p, nil
	case "":
		return Total, nil
	default:
		return "", fmt.Errorf("unknown budget period %q (want daily, weekly, monthly or total)", s)
	}
}

// Bounds returns the period containing t, in loc (nil means UTC): start is
// inclusive, end exclusive. Total returns two zero times: it has neither.
func (p Period) Bounds(t time.Time, loc *time.Location) (start, end time.Time) {
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	y, m, d := t.Date()
	switch p {
	case Daily:
		start = time.Date(y, m, d, 0, 0, 0, 0, loc)
		end = time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	case Weekly:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(y, m, d-back, 0, 0, 0, 0, loc)
		end = time.Date(y, m, d-back+7, 0, 0, 0, 0, loc)
	case Monthly:
		start = time.Date(y, m, 1, 0, 0, 0, 0, loc)
		end = time.Date(y, m+1, 1, 0, 0, 0, 0, loc)
	default:
		return time.Time{}, time.Time{}
	}
	return start, end
}

// SamePeriod reports whether a and b are the same period, the empty string
// being Total: whether a budget that changes from one to the other keeps
// its window, and with it its spend.
func SamePeriod(a, b Period) bool { return period(a) == period(b) }
