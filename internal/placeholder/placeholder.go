// Package placeholder rewrites SQL written with ? placeholders (SQLite's)
// for databases that number them (Postgres: $1, $2, …), so that one query
// text serves both.
package placeholder

import (
	"strconv"
	"strings"
)

// Dollar returns query with each ? replaced by $1, $2, … in order. The
// queries it is given hold no ? in literals or identifiers.
func Dollar(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}
