package ledger

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/loop"
	"github.com/lumengw/lumen/limits"
)

// KeyPrefix starts every virtual key.
const KeyPrefix = "lumen-sk-"

const (
	keySecretLen = 43 // base62 digits of 256 random bits
	displayLen   = 4  // secret characters kept for display
)

// Key is a virtual key's record: everything but the key itself.
//
// A *Key returned by a Keyring is shared with other readers and must not
// be modified; the Keyring replaces it whole when the key changes.
type Key struct {
	// ID is the key's stable id ("key_" + 16 hex digits); it survives
	// rotation and is what the ledger records.
	ID string `json:"id"`
	// Name is unique among live keys.
	Name string `json:"name"`
	// Prefix is the start of the key, for display ("lumen-sk-Ab12").
	Prefix string `json:"prefix"`
	// Hash is the SHA-256 of the key.
	Hash []byte `json:"-"`
	// BudgetUSD caps the spend per BudgetPeriod; zero means no cap.
	BudgetUSD float64 `json:"budget_usd,omitempty"`
	// BudgetPeriod is daily, weekly, monthly or total (the default).
	BudgetPeriod string `json:"budget_period,omitempty"`
	// RPM and TPM limit requests and tokens per minute; zero means none.
	RPM int `json:"rpm,omitempty"`
	TPM int `json:"tpm,omitempty"`
	// Models are the model groups the key may call; empty means all.
	Models []string `json:"models,omitempty"`
	// Tags are free-form labels ("team": "search"); the cache reads
	// cache_scope and tenant.
	Tags map[string]string `json:"tags,omitempty"`
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// RevokedAt is when the key was revoked; zero while it is live.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// SpendUSD is the spend last persisted for the period starting at
	// SpendPeriodStart (see SQLite.SaveSpend); the live figure is in
	// memory (limits.MemoryBudgets).
	SpendUSD         float64   `json:"spend_usd"`
	SpendPeriodStart time.Time `json:"spend_period_start,omitzero"`
}

// Allows reports whether k may call model group group.
func (k *Key) Allows(group string) bool {
	return len(k.Models) == 0 || slices.Contains(k.Models, group)
}

// Revoked reports whether k was revoked.
func (k *Key) Revoked() bool { return !k.RevokedAt.IsZero() }

// Expired reports whether k has expired at t.
func (k *Key) Expired(t time.Time) bool { return !k.ExpiresAt.IsZero() && !t.Before(k.ExpiresAt) }

func (k *Key) clone() *Key {
	c := *k
	c.Models = slices.Clone(k.Models)
	if k.Tags != nil {
		c.Tags = make(map[string]string, len(k.Tags))
		for n, v := range k.Tags {
			c.Tags[n] = v
		}
	}
	return &c
}

// Authentication errors. Messages never include the presented key.
var (
	// ErrUnknownKey: no key has the presented value (or it is malformed).
	ErrUnknownKey = errors.New("invalid API key")
	// ErrRevokedKey: the key was revoked.
	ErrRevokedKey = errors.New("API key revoked")
	// ErrExpiredKey: the key's expiry has passed.
	ErrExpiredKey = errors.New("API key expired")
)

// Administration errors.
var (
	// ErrKeyNotFound: no key has that id or name.
	ErrKeyNotFound = errors.New("no such key")
	// ErrNameTaken: a live key already has that name.
	ErrNameTaken = errors.New("a live key already has this name")
)

// KeyStore persists keys; the Keyring is its only writer. Implementations
// are safe for concurrent use.
type KeyStore interface {
	// InsertKey adds k; a live key with the same name is ErrNameTaken.
	InsertKey(ctx context.Context, k *Key) error
	// UpdateKey replaces the settings, hash, prefix and revocation of the
	// key with k.ID (not its persisted spend); ErrKeyNotFound if none.
	UpdateKey(ctx context.Context, k *Key) error
	// ListKeys returns every key, revoked ones included.
	ListKeys(ctx context.Context) ([]*Key, error)
}

