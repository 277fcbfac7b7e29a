// Package ui is Lumen's dashboard: plain HTML, CSS and JavaScript embedded
// in the binary, with no build step and nothing fetched from elsewhere, so
// it works offline.
//
// The files hold no data. The page asks for the master key, keeps it in the
// tab's sessionStorage and sends it as a Bearer token to the admin API
// (/admin/...) and /health; the server mounts Handler under /ui/.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Static returns the dashboard's files, rooted at index.html.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // "static" is embedded above: cannot happen
	}
	return sub
}

// Handler serves the dashboard. Mount it with the mount prefix stripped:
// http.StripPrefix("/ui", ui.Handler()) at "/ui/".
//
// The Content-Security-Policy allows only this origin's own scripts,
// styles and API: an injected string in a key name or tag can neither run
// script nor send the master key elsewhere.
func Handler() http.Handler {
	fsrv := http.FileServerFS(Static())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}
