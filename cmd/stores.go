package cmd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/cache"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/internal/loop"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/metrics"
	"github.com/lumengw/lumen/router"
	"github.com/lumengw/lumen/router/auto"
	"github.com/lumengw/lumen/server"
)

// keysRefresh is how often a running server picks up keys changed by
// another process (lumen keys …, a second instance).
const keysRefresh = 2 * time.Second

// flushWait bounds how long a reload of a key's spend waits for the
// ledger writer to commit the rows already queued.
const flushWait = 5 * time.Second

// spendSaveEvery is how often the in-memory budget spend is persisted, so
// that a crash loses at most this much of the spend whose ledger rows were
// dropped.
const spendSaveEvery = 30 * time.Second

// learnSyncEvery is how often what auto:smart learned goes to the ledger
// and comes back with what the other instances learned.
const learnSyncEvery = 30 * time.Second

// spendRaiseEvery is, with budgets in Redis, how often their spend is
// raised to the ledger's, so that a Redis that lost its data catches up.
// Each time sums the ledger's current periods, hence less often.
const spendRaiseEvery = 5 * time.Minute

// budgetStore is a limits.BudgetStore that can load spend from the ledger
// (limits.MemoryBudgets, limits.RedisBudgets).
type budgetStore interface {
	limits.BudgetStore
	Load(ctx context.Context, src limits.SpendSource, budgets map[string]limits.Budget) error
}

