package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strings"
)

type ctxKey int

const requestIDKey ctxKey = iota

// requestID gives every request an id, in x-lumen-request-id and the
// context.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var raw [8]byte
		v := rand.Uint64()
		for i := range raw {
			raw[i] = byte(v >> (8 * i))
		}
		var id [16]byte
		hex.Encode(id[:], raw[:])
		rid := string(id[:])
		w.Header().Set("x-lumen-request-id", rid)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, rid)))
	})
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// recoverer turns a handler panic into a 500 and a log line.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error().Str("request_id", requestIDFrom(r.Context())).Interface("panic", v).
					Bytes("stack", debug.Stack()).Msg("handler panicked")
				writeError(w, &s.log, errPanic)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type panicError struct{}

func (panicError) Error() string { return "handler panicked" }

var errPanic error = panicError{}

// presentedKey returns the key a client sent: "Authorization: Bearer",
// Anthropic's "x-api-key" or Azure's "api-key".
func presentedKey(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if k, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(k)
		}
		return ""
	}
	if k := r.Header.Get("x-api-key"); k != "" {
		return k
	}
	return r.Header.Get("api-key")
}

// presentedKeyID is a stable, non-secret id of the presented key: the first
// 16 hex digits of its SHA-256. Empty when no key was sent.
func presentedKeyID(r *http.Request) string {
	k := presentedKey(r)
	if k == "" {
		return ""
	}
	h := sha256.Sum256([]byte(k))
	return hex.EncodeToString(h[:8])
}

// authed requires the master key when one is configured.
func (s *Server) authed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hasMaster {
			next.ServeHTTP(w, r)
			return
		}
		key := presentedKey(r)
		if key == "" {
			writeError(w, &s.log, &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "missing_api_key",
				Message: "missing API key: send it as \"Authorization: Bearer <key>\""})
			return
		}
		h := sha256.Sum256([]byte(key))
		if subtle.ConstantTimeCompare(h[:], s.master[:]) != 1 {
			writeError(w, &s.log, &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "invalid_api_key",
				Message: "invalid API key: check the key you configured your client with"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, &s.log, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
		Message: sprintf("unknown endpoint %s %s; see the README for the API Lumen serves", r.Method, r.URL.Path)})
}
