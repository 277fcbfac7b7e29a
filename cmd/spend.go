package cmd

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lumengw/lumen/ledger"
)

// SpendOptions are the inputs of lumen spend.
type SpendOptions struct {
	f  *Factory
	By ledger.By
	// Since and Until are the flags as given; spendRun reads them in the
	// config's time zone.
	Since, Until string
	Key, Format  string
}

// NewCmdSpend builds `lumen spend`.
func NewCmdSpend(f *Factory) *cobra.Command {
	opts := &SpendOptions{f: f}
	var configPath, by string
	cmd := &cobra.Command{
		Use:   "spend",
		Short: "Report spend and usage grouped by key, model, deployment, provider, user, day, tag or key tag",
		Long: `Report what requests cost, from the ledger database named by the config
(ledger.path, default ./lumen.db, or ledger.postgres_url), grouped by virtual
key, model group, deployment (model_info.id), provider, user, day (cut in
ledger.budget_timezone), tag (x-lumen-tags; untagged requests are left
out, and a request with several tags counts under each) or key_tag (each
tag the request's virtual key carries now, "team=search": what the
limits.tags budgets count).

--since and --until take a span back from now (7d, 2w, 12h), a date
(2026-11-01, midnight in ledger.budget_timezone) or an RFC 3339 time; --since
is inclusive, --until exclusive, and both default to unbounded. --key takes a
key id or name (a name covers every key that ever had it).

The table ends with a totals row. json and csv carry every figure exactly
(costs as the shortest decimal that reads back to the same number).`,
		Example: `  lumen spend --since 7d
  lumen spend --by model --key search-team --since 2026-11-01 --until 2026-12-01
  lumen spend --by day --since 30d --format csv > spend.csv
  lumen spend --by key_tag --since 2026-11-01`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.By, err = ledger.ParseBy(by); err != nil {
				return fmt.Errorf("--by: %w", err)
			}
			if err := checkFormat(opts.Format, "table", "json", "csv"); err != nil {
				return err
			}
			return spendRun(cmd, opts)
		},
	}
	fs := cmd.Flags()
	configFlag(fs, &configPath)
	fs.StringVar(&by, "by", "key", "group by key, model, deployment, provider, user, day, tag or key_tag")
	fs.StringVar(&opts.Since, "since", "", "start (inclusive): 7d, 2026-11-01 or an RFC 3339 time (default: the first request)")
	fs.StringVar(&opts.Until, "until", "", "end (exclusive), like --since (default: now and later)")
	fs.StringVar(&opts.Key, "key", "", "only this key (id or name)")
	formatFlag(fs, &opts.Format, "table", "json", "csv")
	return cmd
}

// spendReport is lumen spend's json output.
type spendReport struct {
	By    ledger.By    `json:"by"`
	Since time.Time    `json:"since,omitzero"`
	Until time.Time    `json:"until,omitzero"`
	Rows  []ledger.Row `json:"rows"`
	// Total sums Rows; for by tag a request with several tags is counted
	// in each.
	Total ledger.Row `json:"total"`
}