// stores are what serve keeps besides the router: the ledger database and
// its writer, the virtual keys, budgets, rate limits, metrics and the audit
// log. openStores opens them; close drains and closes them. The goroutines
// they need are started by run and owned by the stores: close stops them.
type stores struct {
	db      *ledger.DB
	writer  *ledger.Writer
	keys    *ledger.Keyring
	budgets budgetStore
	limiter limits.Limiter
	redis   *redis.Client // limits.redis_url's, when set
	cfg     *config.Config
	loc     *time.Location // ledger.budget_timezone
	metrics *metrics.Metrics
	audit   *audit.Log
	log     zerolog.Logger
	// learner is the router whose auto:smart state syncs with the ledger
	// (the server's current one); nil: none.
	learner func() *router.Router

	// reloadMu guards unloaded: the keys whose budget period changed but
	// whose spend in the new window failed to load; retried every
	// keysRefresh.
	reloadMu sync.Mutex
	unloaded map[string]bool

	// unraised: with budgets in Redis, the last load of their spend from
	// the ledger failed (at start, Redis was down); raiseSpendLoop retries
	// it every keysRefresh until it works. Set before run, then the
	// loop's own.
	unraised bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openLedger opens the ledger the config names: the Postgres database at
// ledger.postgres_url, else the SQLite file at ledger.path (creating
// either's tables).
func openLedger(ctx context.Context, cfg *config.Config) (*ledger.DB, error) {
	if u := cfg.Ledger.PostgresURL.Value(); u != "" {
		db, err := ledger.OpenPostgres(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("opening the ledger (ledger.postgres_url): %w", err)
		}
		return db, nil
	}
	db, err := ledger.Open(ctx, cfg.Ledger.Path)
	if err != nil {
		return nil, fmt.Errorf("opening the ledger (ledger.path): %w", err)
	}
	return db, nil
}

// openStores opens the ledger (openLedger), loads the
// keys, each key's spend and that of each budget in limits in its current
// period, and opens the audit log.
func openStores(ctx context.Context, cfg *config.Config, log zerolog.Logger) (_ *stores, err error) {
	// st is not the named result: every failure returns nil, and the
	// deferred close must still see what was opened.
	st := &stores{log: log, cfg: cfg}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	loc, err := cfg.Ledger.Location()
	if err != nil {
		return nil, err
	}
	st.loc = loc
	if st.db, err = openLedger(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.Ledger.PostgresURL != "" && cfg.Limits.RedisURL == "" {
		log.Warn().Msg("ledger.postgres_url: keys and spend are shared, but budgets and rate limits are counted in this instance's memory; set limits.redis_url to share them between instances")
	}
	ko := ledger.KeyringOptions{Logger: log, OnChange: st.keysChanged}
	if st.keys, err = ledger.NewKeyring(ctx, st.db, ko); err != nil {
		return nil, fmt.Errorf("loading virtual keys: %w", err)
	}
	if u := cfg.Limits.RedisURL.Value(); u != "" {
		opts, err := cache.RedisClientOptions(u)
		if err != nil {
			return nil, fmt.Errorf("limits.redis_url: %w", err)
		}
		redis.SetLogger(redisLogger{log})
		st.redis = redis.NewClient(opts)
		// Redis being down admits requests unchecked; the stores skip it
		// for a while after a failure and log it once a minute.
		ro := limits.RedisOptions{Location: loc, Logger: log}
		st.budgets, st.limiter = limits.NewRedisBudgets(st.redis, ro), limits.NewRedisLimiter(st.redis, ro)
	} else {
		st.budgets, st.limiter = limits.NewMemoryBudgets(limits.BudgetOptions{Location: loc}), limits.NewMemoryLimiter(limits.LimiterOptions{})
	}
	if err := st.loadAll(ctx); err != nil {
		if st.redis == nil {
			return nil, fmt.Errorf("loading budget spend: %w", err)
		}
		// As on every request, a shared store that is down does not stop
		// traffic; the spend is loaded every keysRefresh until it works. A
		// Redis that failed cost at most the store's timeout and is logged
		// by it.
		logUnlessLogged(log, err, "limits.redis_url: loading spend into Redis failed; budgets and rate limits are unchecked while it is unreachable")
		st.unraised = true
	}
	if *cfg.Metrics.Enabled {
		st.metrics = metrics.New(metrics.Options{})
	}
	zero := cfg.Privacy.ZeroRetention
	st.writer = ledger.NewWriter(st.db, ledger.WriterOptions{
		QueueSize: cfg.Ledger.QueueSize, StorePayloads: cfg.Ledger.StorePayloads && !zero,
		RetentionDays: cfg.Ledger.RetentionDays, Logger: log,
	})
	if st.metrics != nil {
		st.metrics.SetLedger(st.writer.QueueDepth, st.writer.Dropped, st.writer.Failed)
	}
	if *cfg.Audit.Enabled {
		st.audit, err = audit.Open(ctx, audit.Options{
			Path: auditPath(cfg), SigningKeyPath: cfg.Audit.SigningKey, CheckpointEvery: cfg.Audit.CheckpointEvery,
			CheckpointFile: cfg.Audit.CheckpointFile,
			StorePayloads:  cfg.Ledger.StorePayloads && !zero, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("opening the audit log (audit.path): %w", err)
		}
		if st.audit.KeyGenerated() {
			log.Info().Str("signing_key", cfg.Audit.SigningKey).Str("public_key", st.audit.PublicKeyPEM()).
				Msg("audit: generated a checkpoint signing key; keep the private key where whoever can write the database cannot")
		}
		if st.metrics != nil {
			st.metrics.SetAudit(st.audit.QueueDepth, st.audit.Dropped, st.audit.Failed)
		}
	}
	return st, nil
}

// loadAll loads the spend of every budget (allBudgets) from the ledger,
// summing each period once. In Redis it is LoadAll, which marks the spend
// loaded: a reservation that finds an account's spend key missing then
// tells a new account (an end user's first request) from a Redis that
// lost its data, and only the latter loads it all again.
func (st *stores) loadAll(ctx context.Context) error {
	src := &memoSpend{src: st.spend(), got: map[time.Time]map[string]float64{}}
	budgets, err := st.allBudgets(ctx, src)
	if err != nil {
		return err
	}
	if all, ok := st.budgets.(interface {
		LoadAll(context.Context, limits.SpendSource, map[string]limits.Budget) error
	}); ok {
		return all.LoadAll(ctx, src, budgets)
	}
	return st.budgets.Load(ctx, src, budgets)
}

// memoSpend answers each since once: a load asks for the same period to
// list the users who spent and again to load them.
type memoSpend struct {
	src limits.SpendSource
	got map[time.Time]map[string]float64
}

func (m *memoSpend) SpendSince(ctx context.Context, since time.Time) (map[string]float64, error) {
	if spent, ok := m.got[since]; ok {
		return spent, nil
	}
	spent, err := m.src.SpendSince(ctx, since)
	if err == nil {
		m.got[since] = spent
	}
	return spent, err
}

// allBudgets are the budgets to load spend for: every live key's, those
// of the config's limits, and with limits.users a budget for every user
// src shows spending in the current period (others start at zero).
func (st *stores) allBudgets(ctx context.Context, src limits.SpendSource) (map[string]limits.Budget, error) {
	budgets := scopeBudgets(st.cfg.Limits)
	for _, k := range st.keys.List() {
		if !k.Revoked() {
			budgets[k.ID] = k.Budget()
		}
	}
	if u := st.cfg.Limits.Users; u.BudgetUSD > 0 {
		b := u.Budget()
		start, _ := b.Period.Bounds(time.Now(), st.loc) // zero for a total budget
		spent, err := src.SpendSince(ctx, start)
		if err != nil {
			return nil, fmt.Errorf("listing the users who spent: %w", err)
		}
		for id := range spent {
			if strings.HasPrefix(id, limits.UserAccount("")) {
				budgets[id] = b
			}
		}
	}
	return budgets, nil
}

// spend is the ledger's recorded spend as the budgets count it: the ledger
// names a request's model group as the client sent it, an alias included
// (router_settings.model_group_alias), and the group's budget counts it.
func (st *stores) spend() limits.SpendSource {
	return aliasedSpend{st.db, st.cfg.RouterSettings.ModelGroupAlias}
}

type aliasedSpend struct {
	src     limits.SpendSource
	aliases map[string]string // alias -> model group
}

func (a aliasedSpend) SpendSince(ctx context.Context, since time.Time) (map[string]float64, error) {
	spent, err := a.src.SpendSince(ctx, since)
	if err != nil || len(a.aliases) == 0 {
		return spent, err
	}
	for alias, group := range a.aliases {
		spent[limits.GroupAccount(group)] += spent[limits.GroupAccount(alias)]
	}
	return spent, nil
}

// scopeBudgets are the budgets of limits (the gateway's, each model
// group's and each key tag's), by budget account.
func scopeBudgets(l config.Limits) map[string]limits.Budget {
	out := map[string]limits.Budget{}
	add := func(id string, v config.Limit) {
		if v.BudgetUSD > 0 {
			out[id] = v.Budget()
		}
	}
	add(limits.GlobalAccount, l.Global)
	for g, v := range l.ModelGroups {
		add(limits.GroupAccount(g), v)
	}
	for tag, v := range l.Tags {
		add(limits.TagAccount(tag), v)
	}
	return out
}

// options fills the server's store fields.
func (st *stores) options(o *server.Options) {
	o.Keys, o.Budgets, o.Limiter, o.Ledger, o.Reports, o.Metrics, o.Audit = st.keys, st.budgets, st.limiter, st.writer, st.db, st.metrics, st.audit
}

// run starts the stores' background work: picking up keys changed by other
// processes, saving budget spend, syncing what auto:smart learned and
// clearing the audit log's bodies past retention. close stops it.
func (st *stores) run(ctx context.Context) {
	ctx, st.cancel = context.WithCancel(ctx)
	st.wg.Add(3)
	go func() {
		defer st.wg.Done()
		_ = st.keys.Run(ctx, keysRefresh)
	}()
	go func() {
		defer st.wg.Done()
		st.every(ctx, keysRefresh, "reloading the spend of changed keys", st.retryReloads)
	}()
	go func() {
		defer st.wg.Done()
		if st.redis != nil {
			st.raiseSpendLoop(ctx)
		} else {
			st.every(ctx, spendSaveEvery, "saving budget spend", st.saveSpend)
		}
	}()
	if st.learner != nil {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			st.every(ctx, learnSyncEvery, "syncing auto:smart", func() { st.syncLearning() })
		}()
	}
	if st.audit != nil && st.cfg.Ledger.RetentionDays > 0 && st.cfg.Ledger.StorePayloads {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			// At once, too: a restarted gateway must not keep bodies
			// past retention for another auditPurgeEvery (test
			// TestE2EAuditPayloadsPurgedAtStart).
			purge := func() { st.purgeAuditPayloads(ctx) }
			loop.Step(st.log, "purging audit bodies", purge)
			st.every(ctx, auditPurgeEvery, "purging audit bodies", purge)
		}()
	}
}

// auditPurgeEvery is how often the audit log's stored bodies past
// ledger.retention_days are looked for.
const auditPurgeEvery = time.Hour

// purgeAuditPayloads clears the bodies the audit log stored with entries
// older than ledger.retention_days, as the ledger's retention deletes its
// payloads: in chunks, until none is left or ctx ends. The entries, their
// digests and the chain stay.
func (st *stores) purgeAuditPayloads(ctx context.Context) {
	before := time.Now().AddDate(0, 0, -st.cfg.Ledger.RetentionDays)
	var total int64
	for ctx.Err() == nil {
		n, err := st.audit.PurgePayloads(ctx, before, 2000)
		if err != nil {
			st.log.Warn().Err(err).Msg("audit: stored bodies past retention_days stay until the next try")
			return
		}
		total += n
		if n < 2000 {
			break
		}
	}
	if total > 0 {
		st.log.Info().Int64("entries", total).Int("retention_days", st.cfg.Ledger.RetentionDays).Msg("audit: stored bodies past retention cleared")
	}
}

// syncLearning sends what auto:smart learned here to the ledger and takes
// back what every instance did, and reports whether that worked.
func (st *stores) syncLearning() bool {
	if st.learner == nil || st.db == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.learner().SyncLearning(ctx, armStore{st.db}); err != nil {
		st.log.Warn().Err(err).Msg("auto:smart: its outcomes stay here until the next sync")
		return false
	}
	return true
}

// armStore is the ledger as the router's ArmStore.
type armStore struct{ db *ledger.DB }

func (a armStore) MergeArms(ctx context.Context, deltas []auto.Arm, maxCount float64) ([]auto.Arm, error) {
	in := make([]ledger.Arm, len(deltas))
	for i, d := range deltas {
		in[i] = ledger.Arm{Domain: d.Domain, Model: d.Model, Alpha: d.Alpha, Beta: d.Beta}
	}
	stored, err := a.db.MergeArms(ctx, in, maxCount)
	if err != nil {
		return nil, err
	}
	out := make([]auto.Arm, len(stored))
	for i, s := range stored {
		out[i] = auto.Arm{Domain: s.Domain, Model: s.Model, Alpha: s.Alpha, Beta: s.Beta}
	}
	return out, nil
}

// every calls f every d until ctx is done, as a step of the loop name: a
// panic in f is logged and f runs again at the next tick (loop.Step).
func (st *stores) every(ctx context.Context, d time.Duration, name string, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			loop.Step(st.log, name, f)
		}
	}
}

