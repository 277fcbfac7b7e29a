package ledger

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lumengw/lumen/limits"
	"github.com/lumengw/lumen/providers"
)

// By is what a spend report groups by.
type By string

// Report groupings.
const (
	ByKey        By = "key"        // virtual key id (Row.Name is its name)
	ByModel      By = "model"      // model group, the name clients ask for
	ByDeployment By = "deployment" // model_info.id
	ByProvider   By = "provider"
	ByUser       By = "user" // the request's user field
	ByDay        By = "day"  // calendar day in Query.Location, "2006-01-02"
	ByTag        By = "tag"  // each x-lumen-tags value; untagged requests are left out
	// ByKeyTag is each tag ("team=search") of the request's key, as the
	// key carries it now: what limits.tags budgets count. Requests of keys
	// without tags are left out.
	ByKeyTag By = "key_tag"
)

// ParseBy parses a grouping name; empty means ByKey.
func ParseBy(s string) (By, error) {
	switch b := By(s); b {
	case ByKey, ByModel, ByDeployment, ByProvider, ByUser, ByDay, ByTag, ByKeyTag:
		return b, nil
	case "":
		return ByKey, nil
	default:
		return "", fmt.Errorf("cannot group spend by %q (want key, model, deployment, provider, user, day, tag or key_tag)", s)
	}
}

// ParseTime reads a report's bound as lumen spend and the admin API take
// it: an RFC 3339 time, or a date ("2026-11-01"), which is the midnight
// that starts it in loc: the budget time zone (ledger.budget_timezone),
// which Query.Location cuts days in too, so that a date names the same
// day as a ByDay row.
func ParseTime(s string, loc *time.Location) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if loc == nil {
		loc = time.UTC
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// Query selects the requests a report covers.
type Query struct {
	By By
	// Since (inclusive) and Until (exclusive) bound the request time; zero
	// means unbounded.
	Since, Until time.Time
	// KeyID, or else KeyName, restricts the report to one key. A name
	// covers every key that ever had it (a revoked key and its successor).
	KeyID, KeyName string
	// Key, when KeyID and KeyName are empty, is a reference as a user
	// types it: the id of a key when one has it, else a name (so a key
	// named "key_bot" is found by its name).
	Key string
	// Location is the time zone days are cut in for ByDay (default UTC).
	Location *time.Location
}

// Row is one group of a spend report.
type Row struct {
	// Group is the value grouped by: key id, model group, deployment,
	// provider, user, day ("2006-01-02"), tag or key tag ("team=search").
	Group string `json:"group"`
	// Name is the key's current name, for ByKey.
	Name             string  `json:"name,omitempty"`
	Requests         int64   `json:"requests"`
	Errors           int64   `json:"errors"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CachedTokens     int64   `json:"cached_tokens"`
	CacheWriteTokens int64   `json:"cache_write_tokens"`
	CostUSD          float64 `json:"cost_usd"`
	// SavedUSD is what cache hits would have cost.
	SavedUSD float64 `json:"saved_usd"`
}

func (r *Row) add(o *Row) {
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.PromptTokens += o.PromptTokens
	r.CompletionTokens += o.CompletionTokens
	r.CachedTokens += o.CachedTokens
	r.CacheWriteTokens += o.CacheWriteTokens
	r.CostUSD += o.CostUSD
	r.SavedUSD += o.SavedUSD
}

const sums = `count(*), sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END), sum(prompt_tokens), sum(completion_tokens),
	sum(cached_tokens), sum(cache_write_tokens), sum(cost), sum(saved_cost)`

// where returns q's conditions on requests and their arguments.
func (s *DB) where(ctx context.Context, q Query) (string, []any, error) {
	var conds []string
	var args []any
	if !q.Since.IsZero() {
		conds = append(conds, "ts >= ?")
		args = append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		conds = append(conds, "ts < ?")
		args = append(args, q.Until.UnixMilli())
	}
	switch {
	case q.KeyID != "":
		conds = append(conds, "key_id = ?")
		args = append(args, q.KeyID)
	case q.KeyName != "":
		ids, err := s.keyIDs(ctx, q.KeyName)
		if err != nil {
			return "", nil, err
		}
		conds = append(conds, "key_id IN ("+strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+")")
		for _, id := range ids {
			args = append(args, id)
		}
	case q.Key != "":
		ids, err := s.keyRef(ctx, q.Key)
		if err != nil {
			return "", nil, err
		}
		conds = append(conds, "key_id IN ("+strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+")")
		for _, id := range ids {
			args = append(args, id)
		}
	}
	if len(conds) == 0 {
		return "1 = 1", nil, nil
	}
	return strings.Join(conds, " AND "), args, nil
}

// keyRef returns ref when a key has that id, else the ids of every key
// ever named ref.
func (s *DB) keyRef(ctx context.Context, ref string) ([]string, error) {
	var id string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id FROM api_keys WHERE id = ?`), ref).Scan(&id)
	switch {
	case err == nil:
		return []string{id}, nil
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("looking up key %q: %w", ref, err)
	}
	return s.keyIDs(ctx, ref)
}

