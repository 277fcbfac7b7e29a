// Package providers defines how Lumen talks to an upstream model server.
//
// Every provider speaks the OpenAI wire format towards the rest of Lumen: a
// Request carries an OpenAI-format JSON body, a Response carries one back and a
// Stream yields OpenAI chat.completion.chunk (or text_completion) payloads.
// Providers whose upstream is OpenAI-shaped pass bytes through; the others
// (anthropic, gemini, bedrock) translate in their own package.
package providers

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Op is the kind of call a Request makes.
type Op uint8

// The calls Lumen proxies.
const (
	OpChat          Op = iota // POST /v1/chat/completions
	OpCompletion              // POST /v1/completions
	OpEmbedding               // POST /v1/embeddings
	OpModeration              // POST /v1/moderations
	OpRerank                  // POST /v1/rerank (Cohere/Jina form, as vLLM and LiteLLM serve it)
	OpImage                   // POST /v1/images/generations
	OpSpeech                  // POST /v1/audio/speech (the answer is audio, not JSON)
	OpTranscription           // POST /v1/audio/transcriptions (a multipart body)
	OpImageEdit               // POST /v1/images/edits (a multipart body)
)

// String returns the OpenAI endpoint path of op, relative to /v1.
func (op Op) String() string {
	switch op {
	case OpCompletion:
		return "completions"
	case OpEmbedding:
		return "embeddings"
	case OpModeration:
		return "moderations"
	case OpRerank:
		return "rerank"
	case OpImage:
		return "images/generations"
	case OpSpeech:
		return "audio/speech"
	case OpTranscription:
		return "audio/transcriptions"
	case OpImageEdit:
		return "images/edits"
	default:
		return "chat/completions"
	}
}

// Operation is op's name in the OpenTelemetry GenAI conventions (chat,
// text_completion, embeddings), or its endpoint for the others.
func (op Op) Operation() string {
	switch op {
	case OpChat:
		return "chat"
	case OpCompletion:
		return "text_completion"
	case OpEmbedding:
		return "embeddings"
	}
	return op.String()
}

// Streams reports whether op's calls may stream.
func (op Op) Streams() bool { return op == OpChat || op == OpCompletion }

// Request is one call to one deployment.
type Request struct {
	Op Op
	// Model is the upstream model id, provider prefix removed ("gpt-4o").
	Model string
	// Body is the OpenAI-format JSON body as the client sent it. Providers
	// must not modify it in place: the router may send it to several
	// deployments.
	Body []byte
	// ContentType is Body's media type when it is not JSON: OpTranscription's
	// and OpImageEdit's multipart/form-data, with its boundary.
	ContentType string
	// Stream is true when the caller wants a Stream (DoStream).
	Stream bool
	// Native, when set, is the request as an Anthropic client sent it
	// (Messages API); Body is then its OpenAI translation. A provider that
	// speaks the Messages API sends Native instead, unchanged but for the
	// model and tool ids the API would refuse (prompt-caching blocks,
	// thinking and all), and answers in that
	// API: Response.Body is a Message and the Stream's payloads are the
	// events' data (each names its event in "type"). Other providers
	// ignore it. NativeHeader holds the client's anthropic-version and
	// anthropic-beta headers.
	Native       []byte
	NativeHeader http.Header
	// Responses, when set, is the request as a Responses API client sent it
	// (POST /v1/responses); Body is its chat completions translation. A
	// provider that speaks the Responses API sends Responses instead (model
	// replaced, call_ids the API would refuse mapped) and answers with a
	// Response, or streams its events; the others send Body and ignore it.
	Responses []byte
}

// Response is a complete, successful upstream answer in OpenAI format.
type Response struct {
	// Body is the OpenAI-format JSON response, or for OpSpeech the audio.
	Body  []byte
	Usage Usage
	// ContentType is the answer's media type when it is not JSON
	// (OpSpeech's audio/mpeg, audio/wav…).
	ContentType string
}

// Stream yields the events of one streamed answer. It is not safe for
// concurrent use; the goroutine that called DoStream owns it.
type Stream interface {
	// Recv returns the next event's JSON payload in OpenAI chunk format. The
	// slice is only valid until the next call. Recv returns io.EOF after the
	// last event of a complete answer, and any other error if the stream
	// broke.
	Recv() ([]byte, error)
	// Close releases the upstream connection. It is safe to call twice.
	Close() error
}

