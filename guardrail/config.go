package guardrail

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is one entry of the config file's guardrails list, in LiteLLM's
// shape:
//
//	guardrails:
//	  - guardrail_name: pii
//	    litellm_params:
//	      guardrail: litellm_content_filter
//	      mode: [pre_call, post_call]
//	      default_on: true
//	      patterns:
//	        - {pattern_type: prebuilt, pattern_name: email, action: MASK}
//	      blocked_words:
//	        - {keyword: project falcon, action: BLOCK}
type Config struct {
	Name   string `yaml:"guardrail_name"`
	Params Params `yaml:"litellm_params"`
	// Info is free-form, shown by GET /guardrails/list (LiteLLM's
	// guardrail_info).
	Info map[string]any `yaml:"guardrail_info"`
}

// Params say what a guardrail looks for, when, and what it does.
type Params struct {
	// Guardrail is the kind: litellm_content_filter (also content_filter),
	// Lumen's built-in pattern and keyword filter.
	Guardrail string `yaml:"guardrail"`
	// Mode is when it runs: pre_call (the request, before any upstream
	// call), post_call (the answer), during_call (the request: a content
	// filter as pre_call, it takes microseconds; a moderation call runs
	// beside the upstream call, whose answer waits for its verdict),
	// logging_only (what the ledger and the audit log keep of the request
	// and the answer is masked; the upstream and the client see them
	// whole), or a list of them.
	Mode Modes `yaml:"mode"`
	// DefaultOn runs it on every request; otherwise only on requests that
	// name it in "guardrails".
	DefaultOn bool `yaml:"default_on"`
	// Patterns are prebuilt detectors (pattern_type: prebuilt,
	// pattern_name) or regular expressions (pattern_type: regex, pattern,
	// name).
	Patterns []Pattern `yaml:"patterns"`
	// BlockedWords are words or phrases, matched whole and regardless of
	// case.
	BlockedWords []Word `yaml:"blocked_words"`
	// Model is the model group an openai_moderation guardrail asks: a
	// model_list entry whose upstream answers /v1/moderations
	// (omni-moderation-latest).
	Model string `yaml:"model"`
	// Categories are the moderation categories that block (harassment,
	// violence, self-harm …); empty means any category the model flags.
	Categories []string `yaml:"categories"`
}

// Pattern is one detector of Params.Patterns.
type Pattern struct {
	Type  string `yaml:"pattern_type"`
	Name  string `yaml:"pattern_name"`
	Regex string `yaml:"pattern"`
	// Label names a regex in errors and masks (LiteLLM's name).
	Label  string `yaml:"name"`
	Action string `yaml:"action"`
}

// Word is one entry of Params.BlockedWords.
type Word struct {
	Keyword     string `yaml:"keyword"`
	Action      string `yaml:"action"`
	Description string `yaml:"description"`
}

// Modes is a mode or a list of modes.
type Modes []string

// UnmarshalYAML reads one mode or a list.
func (m *Modes) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*m = Modes{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*m = list
	return nil
}

// Kinds are the guardrail kinds Lumen runs: the content filter, and a
// moderation model asked about each request.
var Kinds = []string{"litellm_content_filter", "content_filter", "openai_moderation"}

// Moderation reports whether a guardrail kind asks a moderation model.
func Moderation(kind string) bool { return kind == "openai_moderation" }

var modeNames = []string{"pre_call", "post_call", "during_call", "logging_only"}

// Validate reports the problems of a guardrails list, each naming its
// field ("guardrails[0].litellm_params.patterns[1].pattern: …"). groups
// are the config's model groups (a moderation guardrail names one).
func Validate(list []Config, groups map[string]bool) []string {
	var p []string
	add := func(field, format string, args ...any) {
		p = append(p, field+": "+fmt.Sprintf(format, args...))
	}
	names := map[string]string{}
	for i := range list {
		c := &list[i]
		at := fmt.Sprintf("guardrails[%d]", i)
		switch prev, dup := names[c.Name]; {
		case strings.TrimSpace(c.Name) == "":
			add(at+".guardrail_name", "required: the name requests give in \"guardrails\"")
		case dup:
			add(at+".guardrail_name", "%q is already the name of %s", c.Name, prev)
		}
		names[c.Name] = at
		at += ".litellm_params"
		pp := &c.Params
		if !slices.Contains(Kinds, pp.Guardrail) {
			add(at+".guardrail", "%q is not a guardrail Lumen runs; use litellm_content_filter (patterns and blocked_words, checked in-process) or openai_moderation (a moderation model group)", pp.Guardrail)
		}
		if len(pp.Mode) == 0 {
			add(at+".mode", "required: pre_call, post_call or during_call, or a list of them")
		}
		for _, m := range pp.Mode {
			if !slices.Contains(modeNames, m) {
				add(at+".mode", "unknown mode %q; use pre_call, post_call, during_call or logging_only", m)
			}
		}
		if Moderation(pp.Guardrail) {
			switch {
			case pp.Model == "":
				add(at+".model", "required: the model group that answers /v1/moderations")
			case !groups[pp.Model]:
				add(at+".model", "unknown model group %q", pp.Model)
			}
			if slices.Contains(pp.Mode, "post_call") || slices.Contains(pp.Mode, "logging_only") {
				add(at+".mode", "a moderation guardrail checks requests: use pre_call or during_call")
			}
			if len(pp.Patterns) > 0 || len(pp.BlockedWords) > 0 {
				add(at, "patterns and blocked_words belong to a litellm_content_filter guardrail, not to openai_moderation")
			}
			continue
		}
		if len(pp.Patterns) == 0 && len(pp.BlockedWords) == 0 {
			add(at, "a content filter needs patterns or blocked_words")
		}
		for j, pt := range pp.Patterns {
			pat := fmt.Sprintf("%s.patterns[%d]", at, j)
			if _, err := ParseAction(pt.Action); err != nil {
				add(pat+".action", "%v", err)
			}
			switch pt.Type {
			case "prebuilt", "":
				if _, ok := prebuilt(pt.Name); !ok {
					add(pat+".pattern_name", "unknown prebuilt pattern %q; use one of %s", pt.Name, strings.Join(PrebuiltNames(), ", "))
				}
			case "regex":
				if pt.Regex == "" {
					add(pat+".pattern", "required for pattern_type regex")
				} else if _, err := regexp.Compile(pt.Regex); err != nil {
					add(pat+".pattern", "not a valid regular expression (Go RE2 syntax: no lookarounds or backreferences): %v", err)
				}
			default:
				add(pat+".pattern_type", "unknown pattern_type %q; use prebuilt or regex", pt.Type)
			}
		}
		for j, w := range pp.BlockedWords {
			bw := fmt.Sprintf("%s.blocked_words[%d]", at, j)
			if strings.TrimSpace(w.Keyword) == "" {
				add(bw+".keyword", "required: the word or phrase to look for")
			}
			if _, err := ParseAction(w.Action); err != nil {
				add(bw+".action", "%v", err)
			}
		}
	}
	return p
}
