package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// imageHost serves png1x1 at every path and counts the requests per path;
// a path in failFirst answers 503 to its first request.
type imageHost struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newImageHost(t *testing.T, failFirst ...string) *imageHost {
	h := &imageHost{hits: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.hits[r.URL.Path]++
		n := h.hits[r.URL.Path]
		h.mu.Unlock()
		for _, p := range failFirst {
			if p == r.URL.Path && n == 1 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(png1x1)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *imageHost) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[path]
}

const memoParam = "messages[0].content[0].image_url.url"

// Batches made for the attempts at one request (one context with a memo)
// download each image once; a failed download is not kept, so the next
// attempt tries again; without a memo every batch downloads.
func TestImageMemo(t *testing.T) {
	h := newImageHost(t, "/flaky.png")
	f := &ImageFetcher{Client: h.Client()}
	ctx := WithImageMemo(context.Background())
	if WithImageMemo(ctx) != ctx {
		t.Fatal("WithImageMemo replaced the memo ctx carries already")
	}
	for attempt := 1; attempt <= 2; attempt++ {
		b := f.Batch()
		for _, p := range []string{"/a.png", "/b.png", "/a.png", "data:image/gif;base64,R0lG"} {
			u := p
			if strings.HasPrefix(p, "/") {
				u = h.URL + p
			}
			img, err := b.Load(ctx, memoParam, u)
			if err != nil {
				t.Fatalf("attempt %d, %s: %v", attempt, p, err)
			}
			if img.MediaType == "" || img.Base64 == "" {
				t.Fatalf("attempt %d, %s: got %+v", attempt, p, img)
			}
		}
		_, err := b.Load(ctx, memoParam, h.URL+"/flaky.png")
		if attempt == 1 && !strings.Contains(fmt.Sprint(err), "503") {
			t.Fatalf("attempt 1, flaky: err = %v, want the 503", err)
		}
		if attempt == 2 && err != nil {
			t.Fatalf("attempt 2, flaky: %v", err)
		}
	}
	for path, want := range map[string]int{"/a.png": 1, "/b.png": 1, "/flaky.png": 2} {
		if got := h.count(path); got != want {
			t.Errorf("%s downloaded %d times, want %d", path, got, want)
		}
	}
	if got := imageMemoFrom(ctx).bytes; got != 3*int64(len(png1x1)) {
		t.Errorf("memo holds %d bytes, want %d (a, b and flaky once each)", got, 3*len(png1x1))
	}

	// Another fetcher (another client, another address guard) does not
	// take the first one's images.
	other := &ImageFetcher{Client: h.Client()}
	if _, err := other.Batch().Load(ctx, memoParam, h.URL+"/a.png"); err != nil {
		t.Fatal(err)
	}
	if got := h.count("/a.png"); got != 2 {
		t.Errorf("/a.png downloaded %d times after another fetcher's load, want 2", got)
	}

	// Without a memo, each batch downloads.
	for range 2 {
		if _, err := f.Batch().Load(context.Background(), memoParam, h.URL+"/c.png"); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.count("/c.png"); got != 2 {
		t.Errorf("/c.png downloaded %d times without a memo, want 2", got)
	}
}

// A memoized image counts against each batch's total as a download
// would: the limit answers the same for every attempt.
func TestImageMemoCountsAgainstTotal(t *testing.T) {
	h := newImageHost(t)
	size := int64(len(png1x1))
	f := &ImageFetcher{Client: h.Client(), MaxTotalBytes: 2*size + size/2}
	ctx := WithImageMemo(context.Background())
	for attempt := 1; attempt <= 2; attempt++ {
		b := f.Batch()
		for _, p := range []string{"/a.png", "/b.png"} {
			if _, err := b.Load(ctx, memoParam, h.URL+p); err != nil {
				t.Fatalf("attempt %d, %s: %v", attempt, p, err)
			}
		}
		_, err := b.Load(ctx, memoParam, h.URL+"/a.png") // memoized, but past the total
		var ie *InvalidRequestError
		if !errors.As(err, &ie) || !strings.Contains(ie.Message, "come to more than") || ie.Param != memoParam {
			t.Fatalf("attempt %d: third image: err = %v, want the total's InvalidRequestError", attempt, err)
		}
	}
	if a, b := h.count("/a.png"), h.count("/b.png"); a != 1 || b != 1 {
		t.Errorf("downloads a=%d b=%d, want 1 each", a, b)
	}
}

// Attempts running at once (hedges) share the memo safely: run with -race.
// Once an image is in, no goroutine downloads it again.
func TestImageMemoConcurrent(t *testing.T) {
	h := newImageHost(t)
	f := &ImageFetcher{Client: h.Client()}
	ctx := WithImageMemo(context.Background())
	if _, err := f.Batch().Load(ctx, memoParam, h.URL+"/warm.png"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := f.Batch()
			for _, p := range []string{"/warm.png", "/cold.png", fmt.Sprintf("/own%d.png", i)} {
				if img, err := b.Load(ctx, memoParam, h.URL+p); err != nil || img.MediaType != "image/png" {
					t.Errorf("goroutine %d, %s: %+v %v", i, p, img, err)
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	if got := h.count("/warm.png"); got != 1 {
		t.Errorf("/warm.png downloaded %d times, want 1", got)
	}
	for i := range 8 {
		if got := h.count(fmt.Sprintf("/own%d.png", i)); got != 1 {
			t.Errorf("/own%d.png downloaded %d times, want 1", i, got)
		}
	}
	if got := h.count("/cold.png"); got < 1 || got > 8 {
		t.Errorf("/cold.png downloaded %d times, want 1 to 8", got)
	}
	before := h.count("/cold.png")
	if _, err := f.Batch().Load(ctx, memoParam, h.URL+"/cold.png"); err != nil || h.count("/cold.png") != before {
		t.Errorf("/cold.png downloaded again after the concurrent loads: %v", err)
	}
}
