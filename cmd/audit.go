package cmd

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/lumengw/lumen/audit"
	"github.com/lumengw/lumen/config"
)

// NewCmdAudit builds `lumen audit` and its verbs.
func NewCmdAudit(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the tamper-evident audit log",
		Long: `The audit log (audit.path, default the ledger database: the ledger.path
file, or the Postgres database at ledger.postgres_url, where the instances
sharing it append to one chain) is a hash chain of entries (requests
served, key changes, config reloads) with checkpoints signed by an Ed25519
key (audit.signing_key, default ./lumen-audit.key; its public key is beside
it, in the .pub file; instances sharing a chain need the same key).`,
	}
	cmd.AddCommand(newCmdAuditVerify(f), newCmdAuditExport(f))
	return cmd
}

// auditOff adds to err that the config keeps no audit log, when it does
// not: the likely reason there is nothing to read.
func auditOff(cfg *config.Config, err error) error {
	if err != nil && cfg.Audit.Enabled != nil && !*cfg.Audit.Enabled {
		return fmt.Errorf("%w (audit.enabled is false in this config)", err)
	}
	return err
}

func newCmdAuditVerify(f *Factory) *cobra.Command {
	var (
		configPath, checkpointPath string
		pubPaths                   []string
		from                       uint64
		maxUnsigned                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Re-walk the audit chain and its signed checkpoints",
		Long: `Re-walk the audit chain from entry --from (default the first) and check
every entry's hash, every link and every checkpoint signature. On success it
prints one summary line (and a warning line when entries older than
--max-unsigned are still unsigned); otherwise it names the first entry that
was altered, deleted or inserted, a bad signature, a log cut short before
its last checkpoint, or checkpoints missing, and exits 1.

Checkpoints missing: a writer signs a checkpoint every audit.checkpoint_every
entries and every minute, so more entries than that, or entries whose times
span more than --max-unsigned, with no checkpoint between them (or after the
last) mean signed checkpoints were deleted. Entries carry the time their
event started: raise --max-unsigned if requests run longer than it.

A tail deleted together with the checkpoints that signed it, or a log
emptied, can only be caught with a record kept outside the database: with
audit.checkpoint_file set, every signed checkpoint is also written to that
file, and verify requires the log to reach the file's entry with the hash it
signed (--checkpoint reads another copy; --checkpoint "" skips it).

The check needs only the public key: --public-key, or else the .pub file
beside audit.signing_key, or else the signing key itself. After the signing
key changed, give every key that signed checkpoints (--public-key old.pub
--public-key new.pub): each checkpoint is checked with the key it names.
Give auditors the public keys and the database; the file is opened
read-only.`,
		Example: `  lumen audit verify --config config.yaml
  lumen audit verify --from 5000 --public-key lumen-audit.key.pub
  lumen audit verify --public-key old-audit.key.pub --public-key lumen-audit.key.pub
  lumen audit verify --checkpoint /mnt/offsite/audit-checkpoint.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxUnsigned < 0 {
				return fmt.Errorf("--max-unsigned: must not be negative, got %v", maxUnsigned)
			}
			cfg, _, _, err := loadConfig(newViper(cmd.Flags()), f)
			if err != nil {
				return err
			}
			if len(pubPaths) == 0 {
				p := cfg.Audit.SigningKey + ".pub"
				if _, err := os.Stat(p); err != nil {
					p = cfg.Audit.SigningKey
				}
				pubPaths = []string{p}
			}
			if !cmd.Flags().Changed("checkpoint") && cfg.Audit.CheckpointFile != "" {
				checkpointPath = cfg.Audit.CheckpointFile
				if _, err := os.Stat(checkpointPath); err != nil {
					// Deleting it must not switch the check off.
					return fmt.Errorf("reading the last known checkpoint (audit.checkpoint_file): %w; "+
						"the audit writer creates it with the first checkpoint (--checkpoint \"\" verifies without it)", err)
				}
			}
			return auditOff(cfg, audit.RunVerify(cmd.Context(), audit.VerifyRun{
				Path: auditPath(cfg), KeyPaths: pubPaths, CheckpointPath: checkpointPath,
				Options: audit.VerifyOptions{From: from, CheckpointEvery: cfg.Audit.CheckpointEvery, MaxUnsigned: maxUnsigned},
			}, f.Out))
		},
	}
	flags := cmd.Flags()
	configFlag(flags, &configPath)
	flags.Uint64Var(&from, "from", 0, "first entry to verify (its link to the entry before is checked too)")
	flags.StringArrayVar(&pubPaths, "public-key", nil, "an Ed25519 public key (PEM) that signed checkpoints; repeat for each key the log was signed with (default: audit.signing_key + \".pub\")")
	flags.StringVar(&checkpointPath, "checkpoint", "", "the last known checkpoint: the log must reach its entry with its hash (default: audit.checkpoint_file; \"\" skips)")
	flags.DurationVar(&maxUnsigned, "max-unsigned", audit.DefaultMaxUnsigned, "the longest span of entry times without a checkpoint before verify reports checkpoints missing (0 skips)")
	return cmd
}

func newCmdAuditExport(f *Factory) *cobra.Command {
	var configPath, since, format string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write audit entries as JSON lines, for a SIEM",
		Long: `Write the audit entries at or after --since to standard output, one JSON
object per line in sequence order, with every hashed field (so each line's
hash can be recomputed) and payload digests, never payloads unless the log
keeps them. The database is opened read-only; lumen serve may keep writing.`,
		Example: `  lumen audit export --since 7d > audit.jsonl
  lumen audit export --since 2026-11-01T00:00:00Z --format jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, audit.FormatJSONL); err != nil {
				return err
			}
			t, err := parseSince("--since", since, time.Now(), time.UTC)
			if err != nil {
				return err
			}
			cfg, _, _, err := loadConfig(newViper(cmd.Flags()), f)
			if err != nil {
				return err
			}
			return auditOff(cfg, audit.RunExport(cmd.Context(), auditPath(cfg), t, format, f.Out))
		},
	}
	fs := cmd.Flags()
	configFlag(fs, &configPath)
	fs.StringVar(&since, "since", "", "first entry time: a span back from now (7d, 12h), a date (UTC) or an RFC 3339 time (default: all)")
	formatFlag(fs, &format, audit.FormatJSONL)
	return cmd
}
