package auto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/lumengw/lumen/tokens"
)

// scoreIn is one input line of RunScore.
type scoreIn struct {
	ID     json.RawMessage `json:"id"`
	Prompt string          `json:"prompt"`
}

// scoreOut is one output line of RunScore.
type scoreOut struct {
	ID         json.RawMessage    `json:"id"`
	Difficulty float64            `json:"difficulty"`
	Domain     string             `json:"domain"`
	PSuccess   map[string]float64 `json:"p_success"`
}

// RunScore implements `lumen route score` with the embedded weights: it
// reads JSON lines {"id": "...", "prompt": "..."} from r and writes one JSON
// line per input, {"id": "...", "difficulty": float, "domain": "...",
// "p_success": {"<model>": float, ...}}. Without candidates the models are
// every model of the ability table (Scorer.Models).
//
// Each result is written to w as soon as it is computed, in one Write, so a
// consumer reading a pipe sees it at once and a later failure loses
// nothing. A line that is not such an object is reported on errw (nil:
// discarded), naming its number, and skipped; the error returned at the
// end is then a *BadLinesError. Reading r or writing w failing stops at
// once.
func RunScore(r io.Reader, w, errw io.Writer, candidates []string) error {
	s, err := Embedded()
	if err != nil {
		return err
	}
	return s.RunScore(r, w, errw, candidates)
}

// BadLinesError is RunScore's error when input lines could not be scored:
// each was reported as it was met and skipped, and every other line was
// scored.
type BadLinesError struct {
	// Count is the number of bad lines; First the number (1-based) of the
	// first.
	Count, First int
}

func (e *BadLinesError) Error() string {
	if e.Count == 1 {
		return fmt.Sprintf("line %d could not be scored; every other line was", e.First)
	}
	return fmt.Sprintf("%d lines could not be scored (the first: line %d); every other line was", e.Count, e.First)
}

// RunScore is the package-level RunScore with this scorer (and its config
// overrides).
func (s *Scorer) RunScore(r io.Reader, w, errw io.Writer, candidates []string) error {
	models := candidates
	if len(models) == 0 {
		models = s.Models()
	}
	if errw == nil {
		errw = io.Discard
	}
	out := make([]float64, len(models))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	// An Encoder writes each value with one Write: no buffer to flush.
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var bad *BadLinesError
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var in scoreIn
		if err := json.Unmarshal(b, &in); err != nil {
			if bad == nil {
				bad = &BadLinesError{First: line}
			}
			bad.Count++
			if _, werr := fmt.Fprintf(errw, "lumen: skipping line %d: want a JSON object {\"id\", \"prompt\"}: %v\n", line, err); werr != nil {
				return fmt.Errorf("reporting line %d: %w", line, werr)
			}
			continue
		}
		if len(in.ID) == 0 {
			in.ID = json.RawMessage("null")
		}
		res := s.Score(Prompt{User: in.Prompt, Turns: 1}, models, out)
		ps := make(map[string]float64, len(models))
		for i, m := range models {
			ps[m] = round4(out[i])
		}
		if err := enc.Encode(scoreOut{ID: in.ID, Difficulty: round4(res.Difficulty), Domain: res.Domain, PSuccess: ps}); err != nil {
			return fmt.Errorf("writing score for line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading prompts (after line %d): %w", line, err)
	}
	if bad != nil {
		return bad
	}
	return nil
}

func round4(x float64) float64 {
	return float64(int64(x*1e4+0.5)) / 1e4
}

// DefaultOutputTokens is the answer length Explain assumes when the caller
// gives none (to price candidates).
const DefaultOutputTokens = 300

// Explanation is what `lumen route explain` prints: the scorer's reading of
// the prompt and the decision over the candidates.
type Explanation struct {
	Score    Score
	Tokens   Tokens
	Decision Decision
	// Err is the NoCandidateError when nothing qualified (Decision then
	// holds no choice).
	Err error
	// Unknown names the candidates whose model the ability table does not
	// know: they were scored at DefaultQuality.
	Unknown []string
}

// Explain scores p, fills each candidate's PSuccess (by Candidate.Model, or
// Name) and decides. Zero tok is estimated: In from the prompt's text,
// Out = DefaultOutputTokens.
func (s *Scorer) Explain(p Prompt, cands []Candidate, tok Tokens, c Constraints, mode Mode) Explanation {
	names := make([]string, len(cands))
	for i := range cands {
		names[i] = cands[i].model()
	}
	ps := make([]float64, len(cands))
	score := s.Score(p, names, ps)
	cs := make([]Candidate, len(cands))
	var unknown []string
	for i := range cands {
		cs[i] = cands[i]
		cs[i].PSuccess = ps[i]
		if s.find(names[i]) == nil {
			unknown = append(unknown, cands[i].Name)
		}
	}
	if tok.In == 0 && tok.Out == 0 {
		tok = Tokens{In: tokens.Count(p.System) + tokens.Count(p.User), Out: DefaultOutputTokens}
	}
	d, err := Decide(cs, tok, c, mode)
	return Explanation{Score: score, Tokens: tok, Decision: d, Err: err, Unknown: unknown}
}

// Format writes the explanation as a table for a terminal.
func (e Explanation) Format(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "difficulty %.2f, domain %s (%.0f%%), ~%d tokens in / %d out",
		e.Score.Difficulty, e.Score.Domain, 100*e.Score.DomainProb, e.Tokens.In, e.Tokens.Out)
	if e.Score.Task != "" {
		// How far the training task the prompt most resembles moved the
		// learned models towards their measured rates on it (0..1).
		fmt.Fprintf(&b, "; nearest training task %s (prior weight %.2f)", e.Score.Task, e.Score.TaskWeight)
	}
	b.WriteByte('\n')
	if e.Err != nil {
		fmt.Fprintf(&b, "error: %v\n", e.Err)
	} else {
		fmt.Fprintf(&b, "%s\n", e.Decision.Reason)
	}
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tCANDIDATE\tP(SUCCESS)\tEXPECTED COST\tUSD/1K\tLATENCY\tREASON")
	for i, r := range e.Decision.Ranking {
		lat := "-"
		if r.LatencyMS > 0 {
			lat = fmt.Sprintf("%.0fms", r.LatencyMS)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.3f\t$%.5f\t$%.4f\t%s\t%s\n", i+1, r.Name, r.PSuccess, r.ExpectedCost, r.CostPer1K, lat, r.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(e.Unknown) > 0 {
		fmt.Fprintf(&b, "not in the ability table, scored at the default quality %.2f (set model_info.quality): %s\n",
			DefaultQuality, strings.Join(e.Unknown, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
