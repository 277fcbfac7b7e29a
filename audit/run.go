package audit

import (
	"context"
	"fmt"
	"io"
	"time"
)

// VerifyRun is what `lumen audit verify` checks.
type VerifyRun struct {
	// Path is the audit database: a SQLite file or a Postgres URL.
	Path string
	// KeyPaths are the public keys (or signing keys; see LoadPublicKey)
	// the checkpoints may be signed with. At least one.
	KeyPaths []string
	// CheckpointPath is the last known checkpoint (Options.CheckpointFile,
	// or a copy of it); empty means none.
	CheckpointPath string
	// Options are From, CheckpointEvery and MaxUnsigned; Keys and
	// Checkpoint are read from KeyPaths and CheckpointPath.
	Options VerifyOptions
}

// RunVerify is `lumen audit verify`: it verifies the audit log as r says
// and writes a one-line summary to out, and a warning line when entries
// older than r.Options.MaxUnsigned are still unsigned. A failed
// verification is returned as a *VerifyError naming the first bad entry,
// for the command to exit non-zero.
func RunVerify(ctx context.Context, r VerifyRun, out io.Writer) error {
	opts := r.Options
	opts.Keys = nil
	for _, p := range r.KeyPaths {
		pub, err := LoadPublicKey(p)
		if err != nil {
			return err
		}
		opts.Keys = append(opts.Keys, pub)
	}
	if r.CheckpointPath != "" {
		cp, err := ReadCheckpointFile(r.CheckpointPath)
		if err != nil {
			return err
		}
		opts.Checkpoint = cp
	}
	rep, err := VerifyFileWith(ctx, r.Path, opts)
	if err != nil {
		return err
	}
	keys := newKeyring(opts.Keys)
	if rep.Entries == 0 {
		_, err = fmt.Fprintf(out, "ok: no entries from %d (%s)\n", max(opts.From, 1), keys)
		return err
	}
	known := ""
	if cp := opts.Checkpoint; cp != nil && cp.Seq >= max(opts.From, 1) {
		known = fmt.Sprintf(", matches the last known checkpoint (entry %d)", cp.Seq)
	}
	if _, err := fmt.Fprintf(out,
		"ok: entries %d..%d verified (%d), %d checkpoints signed by %s, last signed entry %d, %d entries after it not yet signed, head %s%s\n",
		rep.From, rep.To, rep.Entries, rep.Checkpoints, keys, rep.LastCheckpoint, rep.Unsigned, rep.Head, known); err != nil {
		return err
	}
	if opts.MaxUnsigned > 0 && rep.Unsigned > 0 && time.Since(rep.UnsignedSince) > opts.MaxUnsigned {
		_, err = fmt.Fprintf(out,
			"warning: the %d unsigned entries date from %s on: a writer stopped without signing them "+
				"(lumen serve signs them when it starts), or the checkpoints that signed them were deleted\n",
			rep.Unsigned, rep.UnsignedSince.Format(time.RFC3339))
	}
	return err
}

// RunExport is `lumen audit export --since … --format jsonl`: it writes the
// entries at or after since (zero means all) from the audit log at path to
// out.
func RunExport(ctx context.Context, path string, since time.Time, format string, out io.Writer) error {
	return ExportFile(ctx, path, out, since, format)
}
