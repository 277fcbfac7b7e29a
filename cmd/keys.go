package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/ledger"
	"github.com/lumengw/lumen/limits"
)

// actorCLI is the audit actor of changes made with lumen keys.
const actorCLI = "cli"

// NewCmdKeys builds `lumen keys` and its verbs.
func NewCmdKeys(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list, change, revoke and rotate virtual keys",
		Long: fmt.Sprintf(`Manage virtual keys (lumen-sk-…) in the ledger database named by the config
(ledger.path, default ./lumen.db, or ledger.postgres_url). Only a key's SHA-256
is stored: create and rotate print the key once and it cannot be shown again.

The commands work while lumen serve runs on the same database: the server
checks for changes every %s, so a new, changed or revoked key takes effect
there within that time. Every change is written to the audit log (actor
"cli") unless audit.enabled is false.

REF is a key's id (key_…) or its name.`, keysRefresh),
	}
	cmd.AddCommand(
		newCmdKeysCreate(f),
		newCmdKeysList(f),
		newCmdKeysInfo(f),
		newCmdKeysUpdate(f),
		newCmdKeysRevoke(f),
		newCmdKeysRotate(f),
	)
	return cmd
}

// books is what the ledger commands work on: the config, the ledger
// database, its keys and (for changes) the audit log.
type books struct {
	cfg   *config.Config
	db    *ledger.DB
	keys  *ledger.Keyring
	audit *audit.Log // nil when audit is off or not needed
}

// openBooks loads the config named by --config and opens its ledger, which
// must exist unless create (a mistyped path or the wrong directory should
// not leave an empty database behind); with withAudit, also its audit log
// when audit.enabled. The caller must Close.
func openBooks(ctx context.Context, f *Factory, fs *pflag.FlagSet, create, withAudit bool) (*books, error) {
	cfg, _, _, err := loadConfig(newViper(fs), f)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Ledger.Path); err != nil && !create && cfg.Ledger.PostgresURL == "" {
		return nil, fmt.Errorf("opening the ledger (ledger.path): %w; is --config the server's config, and the directory the one it runs in?", err)
	}
	db, err := openLedger(ctx, cfg)
	if err != nil {
		return nil, err
	}
	b := &books{cfg: cfg, db: db}
	if b.keys, err = ledger.NewKeyring(ctx, db, ledger.KeyringOptions{}); err != nil {
		db.Close()
		return nil, err
	}
	if withAudit && cfg.Audit.Enabled != nil && *cfg.Audit.Enabled {
		log, err := audit.Open(ctx, audit.Options{
			Path:               auditPath(cfg),
			SigningKeyPath:     cfg.Audit.SigningKey,
			CheckpointEvery:    cfg.Audit.CheckpointEvery,
			CheckpointInterval: -1, // Close signs the last checkpoint
			CheckpointFile:     cfg.Audit.CheckpointFile,
			Logger:             zerolog.New(f.ErrOut).Level(zerolog.WarnLevel),
		})
		if err != nil {
			db.Close()
			return nil, err
		}
		if log.KeyGenerated() {
			fmt.Fprintf(f.ErrOut, "audit: generated the signing key %s; its public key (for auditors, also in %s.pub):\n%s",
				cfg.Audit.SigningKey, cfg.Audit.SigningKey, log.PublicKeyPEM())
		}
		b.audit = log
	}
	return b, nil
}

// auditPath is the audit database: audit.path, else the ledger's
// (ledger.postgres_url, or the ledger.path file).
func auditPath(cfg *config.Config) string {
	switch {
	case cfg.Audit.Path != "":
		return cfg.Audit.Path
	case cfg.Ledger.PostgresURL != "":
		return cfg.Ledger.PostgresURL.Value()
	}
	return cfg.Ledger.Path
}

// record appends an audit entry for a change to a key.
func (b *books) record(action audit.Action, k *ledger.Key, detail string) {
	if b.audit != nil {
		b.audit.Append(audit.Entry{Actor: actorCLI, Action: action, Target: k.ID, Detail: detail})
	}
}

