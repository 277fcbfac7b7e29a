package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// virtualKey has the form of a Lumen virtual key: "lumen-sk-" and 43
// base62 characters.
const virtualKey = "lumen-sk-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uvw"

// TestSecretsNeverStored: a virtual key and a Bearer token inside an
// entry's actor, target and detail are stored without the secret, the
// text around them kept, and the chain still verifies.
func TestSecretsNeverStored(t *testing.T) {
	const bearer = "xyzTok3n.abc-DEF_ghi~jk/lm+no=="
	l, opts := openTest(t, nil)
	e := testEntry(0)
	e.Actor = "client " + virtualKey + " via proxy"
	e.Target = "header Authorization: Bearer " + bearer + ", refused"
	e.Detail = "rotated from " + virtualKey + "; sent as bearer " + bearer
	l.Append(e)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readEntry(t, rawDB(t, opts.Path), 1).Entry
	for _, f := range []struct{ name, got, want string }{
		{"actor", got.Actor, "client lumen-sk-[redacted] via proxy"},
		{"target", got.Target, "header Authorization: Bearer [redacted], refused"},
		{"detail", got.Detail, "rotated from lumen-sk-[redacted]; sent as bearer [redacted]"},
	} {
		if f.got != f.want {
			t.Errorf("%s stored as %q, want %q", f.name, f.got, f.want)
		}
	}
	// Nothing of either secret anywhere in the database's files (the
	// WAL included).
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(opts.Path), "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{virtualKey[len("lumen-sk-"):], bearer} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the secret %q", filepath.Base(f), secret)
			}
		}
	}
	if _, err := VerifyFile(context.Background(), opts.Path, l.PublicKey(), 0); err != nil {
		t.Error(err)
	}
}

func TestRedactSecret(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"key_0123456789abcdef", "key_0123456789abcdef"},
		{"admin", "admin"},
		{"sk-live-abcdef0123456789", "redacted"},
		{virtualKey, "lumen-sk-[redacted]"},
		{"token_" + virtualKey + "!", "token_lumen-sk-[redacted]!"},
		{"rotated search, new prefix lumen-sk-Ab12", "rotated search, new prefix lumen-sk-Ab12"},
		{"a=" + virtualKey + "&b=" + virtualKey, "a=lumen-sk-[redacted]&b=lumen-sk-[redacted]"},
		{"Authorization: Bearer abc.DEF-123", "Authorization: Bearer [redacted]"},
		{"BEARER\tabc", "BEARER\t[redacted]"},
		{"Bearer " + virtualKey, "Bearer [redacted]"},
		{"upstream key sk-proj-abcdef123 refused", "upstream key sk-[redacted] refused"},
		{"name gpt-task-runner; budget 10", "name gpt-task-runner; budget 10"},
		{"name bearer-bonds", "name bearer-bonds"},
	} {
		if got := redactSecret(tt.in); got != tt.want {
			t.Errorf("redactSecret(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(redactSecret(tt.in), virtualKey[len("lumen-sk-"):]) {
			t.Errorf("redactSecret(%q) keeps the key", tt.in)
		}
	}
}