// keyIDs returns the ids of every key ever named name.
func (s *DB) keyIDs(ctx context.Context, name string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id FROM api_keys WHERE name = ?`), name)
	if err != nil {
		return nil, fmt.Errorf("looking up key %q: %w", name, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("looking up key %q: %w", name, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("looking up key %q: %w", name, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("looking up key %q: %w", name, ErrKeyNotFound)
	}
	return ids, nil
}

// quarterHour is the bucket ByDay aggregates in before cutting days in
// Go: every time zone's offset is a multiple of 15 minutes.
const quarterHour = 15 * 60 * 1000

// Spend returns q's requests grouped by q.By, dearest group first (ByDay:
// oldest day first).
func (s *DB) Spend(ctx context.Context, q Query) ([]Row, error) {
	by := q.By
	if by == "" {
		by = ByKey
	}
	where, args, err := s.where(ctx, q)
	if err != nil {
		return nil, err
	}
	var query string
	switch by {
	case ByKey, ByModel, ByDeployment, ByProvider, ByUser:
		col := map[By]string{ByKey: "key_id", ByModel: "model_group", ByDeployment: "deployment", ByProvider: "provider", ByUser: `"user"`}[by]
		query = `SELECT ` + col + `, ` + sums + ` FROM requests WHERE ` + where + ` GROUP BY 1`
	case ByDay:
		query = `SELECT ts / ` + strconv.Itoa(quarterHour) + `, ` + sums + ` FROM requests WHERE ` + where + ` GROUP BY 1`
	case ByTag:
		each := `json_each(requests.tags) AS t`
		if s.pg {
			each = `jsonb_array_elements_text(requests.tags::jsonb) AS t(value)`
		}
		query = `SELECT t.value, ` + sums + ` FROM requests, ` + each + `
			WHERE requests.tags IS NOT NULL AND ` + where + ` GROUP BY 1`
	case ByKeyTag:
		each := `json_each(k.tags) AS t`
		if s.pg {
			each = `jsonb_each_text(k.tags::jsonb) AS t(key, value)`
		}
		query = `SELECT t.key || '=' || t.value, ` + sums + ` FROM requests JOIN api_keys AS k ON k.id = requests.key_id,
			` + each + ` WHERE k.tags IS NOT NULL AND ` + where + ` GROUP BY 1`
	default:
		return nil, fmt.Errorf("spend report: cannot group by %q", by)
	}
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("spend report by %s: %w", by, err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		var group any
		if err := rows.Scan(&group, &r.Requests, &r.Errors, &r.PromptTokens, &r.CompletionTokens,
			&r.CachedTokens, &r.CacheWriteTokens, &r.CostUSD, &r.SavedUSD); err != nil {
			return nil, fmt.Errorf("spend report by %s: %w", by, err)
		}
		switch g := group.(type) {
		case int64:
			r.Group = strconv.FormatInt(g, 10)
		case string:
			r.Group = g
		case []byte:
			r.Group = string(g)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("spend report by %s: %w", by, err)
	}
	switch by {
	case ByDay:
		return byDay(out, q.Location), nil
	case ByKey:
		if err := s.nameKeys(ctx, out); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CostUSD != out[j].CostUSD {
			return out[i].CostUSD > out[j].CostUSD
		}
		return out[i].Group < out[j].Group
	})
	return out, nil
}

// byDay folds quarter-hour rows into days of loc.
func byDay(quarters []Row, loc *time.Location) []Row {
	if loc == nil {
		loc = time.UTC
	}
	days := map[string]*Row{}
	for i := range quarters {
		q, _ := strconv.ParseInt(quarters[i].Group, 10, 64)
		day := time.UnixMilli(q * quarterHour).In(loc).Format(time.DateOnly)
		d := days[day]
		if d == nil {
			d = &Row{Group: day}
			days[day] = d
		}
		d.add(&quarters[i])
	}
	out := make([]Row, 0, len(days))
	for _, d := range days {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// nameKeys fills in the current name of each key row.
func (s *DB) nameKeys(ctx context.Context, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	res, err := s.db.QueryContext(ctx, `SELECT id, name FROM api_keys`)
	if err != nil {
		return fmt.Errorf("naming keys: %w", err)
	}
	defer res.Close()
	names := map[string]string{}
	for res.Next() {
		var id, name string
		if err := res.Scan(&id, &name); err != nil {
			return fmt.Errorf("naming keys: %w", err)
		}
		names[id] = name
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("naming keys: %w", err)
	}
	for i := range rows {
		rows[i].Name = names[rows[i].Group]
	}
	return nil
}

// SpendSince implements limits.SpendSource: the USD each key spent from
// since on (all time when since is zero), from the request rows and the
// rollup of those retention deleted (rollup.go; since is a period start,
// on a quarter hour, at most a month ago, or zero), raised to
// the spend SaveSpend persisted for a period starting exactly at since when
// that is higher (rows may have been dropped; the snapshot may be older
// than the last rows: each is a lower bound); and the spend of the other
// budget accounts (limits.GlobalAccount, GroupAccount, TagAccount,
// UserAccount), as well from rows and rollup. A tag's spend is that of
// the keys carrying it now; a group's or a user's is that of the rows
// naming it.
func (s *DB) SpendSince(ctx context.Context, since time.Time) (map[string]float64, error) {
	out := map[string]float64{}
	at := startMS(since)
	var total float64
	addGroup := func(group string, usd float64) {
		total += usd
		if group != "" {
			out[limits.GroupAccount(group)] += usd
		}
	}
	for _, q := range []struct {
		what, query string
		add         func(name string, usd float64)
	}{
		{"spend per key", `SELECT key_id, sum(cost) FROM requests WHERE ts >= ? AND key_id != '' GROUP BY key_id`,
			func(id string, usd float64) { out[id] += usd }},
		{"pruned spend per key", `SELECT name, sum(cost) FROM spend_rollup WHERE kind = 'key' AND quarter >= ? GROUP BY name`,
			func(id string, usd float64) { out[id] += usd }},
		{"saved key spend", `SELECT id, spend_usd FROM api_keys WHERE spend_period_start = ?`,
			func(id string, usd float64) { out[id] = max(out[id], usd) }},
		{"spend per model group", `SELECT model_group, sum(cost) FROM requests WHERE ts >= ? GROUP BY model_group`,
			addGroup},
		{"pruned spend per model group", `SELECT name, sum(cost) FROM spend_rollup WHERE kind = 'group' AND quarter >= ? GROUP BY name`,
			addGroup},
		{"spend per user", `SELECT "user", sum(cost) FROM requests WHERE ts >= ? AND "user" != '' GROUP BY "user"`,
			func(user string, usd float64) { out[limits.UserAccount(user)] += usd }},
		{"pruned spend per user", `SELECT name, sum(cost) FROM spend_rollup WHERE kind = 'user' AND quarter >= ? GROUP BY name`,
			func(user string, usd float64) { out[limits.UserAccount(user)] += usd }},
	} {
		if err := s.sums(ctx, q.what, q.query, at, q.add); err != nil {
			return nil, err
		}
	}
	out[limits.GlobalAccount] = total
	if err := s.tagSpend(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// sums runs query, whose rows are a name and an amount, and passes each
// row to add.
func (s *DB) sums(ctx context.Context, what, query string, arg any, add func(string, float64)) error {
	rows, err := s.db.QueryContext(ctx, s.q(query), arg)
	if err != nil {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var usd float64
		if err := rows.Scan(&name, &usd); err != nil {
			return fmt.Errorf("reading %s: %w", what, err)
		}
		add(name, usd)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	return nil
}

// tagSpend adds to out, which holds each key's spend, the spend of each
// tag the keys carry now.
func (s *DB) tagSpend(ctx context.Context, out map[string]float64) error {
	tagged, err := s.db.QueryContext(ctx, `SELECT id, tags FROM api_keys WHERE tags IS NOT NULL AND tags != '{}'`)
	if err != nil {
		return fmt.Errorf("reading key tags: %w", err)
	}
	defer tagged.Close()
	for tagged.Next() {
		var id string
		var raw []byte
		if err := tagged.Scan(&id, &raw); err != nil {
			return fmt.Errorf("reading key tags: %w", err)
		}
		var tags map[string]string
		if err := json.Unmarshal(raw, &tags); err != nil {
			return fmt.Errorf("reading the tags of key %s: %w", id, err)
		}
		for name, v := range tags {
			out[limits.TagAccount(name+"="+v)] += out[id]
		}
	}
	if err := tagged.Err(); err != nil {
		return fmt.Errorf("reading key tags: %w", err)
	}
	return nil
}

// RequestFilter selects recent requests for the dashboard. Zero fields do
// not filter.
type RequestFilter struct {
	KeyID, KeyName string
	// Key is a key's id or else its name, as Query.Key.
	Key        string
	ModelGroup string
	Deployment string
	User       string
	// Since and Until bound the request time (Until exclusive).
	Since, Until time.Time
	// ErrorsOnly keeps requests answered with a status of 400 or more.
	ErrorsOnly bool
	// Cursor continues a previous Page (its Next).
	Cursor string
	// Limit is the page size (default 50, at most 1000).
	Limit int
}

// Entry is a stored request: its row id and metadata (never payloads).
type Entry struct {
	ID int64 `json:"id"`
	Record
}

// Page is a page of requests, newest first.
type Page struct {
	Entries []Entry `json:"entries"`
	// Next is the cursor of the following page; empty on the last page.
	Next string `json:"next,omitempty"`
}

func encodeCursor(ts, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(ts, 10) + "." + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (ts, id int64, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		t, i, ok := strings.Cut(string(b), ".")
		if ts, err = strconv.ParseInt(t, 10, 64); err == nil && ok {
			if id, err = strconv.ParseInt(i, 10, 64); err == nil {
				return ts, id, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("invalid cursor %q", c)
}

// Requests returns the requests f selects, newest first, a page at a time.
func (s *DB) Requests(ctx context.Context, f RequestFilter) (Page, error) {
	where, args, err := s.where(ctx, Query{Since: f.Since, Until: f.Until, KeyID: f.KeyID, KeyName: f.KeyName, Key: f.Key})
	if err != nil {
		return Page{}, err
	}
	for col, v := range map[string]string{"model_group": f.ModelGroup, "deployment": f.Deployment, `"user"`: f.User} {
		if v != "" {
			where += " AND " + col + " = ?"
			args = append(args, v)
		}
	}
	if f.ErrorsOnly {
		where += " AND status >= 400"
	}
	if f.Cursor != "" {
		ts, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, fmt.Errorf("listing requests: %w", err)
		}
		where += " AND (ts, id) < (?, ?)"
		args = append(args, ts, id)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+entryColumns+`
		FROM requests WHERE `+where+` ORDER BY ts DESC, id DESC LIMIT ?`), append(args, limit+1)...)
	if err != nil {
		return Page{}, fmt.Errorf("listing requests: %w", err)
	}
	defer rows.Close()
	var p Page
	for rows.Next() {
		var e Entry
		if err := scanEntry(rows, &e); err != nil {
			return Page{}, fmt.Errorf("listing requests: %w", err)
		}
		if len(p.Entries) == limit {
			last := p.Entries[limit-1]
			p.Next = encodeCursor(last.Time.UnixMilli(), last.ID)
			break
		}
		p.Entries = append(p.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("listing requests: %w", err)
	}
	return p, nil
}

// entryColumns are the requests columns scanEntry reads, in its order.
const entryColumns = `requests.id, ts, request_id, key_id, key_name, "user", tags, model_group,
	deployment, provider, model, status, error_type, prompt_tokens, completion_tokens, cached_tokens,
	cache_write_tokens, cost, saved_cost, latency_us, ttft_us, attempts, cache_hit, stream`

// scanEntry reads a row of entryColumns, then extra, into e.
func scanEntry(rows *sql.Rows, e *Entry, extra ...any) error {
	var (
		ts, lat, ttft int64
		tags          sql.NullString
		u             providers.Usage
	)
	dest := append([]any{&e.ID, &ts, &e.RequestID, &e.KeyID, &e.KeyName, &e.User, &tags, &e.ModelGroup,
		&e.Deployment, &e.Provider, &e.Model, &e.Status, &e.ErrorType, &u.PromptTokens, &u.CompletionTokens,
		&u.CachedTokens, &u.CacheWriteTokens, &e.CostUSD, &e.SavedUSD, &lat, &ttft, &e.Attempts,
		&e.CacheHit, &e.Stream}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	if tags.Valid {
		if err := json.Unmarshal([]byte(tags.String), &e.Tags); err != nil {
			return fmt.Errorf("tags of %d: %w", e.ID, err)
		}
	}
	e.Time = time.UnixMilli(ts).UTC()
	e.Usage = u
	e.Latency, e.TTFT = time.Duration(lat)*time.Microsecond, time.Duration(ttft)*time.Microsecond
	return nil
}

// Total summarizes one model group.
type Total struct {
	ModelGroup string  `json:"model_group"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	CostUSD    float64 `json:"cost_usd"`
	// LatencyP50 and LatencyP95 are nearest-rank percentiles of the latency
	// of successful requests (zero when there were none).
	LatencyP50 time.Duration `json:"latency_p50"`
	LatencyP95 time.Duration `json:"latency_p95"`
	// TTFTP50 and TTFTP95 are the same percentiles of the time to first
	// byte of successful streams (zero when there were none).
	TTFTP50 time.Duration `json:"ttft_p50"`
	TTFTP95 time.Duration `json:"ttft_p95"`
	// CacheHits counts requests answered from the response cache; SavedUSD
	// is what they would have cost upstream.
	CacheHits int64   `json:"cache_hits"`
	SavedUSD  float64 `json:"saved_usd"`
}