// Close writes the queued audit entries and closes both databases. An audit
// entry that could not be written is an error: the change was made but is
// missing from the log.
func (b *books) Close() error {
	var errs []error
	if b.audit != nil {
		errs = append(errs, b.audit.Close())
		if n := b.audit.Dropped() + b.audit.Failed(); n > 0 {
			errs = append(errs, fmt.Errorf("writing the audit log: %d entries of this change not written (the change itself was made)", n))
		}
	}
	errs = append(errs, b.db.Close())
	return errors.Join(errs...)
}

// keyFlags are the settings create and update take.
type keyFlags struct {
	name, period, models, tags, expires string
	budget                              float64
	rpm, tpm                            int
}

func (kf *keyFlags) register(fs *pflag.FlagSet, update bool) {
	toClear := func(what string) string {
		if update {
			return "; " + what
		}
		return ""
	}
	fs.StringVar(&kf.name, "name", "", "the key's name, unique among live keys")
	fs.Float64Var(&kf.budget, "budget", 0, "spend cap in USD per budget period"+toClear("0 removes it"))
	fs.StringVar(&kf.period, "budget-period", "", "daily, weekly, monthly or total (default total); periods start on calendar boundaries in ledger.budget_timezone")
	fs.IntVar(&kf.rpm, "rpm", 0, "requests per minute"+toClear("0 removes the limit"))
	fs.IntVar(&kf.tpm, "tpm", 0, "tokens per minute"+toClear("0 removes the limit"))
	fs.StringVar(&kf.models, "models", "", "comma-separated model groups the key may call (default all)"+toClear(`"" allows all`))
	fs.StringVar(&kf.expires, "expires", "", `expiry: a span from now (30d, 2w, 12h), a date (2026-12-31, UTC) or RFC 3339 time`+toClear(`"never" removes it`))
	fs.StringVar(&kf.tags, "tags", "", "comma-separated labels, name=value (team=search,env=prod)"+toClear(`"" removes them`))
}

// update returns the changes the flags given on the command line ask for.
func (kf *keyFlags) update(fs *pflag.FlagSet, now time.Time) (ledger.KeyUpdate, error) {
	var u ledger.KeyUpdate
	if fs.Changed("name") {
		if strings.TrimSpace(kf.name) == "" {
			return u, errors.New("--name must not be empty")
		}
		if ledger.IDShaped(kf.name) {
			return u, fmt.Errorf("--name: %q has the form of a key id (key_ and 16 hex digits); pick another", strings.TrimSpace(kf.name))
		}
		u.Name = &kf.name
	}
	if fs.Changed("budget") {
		if kf.budget < 0 {
			return u, fmt.Errorf("--budget must be a non-negative amount of USD, got %v", kf.budget)
		}
		u.BudgetUSD = &kf.budget
	}
	if fs.Changed("budget-period") {
		p, err := limits.ParsePeriod(kf.period)
		if err != nil {
			return u, fmt.Errorf("--budget-period: %w", err)
		}
		s := string(p)
		u.BudgetPeriod = &s
	}
	if fs.Changed("rpm") {
		if kf.rpm < 0 {
			return u, fmt.Errorf("--rpm must not be negative, got %d", kf.rpm)
		}
		u.RPM = &kf.rpm
	}
	if fs.Changed("tpm") {
		if kf.tpm < 0 {
			return u, fmt.Errorf("--tpm must not be negative, got %d", kf.tpm)
		}
		u.TPM = &kf.tpm
	}
	if fs.Changed("models") {
		m := splitList(kf.models)
		u.Models = &m
	}
	if fs.Changed("tags") {
		t, err := parseTags(kf.tags)
		if err != nil {
			return u, err
		}
		u.Tags = &t
	}
	if fs.Changed("expires") {
		t, err := parseExpiry(kf.expires, now)
		if err != nil {
			return u, err
		}
		u.ExpiresAt = &t
	}
	return u, nil
}

