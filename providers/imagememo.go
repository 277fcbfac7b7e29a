package providers

import (
	"context"
	"sync"
)

// imageMemo holds the http(s) images fetched for one client request, so
// that every upstream attempt made for it (a retry, a fallback to another
// Gemini or Bedrock deployment, a hedge, a mid-stream failover) downloads
// each image once: a retry costs no second download, and a flaky image
// host cannot fail a retry that the first attempt got past.
//
// It is safe for concurrent use: hedged attempts load from it at the same
// time. Two attempts asking for an image neither has yet both download
// it; the memo only saves what has been fetched.
//
// Only successful downloads are kept, never failures (the next attempt
// tries again) nor data URLs (which need no fetch). Entries are keyed by
// the fetcher as well as the URL: fetchers with different clients guard
// different addresses, and an image one fetched is not another's to hand
// out. Memory: the memo lives as long as the request's context, and an
// image is kept only while the images held come to no more than the
// storing fetcher's MaxTotalBytes (32 MiB by default; held in base64,
// a third more), which one attempt's batch may hold anyway; the
// attempts' translated requests share those strings rather than copy
// them.
type imageMemo struct {
	mu    sync.Mutex
	m     map[memoKey]memoImage // made by the first put
	bytes int64                 // decoded bytes held
}

type memoKey struct {
	f   *ImageFetcher
	url string
}

// memoImage is a fetched image and its decoded size, which counts against
// the total of each batch that uses it.
type memoImage struct {
	img  Image
	size int64
}

type imageMemoKey struct{}

// WithImageMemo returns ctx carrying a memo of the http(s) images fetched
// for the request ctx belongs to (see imageMemo), which ImageBatch.Load
// consults; router.Router.Do installs one per client request. A ctx that
// carries one already is returned as it is, so that nested calls for one
// request share it.
func WithImageMemo(ctx context.Context) context.Context {
	if imageMemoFrom(ctx) != nil {
		return ctx
	}
	return context.WithValue(ctx, imageMemoKey{}, &imageMemo{})
}

// imageMemoFrom is ctx's memo; nil when it carries none.
func imageMemoFrom(ctx context.Context) *imageMemo {
	m, _ := ctx.Value(imageMemoKey{}).(*imageMemo)
	return m
}

func (m *imageMemo) get(f *ImageFetcher, url string) (memoImage, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[memoKey{f, url}]
	return e, ok
}

// put keeps an image f fetched, unless the memo would then hold more than
// f's MaxTotalBytes.
func (m *imageMemo) put(f *ImageFetcher, url string, e memoImage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memoKey{f, url}
	if _, ok := m.m[k]; ok || m.bytes+e.size > f.totalBytes() {
		return
	}
	if m.m == nil {
		m.m = map[memoKey]memoImage{}
	}
	m.m[k] = e
	m.bytes += e.size
}
