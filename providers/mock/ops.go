package mock

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/internal/audio"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tokens"
)

// The mock's answers to the calls that are not chat: rerank, moderation,
// image generation, speech, transcription.

// rerank answers a rerank request in the Cohere/Jina form vLLM serves:
// each document scored by the share of the query's words it contains,
// best first, top_n of them, with the document when return_documents is
// not false.
func (c *Client) rerank(req *providers.Request) (*providers.Response, error) {
	query := gjson.GetBytes(req.Body, "query").Str
	words := strings.Fields(strings.ToLower(query))
	type result struct {
		Index    int             `json:"index"`
		Score    float64         `json:"relevance_score"`
		Document json.RawMessage `json:"document,omitempty"`
	}
	var results []result
	used := tokens.Count(query)
	gjson.GetBytes(req.Body, "documents").ForEach(func(i, d gjson.Result) bool {
		text := d.String()
		if d.IsObject() {
			text = d.Get("text").Str
		}
		used += tokens.Count(text)
		have := map[string]bool{}
		for _, w := range strings.Fields(strings.ToLower(text)) {
			have[strings.Trim(w, ".,;:!?\"'()")] = true
		}
		hit := 0
		for _, w := range words {
			if have[strings.Trim(w, ".,;:!?\"'()")] {
				hit++
			}
		}
		r := result{Index: int(i.Int())}
		if len(words) > 0 {
			r.Score = float64(hit) / float64(len(words))
		}
		if gjson.GetBytes(req.Body, "return_documents").Type != gjson.False {
			r.Document, _ = json.Marshal(map[string]string{"text": text})
		}
		results = append(results, r)
		return true
	})
	sort.SliceStable(results, func(a, b int) bool { return results[a].Score > results[b].Score })
	if n := int(gjson.GetBytes(req.Body, "top_n").Int()); n > 0 && n < len(results) {
		results = results[:n]
	}
	out, err := json.Marshal(map[string]any{"id": "rerank-mock", "model": c.model, "results": results,
		"usage": map[string]int{"total_tokens": used}})
	if err != nil {
		return nil, fmt.Errorf("mock rerank: %w", err)
	}
	return &providers.Response{Body: out, Usage: providers.Usage{PromptTokens: used}}, nil
}

// moderationCategories are OpenAI's moderation categories.
var moderationCategories = []string{"harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
	"illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors",
	"violence", "violence/graphic"}

// moderate answers a moderation request in OpenAI's form: one result per
// input, nothing flagged.
func (c *Client) moderate(req *providers.Request) (*providers.Response, error) {
	in := gjson.GetBytes(req.Body, "input")
	n := 1
	if in.IsArray() {
		n = len(in.Array())
	}
	categories, scores := map[string]bool{}, map[string]float64{}
	for _, k := range moderationCategories {
		categories[k], scores[k] = false, 0
	}
	type result struct {
		Flagged        bool               `json:"flagged"`
		Categories     map[string]bool    `json:"categories"`
		CategoryScores map[string]float64 `json:"category_scores"`
	}
	results := make([]result, n)
	for i := range results {
		results[i] = result{Categories: categories, CategoryScores: scores}
	}
	out, err := json.Marshal(map[string]any{"id": "modr-mock", "model": c.model, "results": results})
	if err != nil {
		return nil, fmt.Errorf("mock moderation: %w", err)
	}
	return &providers.Response{Body: out}, nil
}

// mockPNG is a 1x1 transparent PNG (valid chunks and checksums), the
// mock's every image.
const mockPNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAAC0lEQVR4nGNgAAIAAAUAAXpeqz8AAAAASUVORK5CYII="

