// Package mock is an in-process provider that answers like an LLM: a fixed
// text or an echo of the last user message, real token counts, real OpenAI
// SSE framing, configurable latency and failure rate. It makes a fresh
// install useful without provider keys, and tests and benchmarks honest.
package mock

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tokens"
)

// Client is a mock deployment. It is safe for concurrent use.
type Client struct {
	model string
	cfg   providers.MockConfig
	seq   atomic.Uint64
}

var _ providers.Provider = (*Client)(nil)

// New returns a mock deployment answering as model.
func New(cfg providers.Config) (*Client, error) {
	return &Client{model: cfg.Model, cfg: cfg.Mock}, nil
}

// Name implements providers.Provider.
func (c *Client) Name() string { return "mock" }

// Calls returns how many requests the mock has received.
func (c *Client) Calls() uint64 { return c.seq.Load() }

func (c *Client) start(ctx context.Context) (string, error) {
	n := c.seq.Add(1)
	if err := sleep(ctx, c.cfg.Latency); err != nil {
		return "", err
	}
	if c.cfg.FailureRate > 0 && rand.Float64() < c.cfg.FailureRate {
		return "", &providers.UpstreamError{Provider: "mock", Deployment: "mock/" + c.model, Status: 500,
			Type: "server_error", Message: "mock failure (mock_failure_rate)", Retryable: true}
	}
	return "mock-" + strconv.FormatUint(n, 36), nil
}

// answer is the text the mock replies with.
func (c *Client) answer(body []byte) string {
	if c.cfg.Response != "" {
		return c.cfg.Response
	}
	if p := gjson.GetBytes(body, "prompt"); p.Exists() {
		return "Echo: " + p.String()
	}
	msgs := gjson.GetBytes(body, "messages").Array()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Get("role").Str != "user" {
			continue
		}
		content := msgs[i].Get("content")
		if content.IsArray() {
			var b strings.Builder
			for _, part := range content.Array() {
				b.WriteString(part.Get("text").Str)
			}
			return "Echo: " + b.String()
		}
		return "Echo: " + content.Str
	}
	return "This is a mock response."
}

// Do implements providers.Provider.
func (c *Client) Do(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	id, err := c.start(ctx)
	if err != nil {
		return nil, err
	}
	switch req.Op {
	case providers.OpEmbedding:
		return c.embed(req)
	case providers.OpRerank:
		return c.rerank(req)
	case providers.OpModeration:
		return c.moderate(req)
	case providers.OpImage:
		return c.image(req)
	case providers.OpSpeech:
		return c.speech(req)
	case providers.OpTranscription:
		return c.transcribe(req)
	case providers.OpImageEdit:
		return c.edit(req)
	}
	text := c.answer(req.Body)
	u := providers.Usage{PromptTokens: tokens.Prompt(req.Body), CompletionTokens: tokens.Count(text)}
	usage := usageJSON(u)
	now := time.Now().Unix()
	var body []byte
	if req.Op == providers.OpCompletion {
		body = fmt.Appendf(nil, `{"id":"cmpl-%s","object":"text_completion","created":%d,"model":%q,"choices":[{"index":0,"text":%s,"logprobs":null,"finish_reason":"stop"}],"usage":%s}`,
			id, now, c.model, quote(text), usage)
	} else {
		body = fmt.Appendf(nil, `{"id":"chatcmpl-%s","object":"chat.completion","created":%d,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":%s,"system_fingerprint":"fp_mock"}`,
			id, now, c.model, quote(text), usage)
	}
	return &providers.Response{Body: body, Usage: u}, nil
}

// DoStream implements providers.Provider: one chunk per word.
func (c *Client) DoStream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	if !req.Op.Streams() {
		return nil, fmt.Errorf("mock %s: streaming: %w", req.Op, providers.ErrUnsupported)
	}
	id, err := c.start(ctx)
	if err != nil {
		return nil, err
	}
	text := c.answer(req.Body)
	s := &stream{
		ctx: ctx, interval: c.cfg.ChunkInterval, words: splitWords(text),
		completion: req.Op == providers.OpCompletion,
		usage:      providers.Usage{PromptTokens: tokens.Prompt(req.Body), CompletionTokens: tokens.Count(text)},
	}
	if s.completion {
		s.head = fmt.Appendf(nil, `{"id":"cmpl-%s","object":"text_completion","created":%d,"model":%q,"choices":[{"index":0,`, id, time.Now().Unix(), c.model)
	} else {
		s.head = fmt.Appendf(nil, `{"id":"chatcmpl-%s","object":"chat.completion.chunk","created":%d,"model":%q,"system_fingerprint":"fp_mock","choices":[{"index":0,`, id, time.Now().Unix(), c.model)
	}
	return s, nil
}