// Buffered is an optional Stream capability: it reports whether the next
// event has already arrived. The server flushes to the client only when
// nothing more is buffered, so events that arrived together leave together
// and none waits.
type Buffered interface {
	Buffered() int
}

// Provider sends requests to one upstream deployment. Implementations are
// safe for concurrent use. ctx bounds the whole call, including a stream's
// body: cancelling it aborts the upstream request.
type Provider interface {
	// Name is the provider id used in headers, logs and metrics ("openai").
	Name() string
	// Do sends a non-streaming request.
	Do(ctx context.Context, req *Request) (*Response, error)
	// DoStream sends a streaming request. It returns once the upstream has
	// answered with a success status; errors before that are returned here.
	DoStream(ctx context.Context, req *Request) (Stream, error)
}

// Usage is token usage normalized across providers.
type Usage struct {
	// PromptTokens counts all input tokens, cached ones included.
	PromptTokens int `json:"prompt_tokens"`
	// CompletionTokens counts output tokens, reasoning included.
	CompletionTokens int `json:"completion_tokens"`
	// ReasoningTokens is the part of CompletionTokens the model spent
	// thinking, where the upstream tells it apart (Gemini's
	// thoughtsTokenCount); zero when it does not.
	ReasoningTokens int `json:"reasoning_tokens,omitempty"`
	// CachedTokens is the part of PromptTokens read from the provider's
	// prompt cache (priced at the cached rate).
	CachedTokens int `json:"cached_tokens,omitempty"`
	// CacheWriteTokens is the part of PromptTokens written to the prompt
	// cache (Anthropic cache_creation_input_tokens).
	CacheWriteTokens int `json:"cache_write_tokens,omitempty"`
	// Images counts the images an image generation made (priced per
	// image where the model is).
	Images int `json:"images,omitempty"`
	// Characters counts the characters a speech request read out
	// (priced per character where the model is).
	Characters int `json:"characters,omitempty"`
	// Seconds is the audio a transcription heard, as the upstream reports
	// it (priced per second where the model is).
	Seconds float64 `json:"seconds,omitempty"`
}

// Total returns prompt plus completion tokens.
func (u Usage) Total() int { return u.PromptTokens + u.CompletionTokens }

// Config is what a provider needs to reach one deployment. It is built from a
// model_list entry's litellm_params.
type Config struct {
	// Provider is the provider id from the model prefix ("openai", "azure").
	Provider string
	// Model is the upstream model id, prefix removed.
	Model string
	// APIBase is the upstream root URL; empty means the provider's default.
	APIBase string
	// APIKey is the secret sent upstream. Never log it.
	APIKey string
	// APIVersion is Azure's api-version or Anthropic's anthropic-version.
	APIVersion string
	// Headers are extra headers sent upstream.
	Headers map[string]string
	// Timeout bounds a whole non-streaming call and a stream's time to its
	// first event; zero means no limit beyond the client's own.
	Timeout time.Duration
	// StreamTimeout bounds the gap between two stream events; zero means none.
	StreamTimeout time.Duration
	// AWS settings for bedrock; empty fields fall back to the AWS_* env vars.
	AWSRegion, AWSAccessKeyID, AWSSecretAccessKey, AWSSessionToken string
	// ResponsesAPI, for OpenAI-shaped providers: send Responses API
	// requests natively (see Request.Responses). Nil means the provider's
	// default (on for OpenAI itself).
	ResponsesAPI *bool
	// CacheInjection marks messages for the prompt cache on providers that
	// need marks (Anthropic, Bedrock); see InjectCacheControl.
	CacheInjection []CachePoint
	// Mock configures the mock provider.
	Mock MockConfig
	// Client is the HTTP client to use; nil means a shared default.
	Client *http.Client
}

// MockConfig shapes the answers of the in-process mock provider.
type MockConfig struct {
	// Response is the fixed answer text; empty echoes the last user message.
	Response string
	// Latency is the time to the first token.
	Latency time.Duration
	// ChunkInterval is the pause between streamed chunks.
	ChunkInterval time.Duration
	// FailureRate is the fraction (0..1) of calls that fail with a 500.
	FailureRate float64
}

// ErrUnsupported is returned (wrapped) when a provider cannot serve an Op.
var ErrUnsupported = errors.New("operation not supported by this provider")

// TranslatedEvent is one server-sent event a translator makes for a client
// of another API (the Anthropic Messages API, the Responses API): its type
// (the event: line) and its data. Write it with sse.AppendEvent.
type TranslatedEvent struct {
	Type string
	Data []byte
}
