package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// adminRoutes registers the admin API (/admin/...), master key only, and
// the dashboard (/ui).
func (s *Server) adminRoutes(mux *http.ServeMux) {
	_ = mux
}

// admin requires the master key, whatever virtual keys exist. Without a
// master key the admin API is off: it answers 403.
func (s *Server) admin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hasMaster {
			writeError(w, &s.log, &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: "admin_disabled",
				Message: "the admin API needs general_settings.master_key in the config"})
			return
		}
		key := presentedKey(r)
		h := sha256.Sum256([]byte(key))
		if key == "" || subtle.ConstantTimeCompare(h[:], s.master[:]) != 1 {
			writeError(w, &s.log, &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "invalid_api_key",
				Message: "the admin API takes the master key only"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