// keysChanged is the Keyring's OnChange. A key whose budget period changed
// (PATCH /admin/keys here, or lumen keys update --budget-period or another
// instance, seen by the Keyring's reload) has its spend in the new window
// loaded from the ledger, as at start: the budget store holds only the
// old window's. It runs before PATCH answers, so the answer and the
// requests after it see the new window's spend.
func (st *stores) keysChanged(ctx context.Context, changes []ledger.KeyChange) {
	ids := map[string]bool{}
	for _, c := range changes {
		if !c.New.Revoked() && !limits.SamePeriod(limits.Period(c.Old.BudgetPeriod), limits.Period(c.New.BudgetPeriod)) {
			ids[c.New.ID] = true
		}
	}
	if len(ids) > 0 {
		st.reloadSpend(ctx, ids)
	}
}

// retryReloads loads again the spend of the keys whose reload failed.
func (st *stores) retryReloads() {
	st.reloadMu.Lock()
	ids := maps.Clone(st.unloaded)
	st.reloadMu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st.reloadSpend(ctx, ids)
}

// reloadSpend loads the ledger's spend of the keys ids in the current
// window of the budget each has now. A key whose load fails keeps its old
// window (limits.MemoryBudgets.Load) and is retried every keysRefresh.
func (st *stores) reloadSpend(ctx context.Context, ids map[string]bool) {
	budgets := map[string]limits.Budget{}
	for id := range ids {
		if k, err := st.keys.Get(id); err == nil && !k.Revoked() {
			budgets[id] = k.Budget()
		}
	}
	var err error
	if st.writer != nil {
		// The requests this instance already settled must be in the rows
		// summed, or the new window would miss them. A writer held up
		// (its database away) fails the load, to be retried.
		fctx, cancel := context.WithTimeout(ctx, flushWait)
		err = st.writer.Flush(fctx)
		cancel()
	}
	if err == nil && len(budgets) > 0 {
		err = st.budgets.Load(ctx, st.spend(), budgets)
	}
	st.reloadMu.Lock()
	defer st.reloadMu.Unlock()
	if err != nil {
		if !errors.Is(err, limits.ErrUnavailable) { // else the Redis store logged it, once a minute
			st.log.Error().Err(err).Int("keys", len(ids)).Msg("reloading the spend of keys whose budget period changed; they keep their old period's spend until it works")
		}
		if st.unloaded == nil {
			st.unloaded = map[string]bool{}
		}
		maps.Copy(st.unloaded, ids)
		return
	}
	for id := range ids {
		delete(st.unloaded, id)
	}
}

