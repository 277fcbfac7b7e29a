package ledger

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lumengw/lumen/internal/pgtest"
	"github.com/lumengw/lumen/providers"
)

// crashEnv makes the test binary a ledger writer under load instead of
// running tests (see TestMain); its value is the directory to write in.
const crashEnv = "LUMEN_LEDGER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		os.Exit(0) // not reached: the parent kills the child
	}
	code := m.Run()
	cleanupBench()
	pgtest.Stop()
	os.Exit(code)
}

// crashChild writes records as fast as the writer takes them, appending
// the request id of every record to dir/acked after its batch commits.
func crashChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	s, err := Open(context.Background(), filepath.Join(dir, "lumen.db"))
	if err != nil {
		fail(err)
	}
	ack, err := os.OpenFile(filepath.Join(dir, "acked"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fail(err)
	}
	var buf bytes.Buffer
	w := NewWriter(s, WriterOptions{QueueSize: 2000, BatchSize: 200, OnCommit: func(batch []Record) {
		buf.Reset()
		for _, r := range batch {
			buf.WriteString(r.RequestID)
			buf.WriteByte('\n')
		}
		if _, err := ack.Write(buf.Bytes()); err != nil {
			fail(err)
		}
	}})
	for i := 0; ; i++ {
		r := Record{RequestID: fmt.Sprintf("req-%08d", i), KeyID: "key_crash", ModelGroup: "gpt-4o",
			Status: 200, CostUSD: 0.001, Usage: providers.Usage{PromptTokens: 100, CompletionTokens: 20},
			Request: []byte("not stored")}
		for !w.Record(r) {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// TestWriterSurvivesKill runs a writer in a child process, kills it with
// SIGKILL in the middle of its load, reopens the file and checks that
// every record of every batch the writer reported committed is there.
func TestWriterSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	ackPath := filepath.Join(dir, "acked")
	const want = 5000 // acknowledged records before the kill
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(ackPath)
		if bytes.Count(b, []byte("\n")) >= want {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("child exited before the kill: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("child acknowledged fewer than %d records in a minute\n%s", want, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child ended with %v, want killed", err)
	}

	b, err := os.ReadFile(ackPath)
	if err != nil {
		t.Fatal(err)
	}
	// A line cut short by the kill was not acknowledged in full.
	lines := strings.Split(string(b), "\n")
	acked := lines[:len(lines)-1]

	s, err := Open(context.Background(), filepath.Join(dir, "lumen.db"))
	if err != nil {
		t.Fatalf("reopening after the kill: %v", err)
	}
	defer s.Close()
	var check string
	if err := s.db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	rows, err := s.db.Query(`SELECT request_id FROM requests`)
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		present[id] = true
	}
	rows.Close()
	missing := 0
	for _, id := range acked {
		if !present[id] {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged record %s is missing after the kill", id)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged records missing", missing, len(acked))
	}
	var payloads int
	s.db.QueryRow(`SELECT count(*) FROM payloads`).Scan(&payloads)
	if payloads != 0 {
		t.Errorf("%d payloads stored with store_payloads off", payloads)
	}
	t.Logf("killed with %d records acknowledged, %d on disk after reopening", len(acked), len(present))
}
