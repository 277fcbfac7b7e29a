package cmd

import (
	"testing"
	"time"

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