// Totals returns request counts, errors, cost, cache hits and savings, and
// latency and TTFT percentiles per model group for the requests q selects
// (q.By is ignored), busiest group first. Percentiles sort the selected
// latencies in SQLite: a month of a busy gateway takes a second or more
// (see BenchmarkReports).
func (s *DB) Totals(ctx context.Context, q Query) ([]Total, error) {
	where, args, err := s.where(ctx, q)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT model_group, count(*), sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END), sum(cost),
		sum(CASE WHEN cache_hit != 0 THEN 1 ELSE 0 END), sum(saved_cost)
		FROM requests WHERE `+where+` GROUP BY model_group`), args...)
	if err != nil {
		return nil, fmt.Errorf("totals per model group: %w", err)
	}
	defer rows.Close()
	byGroup := map[string]*Total{}
	var out []*Total
	for rows.Next() {
		t := &Total{}
		if err := rows.Scan(&t.ModelGroup, &t.Requests, &t.Errors, &t.CostUSD, &t.CacheHits, &t.SavedUSD); err != nil {
			return nil, fmt.Errorf("totals per model group: %w", err)
		}
		byGroup[t.ModelGroup] = t
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("totals per model group: %w", err)
	}
	rows.Close()

	if err := s.percentiles(ctx, "latency_us", where+" AND status < 400", args, byGroup, func(t *Total, p50, p95 time.Duration) {
		t.LatencyP50, t.LatencyP95 = p50, p95
	}); err != nil {
		return nil, fmt.Errorf("latency percentiles: %w", err)
	}
	if err := s.percentiles(ctx, "ttft_us", where+" AND status < 400 AND stream != 0 AND ttft_us > 0", args, byGroup, func(t *Total, p50, p95 time.Duration) {
		t.TTFTP50, t.TTFTP95 = p50, p95
	}); err != nil {
		return nil, fmt.Errorf("ttft percentiles: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].ModelGroup < out[j].ModelGroup
	})
	res := make([]Total, len(out))
	for i, t := range out {
		res[i] = *t
	}
	return res, nil
}

// percentiles computes nearest-rank p50 and p95 of col (microseconds) per
// model group over the rows where selects, and hands them to set.
func (s *DB) percentiles(ctx context.Context, col, where string, args []any, byGroup map[string]*Total,
	set func(t *Total, p50, p95 time.Duration)) error {
	pct, err := s.db.QueryContext(ctx, s.q(`WITH ok AS (
			SELECT model_group, `+col+` AS v,
				row_number() OVER (PARTITION BY model_group ORDER BY `+col+`) AS rn,
				count(*) OVER (PARTITION BY model_group) AS n
			FROM requests WHERE `+where+`)
		SELECT model_group,
			max(CASE WHEN rn = (n * 50 + 99) / 100 THEN v END),
			max(CASE WHEN rn = (n * 95 + 99) / 100 THEN v END)
		FROM ok GROUP BY model_group`), args...)
	if err != nil {
		return err
	}
	defer pct.Close()
	for pct.Next() {
		var group string
		var p50, p95 int64
		if err := pct.Scan(&group, &p50, &p95); err != nil {
			return err
		}
		if t := byGroup[group]; t != nil {
			set(t, time.Duration(p50)*time.Microsecond, time.Duration(p95)*time.Microsecond)
		}
	}
	return pct.Err()
}
