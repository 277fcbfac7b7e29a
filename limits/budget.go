package limits

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Budget is a key's spending cap.
type Budget struct {
	// LimitUSD is the most the key may spend per Period; zero or less means
	// no cap (spend is still tracked).
	LimitUSD float64
	// Period is when the spend starts again; empty means Total.
	Period Period
}

// Reservation is money held for one request between Reserve and Settle.
// The caller owns it and settles it exactly once.
type Reservation struct {
	// KeyID is the key the money is held for.
	KeyID string
	// USD is the amount held: the request's worst-case cost.
	USD float64
	// Period is the budget period the reservation was made under.
	Period Period
	// At is when the request counts as spent: Settle charges the window
	// of Period containing At, and nothing when that window has ended.
	// Reserve sets it to its clock's now; the server sets it to when the
	// request arrived, the time its ledger row carries, so that live
	// spend, lumen keys info and a restart's reload from the ledger count
	// a request that straddles a period's end in the same period: the
	// one it arrived in.
	At time.Time

	id     uint64 // MemoryBudgets' hold
	member string // RedisBudgets' hold
}

// ErrBudgetExceeded is matched (errors.Is) by every *BudgetError.
var ErrBudgetExceeded = errors.New("budget exceeded")

// ErrSettled is returned by Settle for a reservation that was already
// settled (or never made); nothing is charged the second time.
var ErrSettled = errors.New("reservation already settled")

// BudgetError says a request was refused because its worst-case cost does
// not fit in what is left of a budget (a key's, or another account's). The
// server answers 429 with type budget_exceeded.
type BudgetError struct {
	// KeyID is the budget's account: a key id, or another account the
	// caller named ("tag:team=search").
	KeyID string
	// Owner says whose budget it is in the message ("the tag
	// team=search"); empty means "this key".
	Owner string
	// Budget is the limit in USD per Period.
	Budget float64
	// Spent is what the account spent in the current period; Reserved is
	// held by its requests in flight; Requested is this request's worst
	// case.
	Spent, Reserved, Requested float64
	Period                     Period
	// ResetsAt is when the period ends; zero for a Total budget.
	ResetsAt time.Time
}

func (e *BudgetError) Error() string {
	owner := e.Owner
	if owner == "" {
		owner = "this key"
	}
	var b []byte
	if e.Spent >= e.Budget {
		b = fmt.Appendf(b, "budget exceeded: %s spent $%.4f of its $%s %s budget", owner, e.Spent, dollars(e.Budget), e.Period)
	} else {
		b = fmt.Appendf(b, "budget exceeded: this request may cost up to $%.4f and %s has $%.4f left of its $%s %s budget",
			e.Requested, owner, max(e.Budget-e.Spent-e.Reserved, 0), dollars(e.Budget), e.Period)
		if e.Reserved > 0 {
			b = fmt.Appendf(b, " ($%.4f is held by requests in flight)", e.Reserved)
		} else {
			b = append(b, " (lower max_tokens to ask for less)"...)
		}
	}
	if e.ResetsAt.IsZero() {
		b = append(b, "; it does not reset"...)
	} else {
		b = fmt.Appendf(b, "; it resets at %s", e.ResetsAt.UTC().Format(time.RFC3339))
	}
	return string(b)
}

// dollars formats a budget as it was set, in cents at least: "500.00",
// "0.025", "0.001". Rounding it to cents, as the spend figures are to
// four decimals, would say a $0.001 budget is $0.00.
func dollars(usd float64) string {
	s := strconv.FormatFloat(usd, 'f', -1, 64)
	switch i := strings.IndexByte(s, '.'); {
	case i < 0:
		return s + ".00"
	case len(s)-i == 2:
		return s + "0"
	}
	return s
}

// Unwrap makes errors.Is(err, ErrBudgetExceeded) true.
func (e *BudgetError) Unwrap() error { return ErrBudgetExceeded }

// BudgetStore holds each key's spend and admits a request only if its
// worst-case cost fits in the key's budget, counting the requests in
// flight. Implementations are safe for concurrent use, and concurrent
// Reserve calls for one key never admit more than its budget in total.
type BudgetStore interface {
	// Reserve holds worstCaseUSD for a request of keyID under budget b. It
	// returns a *BudgetError when spent + held + worstCaseUSD would exceed
	// b.LimitUSD or the key already spent it all; other errors mean the
	// store failed (a shared store may be unreachable) and the caller
	// decides whether to fail open.
	Reserve(ctx context.Context, keyID string, b Budget, worstCaseUSD float64) (Reservation, error)
	// Settle releases r and adds actualUSD, the request's real cost, to the
	// key's spend in the window containing r.At; a window that has ended
	// no longer counts, so nothing is added then.
	Settle(ctx context.Context, r Reservation, actualUSD float64) error
}

var _ BudgetStore = (*MemoryBudgets)(nil)

