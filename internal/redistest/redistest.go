// Package redistest gives tests a real Redis: the one scripts/test.sh
// started (LUMEN_TEST_REDIS_ADDR), else one it starts itself with
// scripts/redis.sh when redis-server is installed. A package whose tests
// use it calls Stop from TestMain, after m.Run.
package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/lumengw/lumen/internal/scripts"
)

var started struct {
	once sync.Once
	addr string
	pid  int
	err  error
}

// Addr returns host:port of a Redis for tests, starting one on first use
// when LUMEN_TEST_REDIS_ADDR is not set. It skips the test when
// redis-server is not installed, and fails it when the server would not
// start.
func Addr(t testing.TB) string {
	t.Helper()
	if a := os.Getenv("LUMEN_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed: run scripts/redis.sh (it installs redis-server with apt-get and starts one) or set LUMEN_TEST_REDIS_ADDR")
	}
	started.once.Do(start)
	if started.err != nil {
		t.Fatalf("starting redis-server: %v", started.err)
	}
	return started.addr
}

func start() {
	dir, err := os.MkdirTemp("", "lumen-test-redis")
	if err != nil {
		started.err = err
		return
	}
	vars, err := scripts.Exports("redis.sh", "LUMEN_REDIS_DIR="+dir)
	if err != nil {
		started.err = err
		return
	}
	started.addr = vars["LUMEN_TEST_REDIS_ADDR"]
	started.pid, _ = strconv.Atoi(vars["LUMEN_TEST_REDIS_PID"])
	if started.addr == "" {
		started.err = fmt.Errorf("scripts/redis.sh printed no address: %v", vars)
	}
}

// Stop stops the server Addr started, if it started one.
func Stop() {
	if started.pid > 0 {
		_ = syscall.Kill(started.pid, syscall.SIGTERM)
	}
}
