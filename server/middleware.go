package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"

	"github.com/lumengw/lumen/ledger"
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
				s.writeError(w, r, errPanic)
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

// caller is who sent a request: the master key, a virtual key, or nobody
// (an open gateway).
type caller struct {
	key   *ledger.Key // nil unless a virtual key authenticated
	admin bool        // the master key
}

type callerKey struct{}

// callerFrom returns the request's caller; the zero caller when authed did
// not run.
func callerFrom(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	if c == nil {
		return caller{}
	}
	return *c
}

// authed authenticates the request: the master key, or a live virtual key.
// Without a master key the gateway is open, but a presented virtual key
// still applies (its limits, budget and models), and one that cannot be
// applied is still refused: revoked, expired, or not in the key store at
// all. A key with the virtual-key prefix was meant as one: served without
// its limits, a mistyped or deleted key would spend past its budget
// unnoticed. Any other key is a placeholder on an open gateway.
func (s *Server) authed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := presentedKey(r)
		c := &caller{}
		switch {
		case key == "" && s.hasMaster:
			s.writeError(w, r, &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "missing_api_key",
				Message: "missing API key: send it as \"Authorization: Bearer <key>\" or \"x-api-key: <key>\""})
			return
		case key == "":
		case s.isMaster(key):
			c.admin = true
		case s.keys != nil:
			k, err := s.keys.Authenticate(key)
			switch {
			case err == nil:
				c.key = k
			case errors.Is(err, ledger.ErrUnknownKey) && !s.hasMaster && !isVirtualKey(key):
				// An open gateway: clients often send a placeholder key.
			default:
				s.writeError(w, r, authError(err))
				return
			}
		case s.hasMaster || isVirtualKey(key):
			s.writeError(w, r, authError(ledger.ErrUnknownKey))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// isVirtualKey reports whether key has the virtual-key prefix.
func isVirtualKey(key string) bool { return strings.HasPrefix(key, ledger.KeyPrefix) }

// isMaster reports whether key is the master key, in constant time.
func (s *Server) isMaster(key string) bool {
	if !s.hasMaster {
		return false
	}
	h := sha256.Sum256([]byte(key))
	return subtle.ConstantTimeCompare(h[:], s.master[:]) == 1
}

func authError(err error) *apiError {
	msg := "invalid API key: check the key you configured your client with"
	switch {
	case errors.Is(err, ledger.ErrRevokedKey):
		msg = "this API key was revoked; ask your Lumen admin for a new one"
	case errors.Is(err, ledger.ErrExpiredKey):
		msg = "this API key has expired; ask your Lumen admin for a new one"
	}
	return &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "invalid_api_key", Message: msg}
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
		Message: sprintf("unknown endpoint %s %s; see the README for the API Lumen serves", r.Method, r.URL.Path)})
}

// crossOrigin tells a web page's POST from a same-origin or non-browser
// request, by Sec-Fetch-Site or by Origin against Host.
var crossOrigin = http.NewCrossOriginProtection()

// browserGuard protects an open gateway (no master key) from the web
// pages its users visit. A page cannot read a cross-origin answer, but it
// can POST to http://127.0.0.1:4000/v1/chat/completions (a form or a
// text/plain fetch needs no CORS preflight) and spend the provider keys
// blind: such requests are refused. A page on a name the attacker's DNS
// points at 127.0.0.1 (DNS rebinding) is same-origin with the gateway and
// could read every answer: on a gateway listening on loopback only, a Host
// that is not a loopback address or localhost is refused. With a master
// key neither applies: a page cannot send the key.
func (s *Server) browserGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hasMaster {
			if err := crossOrigin.Check(r); err != nil {
				s.writeError(w, r, &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: "cross_origin_request",
					Message: "a web page of another origin may not call an open gateway; call Lumen from a program, or set general_settings.master_key"})
				return
			}
			if s.loopbackOnly.Load() && !loopbackHost(r.Host) {
				s.writeError(w, r, &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: "host_not_allowed",
					Message: sprintf("this open gateway listens on loopback and answers only requests to localhost or a loopback address, not to %q; a proxy in front of it must pass Host: localhost, or set general_settings.master_key", r.Host)})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackAddr reports whether a listener's address is on the loopback
// interface.
func loopbackAddr(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// loopbackHost reports whether host (a Host header, with or without a
// port) names this machine's loopback interface: a loopback IP address,
// localhost or a name under .localhost (RFC 6761 keeps those local).
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
