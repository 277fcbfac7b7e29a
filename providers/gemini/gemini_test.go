package gemini

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
	pt "github.com/lumengw/lumen/providers/providertest"
)

func newTestClient(t *testing.T, base string) *Client {
	t.Helper()
	c, err := New(providers.Config{Provider: "gemini", Model: "gemini-2.5-flash", APIBase: base, APIKey: fakeKey})
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return time.Unix(1767225600, 0) }
	n := 0
	c.newID = func() string { n++; return fmt.Sprintf("%024d", n) }
	return c
}

func TestSuite(t *testing.T) {
	pt.Run(t, pt.Caps{
		RetryAfter:  true,
		ToolCallIDs: true, // Gemini 3 names every call
		Status:      map[pt.ErrorKind]int{pt.RateLimited: 429, pt.Overloaded: 503, pt.BadRequest: 400, pt.Unauthorized: 401},
	}, func(t *testing.T, f *pt.Fake) providers.Provider {
		srv := httptest.NewServer(fakeUpstream(t, f))
		t.Cleanup(srv.Close)
		c := newTestClient(t, srv.URL)
		c.SetImageFetcher(f.Images)
		return c
	})
}

// A 200 whose body is no GenerateContentResponse (null, an array) is a
// 502, not an empty answer.
func TestAnswerNotAnObject(t *testing.T) {
	for _, body := range []string{"null", " [1]", ""} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
		}))
		c := newTestClient(t, srv.URL)
		_, err := c.Do(context.Background(), &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-flash",
			Body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`)})
		srv.Close()
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Status != http.StatusBadGateway {
			t.Errorf("body %q: %v", body, err)
		}
	}
}

// A prompt over the model's window is Gemini's 400 INVALID_ARGUMENT "The
// input token count (N) exceeds the maximum number of tokens allowed (M)",
// from generateContent as an object, from streamGenerateContent wrapped in
// a list: both are OpenAI's context_length_exceeded, which clients read to
// shorten the conversation, not a generic invalid request.
func TestContextLengthError(t *testing.T) {
	const msg = "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."
	obj := `{"error":{"code":400,"message":"` + msg + `","status":"INVALID_ARGUMENT"}}`
	for _, stream := range []bool{false, true} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.WriteHeader(http.StatusBadRequest)
			if stream {
				io.WriteString(w, "["+obj+"]")
			} else {
				io.WriteString(w, obj)
			}
		}))
		c := newTestClient(t, srv.URL)
		req := &providers.Request{Op: providers.OpChat, Model: "gemini-2.5-pro", Stream: stream,
			Body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`)}
		var err error
		if stream {
			_, err = c.DoStream(context.Background(), req)
		} else {
			_, err = c.Do(context.Background(), req)
		}
		srv.Close()
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Status != http.StatusBadRequest || ue.Code != "context_length_exceeded" || ue.Message != msg || ue.Retryable {
			t.Errorf("stream %t: %+v", stream, err)
		}
	}
}