// nano is a USD amount in billionths: sums of integers are exact, so that
// ten reservations of $0.10 fit a $1.00 budget on every platform.
type nano int64

func toNano(usd float64) nano {
	if usd <= 0 || math.IsNaN(usd) {
		return 0
	}
	if usd >= math.MaxInt64/1e9 {
		return math.MaxInt64 / 4
	}
	return nano(math.Round(usd * 1e9))
}

func (n nano) usd() float64 { return float64(n) / 1e9 }

// account is one key's state. reserved is independent of the period: a
// request reserved before midnight and settled after it holds money in
// the new day until it settles, and is charged to the day it arrived in
// (Reservation.At), which no longer counts.
//
// An account is kept until its period ends (every distinct end user gets
// one with limits.users), so it holds only these: what each reservation
// holds is in MemoryBudgets.holds, by reservation.
type account struct {
	period   Period
	start    time.Time
	spent    nano
	reserved nano
}

// hold is what one open reservation holds, and for which account.
type hold struct {
	account string
	amount  nano
}

// MemoryBudgets is a BudgetStore for one process. The zero value is not
// usable; call NewMemoryBudgets. It is safe for concurrent use.
type MemoryBudgets struct {
	loc *time.Location
	now func() time.Time

	mu        sync.Mutex
	accounts  map[string]*account
	holds     map[uint64]hold // the reservations not yet settled
	nextID    uint64
	lastSweep time.Time
}

// sweepEvery is how often Reserve forgets the accounts whose period ended
// with nothing held: their spend no longer counts, and an account per end
// user would otherwise pile up.
const sweepEvery = 10 * time.Minute

// BudgetOptions configure MemoryBudgets. Zero fields take the defaults.
type BudgetOptions struct {
	// Location is the time zone periods start in (default UTC).
	Location *time.Location
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
}

// NewMemoryBudgets returns an empty in-memory budget store.
func NewMemoryBudgets(o BudgetOptions) *MemoryBudgets {
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &MemoryBudgets{loc: o.Location, now: o.Now, accounts: map[string]*account{}, holds: map[uint64]hold{}}
}

// account returns keyID's account, made in the period of p containing now
// when it has none. An account keeps its own period: a budget whose
// period changed reaches it only through Load, which brings the new
// window's spend from the ledger. Until then the account's window goes on
// (a request that started under the old period, or one admitted under the
// new before the load, neither starts the new window at zero nor flips
// the account back). When the window ends, the next one starts with spend
// zero. m.mu is held.
func (m *MemoryBudgets) account(keyID string, p Period, now time.Time) (*account, time.Time) {
	a := m.accounts[keyID]
	if a == nil {
		start, _ := p.Bounds(now, m.loc)
		a = &account{period: p, start: start}
		m.accounts[keyID] = a
	}
	start, end := a.period.Bounds(now, m.loc)
	if !a.start.Equal(start) {
		a.start, a.spent = start, 0
	}
	return a, end
}

// set puts keyID's account in the window of p containing now, with spend
// usd; what its requests in flight hold is kept. m.mu is held.
func (m *MemoryBudgets) set(keyID string, p Period, now time.Time, usd nano) {
	a, _ := m.account(keyID, p, now)
	a.period = p
	a.start, _ = p.Bounds(now, m.loc)
	a.spent = usd
}

func period(p Period) Period {
	if p == "" {
		return Total
	}
	return p
}

// Reserve implements BudgetStore. It never returns an error other than a
// *BudgetError.
func (m *MemoryBudgets) Reserve(_ context.Context, keyID string, b Budget, worstCaseUSD float64) (Reservation, error) {
	p := period(b.Period)
	amount := toNano(worstCaseUSD)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if now.Sub(m.lastSweep) >= sweepEvery {
		m.sweep(now)
	}
	a, end := m.account(keyID, p, now)
	if b.LimitUSD > 0 {
		limit := toNano(b.LimitUSD)
		if a.spent >= limit || a.spent+a.reserved+amount > limit {
			return Reservation{}, &BudgetError{
				KeyID: keyID, Budget: b.LimitUSD, Period: a.period, ResetsAt: end,
				Spent: a.spent.usd(), Reserved: a.reserved.usd(), Requested: amount.usd(),
			}
		}
	}
	m.nextID++
	m.holds[m.nextID] = hold{account: keyID, amount: amount}
	a.reserved += amount
	return Reservation{KeyID: keyID, USD: amount.usd(), Period: a.period, At: now, id: m.nextID}, nil
}

// sweep forgets the accounts whose period ended and that hold nothing.
// m.mu is held.
func (m *MemoryBudgets) sweep(now time.Time) {
	m.lastSweep = now
	before := len(m.accounts)
	for id, a := range m.accounts {
		if start, _ := a.period.Bounds(now, m.loc); !start.Equal(a.start) && a.reserved == 0 {
			delete(m.accounts, id)
		}
	}
	// A Go map keeps the room it grew to: after a day of many distinct
	// users, copy the survivors into one of their size.
	if len(m.accounts) < before/2 {
		kept := make(map[string]*account, len(m.accounts)) // not maps.Clone: it keeps the room
		maps.Copy(kept, m.accounts)
		m.accounts = kept
	}
}