// KeysVersioner is an optional KeyStore capability: a number that changes
// whenever any key's settings change, also from another process. Run
// reloads only when it changes.
type KeysVersioner interface {
	KeysVersion(ctx context.Context) (int64, error)
}

// Hash returns the SHA-256 of a presented key, as stored.
func Hash(raw string) []byte {
	h := sha256.Sum256([]byte(raw))
	return h[:]
}

// newSecret returns a new key and its id.
func newSecret() (raw, id string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generating key: %w", err)
	}
	s := new(big.Int).SetBytes(b[:]).Text(62)
	raw = KeyPrefix + strings.Repeat("0", keySecretLen-len(s)) + s
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", fmt.Errorf("generating key id: %w", err)
	}
	return raw, "key_" + hex.EncodeToString(idb[:]), nil
}

func displayPrefix(raw string) string { return raw[:len(KeyPrefix)+displayLen] }

// KeySpec is what creating a key takes.
type KeySpec struct {
	// Name is required and unique among live keys.
	Name         string
	BudgetUSD    float64
	BudgetPeriod string
	RPM, TPM     int
	Models       []string
	Tags         map[string]string
	ExpiresAt    time.Time
}

// KeyUpdate changes some of a key's settings; nil fields stay as they are.
type KeyUpdate struct {
	Name         *string
	BudgetUSD    *float64
	BudgetPeriod *string
	RPM, TPM     *int
	// Models replaces the list; an empty, non-nil slice allows every model.
	Models *[]string
	// Tags replaces the map.
	Tags *map[string]string
	// ExpiresAt replaces the expiry; a zero time means never.
	ExpiresAt *time.Time
}

// Budget is k's budget as the budget stores take it.
func (k *Key) Budget() limits.Budget {
	return limits.Budget{LimitUSD: k.BudgetUSD, Period: limits.Period(k.BudgetPeriod)}
}

// IDShaped reports whether name has the form of a key id ("key_" and 16
// hex digits). Such a name is refused: every command and endpoint that
// takes an id or a name reads an existing id first, so a key named after
// another's id could never be reached by its name.
func IDShaped(name string) bool {
	rest, ok := strings.CutPrefix(strings.TrimSpace(name), "key_")
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil && strings.ToLower(rest) == rest
}

// errIDShaped is validate's answer to an IDShaped name.
func errIDShaped(name string) error {
	return fmt.Errorf("name %q has the form of a key id (key_ and 16 hex digits); pick another", strings.TrimSpace(name))
}

func validate(k *Key) error {
	switch {
	case strings.TrimSpace(k.Name) == "":
		return errors.New("name is required")
	case k.BudgetUSD < 0 || math.IsNaN(k.BudgetUSD) || math.IsInf(k.BudgetUSD, 0):
		return fmt.Errorf("budget must be a non-negative amount of USD, got %v", k.BudgetUSD)
	case k.RPM < 0:
		return fmt.Errorf("rpm must not be negative, got %d", k.RPM)
	case k.TPM < 0:
		return fmt.Errorf("tpm must not be negative, got %d", k.TPM)
	}
	switch k.BudgetPeriod {
	case "", "daily", "weekly", "monthly", "total":
	default:
		return fmt.Errorf("unknown budget period %q (want daily, weekly, monthly or total)", k.BudgetPeriod)
	}
	return nil
}

// index is an immutable snapshot of every key.
type index struct {
	byHash map[[sha256.Size]byte]*Key
	byID   map[string]*Key
}

func newIndex(keys []*Key) *index {
	ix := &index{byHash: make(map[[sha256.Size]byte]*Key, len(keys)), byID: make(map[string]*Key, len(keys))}
	for _, k := range keys {
		if len(k.Hash) == sha256.Size { // anything else can match no key
			ix.byHash[[sha256.Size]byte(k.Hash)] = k
		}
		ix.byID[k.ID] = k
	}
	return ix
}

// KeyChange is a key as it was before a change and as it is after it.
type KeyChange struct {
	Old, New *Key
}

