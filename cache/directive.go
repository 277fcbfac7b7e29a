package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Directive is a request's own cache control, from its Cache-Control header
// and LiteLLM's "cache" body field:
//
//	Cache-Control: no-cache            "cache": {"no-cache": true}
//	Cache-Control: no-store            "cache": {"no-store": true}
//	Cache-Control: max-age=60          "cache": {"s-maxage": 60}
//	                                   "cache": {"ttl": 600}
//	                                   "cache": {"namespace": "evals"}
//
// A malformed directive is ignored rather than failing the request.
type Directive struct {
	// NoCache skips the lookup (and joining an in-flight identical call)
	// but still stores the fresh answer.
	NoCache bool
	// NoStore skips the lookup and the store, and never shares a flight.
	NoStore bool
	// TTL is how long to keep this answer; 0 means the configured TTL.
	TTL time.Duration
	// MaxAge accepts only entries younger than this; 0 means any age.
	// max-age=0 is expressed as NoCache.
	MaxAge time.Duration
	// Namespace narrows the cache namespace (see Scope).
	Namespace string
}

// Bypass reports whether the lookup is skipped (x-lumen-cache: bypass).
func (d Directive) Bypass() bool { return d.NoCache || d.NoStore }

// ParseDirective reads the Cache-Control headers of h and field, the JSON
// value of a request body's "cache" field (which the server takes out of
// the body before it goes upstream). Either may be nil. Where both speak,
// the stricter wins: any no-cache or no-store holds, and the smaller
// max-age.
func ParseDirective(h http.Header, field []byte) Directive {
	var d Directive
	for _, v := range h.Values("Cache-Control") {
		for _, tok := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(tok), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-cache":
				d.NoCache = true
			case "no-store":
				d.NoStore = true
			case "max-age", "s-maxage":
				if n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64); err == nil && n >= 0 {
					d.maxAge(time.Duration(n) * time.Second)
				}
			}
		}
	}
	if len(field) == 0 {
		return d
	}
	c := gjson.ParseBytes(field)
	if !c.IsObject() {
		return d
	}
	c.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "no-cache":
			d.NoCache = d.NoCache || v.Bool()
		case "no-store":
			d.NoStore = d.NoStore || v.Bool()
		case "ttl":
			if s := seconds(v); s > 0 {
				d.TTL = s
			}
		case "s-maxage":
			if v.Type == gjson.Number && v.Float() >= 0 {
				d.maxAge(seconds(v))
			}
		case "namespace":
			if v.Type == gjson.String {
				d.Namespace = v.Str
			}
		}
		return true
	})
	return d
}

func (d *Directive) maxAge(a time.Duration) {
	if a <= 0 {
		d.NoCache = true
		return
	}
	if d.MaxAge == 0 || a < d.MaxAge {
		d.MaxAge = a
	}
}

// seconds reads a JSON number of seconds; anything else is 0.
func seconds(v gjson.Result) time.Duration {
	if v.Type != gjson.Number || v.Float() <= 0 || v.Float() > 1e9 {
		return 0
	}
	return time.Duration(v.Float() * float64(time.Second))
}
