package metrics

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values that stand in for others.
const (
	// Other replaces a value once its label has MaxLabelValues distinct
	// values, a value not on an allow-list, and a value that is not valid
	// UTF-8 or is longer than maxValueLen.
	Other = "other"
	// None replaces the empty string.
	None = "none"
)

const maxValueLen = 128

// valueSet bounds the values one label can take: the first max distinct
// values are kept, later ones become Other. With fixed set, only the values
// it was seeded with (and those added by allow) are kept. Safe for
// concurrent use; lookups of known values take a read lock and do not
// allocate.
type valueSet struct {
	label    string
	max      int
	fixed    bool
	overflow prometheus.Counter

	mu   sync.RWMutex
	vals map[string]string // value -> the set's own copy of it
}

func newValueSet(label string, max int, fixed bool, overflow *prometheus.CounterVec) *valueSet {
	return &valueSet{
		label:    label,
		max:      max,
		fixed:    fixed,
		overflow: overflow.WithLabelValues(label),
		vals:     map[string]string{None: None, Other: Other},
	}
}

// canon returns the label value to use for v, and whether v was accepted
// (it is that value, or "" for None): accepted raw values are few, so callers
// may cache by them.
func (s *valueSet) canon(v string) (string, bool) {
	if v == "" {
		return None, true
	}
	s.mu.RLock()
	c, ok := s.vals[v]
	s.mu.RUnlock()
	if ok {
		return c, true
	}
	if len(v) > maxValueLen || !utf8.ValidString(v) || s.fixed {
		s.overflow.Inc()
		return Other, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.vals[v]; ok {
		return c, true
	}
	if len(s.vals)-2 >= s.max { // None and Other do not count
		s.overflow.Inc()
		return Other, false
	}
	// Clone: v may point into a request buffer the set must not pin.
	c = strings.Clone(v)
	s.vals[c] = c
	return c, true
}

// allow adds values to the set, up to its cap, even when it is fixed. It
// returns the values that did not fit.
func (s *valueSet) allow(vals ...string) (rejected []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vals {
		if v == "" {
			continue
		}
		if _, ok := s.vals[v]; ok {
			continue
		}
		if len(v) > maxValueLen || !utf8.ValidString(v) || len(s.vals)-2 >= s.max {
			rejected = append(rejected, v)
			continue
		}
		c := strings.Clone(v)
		s.vals[c] = c
	}
	return rejected
}

// statusLabels are the values of the status label: the codes Lumen returns
// most, then classes for the rest, then "error" for what is not an HTTP
// status (0: the client left before a status was written).
var statusLabels = [...]string{
	"200", "201", "204",
	"400", "401", "402", "403", "404", "408", "409", "413", "422", "429", "499",
	"500", "501", "502", "503", "504",
	"1xx", "2xx", "3xx", "4xx", "5xx", "error",
}

// statusIndex maps an HTTP status to its index in statusLabels.
var statusIndex = func() [600]uint8 {
	var idx [600]uint8
	named := map[string]int{}
	for i, l := range statusLabels {
		named[l] = i
	}
	for code := range idx {
		if i, ok := named[strconv.Itoa(code)]; ok {
			idx[code] = uint8(i)
		} else if code >= 100 {
			idx[code] = uint8(named[strconv.Itoa(code/100)+"xx"])
		} else {
			idx[code] = uint8(named["error"])
		}
	}
	return idx
}()

func statusSlot(code int) int {
	if code < 0 || code >= len(statusIndex) {
		return int(statusIndex[0])
	}
	return int(statusIndex[code])
}

// StatusLabel returns the value of the status label for an HTTP status code.
func StatusLabel(code int) string { return statusLabels[statusSlot(code)] }
