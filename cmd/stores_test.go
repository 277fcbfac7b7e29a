package cmd

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/internal/syncbuf"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
)

// The spend saved at shutdown is the virtual keys' only: the other budget
// accounts have no row in the keys table, and a statement each would
// make a gateway with many end users miss the save's deadline.
func TestKeySpendKeepsOnlyKeys(t *testing.T) {
	day := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	snap := []limits.Spend{
		{KeyID: "key_0123456789abcdef", PeriodStart: day, USD: 0.5},
		{KeyID: limits.UserAccount("alice"), PeriodStart: day, USD: 0.1},
		{KeyID: limits.TagAccount("team=ml"), PeriodStart: day, USD: 0.2},
		{KeyID: limits.GroupAccount("gpt-4o"), PeriodStart: day, USD: 0.3},
		{KeyID: limits.GlobalAccount, PeriodStart: day, USD: 0.6},
		{KeyID: limits.UserAccount("key_0123456789abcdef"), PeriodStart: day, USD: 0.7},
	}
	got := keySpend(snap)
	if len(got) != 1 || got[0].KeyID != "key_0123456789abcdef" || got[0].USD != 0.5 || !got[0].PeriodStart.Equal(day) {
		t.Fatalf("keySpend = %+v, want only the key's", got)
	}
}

// A panic in a step of a background loop is logged with its stack and
// the loop goes on: the next tick runs the step again. Without the
// recovery the panic ends the test binary, as it would `lumen serve`.
func TestEveryRecoversPanics(t *testing.T) {
	var logs syncbuf.Buffer
	st := &stores{log: zerolog.New(&logs)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	again := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.every(ctx, time.Millisecond, "saving budget spend", func() {
			calls++
			if calls == 1 {
				panic("injected")
			}
			if calls == 2 {
				close(again)
			}
		})
	}()
	<-again // the step ran again after its panic
	cancel()
	<-done
	line := logs.String()
	if !strings.Contains(line, `"loop":"saving budget spend"`) || !strings.Contains(line, `"panic":"injected"`) ||
		!strings.Contains(line, "TestEveryRecoversPanics") {
		t.Fatalf("log %s", line)
	}
}

// panickyBudgets is a budget store whose first Load panics; Recovered
// lets the test turn raiseSpendLoop.
type panickyBudgets struct {
	*limits.MemoryBudgets
	back   chan struct{}
	loads  atomic.Int32
	loaded chan struct{}
}

func (b *panickyBudgets) Recovered() <-chan struct{} { return b.back }

func (b *panickyBudgets) Load(context.Context, limits.SpendSource, map[string]limits.Budget) error {
	switch b.loads.Add(1) {
	case 1:
		panic("injected")
	case 2:
		close(b.loaded)
	}
	return nil
}

// noKeys is a KeyStore with no key.
type noKeys struct{}

func (noKeys) InsertKey(context.Context, *ledger.Key) error    { return nil }
func (noKeys) UpdateKey(context.Context, *ledger.Key) error    { return nil }
func (noKeys) ListKeys(context.Context) ([]*ledger.Key, error) { return nil, nil }

// raiseSpendLoop outlives a raise that panicked, which counts as failed.
func TestRaiseSpendLoopRecoversPanics(t *testing.T) {
	kr, err := ledger.NewKeyring(context.Background(), noKeys{}, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	b := &panickyBudgets{MemoryBudgets: limits.NewMemoryBudgets(limits.BudgetOptions{}), back: make(chan struct{}), loaded: make(chan struct{})}
	st := &stores{budgets: b, keys: kr, cfg: &config.Config{}, log: zerolog.New(&logs)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.raiseSpendLoop(ctx)
	}()
	b.back <- struct{}{} // Load panics
	b.back <- struct{}{} // taken only by a loop still running
	<-b.loaded
	cancel()
	<-done
	if !strings.Contains(logs.String(), `"loop":"raising the shared budgets' spend"`) {
		t.Fatalf("log %s", logs.String())
	}
}
