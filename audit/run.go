package audit

import (
	"context"
	"fmt"
	"io"
	"time"
)

// RunVerify is `lumen audit verify`: it verifies the audit log at path from
// entry from (0 means all) with the public key read from keyPath (the public
// key file, or the signing key itself; see LoadPublicKey) and writes a
// one-line summary to out. A failed verification is returned as a
// *VerifyError naming the first bad entry, for the command to exit non-zero.
func RunVerify(ctx context.Context, path, keyPath string, from uint64, out io.Writer) error {
	pub, err := LoadPublicKey(keyPath)
	if err != nil {
		return err
	}
	rep, err := VerifyFile(ctx, path, pub, from)
	if err != nil {
		return err
	}
	if rep.Entries == 0 {
		_, err = fmt.Fprintf(out, "ok: no entries from %d (key %s)\n", max(from, 1), KeyID(pub))
		return err
	}
	_, err = fmt.Fprintf(out,
		"ok: entries %d..%d verified (%d), %d checkpoints signed by key %s, last signed entry %d, %d entries after it not yet signed, head %s\n",
		rep.From, rep.To, rep.Entries, rep.Checkpoints, KeyID(pub), rep.LastCheckpoint, rep.Unsigned, rep.Head)
	return err
}

// RunExport is `lumen audit export --since … --format jsonl`: it writes the
// entries at or after since (zero means all) from the audit log at path to
// out.
func RunExport(ctx context.Context, path string, since time.Time, format string, out io.Writer) error {
	return ExportFile(ctx, path, out, since, format)
}
