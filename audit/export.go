package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// FormatJSONL is the export format: one JSON object per line, in seq order.
const FormatJSONL = "jsonl"

// ExportedEntry is one line of a JSONL export. Field names are stable: SIEM
// rules and auditors depend on them. Time is RFC 3339 with nanoseconds in
// UTC; digests and hashes are lowercase hex, "" for none; payloads (present
// only when the log stores them) are base64. The line carries every hashed
// field, so Hash can be recomputed from it (see Entry.ComputeHash).
type ExportedEntry struct {
	Seq              uint64  `json:"seq"`
	Time             string  `json:"time"`
	Actor            string  `json:"actor"`
	Action           string  `json:"action"`
	Target           string  `json:"target"`
	RequestID        string  `json:"request_id"`
	ModelGroup       string  `json:"model_group"`
	Deployment       string  `json:"deployment"`
	Provider         string  `json:"provider"`
	Status           int     `json:"status"`
	PromptTokens     int     `json:"prompt_tokens"`
	CompletionTokens int     `json:"completion_tokens"`
	CachedTokens     int     `json:"cached_tokens"`
	CostUSD          float64 `json:"cost_usd"`
	Detail           string  `json:"detail"`
	RequestSHA256    string  `json:"request_sha256"`
	ResponseSHA256   string  `json:"response_sha256"`
	RequestPayload   []byte  `json:"request_payload,omitempty"`
	ResponsePayload  []byte  `json:"response_payload,omitempty"`
	PrevHash         string  `json:"prev_hash"`
	Hash             string  `json:"hash"`
}

func exported(e *Entry) ExportedEntry {
	s := &e.Summary
	return ExportedEntry{
		Seq: e.Seq, Time: e.Time.UTC().Format(time.RFC3339Nano),
		Actor: e.Actor, Action: string(e.Action), Target: e.Target,
		RequestID: s.RequestID, ModelGroup: s.ModelGroup, Deployment: s.Deployment,
		Provider: s.Provider, Status: s.Status, PromptTokens: s.PromptTokens,
		CompletionTokens: s.CompletionTokens, CachedTokens: s.CachedTokens,
		CostUSD: s.CostUSD, Detail: e.Detail,
		RequestSHA256: e.RequestSHA256.String(), ResponseSHA256: e.ResponseSHA256.String(),
		RequestPayload: e.RequestPayload, ResponsePayload: e.ResponsePayload,
		PrevHash: hexDigest(e.PrevHash), Hash: hexDigest(e.Hash),
	}
}

// hexDigest is like Digest.String but keeps the zero prev_hash of entry 1.
func hexDigest(d Digest) string { return fmt.Sprintf("%x", d[:]) }

// Export writes the entries whose time is at or after since (the zero time
// means all) to w in format (FormatJSONL; "" means FormatJSONL), in seq
// order. It reads through a separate connection and may run while entries
// are being written.
func (l *Log) Export(ctx context.Context, w io.Writer, since time.Time, format string) error {
	if l.isClosed() {
		return fmt.Errorf("exporting audit log: %w", ErrClosed)
	}
	return export(ctx, l.ro, w, since, format)
}

// ExportFile is Export on the audit log at path (a SQLite file, opened
// read-only, or a Postgres URL); it needs no key.
func ExportFile(ctx context.Context, path string, w io.Writer, since time.Time, format string) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	db, err := openDB(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	return export(ctx, db, w, since, format)
}

func checkFormat(format string) error {
	if format != "" && format != FormatJSONL {
		return fmt.Errorf("exporting audit log: unknown format %q (want %q)", format, FormatJSONL)
	}
	return nil
}

func export(ctx context.Context, db conn, w io.Writer, since time.Time, format string) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	var sinceNS int64 = -1 << 63
	if !since.IsZero() {
		sinceNS = since.UnixNano()
	}
	rows, err := db.QueryContext(ctx,
		db.q(`SELECT `+entryColumns+` FROM audit_entries WHERE time_ns >= ? ORDER BY seq, rowid`), sinceNS)
	if err != nil {
		return fmt.Errorf("exporting audit log: %w", err)
	}
	defer rows.Close()
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw) // Encode ends each object with "\n"
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return fmt.Errorf("exporting audit log: %w", err)
		}
		if err := enc.Encode(exported(&e.Entry)); err != nil {
			return fmt.Errorf("exporting audit log: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("exporting audit log: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("exporting audit log: %w", err)
	}
	return nil
}
