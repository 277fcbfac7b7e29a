package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lumengw/lumen/internal/syncbuf"
)

var baseTime = time.Date(2025, 11, 1, 12, 0, 0, 123456789, time.UTC)

// testEntry returns a request entry whose fields all depend on i.
func testEntry(i int) Entry {
	return Entry{
		Time:   baseTime.Add(time.Duration(i) * time.Second),
		Actor:  fmt.Sprintf("key_%d", i%3),
		Action: ActionRequest,
		Summary: Summary{
			RequestID:        fmt.Sprintf("req-%d", i),
			ModelGroup:       "gpt-4o",
			Deployment:       fmt.Sprintf("azure-eu-%d", i%2),
			Provider:         "azure",
			Status:           200,
			PromptTokens:     100 + i,
			CompletionTokens: 20 + i,
			CachedTokens:     i % 5,
			CostUSD:          0.0001 * float64(i+1),
		},
		RequestPayload:  []byte(fmt.Sprintf(`{"messages":[{"role":"user","content":"hello %d"}]}`, i)),
		ResponsePayload: []byte(fmt.Sprintf(`{"choices":[{"message":{"content":"hi %d"}}]}`, i)),
	}
}

// openTest opens a log in a temp dir; mod may change the options first.
func openTest(t testing.TB, mod func(*Options)) (*Log, Options) {
	t.Helper()
	dir := t.TempDir()
	opts := Options{
		Path:               filepath.Join(dir, "audit.db"),
		SigningKeyPath:     filepath.Join(dir, "audit.key"),
		CheckpointEvery:    10,
		CheckpointInterval: -1,
	}
	if mod != nil {
		mod(&opts)
	}
	l, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, opts
}