// Keyring authenticates virtual keys from memory and makes every change to
// them, store first, index second. Authenticate, Get and List are safe for
// any number of concurrent readers and never wait on a writer or the disk;
// the changing methods serialize among themselves.
type Keyring struct {
	store    KeyStore
	now      func() time.Time
	log      zerolog.Logger
	onChange func(ctx context.Context, changes []KeyChange)

	mu      sync.Mutex // serializes changes
	idx     atomic.Pointer[index]
	version int64 // the store's KeysVersion at the last load; guarded by mu
}

// KeyringOptions configure a Keyring. Zero fields take the defaults.
type KeyringOptions struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives Run's reload failures; the zero Logger discards them.
	Logger zerolog.Logger
	// OnChange, if set, is told of every key whose record changed, as it
	// was and as it is, once the change is published: by Update, Revoke
	// and Rotate, and by a reload that found changes another process made
	// (a key new to the Keyring is not a change: nothing here knew it). It
	// runs with the change lock held, so calls come one at a time and in
	// order, and a slow one delays the next change (never Authenticate).
	// The budget stores use it to reload a key's spend when its budget
	// period changes.
	OnChange func(ctx context.Context, changes []KeyChange)
}

// NewKeyring loads every key from store.
func NewKeyring(ctx context.Context, store KeyStore, o KeyringOptions) (*Keyring, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	kr := &Keyring{store: store, now: o.Now, log: o.Logger, onChange: o.OnChange}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if err := kr.reload(ctx); err != nil {
		return nil, err
	}
	return kr, nil
}

// reload replaces the index with the store's keys. kr.mu is held.
func (kr *Keyring) reload(ctx context.Context) error {
	var version int64
	if v, ok := kr.store.(KeysVersioner); ok {
		var err error
		if version, err = v.KeysVersion(ctx); err != nil {
			return fmt.Errorf("loading keys: %w", err)
		}
	}
	keys, err := kr.store.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("loading keys: %w", err)
	}
	old := kr.idx.Load()
	kr.idx.Store(newIndex(keys))
	kr.version = version
	if kr.onChange != nil && old != nil {
		var changes []KeyChange
		for _, k := range keys {
			if o := old.byID[k.ID]; o != nil && changed(o, k) {
				changes = append(changes, KeyChange{Old: o, New: k})
			}
		}
		if len(changes) > 0 {
			kr.onChange(ctx, changes)
		}
	}
	return nil
}

// changed reports whether b, key a as a reload read it, differs from a.
// Times are compared to the millisecond, as the stores keep them; the
// settings too, since two changes can fall in one millisecond.
func changed(a, b *Key) bool {
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	return ms(a.UpdatedAt) != ms(b.UpdatedAt) || ms(a.RevokedAt) != ms(b.RevokedAt) || ms(a.ExpiresAt) != ms(b.ExpiresAt) ||
		a.Name != b.Name || !bytes.Equal(a.Hash, b.Hash) || a.BudgetUSD != b.BudgetUSD || a.BudgetPeriod != b.BudgetPeriod ||
		a.RPM != b.RPM || a.TPM != b.TPM || !slices.Equal(a.Models, b.Models) || !maps.Equal(a.Tags, b.Tags)
}

// Reload replaces the in-memory keys with the store's.
func (kr *Keyring) Reload(ctx context.Context) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	return kr.reload(ctx)
}

// refreshTimeout bounds one check of the store in Run: a database out of
// reach must not hold the change lock for as long as TCP would wait.
const refreshTimeout = 10 * time.Second

// errRefreshPanicked is a refresh in Run that panicked (loop.Step logged
// it and its stack): a failed refresh, whose keys already loaded stay.
var errRefreshPanicked = errors.New("reloading virtual keys panicked")

// failLogEvery spaces Run's warnings while the store keeps failing.
const failLogEvery = time.Minute

