// Package tokens estimates token counts without a model-specific tokenizer.
//
// The estimate follows how BPE tokenizers (cl100k/o200k, Claude, Llama) split
// text: a word is about one token per six letters, digits group by three,
// punctuation is a token each, CJK characters are a token each, and spaces
// ride along with the next word. It is within ~15% of tiktoken on English
// prose and code, which is what budgets and context-window checks need: they
// reserve the worst case and settle on the provider's real count.
package tokens

import (
	"bytes"
	"encoding/base64"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Count estimates the tokens in s.
func Count(s string) int {
	var c counter
	c.text(s)
	return c.total()
}

// counter is Count's state between pieces of one text (the pieces of a
// JSON string literal between its escapes): the tokens so far and the
// letters and digits of the word being read.
type counter struct {
	n, run, digits int
}

// text counts s, continuing the word the last piece ended in.
func (c *counter) text(s string) {
	n, run, digits := c.n, c.run, c.digits
	flush := func() {
		if run > 0 {
			n += (run + 5) / 6
			run = 0
		}
		if digits > 0 {
			n += (digits + 2) / 3
			digits = 0
		}
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			i++
			switch {
			case b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_':
				if digits > 0 {
					flush()
				}
				run++
			case b >= '0' && b <= '9':
				if run > 0 {
					flush()
				}
				digits++
			case b == ' ' || b == '\t' || b == '\n' || b == '\r':
				flush()
			default:
				flush()
				n++
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) ||
			unicode.Is(unicode.Katakana, r) || unicode.Is(unicode.Hangul, r):
			flush()
			n++
		case unicode.IsLetter(r):
			if digits > 0 {
				flush()
			}
			run += 2 // non-ASCII letters take about twice the bytes per token
		case unicode.IsSpace(r):
			flush()
		default:
			flush()
			n++
		}
	}
	c.n, c.run, c.digits = n, run, digits
}

// total ends the text (the word being read counts) and returns the
// count so far.
func (c *counter) total() int {
	if c.run > 0 {
		c.n += (c.run + 5) / 6
	}
	if c.digits > 0 {
		c.n += (c.digits + 2) / 3
	}
	c.run, c.digits = 0, 0
	return c.n
}

// Per-message and per-request overheads, as OpenAI documents for chat models.
const (
	perMessage = 4
	perRequest = 3
)

// Prompt estimates the input tokens of an OpenAI-format request body:
// chat messages (text parts; an image counts as 765 tokens, the
// high-detail 512px tile cost; a file as File says), tool definitions, a
// completion prompt, an embedding or moderation input, a rerank query and
// its documents.
func Prompt(body []byte) int {
	n := 0
	if msgs := gjson.GetBytes(body, "messages"); msgs.IsArray() {
		n += perRequest
		msgs.ForEach(func(_, m gjson.Result) bool {
			n += perMessage + content(m.Get("content"))
			if tc := m.Get("tool_calls"); tc.Exists() {
				n += Count(tc.Raw)
			}
			return true
		})
	}
	if tools := gjson.GetBytes(body, "tools"); tools.Exists() {
		n += Count(tools.Raw)
	}
	for _, field := range [...]string{"prompt", "input", "query", "documents"} {
		if v := gjson.GetBytes(body, field); v.Exists() {
			n += content(v)
		}
	}
	return n
}

// PDFPageTokens is what one PDF page costs a model that reads its text
// and an image of it: the top of Anthropic's 1,500-3,000 per page.
const PDFPageTokens = 3000

// pdfBytesPerPage is the page count assumed per so many bytes of a PDF
// whose pages cannot be counted (compressed object streams).
const pdfBytesPerPage = 50_000

// File estimates the input tokens of a file part's file_data (a base64
// data URL): a PDF at PDFPageTokens a page, counting its page objects
// (or one page per 50 KB when they are compressed), other documents as
// their text. A file without data (an uploaded file's id) counts as one
// PDF page.
func File(dataURL string) int {
	meta, data, ok := strings.Cut(strings.TrimPrefix(dataURL, "data:"), ",")
	if !ok || !strings.HasPrefix(dataURL, "data:") {
		return PDFPageTokens
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return base64.StdEncoding.DecodedLen(len(data))/4 + 1
	}
	if mt, _, _ := strings.Cut(meta, ";"); !strings.EqualFold(mt, "application/pdf") {
		return Count(string(raw))
	}
	pages := 0
	for _, marker := range [...]string{"/Type /Page", "/Type/Page"} {
		for rest := raw; ; {
			i := bytes.Index(rest, []byte(marker))
			if i < 0 {
				break
			}
			rest = rest[i+len(marker):]
			if len(rest) == 0 || rest[0] != 's' { // not /Pages, the page tree
				pages++
			}
		}
	}
	if pages == 0 {
		pages = len(raw)/pdfBytesPerPage + 1
	}
	return pages * PDFPageTokens
}

func content(v gjson.Result) int {
	switch {
	case v.Type == gjson.String:
		return Count(v.Str)
	case v.IsArray():
		n := 0
		v.ForEach(func(_, part gjson.Result) bool {
			switch {
			case part.Type == gjson.String:
				n += Count(part.Str)
			case part.Get("text").Exists():
				n += Count(part.Get("text").Str)
			case part.Get("image_url").Exists() || part.Get("type").Str == "image":
				n += 765
			case part.Get("type").Str == "file":
				n += File(part.Get("file.file_data").Str)
			case part.Type == gjson.Number:
				n++ // token-id input for embeddings/completions
			}
			return true
		})
		return n
	default:
		return 0
	}
}