// Settle implements BudgetStore. Settling a reservation twice returns
// ErrSettled and charges nothing.
func (m *MemoryBudgets) Settle(_ context.Context, r Reservation, actualUSD float64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.holds[r.id]
	if !ok || h.account != r.KeyID {
		return fmt.Errorf("settling a reservation for key %s: %w", r.KeyID, ErrSettled)
	}
	delete(m.holds, r.id)
	a, end := m.account(r.KeyID, period(r.Period), m.now())
	a.reserved -= h.amount
	if a.period == Total || !r.At.Before(a.start) && r.At.Before(end) {
		a.spent += toNano(actualUSD)
	}
	return nil
}

// Status is a key's budget position.
type Status struct {
	// SpentUSD is what the key spent in the current period; ReservedUSD is
	// held by its requests in flight.
	SpentUSD, ReservedUSD float64
	Period                Period
	// PeriodStart and ResetsAt bound the current period; both are zero for
	// Total.
	PeriodStart, ResetsAt time.Time
}

// Status returns keyID's spend in its current window: of period p, or of
// the period its account still has until Load brings the new one's.
func (m *MemoryBudgets) Status(keyID string, p Period) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, end := m.account(keyID, period(p), m.now())
	return Status{SpentUSD: a.spent.usd(), ReservedUSD: a.reserved.usd(), Period: a.period, PeriodStart: a.start, ResetsAt: end}
}

// Spend is one key's spend in one period, as Snapshot reports it.
type Spend struct {
	KeyID       string
	Period      Period
	PeriodStart time.Time // zero for Total
	USD         float64
}

// Snapshot returns every key's spend in its current period, sorted by key.
// The caller may persist it (the ledger's keys table keeps it) so that a
// restart does not forget spend whose ledger rows were dropped.
func (m *MemoryBudgets) Snapshot() []Spend {
	m.mu.Lock()
	out := make([]Spend, 0, len(m.accounts))
	now := m.now()
	for id, a := range m.accounts {
		if start, _ := a.period.Bounds(now, m.loc); !start.Equal(a.start) {
			continue // the period ended; its spend no longer counts
		}
		out = append(out, Spend{KeyID: id, Period: a.period, PeriodStart: a.start, USD: a.spent.usd()})
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].KeyID < out[j].KeyID })
	return out
}

// SetSpent replaces keyID's spend with usd in the current period of p, as
// an administrator's reset does. Reservations in flight are kept.
func (m *MemoryBudgets) SetSpent(keyID string, p Period, usd float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.set(keyID, period(p), m.now(), toNano(usd))
}

// Budget accounts other than a key's (whose account is the key id) are
// named by these, so that the server that charges them and the ledger that
// reloads their spend agree.
const GlobalAccount = "global"

// TagAccount names the budget shared by every key carrying tag
// ("team=search").
func TagAccount(tag string) string { return "tag:" + tag }

// GroupAccount names a model group's budget.
func GroupAccount(group string) string { return "group:" + group }

// GroupOf is the model group of a GroupAccount, and whether it is one.
func GroupOf(account string) (string, bool) { return strings.CutPrefix(account, "group:") }

// UserAccount names an end user's budget (the request's user field).
func UserAccount(user string) string { return "user:" + user }

// SpendSource reports recorded spend; the ledger implements it.
type SpendSource interface {
	// SpendSince returns the USD each budget account spent from since
	// (inclusive) until now; a zero since means all time. Keys are keyed by
	// their id, the others by GlobalAccount, TagAccount, GroupAccount and
	// UserAccount.
	// Accounts that spent nothing may be missing.
	SpendSince(ctx context.Context, since time.Time) (map[string]float64, error)
}

// Load sets the spend of every key in budgets to what src recorded in the
// key's current period, querying src once per distinct period start. Call
// it on start, before serving, and whenever a key's budget period changes
// (its account keeps the old window until then); spend already held in
// memory for those keys is replaced, reservations in flight are kept.
func (m *MemoryBudgets) Load(ctx context.Context, src SpendSource, budgets map[string]Budget) error {
	now := m.now()
	byStart := map[time.Time][]string{}
	for id, b := range budgets {
		start, _ := period(b.Period).Bounds(now, m.loc)
		byStart[start] = append(byStart[start], id)
	}
	loaded := map[string]float64{}
	for start, ids := range byStart {
		spent, err := src.SpendSince(ctx, start)
		if err != nil {
			return fmt.Errorf("loading spend since %s: %w", start.Format(time.RFC3339), err)
		}
		for _, id := range ids {
			loaded[id] = spent[id]
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, usd := range loaded {
		m.set(id, period(budgets[id].Period), now, toNano(usd))
	}
	return nil
}
