package gemini

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tokens"
)

// Embeddings: an OpenAI /v1/embeddings request becomes batchEmbedContents
// calls (https://ai.google.dev/api/embeddings), one per 100 inputs (the
// most one call takes), each input a request with its text as the content
// and dimensions as outputDimensionality. Gemini reports no token counts
// for embeddings, so the usage is Lumen's estimate (tokens.Count). A batch
// that fails after others succeeded fails the request with a
// providers.SpentError holding the estimate for the batches embedded,
// which Google bills. Token-array inputs are refused: Gemini embeds text
// only.

// embeddingRequest is the OpenAI embeddings request.
type embeddingRequest struct {
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions,omitempty"`
	EncodingFormat string          `json:"encoding_format,omitempty"`
}

type batchEmbedRequest struct {
	Requests []embedContentRequest `json:"requests"`
}

type embedContentRequest struct {
	Model                string  `json:"model"`
	Content              content `json:"content"`
	OutputDimensionality *int    `json:"outputDimensionality,omitempty"`
}

type batchEmbedResponse struct {
	Embeddings []struct {
		Values []float32 `json:"values"`
	} `json:"embeddings"`
}

// embedInputs reads input: a string or a list of strings.
func embedInputs(raw json.RawMessage) ([]string, error) {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 || string(b) == "null" {
		return nil, providers.Invalid("input", "input is required")
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, providers.Invalid("input", "input is not a valid string")
		}
		return []string{s}, nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, providers.Invalid("input", "Gemini embeds text: send a string or a list of strings, not token ids")
	}
	if len(list) == 0 {
		return nil, providers.Invalid("input", "input is empty")
	}
	return list, nil
}

func (c *Client) embed(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	var er embeddingRequest
	if err := json.Unmarshal(req.Body, &er); err != nil {
		return nil, &providers.InvalidRequestError{Message: "the body is not a valid embeddings request: " + err.Error(), Err: err}
	}
	inputs, err := embedInputs(er.Input)
	if err != nil {
		return nil, err
	}
	switch er.EncodingFormat {
	case "", "float", "base64":
	default:
		return nil, providers.Invalid("encoding_format", "unsupported encoding_format %q (supported: float, base64)", er.EncodingFormat)
	}
	model := strings.TrimPrefix(req.Model, "models/")
	if model == "" {
		model = c.model
	}
	reqs := make([]embedContentRequest, len(inputs))
	counts := make([]int, len(inputs))
	prompt := 0
	for i, in := range inputs {
		reqs[i] = embedContentRequest{Model: "models/" + model,
			Content: content{Parts: []part{{Text: in}}}, OutputDimensionality: er.Dimensions}
		counts[i] = tokens.Count(in)
		prompt += counts[i]
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	// One call per maxEmbedBatch inputs, in order: OpenAI takes 2,048
	// inputs in a request, batchEmbedContents 100. A batch that fails
	// fails the request, but Google bills the batches it embedded before:
	// the error says how many tokens those were.
	vectors := make([][]float32, 0, len(inputs))
	for start := 0; start < len(reqs); start += maxEmbedBatch {
		end := min(start+maxEmbedBatch, len(reqs))
		got, err := c.batchEmbed(ctx, model, reqs[start:end])
		if err != nil {
			if start > 0 {
				done := 0
				for _, n := range counts[:start] {
					done += n
				}
				err = &providers.SpentError{Err: err, Usage: providers.Usage{PromptTokens: done}}
			}
			return nil, err
		}
		vectors = append(vectors, got...)
	}
	type datum struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []datum `json:"data"`
		Model  string  `json:"model"`
		Usage  struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}{Object: "list", Model: model, Data: make([]datum, len(vectors))}
	for i, values := range vectors {
		var v any = values
		if er.EncodingFormat == "base64" {
			v = float32Base64(values)
		}
		out.Data[i] = datum{Object: "embedding", Index: i, Embedding: v}
	}
	out.Usage.PromptTokens, out.Usage.TotalTokens = prompt, prompt
	b, err := providers.MarshalJSON(&out)
	if err != nil {
		return nil, fmt.Errorf("encoding the translated answer: %w", err)
	}
	return &providers.Response{Body: b, Usage: providers.Usage{PromptTokens: prompt}}, nil
}

// maxEmbedBatch is the most requests batchEmbedContents takes in one call
// (more is a 400: "at most 100 requests can be in one batch").
const maxEmbedBatch = 100

// batchEmbed sends one batchEmbedContents call and returns its vectors,
// one per request, in order.
func (c *Client) batchEmbed(ctx context.Context, model string, reqs []embedContentRequest) ([][]float32, error) {
	body, err := providers.MarshalJSON(&batchEmbedRequest{Requests: reqs})
	if err != nil {
		return nil, fmt.Errorf("encoding the gemini request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1beta/models/"+url.PathEscape(model)+":batchEmbedContents", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building upstream request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		hr.Header.Set("X-Goog-Api-Key", c.key)
	}
	for k, v := range c.headers {
		hr.Header.Set(k, v)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, providers.TransportError(ctx, c.provider, c.name, err, false)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, c.statusError(resp)
	}
	raw, err := providers.ReadAnswer(resp)
	if err != nil {
		return nil, providers.TransportError(ctx, c.provider, c.name, err, false)
	}
	var br batchEmbedResponse
	if err := json.Unmarshal(raw, &br); err != nil || len(br.Embeddings) != len(reqs) {
		return nil, c.badGateway("upstream answered with something other than one embedding per input")
	}
	out := make([][]float32, len(br.Embeddings))
	for i, e := range br.Embeddings {
		out[i] = e.Values
	}
	return out, nil
}

// float32Base64 is OpenAI's base64 encoding: little-endian float32s.
func float32Base64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}