// spec returns the KeySpec the create flags ask for.
func (kf *keyFlags) spec(fs *pflag.FlagSet, now time.Time) (ledger.KeySpec, error) {
	if strings.TrimSpace(kf.name) == "" {
		return ledger.KeySpec{}, errors.New("--name is required")
	}
	u, err := kf.update(fs, now)
	if err != nil {
		return ledger.KeySpec{}, err
	}
	s := ledger.KeySpec{Name: kf.name}
	if u.BudgetUSD != nil {
		s.BudgetUSD = *u.BudgetUSD
	}
	if u.BudgetPeriod != nil {
		s.BudgetPeriod = *u.BudgetPeriod
	}
	if u.RPM != nil {
		s.RPM = *u.RPM
	}
	if u.TPM != nil {
		s.TPM = *u.TPM
	}
	if u.Models != nil {
		s.Models = *u.Models
	}
	if u.Tags != nil {
		s.Tags = *u.Tags
	}
	if u.ExpiresAt != nil {
		s.ExpiresAt = *u.ExpiresAt
	}
	return s, nil
}

// splitList splits a comma-separated list, dropping blanks and repeats.
func splitList(s string) []string {
	out := []string{}
	for _, m := range strings.Split(s, ",") {
		if m = strings.TrimSpace(m); m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for _, t := range splitList(s) {
		n, v, ok := strings.Cut(t, "=")
		n, v = strings.TrimSpace(n), strings.TrimSpace(v)
		if !ok || n == "" {
			return nil, fmt.Errorf("--tags: %q is not name=value", t)
		}
		tags[n] = v
	}
	return tags, nil
}

var spanRE = regexp.MustCompile(`^(\d+)([dw])$`)

// parseSpan parses a length of time: Go's durations (12h, 90m) and whole
// days (30d) or weeks (2w).
func parseSpan(s string) (time.Duration, bool) {
	if m := spanRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 100000 {
			return 0, false
		}
		d := time.Duration(n) * 24 * time.Hour
		if m[2] == "w" {
			d *= 7
		}
		return d, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d >= 0
}

// parseExpiry parses --expires: a span from now, a date or a time; "" and
// "never" are no expiry.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "never" {
		return time.Time{}, nil
	}
	t, ok := ledger.ParseTime(s, time.UTC)
	if d, isSpan := parseSpan(s); isSpan {
		t, ok = now.Add(d), true
	}
	if !ok {
		return time.Time{}, fmt.Errorf("--expires: cannot read %q (want a span like 30d or 12h, a date like 2026-12-31, an RFC 3339 time, or never)", s)
	}
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("--expires: %s is not in the future", t.UTC().Format(time.RFC3339))
	}
	return t.UTC(), nil
}

// parseSince parses --since or --until: a span back from now, a date
// (midnight in loc) or an RFC 3339 time; "" is unbounded.
func parseSince(flag, s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := parseSpan(s); ok {
		return now.Add(-d), nil
	}
	if t, ok := ledger.ParseTime(s, loc); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s: cannot read %q (want a span back from now like 7d or 12h, a date like 2026-11-01, or an RFC 3339 time)", flag, s)
}

// formatFlag adds --format with its choices, the first the default.
func formatFlag(fs *pflag.FlagSet, dst *string, choices ...string) {
	fs.StringVar(dst, "format", choices[0], "output format: "+orList(choices))
}

func checkFormat(format string, choices ...string) error {
	if slices.Contains(choices, format) {
		return nil
	}
	return fmt.Errorf("--format: unknown format %q (want %s)", format, orList(choices))
}

