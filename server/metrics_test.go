package server

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/metrics"
)

// keyTags caches one entry per key, not per version: every reload of the
// keyring (each key change, here or in another process) makes a new
// *ledger.Key of every key, and an entry per pointer kept each old version
// for the life of the server.
func TestKeyTagsCacheHoldsOneEntryPerKey(t *testing.T) {
	ctx := context.Background()
	db, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "lumen.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := ledger.NewKeyring(ctx, db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, k, err := kr.Create(ctx, ledger.KeySpec{Name: "search", Tags: map[string]string{"team": "search"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{metrics: metrics.New(metrics.Options{NoProcessMetrics: true})}

	const reloads = 50
	for range reloads {
		if err := kr.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if k, err = kr.Get(k.ID); err != nil {
			t.Fatal(err)
		}
		if got := s.keyTags(k); !slices.Equal(got, []string{"team=search"}) {
			t.Fatalf("keyTags = %q, want [team=search]", got)
		}
	}
	entries := 0
	s.tagCache.Range(func(any, any) bool { entries++; return true })
	if entries != 1 {
		t.Errorf("after %d reloads the tag cache holds %d entries, want 1 (one per key)", reloads, entries)
	}

	// A changed key's new tags are seen, not the cached ones.
	tags := map[string]string{"team": "ads"}
	if k, err = kr.Update(ctx, k.ID, ledger.KeyUpdate{Tags: &tags}); err != nil {
		t.Fatal(err)
	}
	if got := s.keyTags(k); !slices.Equal(got, []string{"team=ads"}) {
		t.Errorf("keyTags after a tag change = %q, want [team=ads]", got)
	}
}