func spendRun(cmd *cobra.Command, opts *SpendOptions) error {
	ctx := cmd.Context()
	b, err := openBooks(ctx, opts.f, cmd.Flags(), false, false)
	if err != nil {
		return err
	}
	defer b.Close()
	loc, err := b.cfg.Ledger.Location()
	if err != nil {
		return err
	}
	now := time.Now()
	since, err := parseSince("--since", opts.Since, now, loc)
	if err != nil {
		return err
	}
	until, err := parseSince("--until", opts.Until, now, loc)
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return fmt.Errorf("--until %s is not after --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	q := ledger.Query{By: opts.By, Since: since, Until: until, Location: loc}
	if opts.Key != "" {
		if q.KeyID, q.KeyName, err = keyFilter(ctx, b.db, opts.Key); err != nil {
			return err
		}
	}
	rows, err := b.db.Spend(ctx, q)
	if err != nil {
		return err
	}
	rep := spendReport{By: opts.By, Since: since, Until: until, Rows: rows}
	if rep.Rows == nil {
		rep.Rows = []ledger.Row{}
	}
	rep.Total.Group = "total"
	for _, r := range rows {
		rep.Total.Requests += r.Requests
		rep.Total.Errors += r.Errors
		rep.Total.PromptTokens += r.PromptTokens
		rep.Total.CompletionTokens += r.CompletionTokens
		rep.Total.CachedTokens += r.CachedTokens
		rep.Total.CacheWriteTokens += r.CacheWriteTokens
		rep.Total.CostUSD += r.CostUSD
		rep.Total.SavedUSD += r.SavedUSD
	}
	switch opts.Format {
	case "json":
		return writeJSON(opts.f.Out, rep)
	case "csv":
		return writeSpendCSV(opts.f.Out, rows)
	}
	return writeSpendTable(opts.f.Out, rep)
}

// keyFilter resolves --key: an existing key id, or else a name some key
// has had.
func keyFilter(ctx context.Context, db *ledger.DB, ref string) (id, name string, err error) {
	keys, err := db.ListKeys(ctx)
	if err != nil {
		return "", "", err
	}
	for _, k := range keys {
		if k.ID == ref {
			return ref, "", nil
		}
	}
	for _, k := range keys {
		if k.Name == ref {
			return "", ref, nil
		}
	}
	return "", "", fmt.Errorf("--key: no key has the id or name %q", ref)
}

var spendHeader = []string{"group", "name", "requests", "errors", "prompt_tokens", "completion_tokens",
	"cached_tokens", "cache_write_tokens", "cost_usd", "saved_usd"}

func exact(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func writeSpendCSV(w io.Writer, rows []ledger.Row) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(spendHeader)
	i := strconv.FormatInt
	for _, r := range rows {
		_ = cw.Write([]string{r.Group, r.Name, i(r.Requests, 10), i(r.Errors, 10), i(r.PromptTokens, 10),
			i(r.CompletionTokens, 10), i(r.CachedTokens, 10), i(r.CacheWriteTokens, 10), exact(r.CostUSD), exact(r.SavedUSD)})
	}
	cw.Flush()
	return cw.Error()
}

func writeSpendTable(w io.Writer, rep spendReport) error {
	group := strings.ToUpper(string(rep.By))
	if rep.By == ledger.ByModel {
		group = "MODEL GROUP"
	}
	header := []string{group, "REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "CACHED", "COST USD", "SAVED USD"}
	withName := rep.By == ledger.ByKey
	if withName {
		header = append([]string{"KEY", "NAME"}, header[1:]...)
	}
	t := &table{header: header}
	cell := func(r ledger.Row) []string {
		row := []string{r.Group}
		if withName {
			row = append(row, r.Name)
		}
		return append(row, thousands(r.Requests), thousands(r.Errors), thousands(r.PromptTokens),
			thousands(r.CompletionTokens), thousands(r.CachedTokens),
			strconv.FormatFloat(r.CostUSD, 'f', 6, 64), strconv.FormatFloat(r.SavedUSD, 'f', 6, 64))
	}
	for _, r := range rep.Rows {
		if r.Group == "" {
			r.Group = "(none)"
		}
		t.rows = append(t.rows, cell(r))
	}
	total := cell(rep.Total)
	total[0] = "TOTAL"
	t.rows = append(t.rows, total)
	t.right = make([]bool, len(header))
	for i := len(header) - 7; i < len(header); i++ {
		t.right[i] = true
	}
	if err := t.write(w); err != nil {
		return err
	}
	if rep.By == ledger.ByTag {
		_, err := io.WriteString(w, "(untagged requests are left out; a request with several tags counts under each)\n")
		return err
	}
	return nil
}

// thousands formats n with comma separators: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var sb strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			sb.WriteByte(',')
		}
		sb.WriteRune(c)
	}
	if neg {
		return "-" + sb.String()
	}
	return sb.String()
}
