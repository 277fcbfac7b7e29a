package cmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/ledger"
)

// NewCmdLedger builds `lumen ledger`.
func NewCmdLedger(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Move the ledger (requests, virtual keys, spend) between databases",
	}
	cmd.AddCommand(newCmdLedgerCopy(f))
	return cmd
}

func newCmdLedgerCopy(f *Factory) *cobra.Command {
	var configPath, from string
	cmd := &cobra.Command{
		Use:   "copy --from FILE",
		Short: "Copy a SQLite ledger into the config's ledger (its Postgres database)",
		Long: `Copy every virtual key (revoked ones too, with their hashes, settings and
saved spend), every request row (with its stored payload) and what
auto:smart learned from the SQLite ledger FILE into the ledger the config
names, which must be empty: the way from one instance's lumen.db to the
Postgres database (ledger.postgres_url) that several instances share. Keys
keep working unchanged, and reports and budgets see the old requests. The
copy is one transaction: if it fails, the destination is left empty.

The audit chain kept in FILE (the default place) is copied after it, as
stored, into the config's audit log (its ledger database unless
audit.path names a file), which must hold no entries: lumen audit verify
checks the old entries there with the same audit.signing_key, and new
entries continue the chain.

Stop the instance that writes FILE first, or requests it serves meanwhile
are not copied.`,
		Example: `  lumen ledger copy --from ./lumen.db --config shared.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if from == "" {
				return errors.New("--from: the SQLite ledger to copy is required")
			}
			if _, err := os.Stat(from); err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			cfg, _, _, err := loadConfig(newViper(cmd.Flags()), f)
			if err != nil {
				return err
			}
			to := "ledger.postgres_url"
			if cfg.Ledger.PostgresURL == "" {
				to = "ledger.path " + cfg.Ledger.Path
				if same(from, cfg.Ledger.Path) {
					return fmt.Errorf("--from %s is the config's own ledger; set ledger.postgres_url (or another ledger.path) to copy it to", from)
				}
			}
			src, err := ledger.Open(ctx, from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			defer src.Close()
			dst, err := openLedger(ctx, cfg)
			if err != nil {
				return err
			}
			defer dst.Close()
			st, err := ledger.Copy(ctx, dst, src, func(n int) { fmt.Fprintf(f.ErrOut, "%d requests…\n", n) })
			if errors.Is(err, ledger.ErrNotEmpty) {
				return fmt.Errorf("%s: %w; copy into a new database", to, err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(f.Out, "copied %d keys, %d requests (%d with payloads) and %d auto:smart arms from %s into %s\n",
				st.Keys, st.Requests, st.Payloads, st.Arms, from, to)
			if st.Rollups > 0 {
				fmt.Fprintf(f.Out, "copied the spend of the requests retention deleted (%d rollup rows)\n", st.Rollups)
			}
			if cfg.Audit.Enabled != nil && !*cfg.Audit.Enabled || same(from, auditPath(cfg)) {
				return nil
			}
			entries, checkpoints, err := audit.Copy(ctx, auditPath(cfg), from)
			if err != nil {
				return fmt.Errorf("the ledger was copied, the audit log was not: %w", err)
			}
			if entries > 0 {
				fmt.Fprintf(f.Out, "copied the audit chain: %d entries and %d signed checkpoints (verify them with the same audit.signing_key)\n",
					entries, checkpoints)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	configFlag(fs, &configPath)
	fs.StringVar(&from, "from", "", "the SQLite ledger file to copy")
	return cmd
}

// same reports whether paths a and b name one file.
func same(a, b string) bool {
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(ia, ib)
	}
	aa, _ := filepath.Abs(a)
	bb, _ := filepath.Abs(b)
	return aa == bb
}
