package cmd

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/internal/pgtest"
	"github.com/lumengw/lumen/internal/redistest"
	"github.com/lumengw/lumen/ledger"
)

// serveChildEnv makes the test binary run `lumen serve` with the
// arguments in the variable (space-separated) instead of the tests, so a
// test can kill a real Lumen process with SIGKILL.
const serveChildEnv = "LUMEN_TEST_SERVE_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(serveChildEnv); args != "" {
		os.Args = append([]string{"lumen"}, strings.Fields(args)...)
		os.Exit(Main(nil))
	}
	code := m.Run()
	redistest.Stop()
	pgtest.Stop()
	os.Exit(code)
}

// serveChild starts `lumen serve -c config --port port` in a child
// process and waits until it is ready.
func serveChild(t *testing.T, config string, port int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveChildEnv+"=serve --config "+config+" --port "+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/health/readiness"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("lumen serve (child) did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Lumen killed with SIGKILL under load restarts on the same ledger: the
// database is intact, what was committed is there (never more rows than
// requests made), the key's budget spend is reloaded from it, and the
// restarted Lumen records new requests.
func TestE2ELedgerSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	db, err := ledger.Open(context.Background(), filepath.Join(dir, "lumen.db"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := ledger.NewKeyring(context.Background(), db, ledger.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, key, err := kr.Create(context.Background(), ledger.KeySpec{Name: "load", BudgetUSD: 1000})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(strings.ReplaceAll(ledgerConfig, "{{DIR}}", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	child := serveChild(t, config, port)

	var answered, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(chatBody("priced", "keep the ledger busy", `,"max_tokens":5`)))
				req.Header.Set("Authorization", "Bearer "+raw)
				sent.Add(1)
				resp, err := client.Do(req)
				if err != nil {
					return // killed
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					answered.Add(1)
				}
			}
		})
	}
	for answered.Load() < 300 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = child.Process.Wait()
	close(stop)
	wg.Wait()

	// The file is intact and holds at most what was asked (a request is
	// recorded as its answer leaves, so the kill may come between the two).
	sdb, err := sql.Open("sqlite3", filepath.Join(dir, "lumen.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var check string
	if err := sdb.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	var rows int64
	var spent float64
	if err := sdb.QueryRow(`SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM requests WHERE key_id = ?`, key.ID).Scan(&rows, &spent); err != nil {
		t.Fatal(err)
	}
	if rows == 0 || rows > sent.Load() {
		t.Fatalf("%d rows after %d requests (%d answered)", rows, sent.Load(), answered.Load())
	}
	t.Logf("killed after %d answered requests; %d rows committed", answered.Load(), rows)

	// Restarted on the same file: spend reloaded, new requests recorded.
	port = freePort(t)
	base = "http://127.0.0.1:" + strconv.Itoa(port)
	child = serveChild(t, config, port)
	b := rawGet(t, base, "/admin/keys/load", master)
	if got := gjson.GetBytes(b, "usage.spent_usd").Float(); math.Abs(got-spent) > 1e-9 {
		t.Fatalf("spend after restart %v, ledger says %v (%s)", got, spent, b)
	}
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(chatBody("other", "after the crash", "")))
	req.Header.Set("Authorization", "Bearer "+raw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after restart: %v %v", err, resp)
	}
	resp.Body.Close()
	_ = child.Process.Signal(syscall.SIGTERM)
	if _, err := child.Process.Wait(); err != nil {
		t.Fatal(err)
	}
	var after int64
	if err := sdb.QueryRow(`SELECT COUNT(*) FROM requests WHERE key_id = ?`, key.ID).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != rows+1 {
		t.Fatal(fmt.Sprintf("%d rows after a clean stop, want %d", after, rows+1))
	}
}
