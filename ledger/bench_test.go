package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lumengw/lumen/internal/pgtest"
	"github.com/lumengw/lumen/providers"
)

// The benchmark ledger: a million requests over 90 days from 200 keys, one
// of which ("heavy", key_000) sends a fifth of the traffic.
const (
	benchRows = 1_000_000
	benchKeys = 200
	benchDays = 90
)

var (
	benchNow  = time.Date(2025, 3, 31, 0, 0, 0, 0, time.UTC)
	benchOnce sync.Once
	benchDir  string
	benchDB   *DB
	benchErr  error
	benchDrop func() // drops the Postgres bench schema
)

// benchLedger builds the million-row ledger once per test binary, in a
// temporary directory removed when the binary exits (TestMain). With
// LUMEN_LEDGER_BENCH_DB=file it uses that file instead, building it only if
// it does not exist, and keeps it (for repeated runs and EXPLAIN). With
// LUMEN_LEDGER_BENCH_DB=postgres it builds it in a schema of the test
// Postgres (pgtest), dropped when the binary exits.
func benchLedger(b *testing.B) *DB {
	where := os.Getenv("LUMEN_LEDGER_BENCH_DB")
	var base string
	if where == "postgres" {
		base = pgtest.URL(b)
	}
	benchOnce.Do(func() {
		start := time.Now()
		reuse := false
		switch {
		case base != "":
			var url string
			if url, benchDrop, benchErr = pgtest.NewSchema(base); benchErr == nil {
				benchDB, benchErr = OpenPostgres(context.Background(), url)
			}
		default:
			path := where
			_, statErr := os.Stat(path)
			reuse = path != "" && statErr == nil
			if path == "" {
				if benchDir, benchErr = os.MkdirTemp("", "lumen-ledger-bench-"); benchErr != nil {
					return
				}
				path = filepath.Join(benchDir, "lumen.db")
			}
			benchDB, benchErr = Open(context.Background(), path)
		}
		if benchErr != nil || reuse {
			return
		}
		benchErr = fillBench(benchDB)
		fmt.Fprintf(os.Stderr, "bench ledger: %d rows inserted in %v\n", benchRows, time.Since(start).Round(time.Millisecond))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDB
}

func fillBench(s *DB) error {
	rng := rand.New(rand.NewPCG(1, 2))
	groups := []string{"gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "claude-sonnet", "claude-haiku",
		"gemini-flash", "gemini-pro", "llama-70b", "mistral-large", "deepseek", "embeddings"}
	tags := []string{"team=search", "team=ads", "team=support", "feature=summary", "env=prod"}
	span := int64(benchDays * 24 * time.Hour)
	batch := make([]Record, 0, 10_000)
	for i := range benchRows {
		key := 0
		if rng.IntN(5) != 0 {
			key = 1 + rng.IntN(benchKeys-1)
		}
		g := rng.IntN(len(groups))
		r := Record{
			// Rows arrive in time order, as the writer inserts them.
			Time:       benchNow.Add(-time.Duration(float64(span) * float64(benchRows-i) / benchRows)),
			RequestID:  fmt.Sprintf("req-%08d", i),
			KeyID:      fmt.Sprintf("key_%03d", key),
			KeyName:    fmt.Sprintf("team-%03d", key),
			User:       fmt.Sprintf("user-%d", rng.IntN(1000)),
			ModelGroup: groups[g],
			Deployment: fmt.Sprintf("%s/%d", groups[g], rng.IntN(3)),
			Provider:   "openai",
			Model:      groups[g],
			Status:     200,
			Usage: providers.Usage{PromptTokens: 200 + rng.IntN(4000), CompletionTokens: rng.IntN(1000),
				CachedTokens: rng.IntN(200)},
			CostUSD:  rng.Float64() / 100,
			Latency:  time.Duration(50+rng.IntN(5000)) * time.Millisecond,
			Attempts: 1,
			Stream:   rng.IntN(2) == 0,
		}
		if rng.IntN(50) == 0 {
			r.Status, r.ErrorType = 502, "api_error"
		}
		if rng.IntN(3) == 0 {
			r.Tags = []string{tags[rng.IntN(len(tags))]}
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			if err := s.Insert(context.Background(), batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return s.Insert(context.Background(), batch)
}

// cleanupBench removes the benchmark ledger; TestMain calls it.
func cleanupBench() {
	if benchDB != nil {
		benchDB.Close()
	}
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	if benchDrop != nil {
		benchDrop()
	}
}

// BenchmarkReports answers the reports on the million-row ledger. The
// goal is a report for one key over 30 days in under 200 ms.
func BenchmarkReports(b *testing.B) {
	s := benchLedger(b)
	ctx := context.Background()
	since := benchNow.AddDate(0, 0, -30)
	reports := []struct {
		name string
		run  func() (int, error)
	}{
		{"SpendOneKey30dByModel/typical", func() (int, error) {
			rows, err := s.Spend(ctx, Query{By: ByModel, KeyID: "key_007", Since: since})
			return len(rows), err
		}},
		{"SpendOneKey30dByModel/heavy", func() (int, error) {
			rows, err := s.Spend(ctx, Query{By: ByModel, KeyID: "key_000", Since: since})
			return len(rows), err
		}},
		{"SpendOneKey30dByDay/heavy", func() (int, error) {
			rows, err := s.Spend(ctx, Query{By: ByDay, KeyID: "key_000", Since: since})
			return len(rows), err
		}},
		{"SpendOneKey30dByDeployment/heavy", func() (int, error) {
			rows, err := s.Spend(ctx, Query{By: ByDeployment, KeyID: "key_000", Since: since})
			return len(rows), err
		}},
		{"SpendOneKey30dByTag/heavy", func() (int, error) {
			rows, err := s.Spend(ctx, Query{By: ByTag, KeyID: "key_000", Since: since})
			return len(rows), err
		}},
		{"SpendAllKeys30dByKey", func() (int, error) {
			rows, err := s.Spend(ctx, Query{By: ByKey, Since: since})
			return len(rows), err
		}},
		{"SpendAll30dByModel", func() (int, error) {
			rows, err := s.Spend(ctx, Query{By: ByModel, Since: since})
			return len(rows), err
		}},
		{"RecentRequests/heavy", func() (int, error) {
			p, err := s.Requests(ctx, RequestFilter{KeyID: "key_000", Limit: 50})
			return len(p.Entries), err
		}},
		{"RecentErrors", func() (int, error) {
			p, err := s.Requests(ctx, RequestFilter{ErrorsOnly: true, Since: since, Limit: 50})
			return len(p.Entries), err
		}},
		{"Totals30d", func() (int, error) {
			t, err := s.Totals(ctx, Query{Since: since})
			return len(t), err
		}},
		{"TotalsOneKey30d/typical", func() (int, error) {
			t, err := s.Totals(ctx, Query{Since: since, KeyID: "key_007"})
			return len(t), err
		}},
		{"SpendSinceMonthStart", func() (int, error) {
			m, err := s.SpendSince(ctx, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
			return len(m), err
		}},
	}
	for _, r := range reports {
		b.Run(r.name, func(b *testing.B) {
			for b.Loop() {
				n, err := r.run()
				if err != nil {
					b.Fatal(err)
				}
				if n == 0 {
					b.Fatal("empty report")
				}
			}
		})
	}
}

// BenchmarkInsert measures the writer's transactions: b.N records in
// batches of 500, into SQLite and into Postgres (scripts/postgres.sh's
// throwaway server, which runs without fsync).
func BenchmarkInsert(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := Open(context.Background(), filepath.Join(b.TempDir(), "lumen.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchInsert(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		s, err := OpenPostgres(context.Background(), pgtest.Schema(b))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchInsert(b, s)
	})
}

func benchInsert(b *testing.B, s *DB) {
	r := sampleRecord("req", benchNow)
	batch := make([]Record, 500)
	for i := range batch {
		batch[i] = r
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		if err := s.Insert(context.Background(), batch[:min(len(batch), b.N-i)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriterRecord is the request path's cost: queueing one record.
func BenchmarkWriterRecord(b *testing.B) {
	w := NewWriter(discard{}, WriterOptions{QueueSize: 1 << 16})
	defer w.Close()
	r := sampleRecord("req", benchNow)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Record(r)
		}
	})
}

type discard struct{}

func (discard) Insert(context.Context, []Record) error               { return nil }
func (discard) Prune(context.Context, time.Time, int) (int64, error) { return 0, nil }
