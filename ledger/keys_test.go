package ledger

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/syncbuf"
)

func newKeyring(t *testing.T, s KeyStore, now func() time.Time) *Keyring {
	t.Helper()
	kr, err := NewKeyring(context.Background(), s, KeyringOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

var keyFormat = regexp.MustCompile(`^lumen-sk-[0-9A-Za-z]{43}$`)

func TestKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	clk := time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clk }
	kr := newKeyring(t, s, now)

	raw, k, err := kr.Create(ctx, KeySpec{Name: "search", BudgetUSD: 25, BudgetPeriod: "monthly", RPM: 60, TPM: 100000,
		Models: []string{"gpt-4o", "claude"}, Tags: map[string]string{"team": "search"}, ExpiresAt: clk.Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !keyFormat.MatchString(raw) {
		t.Errorf("key %q does not look like lumen-sk- + 43 base62 characters", raw[:13]+"…")
	}
	if k.Prefix != raw[:13] || !strings.HasPrefix(k.ID, "key_") || len(k.ID) != 20 {
		t.Errorf("prefix %q id %q", k.Prefix, k.ID)
	}

	got, err := kr.Authenticate(raw)
	if err != nil || got.ID != k.ID || !got.Allows("gpt-4o") || got.Allows("gpt-4o-mini") {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}

	// A fresh Keyring on the same file sees the same key, settings intact.
	k2, err := newKeyring(t, s, now).Authenticate(raw)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Name != "search" || k2.BudgetUSD != 25 || k2.BudgetPeriod != "monthly" || k2.RPM != 60 || k2.TPM != 100000 ||
		strings.Join(k2.Models, ",") != "gpt-4o,claude" || k2.Tags["team"] != "search" || !k2.ExpiresAt.Equal(k.ExpiresAt) ||
		!k2.CreatedAt.Equal(clk) || !bytes.Equal(k2.Hash, k.Hash) {
		t.Errorf("reloaded key %+v differs from created %+v", k2, k)
	}

	if _, _, err := kr.Create(ctx, KeySpec{Name: "search"}); !errors.Is(err, ErrNameTaken) {
		t.Errorf("second live key named search: %v, want ErrNameTaken", err)
	}

	budget, models := 50.0, []string{}
	u, err := kr.Update(ctx, "search", KeyUpdate{BudgetUSD: &budget, Models: &models})
	if err != nil || u.BudgetUSD != 50 || !u.Allows("anything") || u.RPM != 60 {
		t.Fatalf("Update = %+v, %v", u, err)
	}
	if got, _ := kr.Authenticate(raw); got.BudgetUSD != 50 {
		t.Errorf("Authenticate after Update sees budget %v", got.BudgetUSD)
	}
	bad := "hourly"
	if _, err := kr.Update(ctx, k.ID, KeyUpdate{BudgetPeriod: &bad}); err == nil || !strings.Contains(err.Error(), `"hourly"`) {
		t.Errorf("Update with a bad period = %v", err)
	}

	newRaw, r, err := kr.Rotate(ctx, "search")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != k.ID || newRaw == raw || r.BudgetUSD != 50 {
		t.Errorf("rotated key %+v", r)
	}
	if _, err := kr.Authenticate(raw); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old value after Rotate: %v, want ErrUnknownKey", err)
	}
	if _, err := kr.Authenticate(newRaw); err != nil {
		t.Errorf("new value after Rotate: %v", err)
	}

	if _, err := kr.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Authenticate(newRaw); !errors.Is(err, ErrRevokedKey) {
		t.Errorf("after Revoke: %v, want ErrRevokedKey", err)
	}
	if _, err := kr.Revoke(ctx, k.ID); !errors.Is(err, ErrRevokedKey) {
		t.Errorf("second Revoke: %v", err)
	}
	if _, _, err := kr.Rotate(ctx, k.ID); !errors.Is(err, ErrRevokedKey) {
		t.Errorf("Rotate of a revoked key: %v", err)
	}
	// The name is free again; Get by name prefers the live key.
	_, again, err := kr.Create(ctx, KeySpec{Name: "search"})
	if err != nil {
		t.Fatal(err)
	}
	if g, err := kr.Get("search"); err != nil || g.ID != again.ID {
		t.Errorf("Get(search) = %v, %v; want the new key", g, err)
	}
	if g, err := kr.Get(k.ID); err != nil || !g.Revoked() {
		t.Errorf("Get(old id) = %+v, %v", g, err)
	}
	if _, err := kr.Get("nobody"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Get(nobody) = %v", err)
	}
	if l := kr.List(); len(l) != 2 || (l[0].ID != k.ID && l[1].ID != k.ID) {
		t.Errorf("List = %d keys, want the revoked one and the new one", len(l))
	}

	// Expiry, by the Keyring's clock.
	exp, _, err := kr.Create(ctx, KeySpec{Name: "short", ExpiresAt: clk.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clk = clk.Add(time.Hour)
	mu.Unlock()
	if _, err := kr.Authenticate(exp); !errors.Is(err, ErrExpiredKey) {
		t.Errorf("expired key: %v, want ErrExpiredKey", err)
	}

	for _, bogus := range []string{"", "lumen-sk-", "sk-whatever", raw + "x"} {
		if _, err := kr.Authenticate(bogus); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("Authenticate(%q) = %v", bogus, err)
		}
	}
}

func TestKeySpecValidation(t *testing.T) {
	kr := newKeyring(t, openTest(t), nil)
	for _, spec := range []KeySpec{
		{Name: ""},
		{Name: "x", BudgetUSD: -1},
		{Name: "x", BudgetPeriod: "yearly"},
		{Name: "x", RPM: -1},
		{Name: "x", TPM: -1},
		{Name: "key_0123456789abcdef"}, // another key's id, perhaps: never reachable by name
	} {
		if _, _, err := kr.Create(context.Background(), spec); err == nil {
			t.Errorf("Create(%+v) succeeded", spec)
		}
	}
	if len(kr.List()) != 0 {
		t.Error("an invalid key was stored")
	}
}

// TestIDShaped: only what a key id looks like is refused as a name.
func TestIDShaped(t *testing.T) {
	for name, want := range map[string]bool{
		"key_0123456789abcdef": true, " key_0123456789abcdef ": true,
		"key_bot": false, "key_0123456789ABCDEF": false, "key_0123456789abcdeg": false, "key_0123456789abcdef0": false, "search": false,
	} {
		if got := IDShaped(name); got != want {
			t.Errorf("IDShaped(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestRevokeIsImmediate revokes keys while other goroutines authenticate:
// once Revoke returns, no Authenticate may succeed with that key.
func TestRevokeIsImmediate(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, openTest(t), nil)
	const n = 20
	raws := make([]string, n)
	ids := make([]string, n)
	for i := range n {
		raw, k, err := kr.Create(ctx, KeySpec{Name: "k" + string(rune('a'+i))})
		if err != nil {
			t.Fatal(err)
		}
		raws[i], ids[i] = raw, k.ID
	}
	var revoked [n]atomic.Bool
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for j := g; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				i := j % n
				was := revoked[i].Load() // read before authenticating
				if _, err := kr.Authenticate(raws[i]); err == nil && was {
					t.Errorf("key %d authenticated after its Revoke returned", i)
				}
			}
		})
	}
	for i := range n {
		if _, err := kr.Revoke(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
		revoked[i].Store(true)
	}
	close(stop)
	wg.Wait()
}

// TestNoKeyMaterialStored greps the database files for the keys and checks
// that errors never carry them.
func TestNoKeyMaterialStored(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "lumen.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	kr := newKeyring(t, s, nil)
	var raws []string
	for _, name := range []string{"a", "b", "c"} {
		raw, _, err := kr.Create(ctx, KeySpec{Name: name, Tags: map[string]string{"team": name}})
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	rotated, _, err := kr.Rotate(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	raws = append(raws, rotated)
	if _, err := kr.Revoke(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	// Errors from looking up a presented key never echo it.
	for _, raw := range raws {
		if _, err := kr.Authenticate(raw + "0"); err == nil || strings.Contains(err.Error(), raw) {
			t.Errorf("Authenticate error %v", err)
		}
	}
	w := NewWriter(s, WriterOptions{})
	k, _ := kr.Get("a")
	w.Record(Record{RequestID: "r1", KeyID: k.ID, KeyName: k.Name, ModelGroup: "gpt-4o", Status: 200})
	w.Close()
	s.Close() // checkpoints the WAL into the main file

	files, _ := filepath.Glob(filepath.Join(dir, "lumen.db*"))
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if len(all) == 0 {
		t.Fatal("database files are empty")
	}
	for _, raw := range raws {
		secret := raw[len(KeyPrefix)+displayLen:] // what is not the display prefix
		if bytes.Contains(all, []byte(raw)) || bytes.Contains(all, []byte(secret)) {
			t.Errorf("key %s… found in the database files", raw[:13])
		}
		if !bytes.Contains(all, Hash(raw)) && raw != raws[1] { // raws[1] was rotated away
			t.Errorf("hash of key %s… not stored", raw[:13])
		}
	}
}

// TestKeyringRunSeesOtherProcess: a key created or revoked through another
// Keyring on the same file (lumen keys ... while lumen serve runs) takes
// effect after the next Run tick.
func TestKeyringRunSeesOtherProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pair := openPair(t)
	serverDB, cliDB := pair[0], pair[1]
	server := newKeyring(t, serverDB, nil)
	cli := newKeyring(t, cliDB, nil)

	v0, _ := serverDB.KeysVersion(ctx)
	raw, _, err := cli.Create(ctx, KeySpec{Name: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if v1, _ := serverDB.KeysVersion(ctx); v1 == v0 {
		t.Fatal("keys version did not change on insert")
	}
	if _, err := server.Authenticate(raw); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("server knew the key before reloading: %v", err)
	}
	if err := server.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Authenticate(raw); err != nil {
		t.Fatalf("after refresh: %v", err)
	}
	// Persisting spend does not count as a change to reload for.
	v2, _ := serverDB.KeysVersion(ctx)
	k, _ := server.Get("late")
	if err := serverDB.SaveSpend(ctx, []KeySpend{{KeyID: k.ID, USD: 1}}); err != nil {
		t.Fatal(err)
	}
	if v3, _ := serverDB.KeysVersion(ctx); v3 != v2 {
		t.Errorf("SaveSpend changed the keys version")
	}

	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, 10*time.Millisecond) }()
	if _, err := cli.Revoke(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := server.Authenticate(raw); errors.Is(err, ErrRevokedKey) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never saw the revocation")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "lumen.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	kr, err := NewKeyring(ctx, s, KeyringOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var raw string
	for i := range 1000 {
		r, _, err := kr.Create(ctx, KeySpec{Name: "k" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String()})
		if err != nil {
			b.Fatal(err)
		}
		raw = r
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := kr.Authenticate(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A change made here starts from the stored key: a change another process
// made a moment ago (before this Keyring's next refresh) is not undone.
func TestChangeDoesNotUndoAnotherProcess(t *testing.T) {
	ctx := context.Background()
	pair := openPair(t)
	serverDB, cliDB := pair[0], pair[1]
	server := newKeyring(t, serverDB, nil)
	if _, _, err := server.Create(ctx, KeySpec{Name: "shared", RPM: 10}); err != nil {
		t.Fatal(err)
	}
	cli := newKeyring(t, cliDB, nil)
	budget := 5.0
	if _, err := cli.Update(ctx, "shared", KeyUpdate{BudgetUSD: &budget}); err != nil {
		t.Fatal(err)
	}
	rpm := 20
	k, err := server.Update(ctx, "shared", KeyUpdate{RPM: &rpm})
	if err != nil {
		t.Fatal(err)
	}
	if k.BudgetUSD != 5 || k.RPM != 20 {
		t.Fatalf("after both changes: budget %v rpm %v, want 5 and 20", k.BudgetUSD, k.RPM)
	}
}

// flakyVersions is a KeyStore whose KeysVersion fails while down is set.
type flakyVersions struct {
	*DB
	mu    sync.Mutex
	down  bool
	calls int
}

func (f *flakyVersions) KeysVersion(ctx context.Context) (int64, error) {
	f.mu.Lock()
	f.calls++
	down := f.down
	f.mu.Unlock()
	if down {
		return 0, errors.New("connection refused")
	}
	return f.DB.KeysVersion(ctx)
}

// While the store fails, Run warns once (not at every tick), keeps the
// loaded keys working, and says when the store is back.
func TestKeyringRunStoreDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := &flakyVersions{DB: openTest(t)}
	var logs syncbuf.Buffer
	kr, err := NewKeyring(ctx, store, KeyringOptions{Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := kr.Create(ctx, KeySpec{Name: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.down = true
	store.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- kr.Run(ctx, 5*time.Millisecond) }()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait("ten failed checks", func() bool { store.mu.Lock(); defer store.mu.Unlock(); return store.calls >= 10 })
	if _, err := kr.Authenticate(raw); err != nil {
		t.Errorf("a loaded key while the store is down: %v", err)
	}
	store.mu.Lock()
	store.down = false
	store.mu.Unlock()
	wait("the recovery line", func() bool { return strings.Contains(logs.String(), "works again") })
	cancel()
	<-done
	if n := strings.Count(logs.String(), "connection refused"); n != 1 {
		t.Errorf("%d warnings for one outage, want 1:\n%s", n, logs.String())
	}
}

// OnChange hears of each change as it was and as it is: made here
// (Update) or by another process (seen by a reload), never of a key new
// to the Keyring, and not again when the reload reads back a change made
// here.
func TestKeyringOnChange(t *testing.T) {
	ctx := context.Background()
	pair := openPair(t)
	var mu sync.Mutex
	var heard []string
	onChange := func(_ context.Context, changes []KeyChange) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range changes {
			heard = append(heard, c.New.Name+" "+c.Old.BudgetPeriod+"->"+c.New.BudgetPeriod)
		}
	}
	got := func() string {
		mu.Lock()
		defer mu.Unlock()
		s := strings.Join(heard, ", ")
		heard = nil
		return s
	}
	server, err := NewKeyring(ctx, pair[0], KeyringOptions{OnChange: onChange})
	if err != nil {
		t.Fatal(err)
	}
	cli := newKeyring(t, pair[1], nil)
	if _, _, err := server.Create(ctx, KeySpec{Name: "here", BudgetPeriod: "daily"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli.Create(ctx, KeySpec{Name: "there", BudgetPeriod: "daily"}); err != nil {
		t.Fatal(err)
	}
	if err := server.refresh(ctx); err != nil || got() != "" {
		t.Fatalf("a key new to the Keyring is no change: heard %q (%v)", got(), err)
	}
	monthly := "monthly"
	if _, err := server.Update(ctx, "here", KeyUpdate{BudgetPeriod: &monthly}); err != nil {
		t.Fatal(err)
	}
	if h := got(); h != "here daily->monthly" {
		t.Errorf("Update: heard %q", h)
	}
	if _, err := cli.Update(ctx, "there", KeyUpdate{BudgetPeriod: &monthly}); err != nil {
		t.Fatal(err)
	}
	if err := server.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if h := got(); h != "there daily->monthly" {
		t.Errorf("a reload after another process's change: heard %q", h)
	}
}

// panickyKeys is a KeyStore whose second ListKeys (Run's first reload)
// panics; the third closes listed.
type panickyKeys struct {
	calls  atomic.Int32
	listed chan struct{}
}

func (s *panickyKeys) InsertKey(context.Context, *Key) error { return nil }
func (s *panickyKeys) UpdateKey(context.Context, *Key) error { return nil }
func (s *panickyKeys) ListKeys(context.Context) ([]*Key, error) {
	switch s.calls.Add(1) {
	case 2:
		panic("injected")
	case 3:
		close(s.listed)
	}
	return nil, nil
}

// A reload that panics is logged with its stack, counts as a failed one
// and Run goes on: the next tick reloads again (without the recovery the
// panic ends the test binary, as it would lumen serve).
func TestKeyringRunRecoversPanics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := &panickyKeys{listed: make(chan struct{})}
	var logs syncbuf.Buffer
	kr, err := NewKeyring(ctx, store, KeyringOptions{Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- kr.Run(ctx, time.Millisecond) }()
	<-store.listed
	cancel()
	<-done
	if !strings.Contains(logs.String(), `"loop":"reloading virtual keys","panic":"injected"`) || !strings.Contains(logs.String(), "reloading virtual keys panicked") {
		t.Fatalf("log %s", logs.String())
	}
}
