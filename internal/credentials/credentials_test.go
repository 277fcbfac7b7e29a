package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"postgres password", "postgres://lumen:s3cret@db:5432/lumen?sslmode=require",
			"postgres://lumen:xxxxx@db:5432/lumen?sslmode=require"},
		{"redis password only", "redis://:s3cret@cache:6379/0", "redis://:xxxxx@cache:6379/0"},
		{"https basic auth", "https://user:pa55@collector:4318", "https://user:xxxxx@collector:4318"},
		{"password net/url refuses", "postgres://u:p@ss/w:rd@db/x", "postgres://u:xxxxx@db/x"},
		{"@ in the path", "https://u:pw@host/users/@me", "https://u:xxxxx@me"}, // the host too: see redactUserinfo
		{"username alone is kept", "https://alice@host/v1", "https://alice@host/v1"},
		{"no credentials", "http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"},
		{"query password", "postgres://db/lumen?user=u&password=s3cret&sslmode=disable",
			"postgres://db/lumen?user=u&password=xxxxx&sslmode=disable"},
		{"sslpassword", "postgres://u@db/x?sslpassword=s3cret", "postgres://u@db/x?sslpassword=xxxxx"},
		{"api_key", "https://h/v1?api_key=s3cret&x=1", "https://h/v1?api_key=xxxxx&x=1"},
		{"presigned", "https://b.s3.amazonaws.com/o?X-Amz-Credential=AKIA1%2F2&X-Amz-Signature=abc123&X-Amz-Expires=60",
			"https://b.s3.amazonaws.com/o?X-Amz-Credential=xxxxx&X-Amz-Signature=xxxxx&X-Amz-Expires=60"},
		{"libpq keywords", "host=db user=lumen password=s3cret dbname=lumen", "host=db user=lumen password=xxxxx dbname=lumen"},
		{"libpq quoted", "host=db password='s3 cr\\'et' dbname=lumen", "host=db password=xxxxx dbname=lumen"},
		{"ado style", "Endpoint=sb://x/;SharedAccessKeyName=root;SharedAccessKey=s3cret",
			"Endpoint=sb://x/;SharedAccessKeyName=root;SharedAccessKey=xxxxx"},
		{"in an error", `parse "redis://:p@ss@cache:6379": net/url: invalid userinfo`,
			`parse "redis://:xxxxx@cache:6379": net/url: invalid userinfo`},
		{"two URLs", "from postgres://a:one@h1/x to postgres://b:two@h2/y", "from postgres://a:xxxxx@h1/x to postgres://b:xxxxx@h2/y"},
		{"not a secret name", "max_tokens=4096 keys=3 tokens=9", "max_tokens=4096 keys=3 tokens=9"},
		{"empty password", "postgres://u:@h/x?password=", "postgres://u:@h/x?password="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.in)
			if got != tt.want {
				t.Fatalf("Redact(%q)\n = %q\nwant %q", tt.in, got, tt.want)
			}
			if again := Redact(got); again != got {
				t.Fatalf("not idempotent: %q -> %q", got, again)
			}
		})
	}
}

// Whatever net/url makes of a URL with a password, Redact hides the
// password: the string itself, and the error url.Parse returns for it.
func TestRedactHidesWhatURLParseSees(t *testing.T) {
	for _, raw := range []string{
		"postgres://u:s3cretpw@db/x",
		"redis://:s3cretpw@cache:6379/0",
		"https://u:s3cretpw@h:bad/x",   // invalid port
		"https://u:s3cretpw@h%zz/x",    // invalid escape
		"http://u:s3cretpw@[::1/x",     // bad IPv6
		"postgres://u:s3cretpw/@db/x?", // "/" in the password
	} {
		shown := Redact(raw)
		if _, err := url.Parse(raw); err != nil {
			shown = RedactError(fmt.Errorf("opening: %w", err)).Error()
		}
		if strings.Contains(shown, "s3cretpw") {
			t.Errorf("%q: shown as %q", raw, shown)
		}
	}
}

func TestRedactError(t *testing.T) {
	plain := errors.New("dial tcp 10.0.0.1:5432: connection refused")
	if RedactError(plain) != plain {
		t.Fatal("an error without credentials is not returned as it is")
	}
	wrapped := &url.Error{Op: "Get", URL: "https://collector/v1?api_key=s3cret", Err: fs.ErrInvalid}
	got := RedactError(wrapped)
	if got.Error() != `Get "https://collector/v1?api_key=xxxxx": invalid argument` {
		t.Fatalf("Error() = %q", got.Error())
	}
	var ue *url.Error
	if !errors.As(got, &ue) || !errors.Is(got, fs.ErrInvalid) {
		t.Fatal("the redacted error does not unwrap to the original")
	}
	if RedactError(nil) != nil {
		t.Fatal("nil is not nil")
	}
}

func TestSentFor(t *testing.T) {
	if got := SentFor("https://lumen:hunter2%40x@vllm.internal/v1"); len(got) != 2 || got[0] != "hunter2@x" || got[1] != "bHVtZW46aHVudGVyMkB4" {
		t.Errorf("SentFor = %q", got)
	}
	for _, none := range []string{"https://vllm.internal/v1", "https://lumen@vllm.internal", "https://lumen:@h", "%zz"} {
		if got := SentFor(none); got != nil {
			t.Errorf("SentFor(%q) = %q", none, got)
		}
	}
}