// raiseSpendLoop raises the budgets' spend in Redis to the ledger's every
// spendRaiseEvery, at once when Redis answers after an outage (it may
// have restarted empty, and until then every budget would admit its whole
// amount again), and every keysRefresh while the last raise failed (Redis
// was down at start). A failure is logged once, and its end.
func (st *stores) raiseSpendLoop(ctx context.Context) {
	var back <-chan struct{}
	if r, ok := st.budgets.(interface{ Recovered() <-chan struct{} }); ok {
		back = r.Recovered()
	}
	t := time.NewTicker(spendRaiseEvery)
	defer t.Stop()
	retry := time.NewTicker(keysRefresh)
	defer retry.Stop()
	for {
		why := ""
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-back:
			why = "Redis is back, or lost the spend"
		case <-retry.C:
			if !st.unraised {
				continue
			}
			why = "a failed load"
		}
		err := errPanicked // unless raiseSpend returns: retried every keysRefresh, as a failure
		loop.Step(st.log, "raising the shared budgets' spend", func() { err = st.raiseSpend() })
		switch {
		case err != nil && !st.unraised:
			logUnlessLogged(st.log, err, "raising the shared budgets' spend to the ledger's failed; retrying every 2s")
		case err == nil && (st.unraised || why != ""):
			if why == "" {
				why = "a failed load"
			}
			st.log.Info().Str("after", why).Msg("limits: the shared budgets' spend in Redis was raised to the ledger's")
		}
		st.unraised = err != nil
	}
}

