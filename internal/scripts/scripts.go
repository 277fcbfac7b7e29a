// Package scripts runs the repository's scripts/ for tests: the ones that
// start a throwaway service and print the shell lines that describe it
// ("export NAME=value"), for eval in scripts/test.sh.
package scripts

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Exports runs scripts/name with the environment plus env (NAME=value)
// and returns what its "export NAME=value" lines set, quotes removed. The
// script's stderr goes to this process's.
func Exports(name string, env ...string) (map[string]string, error) {
	_, here, _, _ := runtime.Caller(0) // internal/scripts/scripts.go
	cmd := exec.Command(filepath.Join(filepath.Dir(here), "..", "..", "scripts", name))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/%s: %w", name, err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			vars[k] = strings.Trim(v, `'"`)
		}
	}
	return vars, nil
}