// orList writes choices as "a, b or c".
func orList(choices []string) string {
	if len(choices) == 1 {
		return choices[0]
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// secretView is what create and rotate print: the key, once, and its record.
type secretView struct {
	Secret string `json:"key"`
	*ledger.Key
}

func printSecret(f *Factory, format, verb, raw string, k *ledger.Key) error {
	if format == "json" {
		return writeJSON(f.Out, secretView{Secret: raw, Key: k})
	}
	fmt.Fprintf(f.Out, "%s key %q (id %s):\n\n    %s\n\n", verb, k.Name, k.ID, raw)
	fmt.Fprintln(f.ErrOut, "Save the key now: Lumen keeps only its hash and cannot show it again.")
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newCmdKeysCreate(f *Factory) *cobra.Command {
	var (
		configPath, format string
		kf                 keyFlags
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME [flags]",
		Short: "Create a virtual key and print it once",
		Example: `  lumen keys create --name search-team --budget 50 --budget-period monthly --rpm 60 \
    --models gpt-4o,gpt-4o-mini --expires 90d --tags team=search,env=prod
  lumen keys create --name ci --format json | jq -r .key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			spec, err := kf.spec(cmd.Flags(), time.Now())
			if err != nil {
				return err
			}
			b, err := openBooks(cmd.Context(), f, cmd.Flags(), true, true)
			if err != nil {
				return err
			}
			raw, k, err := b.keys.Create(cmd.Context(), spec)
			if err == nil {
				b.record(audit.ActionKeyCreated, k, "created "+describeKey(k))
				err = printSecret(f, format, "Created", raw, k)
			}
			return errors.Join(err, b.Close())
		},
	}
	fs := cmd.Flags()
	configFlag(fs, &configPath)
	kf.register(fs, false)
	formatFlag(fs, &format, "text", "json")
	return cmd
}

func newCmdKeysList(f *Factory) *cobra.Command {
	var (
		configPath, format string
		all                bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List virtual keys (never their secrets)",
		Example: `  lumen keys list
  lumen keys list --all --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			b, err := openBooks(cmd.Context(), f, cmd.Flags(), false, false)
			if err != nil {
				return err
			}
			defer b.Close()
			now := time.Now()
			keys := []keyView{}
			for _, k := range b.keys.List() {
				if all || !k.Revoked() {
					keys = append(keys, keyView{Key: k, Status: keyStatus(k, now)})
				}
			}
			if format == "json" {
				return writeJSON(f.Out, keys)
			}
			t := &table{header: []string{"ID", "NAME", "PREFIX", "BUDGET", "RPM", "TPM", "MODELS", "EXPIRES", "STATUS"}, right: []bool{4: true, 5: true}}
			for _, v := range keys {
				k := v.Key
				t.rows = append(t.rows, []string{k.ID, k.Name, k.Prefix + "…", budgetText(k), limitText(k.RPM), limitText(k.TPM),
					modelsText(k.Models), timeText(k.ExpiresAt, "never"), v.Status})
			}
			return t.write(f.Out)
		},
	}
	fs := cmd.Flags()
	configFlag(fs, &configPath)
	fs.BoolVar(&all, "all", false, "include revoked keys")
	formatFlag(fs, &format, "table", "json")
	return cmd
}

// keyView is a key as list and info show it.
type keyView struct {
	*ledger.Key
	// Status is active, expired or revoked.
	Status string `json:"status"`
	// PeriodSpendUSD is the spend recorded in the ledger in the current
	// budget period (info only).
	PeriodSpendUSD *float64  `json:"period_spend_usd,omitempty"`
	PeriodStart    time.Time `json:"period_start,omitzero"`
	ResetsAt       time.Time `json:"resets_at,omitzero"`
}

func newCmdKeysInfo(f *Factory) *cobra.Command {
	var configPath, format string
	cmd := &cobra.Command{
		Use:   "info REF",
		Short: "Show a key's settings and its spend in the current budget period",
		Long: `Show a key's settings and the spend the ledger recorded for it in the
current budget period. A running server's own figure can be slightly higher:
it also counts requests in flight and records not yet written.`,
		Example: `  lumen keys info search-team
  lumen keys info key_0123456789abcdef --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			b, err := openBooks(cmd.Context(), f, cmd.Flags(), false, false)
			if err != nil {
				return err
			}
			defer b.Close()
			k, err := b.keys.Get(args[0])
			if err != nil {
				return err
			}
			v, err := b.view(cmd.Context(), k, time.Now())
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(f.Out, v)
			}
			spent := fmt.Sprintf("%s since %s, resets %s", usd6(*v.PeriodSpendUSD), timeText(v.PeriodStart, ""), timeText(v.ResetsAt, ""))
			if v.PeriodStart.IsZero() {
				spent = usd6(*v.PeriodSpendUSD) + " in total"
			}
			t := &table{rows: [][]string{
				{"id:", k.ID}, {"name:", k.Name}, {"prefix:", k.Prefix + "…"}, {"status:", v.Status},
				{"budget:", budgetText(k)}, {"spent:", spent},
				{"rpm:", limitText(k.RPM)}, {"tpm:", limitText(k.TPM)},
				{"models:", modelsText(k.Models)}, {"tags:", tagsText(k.Tags)},
				{"expires:", timeText(k.ExpiresAt, "never")}, {"created:", timeText(k.CreatedAt, "")},
				{"updated:", timeText(k.UpdatedAt, "")},
			}}
			if k.Revoked() {
				t.rows = append(t.rows, []string{"revoked:", timeText(k.RevokedAt, "")})
			}
			return t.write(f.Out)
		},
	}
	configFlag(cmd.Flags(), &configPath)
	formatFlag(cmd.Flags(), &format, "table", "json")
	return cmd
}

// view adds k's status and its spend in the current budget period.
func (b *books) view(ctx context.Context, k *ledger.Key, now time.Time) (keyView, error) {
	v := keyView{Key: k, Status: keyStatus(k, now)}
	loc, err := b.cfg.Ledger.Location()
	if err != nil {
		return v, err
	}
	p, _ := limits.ParsePeriod(k.BudgetPeriod) // validated when stored
	v.PeriodStart, v.ResetsAt = p.Bounds(now, loc)
	spend, err := b.db.SpendSince(ctx, v.PeriodStart)
	if err != nil {
		return v, err
	}
	s := spend[k.ID]
	v.PeriodSpendUSD = &s
	return v, nil
}

func newCmdKeysUpdate(f *Factory) *cobra.Command {
	var (
		configPath string
		kf         keyFlags
	)
	cmd := &cobra.Command{
		Use:   "update REF [flags]",
		Short: "Change a key's name, budget, limits, models, tags or expiry",
		Long: `Change the settings given as flags and keep the others. To remove a
setting, give it its empty value: --budget 0, --rpm 0, --tpm 0, --models "",
--tags "", --expires never. --models and --tags replace the whole list.`,
		Example: `  lumen keys update search-team --budget 100 --budget-period monthly
  lumen keys update search-team --models "" --expires never`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := kf.update(cmd.Flags(), time.Now())
			if err != nil {
				return err
			}
			if u == (ledger.KeyUpdate{}) {
				return errors.New("nothing to change: give at least one of --name, --budget, --budget-period, --rpm, --tpm, --models, --tags, --expires")
			}
			b, err := openBooks(cmd.Context(), f, cmd.Flags(), false, true)
			if err != nil {
				return err
			}
			old, err := b.keys.Get(args[0])
			var k *ledger.Key
			if err == nil {
				k, err = b.keys.Update(cmd.Context(), old.ID, u)
			}
			if err == nil {
				changes := keyChanges(old, k)
				b.record(audit.ActionKeyUpdated, k, strings.Join(changes, "; "))
				if old.BudgetUSD != k.BudgetUSD || periodName(old) != periodName(k) {
					b.record(audit.ActionBudgetChanged, k, fmt.Sprintf("budget %s -> %s", budgetText(old), budgetText(k)))
				}
				if len(changes) == 0 {
					changes = []string{"no change"}
				}
				fmt.Fprintf(f.Out, "Updated key %q (id %s): %s\n", k.Name, k.ID, strings.Join(changes, "; "))
			}
			return errors.Join(err, b.Close())
		},
	}
	fs := cmd.Flags()
	configFlag(fs, &configPath)
	kf.register(fs, true)
	return cmd
}

func newCmdKeysRevoke(f *Factory) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "revoke REF",
		Short: "Revoke a key for good",
		Long: fmt.Sprintf(`Revoke a key. It cannot be undone; create a new key instead. A running
lumen serve refuses the key within %s; requests already in flight finish.`, keysRefresh),
		Example: `  lumen keys revoke search-team`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := openBooks(cmd.Context(), f, cmd.Flags(), false, true)
			if err != nil {
				return err
			}
			k, err := b.keys.Revoke(cmd.Context(), args[0])
			if err == nil {
				b.record(audit.ActionKeyRevoked, k, fmt.Sprintf("revoked %q", k.Name))
				fmt.Fprintf(f.Out, "Revoked key %q (id %s).\n", k.Name, k.ID)
			}
			return errors.Join(err, b.Close())
		},
	}
	configFlag(cmd.Flags(), &configPath)
	return cmd
}

func newCmdKeysRotate(f *Factory) *cobra.Command {
	var configPath, format string
	cmd := &cobra.Command{
		Use:   "rotate REF",
		Short: "Give a key a new secret, keeping its id, settings and spend",
		Long: fmt.Sprintf(`Replace a key's secret and print the new one once. The id, settings and
spend stay. The old secret stops working at once here and within %s on a
running lumen serve.`, keysRefresh),
		Example: `  lumen keys rotate search-team`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			b, err := openBooks(cmd.Context(), f, cmd.Flags(), false, true)
			if err != nil {
				return err
			}
			raw, k, err := b.keys.Rotate(cmd.Context(), args[0])
			if err == nil {
				b.record(audit.ActionKeyRotated, k, fmt.Sprintf("rotated %q", k.Name))
				err = printSecret(f, format, "Rotated", raw, k)
			}
			return errors.Join(err, b.Close())
		},
	}
	configFlag(cmd.Flags(), &configPath)
	formatFlag(cmd.Flags(), &format, "text", "json")
	return cmd
}

func keyStatus(k *ledger.Key, now time.Time) string {
	switch {
	case k.Revoked():
		return "revoked"
	case k.Expired(now):
		return "expired"
	}
	return "active"
}

func periodName(k *ledger.Key) string {
	if k.BudgetPeriod == "" {
		return string(limits.Total)
	}
	return k.BudgetPeriod
}

func usd(v float64) string { return "$" + strconv.FormatFloat(v, 'f', -1, 64) }

// usd6 writes a sum of costs rounded to 6 decimals, as the spend table
// does: a float sum's last digits (0.1 + 0.2 = 0.30000000000000004) are
// noise, not money.
func usd6(v float64) string { return usd(math.Round(v*1e6) / 1e6) }

func budgetText(k *ledger.Key) string {
	if k.BudgetUSD == 0 {
		return "none"
	}
	return usd(k.BudgetUSD) + " " + periodName(k)
}

func limitText(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func modelsText(m []string) string {
	if len(m) == 0 {
		return "all"
	}
	return strings.Join(m, ",")
}

func tagsText(tags map[string]string) string {
	if len(tags) == 0 {
		return "none"
	}
	var out []string
	for n, v := range tags {
		out = append(out, n+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

func timeText(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// describeKey is a key's settings for the audit log: never its secret.
func describeKey(k *ledger.Key) string {
	return fmt.Sprintf("%q: budget %s, rpm %s, tpm %s, models %s, tags %s, expires %s", k.Name, budgetText(k),
		limitText(k.RPM), limitText(k.TPM), modelsText(k.Models), tagsText(k.Tags), timeText(k.ExpiresAt, "never"))
}

// keyChanges lists what differs between two versions of a key.
func keyChanges(old, k *ledger.Key) []string {
	var out []string
	diff := func(what, a, b string) {
		if a != b {
			out = append(out, fmt.Sprintf("%s %s -> %s", what, a, b))
		}
	}
	diff("name", strconv.Quote(old.Name), strconv.Quote(k.Name))
	diff("budget", budgetText(old), budgetText(k))
	diff("rpm", limitText(old.RPM), limitText(k.RPM))
	diff("tpm", limitText(old.TPM), limitText(k.TPM))
	diff("models", modelsText(old.Models), modelsText(k.Models))
	diff("tags", tagsText(old.Tags), tagsText(k.Tags))
	diff("expires", timeText(old.ExpiresAt, "never"), timeText(k.ExpiresAt, "never"))
	return out
}

// table writes aligned columns: text left, numbers (right[i]) right.
type table struct {
	header []string
	rows   [][]string
	right  []bool
}

func (t *table) write(w io.Writer) error {
	all := t.rows
	if t.header != nil {
		all = append([][]string{t.header}, t.rows...)
	}
	var width []int
	for _, r := range all {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var sb strings.Builder
	for _, r := range all {
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			last := i == len(r)-1
			switch {
			case i < len(t.right) && t.right[i]:
				sb.WriteString(pad + c)
			case last:
				sb.WriteString(c)
			default:
				sb.WriteString(c + pad)
			}
			if !last {
				sb.WriteString("  ")
			}
		}
		sb.WriteString("\n")
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