type stream struct {
	ctx        context.Context
	interval   time.Duration
	head       []byte
	words      []string
	completion bool
	usage      providers.Usage
	step       int
	buf        []byte
}

// Recv yields the role chunk, one chunk per word, the finish chunk and the
// usage chunk, as OpenAI does with stream_options.include_usage.
func (s *stream) Recv() ([]byte, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	if s.step > 0 && s.interval > 0 {
		if err := sleep(s.ctx, s.interval); err != nil {
			return nil, err
		}
	}
	i := s.step
	s.step++
	b := append(s.buf[:0], s.head...)
	first := 1 // chat streams open with a role chunk
	if s.completion {
		first = 0
	}
	n := len(s.words)
	switch {
	case i < first:
		b = append(b, `"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`...)
	case i < first+n:
		if s.completion {
			b = append(b, `"text":`...)
			b = append(b, quote(s.words[i-first])...)
		} else {
			b = append(b, `"delta":{"content":`...)
			b = append(b, quote(s.words[i-first])...)
			b = append(b, '}')
		}
		b = append(b, `,"logprobs":null,"finish_reason":null}],"usage":null}`...)
	case i == first+n:
		if s.completion {
			b = append(b, `"text":"","logprobs":null,"finish_reason":"stop"}],"usage":null}`...)
		} else {
			b = append(b, `"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`...)
		}
	case i == first+n+1:
		b = append(b[:len(b)-len(`"choices":[{"index":0,`)], `"choices":[],"usage":`...)
		b = append(b, usageJSON(s.usage)...)
		b = append(b, '}')
	default:
		return nil, io.EOF
	}
	s.buf = b
	return b, nil
}

func (s *stream) Close() error { return nil }

func (c *Client) embed(req *providers.Request) (*providers.Response, error) {
	dims := int(gjson.GetBytes(req.Body, "dimensions").Int())
	if dims <= 0 {
		dims = 256
	}
	in := gjson.GetBytes(req.Body, "input")
	var inputs []string
	if in.IsArray() {
		for _, v := range in.Array() {
			inputs = append(inputs, v.Raw)
		}
	} else {
		inputs = []string{in.String()}
	}
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	out := struct {
		Object string          `json:"object"`
		Data   []item          `json:"data"`
		Model  string          `json:"model"`
		Usage  json.RawMessage `json:"usage"`
	}{Object: "list", Model: c.model}
	prompt := 0
	for i, s := range inputs {
		out.Data = append(out.Data, item{Object: "embedding", Index: i, Embedding: Vector(s, dims)})
		prompt += tokens.Count(s)
	}
	out.Usage = fmt.Appendf(nil, `{"prompt_tokens":%d,"total_tokens":%d}`, prompt, prompt)
	body, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding mock embedding: %w", err)
	}
	return &providers.Response{Body: body, Usage: providers.Usage{PromptTokens: prompt}}, nil
}

// Vector is the mock's deterministic unit-length embedding of s: a bag of
// hashed words, so texts sharing words are similar.
func Vector(s string, dims int) []float32 {
	v := make([]float32, dims)
	for _, w := range strings.Fields(strings.ToLower(s)) {
		h := sha256.Sum256([]byte(strings.Trim(w, ".,!?;:\"'")))
		i := binary.LittleEndian.Uint32(h[:4]) % uint32(dims)
		sign := float32(1)
		if h[4]&1 == 1 {
			sign = -1
		}
		v[i] += sign
	}
	var norm float64
	for _, x := range v {
		norm += float64(x * x)
	}
	if norm > 0 {
		inv := float32(1 / math.Sqrt(norm))
		for i := range v {
			v[i] *= inv
		}
	}
	return v
}

func splitWords(text string) []string {
	var out []string
	start := 0
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' && i > start {
			out = append(out, text[start:i+1])
			start = i + 1
		}
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	return out
}

func usageJSON(u providers.Usage) []byte {
	return fmt.Appendf(nil, `{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`,
		u.PromptTokens, u.CompletionTokens, u.Total())
}

func quote(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
