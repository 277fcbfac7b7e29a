package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lumengw/lumen/config"
)

// TestDockerignoreKeepsStateOut: lumen serve run in the repository (the
// README's first command, with the embedded config) leaves its ledger and
// audit signing key in the working directory; docker build must not send
// them, the private key least of all, to the daemon with the context.
func TestDockerignoreKeepsStateOut(t *testing.T) {
	f, err := os.Open(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var patterns []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if p := strings.TrimSpace(sc.Text()); p != "" && !strings.HasPrefix(p, "#") {
			patterns = append(patterns, strings.TrimPrefix(p, "/"))
		}
	}
	d := config.Default()
	state := []string{"lumen", d.Ledger.Path, d.Ledger.Path + "-wal", d.Ledger.Path + "-shm",
		d.Audit.SigningKey, d.Audit.SigningKey + ".pub", d.Ledger.Path + ".bandit.json"}
	for _, s := range state {
		name := filepath.Clean(s)
		ignored := false
		for _, p := range patterns {
			if ok, err := filepath.Match(p, name); err != nil {
				t.Fatalf(".dockerignore pattern %q: %v", p, err)
			} else if ok {
				ignored = true
			}
		}
		if !ignored {
			t.Errorf(".dockerignore lets %s into the build context (patterns %q)", name, patterns)
		}
	}
}

// TestDockerImageKeepsStateInData: the image's config is
// config.example.yaml with the Dockerfile's sed applied; every file Lumen
// writes must then be in the /data volume, as the README says.
func TestDockerImageKeepsStateInData(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	const sed = `sed -i 's#\./lumen#/data/lumen#g' /etc/lumen/config.yaml`
	if !strings.Contains(string(dockerfile), sed) {
		t.Fatalf("the Dockerfile no longer runs %s: update this test", sed)
	}
	example, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(example), "./lumen", "/data/lumen")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"ledger.path": cfg.Ledger.Path, "audit.signing_key": cfg.Audit.SigningKey} {
		if !strings.HasPrefix(p, "/data/") {
			t.Errorf("%s is %q in the image, outside the /data volume", name, p)
		}
	}
}
