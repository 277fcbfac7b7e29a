package anthropic

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
)

func newTestClient(t *testing.T, base string) *Client {
	t.Helper()
	c, err := New(providers.Config{Provider: "anthropic", Model: "claude-test", APIBase: base, APIKey: fakeKey})
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return time.Unix(1767225600, 0) }
	return c
}

func TestSuite(t *testing.T) {
	pt.Run(t, pt.Caps{
		ImageURL: true, CacheWrite: true, ToolCallIDs: true, RetryAfter: true,
		Status: map[pt.ErrorKind]int{pt.RateLimited: 429, pt.Overloaded: 529, pt.BadRequest: 400, pt.Unauthorized: 401},
	}, func(t *testing.T, f *pt.Fake) providers.Provider {
		srv := httptest.NewServer(fakeUpstream(t, f))
		t.Cleanup(srv.Close)
		return newTestClient(t, srv.URL)
	})
}
