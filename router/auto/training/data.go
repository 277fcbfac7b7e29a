// Package training fits and evaluates the auto router's scorer
// (router/auto) from a routing-outcomes file such as shared/routing/
// train.jsonl. It is used offline by `go run ./router/auto/train` (and by
// `lumen route train`); nothing here runs in the gateway's request path.
package training

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sort"
	"strings"
)

// Row is one prompt with the measured outcome of two or more models.
type Row struct {
	ID     string
	Source string
	// Task is the file's task, or for rows without one (llmrouter) a task
	// inferred from the prompt's shape (see InferTask); TaskKnown tells.
	Task      string
	TaskKnown bool
	Prompt    string
	// Scores maps a model to its outcome in 0..1; rows with a null score
	// for a model leave that model out.
	Scores map[string]float64
	// Cost maps a model to the USD it spent on this prompt (routerbench
	// only; nil otherwise).
	Cost map[string]float64
}

type rawRow struct {
	ID      string              `json:"id"`
	Source  string              `json:"source"`
	Task    *string             `json:"task"`
	Prompt  string              `json:"prompt"`
	Scores  map[string]*float64 `json:"scores"`
	CostUSD map[string]*float64 `json:"cost_usd"`
}

// Load reads a JSON-lines outcomes file.
func Load(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading routing data: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Read parses JSON-lines outcomes from r.
func Read(r io.Reader) ([]Row, error) {
	var rows []Row
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var rr rawRow
		if err := json.Unmarshal(sc.Bytes(), &rr); err != nil {
			return nil, fmt.Errorf("reading routing data line %d: %w", line, err)
		}
		row := Row{ID: rr.ID, Source: rr.Source, Prompt: rr.Prompt, Scores: map[string]float64{}}
		for m, v := range rr.Scores {
			if v != nil {
				row.Scores[m] = *v
			}
		}
		if len(rr.CostUSD) > 0 {
			row.Cost = map[string]float64{}
			for m, v := range rr.CostUSD {
				if v != nil {
					row.Cost[m] = *v
				}
			}
		}
		if rr.Task != nil && *rr.Task != "" {
			row.Task, row.TaskKnown = *rr.Task, true
		} else {
			row.Task = InferTask(rr.Prompt)
		}
		if len(row.Scores) > 0 {
			rows = append(rows, row)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading routing data: %w", err)
	}
	return rows, nil
}

// Domains are the scorer's domains, in weight order.
var Domains = []string{"math", "code", "reasoning", "science", "health", "law", "business", "social", "humanities", "knowledge", "commonsense", "language"}

var mmluDomain = map[string]string{
	"abstract_algebra": "math", "college_mathematics": "math", "elementary_mathematics": "math",
	"high_school_mathematics": "math", "high_school_statistics": "math", "econometrics": "math",
	"college_computer_science": "code", "high_school_computer_science": "code", "computer_security": "code",
	"machine_learning": "code",
	"formal_logic":     "reasoning", "logical_fallacies": "reasoning",
	"astronomy": "science", "college_biology": "science", "college_chemistry": "science", "college_physics": "science",
	"conceptual_physics": "science", "electrical_engineering": "science", "high_school_biology": "science",
	"high_school_chemistry": "science", "high_school_physics": "science",
	"anatomy": "health", "clinical_knowledge": "health", "college_medicine": "health", "human_aging": "health",
	"medical_genetics": "health", "nutrition": "health", "professional_medicine": "health", "virology": "health",
	"human_sexuality":   "health",
	"international_law": "law", "jurisprudence": "law", "professional_law": "law",
	"business_ethics": "business", "management": "business", "marketing": "business",
	"professional_accounting": "business", "high_school_macroeconomics": "business", "high_school_microeconomics": "business",
	"high_school_geography": "social", "high_school_government_and_politics": "social", "high_school_psychology": "social",
	"professional_psychology": "social", "public_relations": "social", "security_studies": "social",
	"sociology": "social", "us_foreign_policy": "social",
	"high_school_european_history": "humanities", "high_school_us_history": "humanities",
	"high_school_world_history": "humanities", "moral_disputes": "humanities", "moral_scenarios": "humanities",
	"philosophy": "humanities", "prehistory": "humanities", "world_religions": "humanities",
	"global_facts": "knowledge", "miscellaneous": "knowledge",
}

var taskDomain = map[string]string{
	"gsm8k": "math", "math": "math", "mgsm": "math",
	"mbpp": "code", "humaneval": "code",
	"logic-puzzle":  "reasoning",
	"arc-challenge": "science", "science-long": "science",
	"winogrande": "commonsense", "commonsense-qa": "commonsense",
	"nq": "knowledge", "trivia-qa": "knowledge",
	"commongen": "language", "reading": "language",
}

// DomainOf maps a task to its domain index in Domains.
func DomainOf(task string) int {
	d, ok := taskDomain[task]
	if !ok && strings.HasPrefix(task, "mmlu-") {
		d, ok = mmluDomain[strings.TrimPrefix(task, "mmlu-")]
	}
	if !ok {
		d = "knowledge"
	}
	for i, n := range Domains {
		if n == d {
			return i
		}
	}
	return 0
}

// InferTask guesses the benchmark of a prompt that has no task label (the
// llmrouter rows) from its shape. It is only used to group rows for
// leave-task-out evaluation and to give them a domain label; it is a
// heuristic, not ground truth.
func InferTask(p string) string {
	t := strings.TrimSpace(p)
	lower := strings.ToLower(t)
	nonASCII := 0
	for _, r := range t {
		if r >= 0x80 {
			nonASCII++
		}
	}
	switch {
	case strings.Contains(lower, "houses") && strings.Contains(lower, "clue"):
		return "logic-puzzle"
	case strings.HasPrefix(t, "def ") || strings.HasPrefix(t, "from typing") || strings.HasPrefix(t, "import ") ||
		strings.Contains(t, "\ndef ") && strings.Contains(t, `"""`) || strings.Contains(t, ">>> "):
		return "humaneval"
	case strings.HasPrefix(lower, "write a function") || strings.HasPrefix(lower, "write a python function"):
		return "mbpp"
	case len(t) > 0 && float64(nonASCII)/float64(len([]rune(t))) > 0.3:
		return "mgsm"
	case strings.Contains(t, "$") && strings.Contains(t, "\\") || strings.Contains(t, "\\frac") || strings.Contains(t, "\\("):
		return "math"
	case !strings.ContainsAny(t, ".?!") && strings.Count(t, ",") >= 3:
		return "commongen"
	case len(t) > 700:
		return "reading"
	case hasDigits(t) && (strings.Contains(lower, "how many") || strings.Contains(lower, "how much") || strings.Contains(t, "$")) && len(t) > 120:
		return "gsm8k"
	case len(t) > 180:
		return "science-long"
	case len(t) > 0 && t[0] >= 'a' && t[0] <= 'z' && !strings.HasSuffix(t, "?"):
		return "nq"
	case strings.HasSuffix(t, "?") && hasInnerCapital(t):
		return "trivia-qa"
	default:
		return "commonsense-qa"
	}
}

func hasDigits(s string) bool {
	return strings.ContainsAny(s, "0123456789")
}

func hasInnerCapital(s string) bool {
	words := strings.Fields(s)
	for _, w := range words[1:] {
		if w[0] >= 'A' && w[0] <= 'Z' && w != "I" {
			return true
		}
	}
	return false
}

// hash64 is a stable hash for splits.
func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// RegressionSlice reports whether a row belongs to the slice that the
// shipped weights are NOT trained on, so that the regression test in
// router/auto can measure them honestly: 1 row in 20, by id.
func RegressionSlice(id string) bool { return hash64("slice/"+id)%20 == 0 }

// Models returns every model named in rows, sorted within each source, in
// source order routellm, routerbench, llmrouter, then any other.
func Models(rows []Row) []ModelSource {
	seen := map[string]string{}
	for _, r := range rows {
		for m := range r.Scores {
			if _, ok := seen[m]; !ok {
				seen[m] = r.Source
			}
		}
	}
	out := make([]ModelSource, 0, len(seen))
	for m, s := range seen {
		out = append(out, ModelSource{m, s})
	}
	order := map[string]int{"routellm": 0, "routerbench": 1, "llmrouter": 2}
	sort.Slice(out, func(i, j int) bool {
		oi, ok := order[out[i].Source]
		if !ok {
			oi = 3
		}
		oj, ok := order[out[j].Source]
		if !ok {
			oj = 3
		}
		if oi != oj {
			return oi < oj
		}
		return out[i].Model < out[j].Model
	})
	return out
}

// ModelSource is a model and the first source that measured it.
type ModelSource struct {
	Model, Source string
}