// Run reloads the keys every interval when the store says they changed
// (or every time, for a store without KeysVersion), so that keys created,
// changed or revoked by another process (lumen keys ..., another instance)
// take effect here within interval. It returns when ctx is done. A
// failure is retried at the next tick: the keys already loaded keep
// authenticating. While the store keeps failing (a shared database out of
// reach) Run warns at the first failure and then once a minute, and says
// when the store answers again.
func (kr *Keyring) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failures := 0
	var lastWarn time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		err := errRefreshPanicked // unless refresh returns: a failure, retried at the next tick
		loop.Step(kr.log, "reloading virtual keys", func() { err = kr.refresh(rctx) })
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			if failures == 1 || time.Since(lastWarn) >= failLogEvery {
				kr.log.Warn().Err(err).Int("failures", failures).Msg("reloading virtual keys; the keys already loaded still work")
				lastWarn = time.Now()
			}
		case failures > 0:
			kr.log.Info().Int("failures", failures).Msg("reloading virtual keys works again")
			failures = 0
		}
	}
}

func (kr *Keyring) refresh(ctx context.Context) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	return kr.refreshLocked(ctx)
}

// refreshLocked reloads the keys if another process changed them. kr.mu is
// held.
func (kr *Keyring) refreshLocked(ctx context.Context) error {
	if v, ok := kr.store.(KeysVersioner); ok {
		version, err := v.KeysVersion(ctx)
		if err != nil {
			return fmt.Errorf("checking keys version: %w", err)
		}
		if version == kr.version {
			return nil
		}
	}
	return kr.reload(ctx)
}

// Authenticate returns the live key whose value is raw. It hashes raw and
// looks the hash up: the lookup's timing depends on the digest, which says
// nothing usable about any stored key, and the final comparison of the
// digests is constant-time. Errors are ErrUnknownKey, ErrRevokedKey or
// ErrExpiredKey; none mentions raw.
func (kr *Keyring) Authenticate(raw string) (*Key, error) {
	sum := sha256.Sum256([]byte(raw))
	k := kr.idx.Load().byHash[sum]
	if k == nil || subtle.ConstantTimeCompare(k.Hash, sum[:]) != 1 {
		return nil, ErrUnknownKey
	}
	if k.Revoked() {
		return nil, ErrRevokedKey
	}
	if k.Expired(kr.now()) {
		return nil, ErrExpiredKey
	}
	return k, nil
}

// Get returns the key with id ref, or else the live key named ref (or the
// most recently revoked one of that name).
func (kr *Keyring) Get(ref string) (*Key, error) {
	ix := kr.idx.Load()
	if k := ix.byID[ref]; k != nil {
		return k, nil
	}
	var found *Key
	for _, k := range ix.byID {
		if k.Name != ref {
			continue
		}
		if !k.Revoked() {
			return k, nil
		}
		if found == nil || k.RevokedAt.After(found.RevokedAt) {
			found = k
		}
	}
	if found == nil {
		return nil, fmt.Errorf("looking up key %q: %w", ref, ErrKeyNotFound)
	}
	return found, nil
}