// errPanicked is the error of a loop step that panicked (loop.Step logged
// it): the step counts as failed.
var errPanicked = errors.New("panicked")

// raiseSpend raises the spend of the budgets in Redis (shared, kept there)
// to the ledger's.
func (st *stores) raiseSpend() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return st.loadAll(ctx)
}

// logUnlessLogged logs err as msg, unless it is a Redis store's failure,
// which the store logged already (at most once a minute).
func logUnlessLogged(log zerolog.Logger, err error, msg string) {
	if !errors.Is(err, limits.ErrUnavailable) {
		log.Error().Err(err).Msg(msg)
	}
}

// saveSpend persists the in-memory spend of the keys to the ledger.
func (st *stores) saveSpend() {
	mem, ok := st.budgets.(*limits.MemoryBudgets)
	if !ok {
		return // in Redis, which keeps it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.db.SaveSpend(ctx, keySpend(mem.Snapshot())); err != nil {
		st.log.Error().Err(err).Msg("saving budget spend")
	}
}

// keySpend is the spend of the virtual keys among a budget store's
// accounts, which the ledger keeps with each key. The other accounts (end
// users, tags, model groups, the gateway) have no row to update and are
// reloaded from the requests: saving them would cost a statement each (a
// round trip each on Postgres, tens of thousands of users at shutdown).
func keySpend(snap []limits.Spend) []ledger.KeySpend {
	spend := make([]ledger.KeySpend, 0, len(snap))
	for _, s := range snap {
		if ledger.IDShaped(s.KeyID) {
			spend = append(spend, ledger.KeySpend{KeyID: s.KeyID, PeriodStart: s.PeriodStart, USD: s.USD})
		}
	}
	return spend
}

// close stops the background work, drains the ledger and audit queues and
// closes the database. It is safe on partly opened stores.
func (st *stores) close() {
	if st.cancel != nil {
		st.cancel()
		st.wg.Wait()
	}
	var errs []error
	if st.writer != nil {
		errs = append(errs, st.writer.Close())
	}
	st.syncLearning() // what auto:smart learned since the last sync
	if st.budgets != nil && st.db != nil {
		st.saveSpend()
	}
	if st.redis != nil {
		errs = append(errs, st.redis.Close())
	}
	if st.audit != nil {
		errs = append(errs, st.audit.Close())
	}
	if st.db != nil {
		errs = append(errs, st.db.Close())
	}
	if err := errors.Join(errs...); err != nil {
		st.log.Error().Err(err).Msg("closing the ledger")
	}
}