// image answers an image generation in OpenAI's form: n images (1 by
// default), each the same 1x1 PNG as b64_json, with the prompt as its
// revised prompt.
func (c *Client) image(req *providers.Request) (*providers.Response, error) {
	n := max(int(gjson.GetBytes(req.Body, "n").Int()), 1)
	type image struct {
		B64JSON       string `json:"b64_json"`
		RevisedPrompt string `json:"revised_prompt"`
	}
	data := make([]image, n)
	for i := range data {
		data[i] = image{B64JSON: mockPNG, RevisedPrompt: gjson.GetBytes(req.Body, "prompt").Str}
	}
	out, err := json.Marshal(map[string]any{"created": time.Now().Unix(), "data": data})
	if err != nil {
		return nil, fmt.Errorf("mock image: %w", err)
	}
	return &providers.Response{Body: out, Usage: providers.Usage{Images: n}}, nil
}

// edit answers an image edit (a multipart body) as image answers a
// generation: n images, the prompt as their revised prompt.
func (c *Client) edit(req *providers.Request) (*providers.Response, error) {
	form, err := providers.ParseForm(req.Body, req.ContentType)
	if err != nil {
		return nil, fmt.Errorf("mock image edit: %w", err)
	}
	n, _ := strconv.Atoi(form.Values["n"])
	body, err := json.Marshal(map[string]any{"prompt": form.Values["prompt"], "n": max(n, 1)})
	if err != nil {
		return nil, fmt.Errorf("mock image edit: %w", err)
	}
	return c.image(&providers.Request{Op: providers.OpImage, Model: req.Model, Body: body})
}

// speech answers a speech request with a tenth of a second of silence as
// an 8 kHz, 8-bit mono WAV file, whatever the format asked, and counts the
// characters read out.
func (c *Client) speech(req *providers.Request) (*providers.Response, error) {
	const rate, samples = 8000, 800
	wav := make([]byte, 0, 44+samples)
	wav = append(wav, "RIFF"...)
	wav = binary.LittleEndian.AppendUint32(wav, 36+samples)
	wav = append(wav, "WAVEfmt "...)
	wav = binary.LittleEndian.AppendUint32(wav, 16)   // fmt chunk size
	wav = binary.LittleEndian.AppendUint16(wav, 1)    // PCM
	wav = binary.LittleEndian.AppendUint16(wav, 1)    // mono
	wav = binary.LittleEndian.AppendUint32(wav, rate) // sample rate
	wav = binary.LittleEndian.AppendUint32(wav, rate) // byte rate
	wav = binary.LittleEndian.AppendUint16(wav, 1)    // block align
	wav = binary.LittleEndian.AppendUint16(wav, 8)    // bits per sample
	wav = append(wav, "data"...)
	wav = binary.LittleEndian.AppendUint32(wav, samples)
	for range samples {
		wav = append(wav, 128) // silence in unsigned 8-bit PCM
	}
	chars := utf8.RuneCountInString(gjson.GetBytes(req.Body, "input").Str)
	return &providers.Response{Body: wav, ContentType: "audio/wav", Usage: providers.Usage{Characters: chars}}, nil
}

// transcribe answers a transcription with a line naming the audio's size,
// as json (default) with whisper-1's usage (the recording's length where
// package audio reads it, else a second per 16 KB, 128 kbit/s audio), or
// as text/plain when response_format is text.
func (c *Client) transcribe(req *providers.Request) (*providers.Response, error) {
	form, err := providers.ParseForm(req.Body, req.ContentType)
	if err != nil {
		return nil, fmt.Errorf("mock transcription: %w", err)
	}
	size := form.Files["file"]
	text := fmt.Sprintf("Mock transcription of %d bytes of audio.", size)
	if form.Values["response_format"] == "text" {
		return &providers.Response{Body: []byte(text + "\n"), ContentType: "text/plain; charset=utf-8"}, nil
	}
	seconds, ok := audio.Duration(form.Data["file"])
	if !ok {
		seconds = float64(size) / 16000
	}
	seconds = math.Round(seconds*10) / 10
	out, err := json.Marshal(map[string]any{"text": text, "usage": map[string]any{"type": "duration", "seconds": seconds}})
	if err != nil {
		return nil, fmt.Errorf("mock transcription: %w", err)
	}
	return &providers.Response{Body: out, Usage: providers.Usage{Seconds: seconds}}, nil
}