// List returns every key, revoked ones included, by creation time.
func (kr *Keyring) List() []*Key {
	ix := kr.idx.Load()
	out := make([]*Key, 0, len(ix.byID))
	for _, k := range ix.byID {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// put publishes k in a new index. kr.mu is held.
func (kr *Keyring) put(k *Key) {
	old := kr.idx.Load()
	keys := make([]*Key, 0, len(old.byID)+1)
	for id, o := range old.byID {
		if id != k.ID {
			keys = append(keys, o)
		}
	}
	kr.idx.Store(newIndex(append(keys, k)))
}

// Create makes a new key and returns it, with the key itself: the only time
// it exists outside the caller's hands is this return value.
func (kr *Keyring) Create(ctx context.Context, spec KeySpec) (raw string, k *Key, err error) {
	raw, id, err := newSecret()
	if err != nil {
		return "", nil, err
	}
	now := kr.now().UTC()
	k = &Key{
		ID: id, Name: strings.TrimSpace(spec.Name), Prefix: displayPrefix(raw), Hash: Hash(raw),
		BudgetUSD: spec.BudgetUSD, BudgetPeriod: spec.BudgetPeriod, RPM: spec.RPM, TPM: spec.TPM,
		Models: slices.Clone(spec.Models), Tags: spec.Tags, ExpiresAt: spec.ExpiresAt,
		CreatedAt: now, UpdatedAt: now,
	}
	k = k.clone()
	if err := validate(k); err != nil {
		return "", nil, fmt.Errorf("creating key: %w", err)
	}
	if IDShaped(k.Name) {
		return "", nil, fmt.Errorf("creating key: %w", errIDShaped(k.Name))
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if err := kr.store.InsertKey(ctx, k); err != nil {
		return "", nil, fmt.Errorf("creating key %q: %w", k.Name, err)
	}
	kr.put(k)
	return raw, k, nil
}

// change applies f to a copy of the key ref names and stores it.
func (kr *Keyring) change(ctx context.Context, ref, doing string, f func(k *Key) error) (*Key, error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	// Start from the stored key, not a copy up to one refresh old: another
	// process (lumen keys …) may have changed it since.
	if err := kr.refreshLocked(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	old, err := kr.Get(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	k := old.clone()
	if err := f(k); err != nil {
		return nil, fmt.Errorf("%s %q: %w", doing, old.Name, err)
	}
	k.UpdatedAt = kr.now().UTC()
	if err := kr.store.UpdateKey(ctx, k); err != nil {
		return nil, fmt.Errorf("%s %q: %w", doing, old.Name, err)
	}
	kr.put(k)
	if kr.onChange != nil {
		kr.onChange(ctx, []KeyChange{{Old: old, New: k}})
	}
	return k, nil
}

// Update changes the settings of the key ref names (id or name).
func (kr *Keyring) Update(ctx context.Context, ref string, u KeyUpdate) (*Key, error) {
	return kr.change(ctx, ref, "updating key", func(k *Key) error {
		if k.Revoked() {
			return ErrRevokedKey
		}
		if u.Name != nil {
			if IDShaped(*u.Name) && strings.TrimSpace(*u.Name) != k.Name { // a key named so earlier keeps its name
				return errIDShaped(*u.Name)
			}
			k.Name = strings.TrimSpace(*u.Name)
		}
		if u.BudgetUSD != nil {
			k.BudgetUSD = *u.BudgetUSD
		}
		if u.BudgetPeriod != nil {
			k.BudgetPeriod = *u.BudgetPeriod
		}
		if u.RPM != nil {
			k.RPM = *u.RPM
		}
		if u.TPM != nil {
			k.TPM = *u.TPM
		}
		if u.Models != nil {
			k.Models = slices.Clone(*u.Models)
		}
		if u.Tags != nil {
			k.Tags = (&Key{Tags: *u.Tags}).clone().Tags
		}
		if u.ExpiresAt != nil {
			k.ExpiresAt = *u.ExpiresAt
		}
		return validate(k)
	})
}

// Revoke revokes the key ref names. It fails no request in flight, but
// Authenticate refuses the key from the moment Revoke returns.
func (kr *Keyring) Revoke(ctx context.Context, ref string) (*Key, error) {
	return kr.change(ctx, ref, "revoking key", func(k *Key) error {
		if k.Revoked() {
			return ErrRevokedKey
		}
		k.RevokedAt = kr.now().UTC()
		return nil
	})
}

// Rotate gives the key ref names a new value, keeping its id, settings and
// spend; the old value stops working when Rotate returns.
func (kr *Keyring) Rotate(ctx context.Context, ref string) (raw string, k *Key, err error) {
	raw, _, err = newSecret()
	if err != nil {
		return "", nil, err
	}
	k, err = kr.change(ctx, ref, "rotating key", func(k *Key) error {
		if k.Revoked() {
			return ErrRevokedKey
		}
		k.Hash, k.Prefix = Hash(raw), displayPrefix(raw)
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return raw, k, nil
}