// writeLog writes n entries and closes the log, so every entry is on disk
// and the last one is signed.
func writeLog(t testing.TB, n int, mod func(*Options)) (Options, ed25519.PublicKey) {
	t.Helper()
	l, opts := openTest(t, mod)
	for i := range n {
		l.Append(testEntry(i))
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if l.Written() != uint64(n) || l.Dropped() != 0 || l.Failed() != 0 {
		t.Fatalf("written %d dropped %d failed %d, want %d 0 0", l.Written(), l.Dropped(), l.Failed(), n)
	}
	return opts, l.PublicKey()
}

func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// readEntry reads the (first) stored entry with seq.
func readEntry(t testing.TB, db *sql.DB, seq int64) *storedEntry {
	t.Helper()
	rows, err := db.Query(`SELECT `+entryColumns+` FROM audit_entries WHERE seq = ? ORDER BY rowid LIMIT 1`, seq)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("no entry %d", seq)
	}
	e, err := scanEntry(rows)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// rewrite stores e over entry seq with a freshly computed hash, as an
// attacker who knows the format would.
func rewrite(t testing.TB, db *sql.DB, seq int64, e *Entry) Digest {
	t.Helper()
	e.Hash = e.ComputeHash()
	mustExec(t, db, `UPDATE audit_entries SET actor = ?, cost_usd = ?, seq = ?, prev_hash = ?, hash = ? WHERE seq = ?`,
		e.Actor, e.Summary.CostUSD, int64(e.Seq), e.PrevHash[:], e.Hash[:], seq)
	return e.Hash
}

func TestVerifyCleanLog(t *testing.T) {
	opts, pub := writeLog(t, 25, nil)
	tests := []struct {
		name string
		from uint64
		want Report
	}{
		{"whole log", 0, Report{From: 1, To: 25, Entries: 25, Checkpoints: 3, LastCheckpoint: 25}},
		{"from 1", 1, Report{From: 1, To: 25, Entries: 25, Checkpoints: 3, LastCheckpoint: 25}},
		{"from 12", 12, Report{From: 12, To: 25, Entries: 14, Checkpoints: 2, LastCheckpoint: 25}},
		{"from last", 25, Report{From: 25, To: 25, Entries: 1, Checkpoints: 1, LastCheckpoint: 25}},
		{"past the end", 40, Report{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VerifyFile(context.Background(), opts.Path, pub, tt.from)
			if err != nil {
				t.Fatalf("VerifyFile: %v", err)
			}
			tt.want.Head = got.Head
			if got != tt.want {
				t.Errorf("report = %+v, want %+v", got, tt.want)
			}
			if tt.want.Entries > 0 && got.Head.IsZero() {
				t.Error("head is zero")
			}
		})
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(t *testing.T, db *sql.DB)
		kind    error
		seq     uint64
		message string
	}{
		{
			name: "edited actor",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE audit_entries SET actor = 'mallory' WHERE seq = 5`)
			},
			kind:    ErrAltered,
			seq:     5,
			message: "audit entry 5: altered: the stored hash does not match the entry's contents",
		},
		{
			name:   "edited cost",
			tamper: func(t *testing.T, db *sql.DB) { mustExec(t, db, `UPDATE audit_entries SET cost_usd = 0 WHERE seq = 7`) },
			kind:   ErrAltered,
			seq:    7,
		},
		{
			name: "edited payload",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE audit_entries SET response_payload = 'forged' WHERE seq = 8`)
			},
			kind:    ErrAltered,
			seq:     8,
			message: "audit entry 8: altered: the stored response payload does not match its digest",
		},
		{
			name: "edited and re-hashed row",
			tamper: func(t *testing.T, db *sql.DB) {
				e := readEntry(t, db, 5)
				e.Actor = "mallory"
				rewrite(t, db, 5, &e.Entry)
			},
			kind:    ErrInserted,
			seq:     6,
			message: "audit entry 6: inserted: prev_hash does not match the hash of entry 5: entry 6 was inserted or entry 5 replaced",
		},
		{
			name: "chain rewritten and re-hashed up to a checkpoint",
			tamper: func(t *testing.T, db *sql.DB) {
				prev := readEntry(t, db, 11).Hash
				e := readEntry(t, db, 12)
				e.Summary.CostUSD = 0
				e.PrevHash = prev
				prev = rewrite(t, db, 12, &e.Entry)
				for seq := int64(13); seq <= 25; seq++ {
					e := readEntry(t, db, seq)
					e.PrevHash = prev
					prev = rewrite(t, db, seq, &e.Entry)
				}
			},
			kind:    ErrAltered,
			seq:     20,
			message: "audit entry 20: altered: the chain does not match the signed checkpoint: entries after entry 10 were rewritten and re-hashed",
		},
		{
			name:    "deleted row",
			tamper:  func(t *testing.T, db *sql.DB) { mustExec(t, db, `DELETE FROM audit_entries WHERE seq = 5`) },
			kind:    ErrDeleted,
			seq:     5,
			message: "audit entry 5: deleted: entries 5..5 are missing",
		},
		{
			name:   "deleted first row",
			tamper: func(t *testing.T, db *sql.DB) { mustExec(t, db, `DELETE FROM audit_entries WHERE seq = 1`) },
			kind:   ErrDeleted,
			seq:    1,
		},
		{
			name: "deleted rows renumbered and re-hashed",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `DELETE FROM audit_entries WHERE seq IN (3, 4)`)
				prev := readEntry(t, db, 2).Hash
				for seq := int64(5); seq <= 25; seq++ {
					e := readEntry(t, db, seq)
					e.Seq, e.PrevHash = uint64(seq-2), prev
					prev = rewrite(t, db, seq, &e.Entry)
				}
			},
			kind: ErrAltered, // checkpoint 10 now covers a different entry
			seq:  10,
		},
		{
			name: "inserted row with a duplicate seq",
			tamper: func(t *testing.T, db *sql.DB) {
				e := readEntry(t, db, 5).Entry
				e.Actor, e.Detail = "mallory", "forged"
				e.Hash = e.ComputeHash()
				mustExec(t, db, insertEntry, insertArgs(&e)...)
			},
			kind:    ErrInserted,
			seq:     5,
			message: "audit entry 5: inserted: seq 5 appears more than once",
		},
		{
			name: "inserted row before the first",
			tamper: func(t *testing.T, db *sql.DB) {
				e := readEntry(t, db, 1).Entry
				e.Seq = 0
				e.Hash = e.ComputeHash()
				mustExec(t, db, insertEntry, insertArgs(&e)...)
			},
			kind: ErrInserted,
			seq:  0,
		},
		{
			name:    "truncated tail",
			tamper:  func(t *testing.T, db *sql.DB) { mustExec(t, db, `DELETE FROM audit_entries WHERE seq > 22`) },
			kind:    ErrTruncated,
			seq:     23,
			message: "audit entry 23: truncated: the log ends at entry 22 but a checkpoint signed entry 25",
		},
		{
			name: "bad checkpoint signature",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE audit_checkpoints SET signature = zeroblob(64) WHERE seq = 20`)
			},
			kind: ErrBadSignature,
			seq:  20,
		},
		{
			name: "checkpoint forged with another key",
			tamper: func(t *testing.T, db *sql.DB) {
				_, other, _ := ed25519.GenerateKey(rand.Reader)
				cp := Checkpoint{Seq: 10, Hash: readEntry(t, db, 10).Hash, Time: time.Now()}
				sig := ed25519.Sign(other, cp.signedMessage())
				mustExec(t, db, `UPDATE audit_checkpoints SET signature = ? WHERE seq = 10`, sig)
			},
			kind: ErrBadSignature,
			seq:  10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, pub := writeLog(t, 25, func(o *Options) { o.StorePayloads = true })
			if _, err := VerifyFile(context.Background(), opts.Path, pub, 0); err != nil {
				t.Fatalf("clean log: %v", err)
			}
			tt.tamper(t, rawDB(t, opts.Path))
			_, err := VerifyFile(context.Background(), opts.Path, pub, 0)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("VerifyFile error = %v, want a *VerifyError", err)
			}
			if !errors.Is(err, tt.kind) || ve.Seq != tt.seq {
				t.Errorf("error = %q, want kind %q at entry %d", err, tt.kind, tt.seq)
			}
			if tt.message != "" && err.Error() != tt.message {
				t.Errorf("message = %q\nwant      %q", err, tt.message)
			}
		})
	}
}

func TestVerifyFromSkipsEarlierDamage(t *testing.T) {
	opts, pub := writeLog(t, 25, nil)
	mustExec(t, rawDB(t, opts.Path), `UPDATE audit_entries SET actor = 'mallory' WHERE seq = 3`)
	if _, err := VerifyFile(context.Background(), opts.Path, pub, 15); err != nil {
		t.Errorf("verify from 15: %v", err)
	}
	if _, err := VerifyFile(context.Background(), opts.Path, pub, 3); !errors.Is(err, ErrAltered) {
		t.Errorf("verify from 3 = %v, want ErrAltered", err)
	}
}

func TestVerifyWrongKey(t *testing.T) {
	opts, _ := writeLog(t, 12, nil)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	_, err := VerifyFile(context.Background(), opts.Path, other, 0)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Kind != ErrBadSignature || ve.Seq != 10 {
		t.Fatalf("err = %v, want bad signature at entry 10", err)
	}
	if !strings.Contains(err.Error(), KeyID(other)) {
		t.Errorf("error %q does not name the key used", err)
	}
}

func TestUnsignedTailIsReported(t *testing.T) {
	l, _ := openTest(t, func(o *Options) { o.CheckpointEvery = 4 })
	for i := range 6 {
		l.Append(testEntry(i))
	}
	waitWritten(t, l, 6)
	rep, err := l.Verify(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastCheckpoint != 4 || rep.Unsigned != 2 || rep.To != 6 {
		t.Errorf("report = %+v, want last checkpoint 4, 2 unsigned of 6", rep)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = VerifyFile(context.Background(), l.opts.Path, l.PublicKey(), 0)
	if err != nil || rep.LastCheckpoint != 6 || rep.Unsigned != 0 {
		t.Errorf("after Close: %+v, %v; want the tail signed", rep, err)
	}
}

func TestCheckpointOnInterval(t *testing.T) {
	l, _ := openTest(t, func(o *Options) {
		o.CheckpointEvery = -1
		o.CheckpointInterval = 10 * time.Millisecond
	})
	l.Append(testEntry(0))
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep, err := l.Verify(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if rep.LastCheckpoint == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint signed on the timer: %+v", rep)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitWritten waits until the writer committed n entries.
func waitWritten(t testing.TB, l *Log, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Written() < n {
		if time.Now().After(deadline) {
			t.Fatalf("written %d, want %d", l.Written(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestKeyGeneratedOnFirstStartAndReused(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "a.db"), SigningKeyPath: filepath.Join(dir, "keys", "audit.key")}
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	first, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	first.Append(testEntry(0))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if !first.KeyGenerated() {
		t.Error("first Open did not report a generated key")
	}
	fi, err := os.Stat(opts.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, want 0600", fi.Mode().Perm())
	}
	pubFromFile, err := LoadPublicKey(opts.SigningKeyPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if !pubFromFile.Equal(first.PublicKey()) {
		t.Error("the .pub file does not hold the log's public key")
	}
	if !strings.HasPrefix(first.PublicKeyPEM(), "-----BEGIN PUBLIC KEY-----") {
		t.Errorf("PublicKeyPEM = %q", first.PublicKeyPEM())
	}

	second, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	second.Append(testEntry(1))
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if second.KeyGenerated() {
		t.Error("second Open generated a new key")
	}
	if !second.PublicKey().Equal(first.PublicKey()) {
		t.Error("second Open uses a different key")
	}
	// Both runs' checkpoints verify with the one public key, and the chain
	// continues across the restart.
	rep, err := VerifyFile(context.Background(), opts.Path, pubFromFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 2 || rep.Checkpoints != 2 {
		t.Errorf("report = %+v, want 2 entries, 2 checkpoints", rep)
	}
}

func TestLoadPublicKeyRejectsJunk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPublicKey(path); err == nil {
		t.Error("LoadPublicKey accepted junk")
	}
	if _, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "a.db"), SigningKeyPath: path}); err == nil {
		t.Error("Open accepted a junk signing key")
	}
}

func TestReopenContinuesChain(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "a.db"), CheckpointEvery: 3, CheckpointInterval: -1}
	for run := range 3 {
		l, err := Open(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			l.Append(testEntry(run*5 + i))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := LoadPublicKey(opts.Path + ".key") // the default key path
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(context.Background(), opts.Path, pub, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.From != 1 || rep.To != 15 || rep.Unsigned != 0 {
		t.Errorf("report = %+v, want entries 1..15 all signed", rep)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	const n = 3000
	var logs syncbuf.Buffer
	l, opts := openTest(t, func(o *Options) { o.QueueSize, o.Logger = n, zerolog.New(&logs) })
	for i := range n {
		l.Append(testEntry(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if l.Written() != n || l.Dropped() != 0 {
		t.Errorf("written %d dropped %d, want %d 0", l.Written(), l.Dropped(), n)
	}
	var rows int
	if err := rawDB(t, opts.Path).QueryRow(`SELECT count(*) FROM audit_entries`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Errorf("%d rows, want %d", rows, n)
	}
	l.Append(testEntry(n)) // after Close: dropped, not a panic
	l.Append(testEntry(n + 1))
	if l.Dropped() != 2 {
		t.Errorf("append after Close: dropped %d, want 2", l.Dropped())
	}
	// After Close every drop is logged: nothing else would tell of it.
	for _, want := range []string{`"dropped_total":1,`, `"dropped_total":2,`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s after Close:\n%s", want, logs.String())
		}
	}
	if _, err := l.Verify(context.Background(), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Verify on a closed Log = %v, want ErrClosed", err)
	}
	if err := l.Export(context.Background(), io.Discard, time.Time{}, FormatJSONL); !errors.Is(err, ErrClosed) {
		t.Errorf("Export on a closed Log = %v, want ErrClosed", err)
	}
}

// blockWriter makes the writer stop on the first entry until release is
// closed; started is closed once it has stopped there.
func blockWriter(l *Log) (started, release chan struct{}) {
	started, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	l.hook = func(*Entry) {
		once.Do(func() {
			close(started)
			<-release
		})
	}
	return started, release
}

func TestFullQueueDropsWithoutBreakingChain(t *testing.T) {
	var logs syncbuf.Buffer
	l, opts := openTest(t, func(o *Options) {
		o.QueueSize = 2
		o.Logger = zerolog.New(&logs)
	})
	started, release := blockWriter(l)
	l.Append(testEntry(0))
	<-started // the writer holds entry 0; the queue is empty
	for i := 1; i < 10; i++ {
		l.Append(testEntry(i)) // 1 and 2 fit, 3..9 are dropped
	}
	if got := l.Dropped(); got != 7 {
		t.Errorf("dropped %d, want 7", got)
	}
	if n := strings.Count(logs.String(), "audit entry dropped"); n != 1 {
		t.Errorf("logged %d drop lines for 7 drops, want 1 (rate-limited):\n%s", n, logs.String())
	}
	close(release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The drop lines are rate-limited; Close tells the whole count.
	if !strings.Contains(logs.String(), `"dropped_total":7,"failed_total":0`) || !strings.Contains(logs.String(), "lost since open") {
		t.Errorf("Close does not log the 7 drops in full:\n%s", logs.String())
	}
	rep, err := VerifyFile(context.Background(), opts.Path, l.PublicKey(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.From != 1 || rep.To != 3 {
		t.Errorf("report = %+v, want entries 1..3", rep)
	}
}

func TestRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	l, err := Open(context.Background(), Options{Path: "./lumen audit.db"})
	if err != nil {
		t.Fatal(err)
	}
	l.Append(testEntry(0))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := RunVerify(context.Background(), VerifyRun{Path: "./lumen audit.db", KeyPaths: []string{"./lumen audit.db.key.pub"}}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("lumen audit.db"); err != nil {
		t.Errorf("database not at the relative path: %v", err)
	}
}

func TestWriterRecoversFromPanic(t *testing.T) {
	var logs syncbuf.Buffer
	l, opts := openTest(t, func(o *Options) { o.Logger = zerolog.New(&logs) })
	l.hook = func(e *Entry) {
		if e.Detail == "boom" {
			panic("boom")
		}
	}
	a, b, c := testEntry(0), testEntry(1), testEntry(2)
	b.Detail = "boom"
	l.Append(a)
	l.Append(b)
	l.Append(c)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Failed() != 1 || l.Written() != 2 {
		t.Errorf("failed %d written %d, want 1 2", l.Failed(), l.Written())
	}
	if !strings.Contains(logs.String(), "recovered from a panic") {
		t.Errorf("the panic was not logged:\n%s", logs.String())
	}
	rep, err := VerifyFile(context.Background(), opts.Path, l.PublicKey(), 0)
	if err != nil || rep.Entries != 2 {
		t.Errorf("verify: %+v, %v; want 2 entries", rep, err)
	}
}

func TestPayloadRetention(t *testing.T) {
	const marker = "ZERO-RETENTION-MARKER-7f3a"
	tests := []struct {
		name  string
		store bool
	}{
		{"digests only", false},
		{"payloads kept", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, opts := openTest(t, func(o *Options) { o.StorePayloads = tt.store })
			e := testEntry(0)
			e.RequestPayload = []byte(`{"messages":[{"role":"user","content":"` + marker + `"}]}`)
			e.ResponsePayload = []byte(`{"content":"` + marker + `"}`)
			l.Append(e)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got := readEntry(t, rawDB(t, opts.Path), 1)
			if got.RequestSHA256 != sha256.Sum256(e.RequestPayload) || got.ResponseSHA256 != sha256.Sum256(e.ResponsePayload) {
				t.Error("stored digests are not the payloads' SHA-256")
			}
			if got.hasReqPayload != tt.store || got.hasRespPayload != tt.store {
				t.Errorf("payloads stored = %v/%v, want %v", got.hasReqPayload, got.hasRespPayload, tt.store)
			}
			var found []string
			files, _ := filepath.Glob(filepath.Join(filepath.Dir(opts.Path), "*"))
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(b, []byte(marker)) {
					found = append(found, filepath.Base(f))
				}
			}
			if tt.store != (len(found) > 0) {
				t.Errorf("marker found in %v with StorePayloads=%v", found, tt.store)
			}
			if _, err := VerifyFile(context.Background(), opts.Path, l.PublicKey(), 0); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNormalization(t *testing.T) {
	l, opts := openTest(t, nil)
	tests := []struct {
		name  string
		edit  func(*Entry)
		check func(*Entry) string
	}{
		{"raw key as actor", func(e *Entry) { e.Actor = "sk-live-abcdef0123456789" },
			func(e *Entry) string { return want(e.Actor, "redacted") }},
		{"raw key as target", func(e *Entry) { e.Target = "sk-abcdef0123456789" },
			func(e *Entry) string { return want(e.Target, "redacted") }},
		{"invalid utf-8", func(e *Entry) { e.Detail = "bad \xff byte" },
			func(e *Entry) string { return want(e.Detail, "bad \uFFFD byte") }},
		{"negative zero cost", func(e *Entry) { e.Summary.CostUSD = math.Copysign(0, -1) },
			func(e *Entry) string { return want(fmt.Sprint(math.Signbit(e.Summary.CostUSD)), "false") }},
		{"NaN cost", func(e *Entry) { e.Summary.CostUSD = math.NaN() },
			func(e *Entry) string { return want(fmt.Sprint(e.Summary.CostUSD), "0") }},
		{"local time zone", func(e *Entry) { e.Time = baseTime.In(time.FixedZone("X", 3600)) },
			func(e *Entry) string { return want(e.Time.Format(time.RFC3339Nano), baseTime.Format(time.RFC3339Nano)) }},
		{"time set by Append", func(e *Entry) { e.Time = time.Time{} },
			func(e *Entry) string { return want(fmt.Sprint(e.Time.IsZero()), "false") }},
	}
	for _, tt := range tests {
		e := testEntry(0)
		tt.edit(&e)
		l.Append(e)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, opts.Path)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msg := tt.check(&readEntry(t, db, int64(i+1)).Entry); msg != "" {
				t.Error(msg)
			}
		})
	}
	// The entries carry baseTime and now, far apart as no writer's are:
	// the check of their time span is off.
	if _, err := VerifyFileWith(context.Background(), opts.Path, VerifyOptions{Keys: []ed25519.PublicKey{l.PublicKey()}}); err != nil {
		t.Error(err)
	}
}

func want(got, want string) string {
	if got != want {
		return fmt.Sprintf("got %q, want %q", got, want)
	}
	return ""
}

// auditorHash re-implements Entry.ComputeHash from its doc comment alone.
func auditorHash(x ExportedEntry) (string, error) {
	var b []byte
	field := func(p []byte) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
		b = append(b, p...)
	}
	i64 := func(v int64) { field(binary.BigEndian.AppendUint64(nil, uint64(v))) }
	hexField := func(s string) error {
		p, err := hex.DecodeString(s)
		field(p)
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, x.Time)
	if err != nil {
		return "", err
	}
	b = append(b, "lumen-audit-entry-v1\n"...)
	i64(int64(x.Seq))
	i64(t.UnixNano())
	for _, s := range []string{x.Actor, x.Action, x.Target, x.RequestID, x.ModelGroup, x.Deployment, x.Provider} {
		field([]byte(s))
	}
	for _, v := range []int{x.Status, x.PromptTokens, x.CompletionTokens, x.CachedTokens} {
		i64(int64(v))
	}
	field(binary.BigEndian.AppendUint64(nil, math.Float64bits(x.CostUSD)))
	field([]byte(x.Detail))
	for _, s := range []string{x.RequestSHA256, x.ResponseSHA256, x.PrevHash} {
		if err := hexField(s); err != nil {
			return "", err
		}
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func TestHashEncodingIsPinned(t *testing.T) {
	// Changing the encoding breaks every stored chain: this pins it.
	e := testEntry(1)
	e.Seq = 2
	e.Target = "key_9"
	e.Detail = "détail"
	e.normalize(false)
	e.PrevHash = sha256.Sum256([]byte("previous"))
	const want = "0e6253ac6d2b70f8a94c32e228611b57c1f8ca4a30967504dad3eaa6fb7f1dec"
	got := e.ComputeHash()
	auditor, err := auditorHash(exported(&e))
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != auditor {
		t.Errorf("ComputeHash = %s, the documented encoding gives %s", got, auditor)
	}
	if got.String() != want {
		t.Errorf("ComputeHash = %s, pinned %s", got, want)
	}
}

func TestExportJSONL(t *testing.T) {
	opts, _ := writeLog(t, 12, func(o *Options) { o.StorePayloads = true })
	tests := []struct {
		name      string
		since     time.Time
		wantFirst uint64
		wantLines int
	}{
		{"all", time.Time{}, 1, 12},
		{"since entry 5's time", baseTime.Add(4 * time.Second), 5, 8},
		{"since the future", baseTime.Add(time.Hour), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RunExport(context.Background(), opts.Path, tt.since, "jsonl", &buf); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(&buf)
			sc.Buffer(nil, 1<<20)
			var lines []ExportedEntry
			for sc.Scan() {
				dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
				dec.DisallowUnknownFields()
				var x ExportedEntry
				if err := dec.Decode(&x); err != nil {
					t.Fatalf("line %d: %v: %s", len(lines)+1, err, sc.Text())
				}
				lines = append(lines, x)
			}
			if len(lines) != tt.wantLines {
				t.Fatalf("%d lines, want %d", len(lines), tt.wantLines)
			}
			for i, x := range lines {
				if x.Seq != tt.wantFirst+uint64(i) {
					t.Errorf("line %d: seq %d, want %d", i, x.Seq, tt.wantFirst+uint64(i))
				}
				src := testEntry(int(x.Seq - 1))
				if x.Action != "request" || x.ModelGroup != "gpt-4o" || x.RequestID != src.Summary.RequestID ||
					x.CostUSD != src.Summary.CostUSD || x.Time != src.Time.Format(time.RFC3339Nano) ||
					!bytes.Equal(x.RequestPayload, src.RequestPayload) {
					t.Errorf("line %d does not carry entry %d's fields: %+v", i, x.Seq, x)
				}
				h, err := auditorHash(x)
				if err != nil {
					t.Fatal(err)
				}
				if h != x.Hash {
					t.Errorf("line %d: recomputed hash %s, exported %s", i, h, x.Hash)
				}
				if i > 0 && x.PrevHash != lines[i-1].Hash {
					t.Errorf("line %d: prev_hash does not link to line %d", i, i-1)
				}
			}
		})
	}
	if err := RunExport(context.Background(), opts.Path, time.Time{}, "csv", io.Discard); err == nil {
		t.Error("export accepted format csv")
	}
}

func TestRunVerify(t *testing.T) {
	opts, _ := writeLog(t, 12, nil)
	tests := []struct {
		name    string
		keyPath string
		from    uint64
		tamper  string
		wantOut string
		wantErr error
	}{
		{name: "public key", keyPath: opts.SigningKeyPath + ".pub",
			wantOut: "ok: entries 1..12 verified (12), 2 checkpoints signed by key "},
		{name: "private key", keyPath: opts.SigningKeyPath, from: 11,
			wantOut: "ok: entries 11..12 verified (2), 1 checkpoints signed by key "},
		{name: "tampered", keyPath: opts.SigningKeyPath + ".pub",
			tamper: `DELETE FROM audit_entries WHERE seq = 4`, wantErr: ErrDeleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tamper != "" {
				mustExec(t, rawDB(t, opts.Path), tt.tamper)
			}
			var out bytes.Buffer
			err := RunVerify(context.Background(), VerifyRun{Path: opts.Path, KeyPaths: []string{tt.keyPath}, Options: VerifyOptions{From: tt.from}}, &out)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.HasPrefix(out.String(), tt.wantOut) {
				t.Errorf("out = %q, want prefix %q", out.String(), tt.wantOut)
			}
		})
	}
	if err := RunVerify(context.Background(), VerifyRun{Path: filepath.Join(t.TempDir(), "missing.db"), KeyPaths: []string{opts.SigningKeyPath}}, io.Discard); err == nil {
		t.Error("RunVerify on a missing file succeeded")
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	l, _ := openTest(t, func(o *Options) { o.QueueSize = 4096 })
	started, release := blockWriter(l) // keep the writer's own allocations out of the count
	defer close(release)
	e := testEntry(1)
	l.Append(e)
	<-started
	allocs := testing.AllocsPerRun(1000, func() { l.Append(e) })
	if allocs != 0 {
		t.Errorf("Append allocates %.1f times per call, want 0", allocs)
	}
}

// BenchmarkAppend measures what the hot path pays per Append while the
// writer drains concurrently; drops/op shows when the writer fell behind.
func BenchmarkAppend(b *testing.B) {
	l, _ := openTest(b, func(o *Options) { o.QueueSize = 1 << 16; o.CheckpointEvery = 1000 })
	e := testEntry(1)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l.Append(e)
	}
	b.StopTimer()
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "drops/op")
	l.Close()
}

// BenchmarkAppendAccepted measures Append when the entry is queued (the
// writer is held so the queue never fills). Run it with a bounded count,
// e.g. -bench AppendAccepted -benchtime 200000x: the queue holds all b.N.
func BenchmarkAppendAccepted(b *testing.B) {
	if b.N > 1<<20 {
		b.Skip("run with -benchtime Nx, N <= 1<<20")
	}
	l, _ := openTest(b, func(o *Options) { o.QueueSize = b.N + 1 })
	started, release := blockWriter(l)
	e := testEntry(1)
	l.Append(e)
	<-started
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		l.Append(e)
	}
	b.StopTimer()
	if l.Dropped() != 0 {
		b.Fatalf("dropped %d", l.Dropped())
	}
	close(release)
	l.Close()
}

// BenchmarkThroughput measures end to end how many entries per second reach
// disk: Append without drops (waiting when the queue is full) and Close.
func BenchmarkThroughput(b *testing.B) {
	const queue = 1 << 14
	l, _ := openTest(b, func(o *Options) { o.QueueSize = queue; o.CheckpointEvery = 1000 })
	e := testEntry(1)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for l.QueueDepth() >= queue-1 {
			time.Sleep(50 * time.Microsecond)
		}
		l.Append(e)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if l.Dropped() != 0 {
		b.Fatalf("dropped %d", l.Dropped())
	}
	b.ReportMetric(float64(l.Written())/elapsed.Seconds(), "entries/s")
}

// BenchmarkVerify measures how fast verify re-walks a 10,000-entry log.
func BenchmarkVerify(b *testing.B) {
	const n = 10000
	opts, pub := writeLog(b, n, func(o *Options) { o.QueueSize = n })
	b.ResetTimer()
	for b.Loop() {
		if _, err := VerifyFile(context.Background(), opts.Path, pub, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}

// PurgePayloads clears the stored bodies of entries past retention, in
// chunks; the digests and the chain stay, and the log still verifies.
func TestPurgePayloads(t *testing.T) {
	l, opts := openTest(t, func(o *Options) { o.StorePayloads = true })
	for i := range 3 {
		l.Append(testEntry(i))
	}
	for deadline := time.Now().Add(10 * time.Second); l.Written() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 entries written", l.Written())
		}
	}
	ctx := context.Background()
	if n, err := l.PurgePayloads(ctx, baseTime, 10); err != nil || n != 0 {
		t.Fatalf("nothing is old enough: %d, %v", n, err)
	}
	for _, want := range []int64{2, 1, 0} {
		if n, err := l.PurgePayloads(ctx, baseTime.Add(time.Hour), 2); err != nil || n != want {
			t.Fatalf("purged %d, %v; want %d", n, err, want)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, opts.Path)
	for seq := int64(1); seq <= 3; seq++ {
		e := readEntry(t, db, seq)
		if e.hasReqPayload || e.hasRespPayload || e.RequestSHA256 != sha256.Sum256(testEntry(int(seq-1)).RequestPayload) {
			t.Errorf("entry %d after the purge: payloads %v/%v", seq, e.hasReqPayload, e.hasRespPayload)
		}
	}
	if rep, err := VerifyFile(ctx, opts.Path, l.PublicKey(), 0); err != nil || rep.Entries != 3 {
		t.Errorf("verify after the purge: %+v, %v", rep, err)
	}
}

// TestCloseForgetsResolvedFailure loses a batch to a failed write, then
// writes again once the database is back: Close has nothing to report
// (the loss was logged and counted in Failed), as a Postgres that came
// back after an outage must not make shutdown fail.
func TestCloseForgetsResolvedFailure(t *testing.T) {
	l, opts := openTest(t, nil)
	l.retryFor = 0 // the first failure loses the batch
	ctx := context.Background()
	if _, err := l.db.ExecContext(ctx, `ALTER TABLE audit_entries RENAME TO audit_away`); err != nil {
		t.Fatal(err)
	}
	l.Append(testEntry(0))
	for l.Failed() == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := l.db.ExecContext(ctx, `ALTER TABLE audit_away RENAME TO audit_entries`); err != nil {
		t.Fatal(err)
	}
	l.Append(testEntry(1))
	for l.Written() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close after the database came back: %v", err)
	}
	if l.Failed() != 1 || l.Written() != 1 {
		t.Errorf("failed %d written %d, want 1 1", l.Failed(), l.Written())
	}
	if rep, err := VerifyFile(ctx, opts.Path, l.PublicKey(), 0); err != nil || rep.Entries != 1 {
		t.Errorf("verify: %+v, %v; want 1 entry", rep, err)
	}
}

// TestWriteWorksAgainIsLogged: a write that failed and was retried until
// the database came back says so, answering its "retrying" warning.
func TestWriteWorksAgainIsLogged(t *testing.T) {
	var logs syncbuf.Buffer
	l, _ := openTest(t, func(o *Options) { o.Logger = zerolog.New(&logs) })
	ctx := context.Background()
	if _, err := l.db.ExecContext(ctx, `ALTER TABLE audit_entries RENAME TO audit_away`); err != nil {
		t.Fatal(err)
	}
	l.Append(testEntry(0))
	for !strings.Contains(logs.String(), "retrying while new entries queue") {
		time.Sleep(time.Millisecond)
	}
	if _, err := l.db.ExecContext(ctx, `ALTER TABLE audit_away RENAME TO audit_entries`); err != nil {
		t.Fatal(err)
	}
	for l.Written() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"message":"audit write works again"`) || l.Failed() != 0 {
		t.Errorf("failed %d; the log does not say the writes work again:\n%s", l.Failed(), logs.String())
	}
}
