package ledger

import (
	"context"
	"time"

	"github.com/lumengw/lumen/providers"
)

// Record is one request as the ledger keeps it. It never holds an API key:
// KeyID names the virtual key, whose secret is not recoverable from it.
type Record struct {
	// Time is when the request arrived; zero means when it was recorded.
	Time time.Time `json:"time"`
	// RequestID is the x-request-id Lumen answered with.
	RequestID string `json:"request_id"`
	// KeyID and KeyName identify the virtual key; both are empty for the
	// master key or an open gateway. KeyName is the name at request time.
	KeyID   string `json:"key_id,omitempty"`
	KeyName string `json:"key_name,omitempty"`
	// User is the request's "user" field.
	User string `json:"user,omitempty"`
	// Tags are the request's x-lumen-tags ("team=search", "feature-x").
	Tags []string `json:"tags,omitempty"`
	// ModelGroup is the model name the client asked for (after aliases);
	// Deployment the model_info.id that answered; Provider its provider
	// id; Model the upstream model id. The last three are empty when no
	// deployment answered.
	ModelGroup string `json:"model_group"`
	Deployment string `json:"deployment,omitempty"`
	Provider   string `json:"provider,omitempty"`
	Model      string `json:"model,omitempty"`
	// Status is the HTTP status Lumen answered with (499 when the client
	// went away, 503 with ErrorType gateway_shutting_down when shutdown cut
	// the request off); ErrorType is the OpenAI error type for a failure.
	Status    int    `json:"status"`
	ErrorType string `json:"error_type,omitempty"`
	// Usage is the normalized token usage (what was billed).
	Usage providers.Usage `json:"usage"`
	// CostUSD is what the request cost; SavedUSD what a cache hit would
	// have cost upstream (CostUSD is then zero).
	CostUSD  float64 `json:"cost_usd"`
	SavedUSD float64 `json:"saved_usd,omitempty"`
	// Latency is the time to the last byte; TTFT the time to the first
	// byte for a stream (zero otherwise).
	Latency time.Duration `json:"latency"`
	TTFT    time.Duration `json:"ttft,omitempty"`
	// Attempts is how many upstream calls were made (retries, fallbacks
	// and hedges included); zero for a cache hit.
	Attempts int  `json:"attempts"`
	CacheHit bool `json:"cache_hit,omitempty"`
	Stream   bool `json:"stream,omitempty"`
	// Request and Response are the bodies; they are kept only when the
	// Writer was told to (ledger.store_payloads) and never returned by the
	// report queries.
	Request  []byte `json:"-"`
	Response []byte `json:"-"`
}

// Failed reports whether the request ended in an error status.
func (r *Record) Failed() bool { return r.Status >= 400 }

// Store persists records. The Writer is its only caller on the request
// path. Implementations are safe for concurrent use.
type Store interface {
	// Insert writes recs in one transaction: all of them or none.
	Insert(ctx context.Context, recs []Record) error
	// Prune deletes at most limit records that started before before, and
	// their payloads, returning how many it deleted; the spend budgets
	// reload from them stays (DB.Prune rolls it up). Small chunks keep the
	// write lock short.
	Prune(ctx context.Context, before time.Time, limit int) (int64, error)
}

var (
	_ Store    = (*DB)(nil)
	_ KeyStore = (*DB)(nil)
)
