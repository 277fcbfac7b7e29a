package guardrail

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// textKeys are the JSON keys whose string values are text a person or a
// model wrote, in the OpenAI (chat, completions, embeddings, moderations,
// Responses, speech, images, rerank) and Anthropic forms, requests and
// answers: messages' content and parts' text, prompt, input, system,
// instructions, query, documents, a tool's output, an answer's refusal.
// Everything else (ids, roles, tool arguments, image and file data, URLs)
// is left alone, so a base64 image never looks like a key, and a
// masked value never breaks a tool call's JSON.
var textKeys = map[string]bool{
	"content": true, "text": true, "prompt": true, "input": true, "system": true,
	"instructions": true, "query": true, "documents": true, "output": true,
	"refusal": true, "output_text": true, "reasoning_content": true,
}

// Input applies the guards that check requests (pre_call, during_call) to
// a JSON request body. It returns the body with masked matches replaced
// (the same slice when nothing was masked), the rules that matched, and a
// *BlockedError when a blocking rule matched.
func Input(guards []*Guard, body []byte) ([]byte, []Hit, error) {
	return apply(guards, body, input)
}

// Output applies the guards that check answers (post_call) to a JSON
// answer, as Input does to a request.
func Output(guards []*Guard, body []byte) ([]byte, []Hit, error) {
	return apply(guards, body, output)
}

// InputText applies the guards that check requests to one text outside
// JSON (a multipart form's prompt field); field names it in an error.
func InputText(guards []*Guard, text, field string) (string, []Hit, error) {
	var hits []Hit
	for _, g := range guards {
		if !g.pre {
			continue
		}
		out, changed, h, blocked := g.check(text, hits, false)
		hits = h
		if blocked != nil {
			return text, hits, &BlockedError{Guard: g.Name, What: blocked.what, Field: field}
		}
		if changed {
			text = out
		}
	}
	return text, hits, nil
}

// Logged returns what the ledger and the audit log keep of a JSON request
// or answer: body with the matches of the logging_only guards masked (a
// BLOCK rule's too), or body itself when none applies or matches, and
// the rules that matched.
func Logged(guards []*Guard, body []byte) ([]byte, []Hit) {
	out, hits, _ := apply(guards, body, logging)
	return out, hits
}

// stage is what apply checks for.
type stage uint8

const (
	input stage = iota
	output
	logging
)

func (g *Guard) runs(st stage) bool {
	switch st {
	case input:
		return g.pre
	case output:
		return g.post
	}
	return g.log
}

// Active reports whether any of guards checks answers (answers true) or
// requests.
func Active(guards []*Guard, answers bool) bool {
	st := input
	if answers {
		st = output
	}
	return active(guards, st)
}

// Logging reports whether any of guards masks what is recorded.
func Logging(guards []*Guard) bool { return active(guards, logging) }

func active(guards []*Guard, st stage) bool {
	for _, g := range guards {
		if g.runs(st) {
			return true
		}
	}
	return false
}

type edit struct {
	start, end int
	text       string
}

// seg is one step of a JSON path: an object key, or an array index.
type seg struct {
	key   string
	idx   int
	array bool
}

func apply(guards []*Guard, body []byte, st stage) ([]byte, []Hit, error) {
	if len(body) == 0 || !active(guards, st) {
		return body, nil, nil
	}
	w := walker{output: st == output, maskAll: st == logging}
	for _, g := range guards {
		if g.runs(st) {
			w.guards = append(w.guards, g)
		}
	}
	w.walk(gjson.ParseBytes(body), false)
	if w.blocked != nil {
		return body, w.hits, w.blocked
	}
	if len(w.edits) == 0 {
		return body, w.hits, nil
	}
	out := make([]byte, 0, len(body)+64)
	prev := 0
	for _, e := range w.edits {
		out = append(out, body[prev:e.start]...)
		q, _ := json.Marshal(e.text)
		out = append(out, q...)
		prev = e.end
	}
	out = append(out, body[prev:]...)
	return out, w.hits, nil
}

type walker struct {
	collect *[]string // Texts: gather the texts, check nothing
	guards  []*Guard
	output  bool
	maskAll bool // logging_only: what would block is masked
	path    []seg
	edits   []edit
	hits    []Hit
	blocked *BlockedError
}

// walk visits r; textual says r sits under a text key (its strings, or an
// array's, are text). It returns false once a guard blocked.
func (w *walker) walk(r gjson.Result, textual bool) bool {
	switch {
	case r.IsObject():
		ok := true
		r.ForEach(func(k, v gjson.Result) bool {
			w.path = append(w.path, seg{key: k.Str})
			ok = w.walk(v, textKeys[k.Str])
			w.path = w.path[:len(w.path)-1]
			return ok
		})
		return ok
	case r.IsArray():
		ok, i := true, 0
		r.ForEach(func(_, v gjson.Result) bool {
			w.path = append(w.path, seg{idx: i, array: true})
			ok = w.walk(v, textual)
			w.path = w.path[:len(w.path)-1]
			i++
			return ok
		})
		return ok
	case r.Type == gjson.String && textual && r.Str != "" && w.collect != nil:
		*w.collect = append(*w.collect, r.Str)
	case r.Type == gjson.String && textual && r.Str != "":
		text, changed := r.Str, false
		for _, g := range w.guards {
			out, ch, hits, blocked := g.check(text, w.hits, w.maskAll)
			w.hits = hits
			if blocked != nil {
				w.blocked = &BlockedError{Guard: g.Name, What: blocked.what, Output: w.output}
				if !w.output {
					w.blocked.Field = w.field()
				}
				return false
			}
			if ch {
				text, changed = out, true
			}
		}
		if changed {
			w.edits = append(w.edits, edit{start: r.Index, end: r.Index + len(r.Raw), text: text})
		}
	}
	return true
}

// field renders the current path: messages[0].content[1].text.
func (w *walker) field() string {
	var b strings.Builder
	for _, s := range w.path {
		if s.array {
			b.WriteString("[" + strconv.Itoa(s.idx) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

// Texts returns the texts of a JSON request or answer: the strings the
// content filters read (see textKeys), in order.
func Texts(body []byte) []string {
	var out []string
	w := walker{collect: &out}
	w.walk(gjson.ParseBytes(body), false)
	return out
}

// Flagged reads an OpenAI moderation answer and returns the categories it
// flagged in any result, those of categories only when that is not empty.
func Flagged(answer []byte, categories []string) ([]string, error) {
	results := gjson.GetBytes(answer, "results")
	if !results.IsArray() {
		return nil, fmt.Errorf("the moderation answer has no results")
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range results.Array() {
		if !r.Get("flagged").Bool() {
			continue
		}
		if len(categories) == 0 && !seen["flagged"] {
			n := 0
			r.Get("categories").ForEach(func(_, v gjson.Result) bool {
				if v.Bool() {
					n++
				}
				return true
			})
			if n == 0 { // flagged without a category: still flagged
				seen["flagged"] = true
				out = append(out, "flagged")
			}
		}
		r.Get("categories").ForEach(func(k, v gjson.Result) bool {
			if v.Bool() && !seen[k.Str] && (len(categories) == 0 || slices.Contains(categories, k.Str)) {
				seen[k.Str] = true
				out = append(out, k.Str)
			}
			return true
		})
	}
	return out, nil
}
