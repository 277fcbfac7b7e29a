package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lumengw/lumen/guardrail"
	"github.com/lumengw/lumen/internal/credentials"
)

// Error lists every problem found in a configuration, each naming its field.
type Error struct {
	// File is the file the problems were found in; empty for inline YAML.
	File     string
	Problems []string
}

func (e *Error) Error() string {
	head := "invalid configuration"
	if e.File != "" {
		head += " in " + e.File
	}
	return head + ":\n  " + strings.Join(e.Problems, "\n  ")
}

// Load reads, checks and validates the configuration file at path. It
// returns warnings for LiteLLM settings Lumen accepts but does not
// implement; a non-nil error is an *Error listing every problem.
func Load(path string) (*Config, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, warnings, err := Parse(data)
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	if cfg != nil {
		cfg.resolvePaths(filepath.Dir(path))
	}
	return cfg, warnings, err
}

// resolvePaths makes the relative file paths of a config file (ledger.path,
// audit.path, audit.signing_key, audit.checkpoint_file) relative to the file's directory, so
// `lumen serve -c /etc/lumen/config.yaml` and `lumen keys -c …` find the
// same database from any working directory. The embedded config keeps them
// relative to the working directory.
func (c *Config) resolvePaths(dir string) {
	for _, p := range []*string{&c.Ledger.Path, &c.Audit.Path, &c.Audit.SigningKey, &c.Audit.CheckpointFile} {
		if *p != "" && !filepath.IsAbs(*p) && !strings.HasPrefix(*p, ":") && !strings.HasPrefix(*p, "file:") {
			*p = filepath.Join(dir, *p)
		}
	}
}

// Parse is Load for YAML already in memory.
func Parse(data []byte) (*Config, []string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, &Error{Problems: []string{"yaml: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	c := &checker{}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		if doc.Kind != yaml.MappingNode {
			return nil, nil, &Error{Problems: []string{"the file must be a YAML mapping with model_list and settings"}}
		}
		c.walk(doc, reflect.TypeOf(Config{}), "")
	}
	cfg := Default()
	if len(root.Content) > 0 {
		if err := root.Content[0].Decode(cfg); err != nil {
			return nil, c.warns, &Error{Problems: append(c.errs, credentials.Redact(err.Error()))}
		}
	}
	cfg.applyDefaults()
	warns := append(c.warns, cfg.warnings(c.present)...)
	// The checker's problems (the values it emptied) and Validate's, but
	// not Validate's about a field the checker already named.
	problems := c.errs
	for _, p := range cfg.Validate() {
		if !slices.ContainsFunc(c.errs, func(e string) bool { return samePath(e, p) }) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return nil, warns, &Error{Problems: problems}
	}
	return cfg, warns, nil
}

// samePath reports whether two problems ("path: message") name the same
// path, or one a path within the other.
func samePath(a, b string) bool {
	pa, _, _ := strings.Cut(a, ": ")
	pb, _, _ := strings.Cut(b, ": ")
	return strings.HasPrefix(pa, pb) || strings.HasPrefix(pb, pa)
}

// checker walks the YAML tree against the Config type.
type checker struct {
	errs, warns []string
	// present holds every key path the file sets, list indexes as [].
	present map[string]bool
}

var (
	durationType = reflect.TypeOf(Duration(0))
	hedgeType    = reflect.TypeOf(HedgeDelay{})
	byteSizeType = reflect.TypeOf(ByteSize(0))
	secretType   = reflect.TypeOf(Secret(""))
	modesType    = reflect.TypeOf(guardrail.Modes(nil))
)

func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch {
	case t == durationType || t == byteSizeType || t == hedgeType:
		c.scalar(n, t, path)
	case t == modesType && n.Kind == yaml.ScalarNode: // one mode or a list
		c.scalar(n, t, path)
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.bad(n, fmt.Sprintf("%s: must be a mapping, got %s", name(path), kind(n)))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			p := join(path, key)
			f, ok := fields[key]
			if ok {
				if c.present == nil {
					c.present = map[string]bool{}
				}
				c.present[indexRE.ReplaceAllString(p, "[]")] = true
			}
			if !ok {
				if msg, known := litellmOnly(p); known {
					if msg != "" {
						c.warns = append(c.warns, fmt.Sprintf("%s: %s", p, msg))
					}
					continue
				}
				c.errs = append(c.errs, fmt.Sprintf("%s: unknown key%s", p, suggest(key, fields)))
				continue
			}
			c.walk(val, f.Type, p)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.bad(n, fmt.Sprintf("%s: must be a list, got %s", name(path), kind(n)))
			return
		}
		for i, item := range n.Content {
			c.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.bad(n, fmt.Sprintf("%s: must be a mapping, got %s", name(path), kind(n)))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	case t.Kind() == reflect.Interface:
		// free-form value: nothing to check
	default:
		c.scalar(n, t, path)
	}
}

// scalar resolves env references in place and checks the value decodes.
func (c *checker) scalar(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.ScalarNode {
		c.bad(n, fmt.Sprintf("%s: must be a single value, got %s", path, kind(n)))
		return
	}
	if env, ok := strings.CutPrefix(n.Value, "os.environ/"); ok {
		v, set := os.LookupEnv(env)
		if !set {
			c.bad(n, fmt.Sprintf("%s: environment variable %s is not set", path, env))
			return
		}
		n.Value, n.Tag, n.Style = v, "!!str", yaml.DoubleQuotedStyle
		if t.Kind() != reflect.String || t == durationType || t == byteSizeType || t == hedgeType {
			n.Tag = "" // let numbers and booleans from the environment resolve
			n.Style = 0
		}
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		msg := err.Error()
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg = te.Errors[0]
			if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i > 0 {
				msg = msg[i+2:]
			}
		}
		c.bad(n, fmt.Sprintf("%s: %s", path, credentials.Redact(msg)))
	}
}

// bad records a problem with node n and empties n (a YAML null), so that
// the rest of the file still decodes and Validate can report its own
// problems too: one run lists every mistake.
func (c *checker) bad(n *yaml.Node, problem string) {
	c.errs = append(c.errs, problem)
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := make(map[string]reflect.StructField, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			out[tag] = f
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func name(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		// A value in the wrong place may be a URL with its password.
		return fmt.Sprintf("%q", credentials.Redact(n.Value))
	}
}

// suggest names the closest known key, for typos.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3
	for k := range fields {
		if d := distance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// litellmKeys are LiteLLM settings Lumen accepts and ignores, with why (an
// empty why: accepted silently). Paths use [] for any list index.
var litellmKeys = map[string]string{
	"environment_variables":                             "not supported; set variables in Lumen's environment",
	"general_settings.alerting":                         "alerting is not implemented; ignored",
	"general_settings.proxy_batch_write_at":             "ignored; the ledger writer batches on its own",
	"general_settings.store_model_in_db":                "models come only from the config file; ignored",
	"general_settings.database_connection_pool_limit":   "ignored",
	"general_settings.disable_spend_logs":               "ignored; the ledger always records metadata",
	"litellm_settings.success_callback":                 "callbacks are not supported; Lumen logs one structured line per request",
	"litellm_settings.failure_callback":                 "callbacks are not supported; Lumen logs one structured line per request",
	"litellm_settings.callbacks":                        "callbacks are not supported; Lumen logs one structured line per request",
	"litellm_settings.set_verbose":                      "use log.level instead",
	"litellm_settings.json_logs":                        "use log.format instead",
	"litellm_settings.request_timeout":                  "use router_settings.timeout instead",
	"litellm_settings.num_retries":                      "use router_settings.num_retries instead",
	"litellm_settings.telemetry":                        "Lumen sends no telemetry",
	"router_settings.redis_host":                        "shared router state is not implemented yet; ignored",
	"router_settings.redis_port":                        "shared router state is not implemented yet; ignored",
	"router_settings.redis_password":                    "shared router state is not implemented yet; ignored",
	"router_settings.enable_pre_call_checks":            "Lumen always checks context windows it knows; ignored",
	"model_list[].litellm_params.organization":          "not sent upstream; use extra_headers with OpenAI-Organization",
	"model_list[].litellm_params.max_parallel_requests": "not implemented; ignored",
	"model_list[].params.organization":                  "not sent upstream; use extra_headers with OpenAI-Organization",
	"model_list[].model_info.description":               "informational",
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func litellmOnly(path string) (string, bool) {
	p := indexRE.ReplaceAllString(path, "[]")
	if msg, ok := litellmKeys[p]; ok {
		return msg, true
	}
	// model_info carries many informational flags in LiteLLM configs;
	// they are accepted silently.
	if strings.HasPrefix(p, "model_list[].model_info.supports_") {
		return "", true
	}
	return "", false
}

// UnmarshalYAML reads seconds (a number) or a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" || n.Tag == "!!float" {
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) {
			return fmt.Errorf("invalid duration %q: use seconds (60) or a duration (\"90s\")", n.Value)
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration reads a duration as the config file has it: seconds (60,
// 0.5) or a Go duration ("90s"), not negative. The LUMEN_* variables and
// flags that set durations read them so too.
func ParseDuration(s string) (Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && !math.IsInf(f, 0) {
		return Duration(f * float64(time.Second)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q: use seconds (60) or a duration (\"90s\")", s)
	}
	return Duration(v), nil
}

// UnmarshalYAML reads a delay (as Duration does) or a percentile "pNN".
func (d *HedgeDelay) UnmarshalYAML(n *yaml.Node) error {
	if v, ok := strings.CutPrefix(n.Value, "p"); ok {
		p, err := strconv.ParseFloat(v, 64)
		if err != nil || p < 50 || p >= 100 {
			return fmt.Errorf("invalid hedge delay %q: use seconds (0.5), a duration (\"250ms\") or a percentile of observed time to first byte (\"p95\", 50 to 99.9)", n.Value)
		}
		*d = HedgeDelay{Percentile: p}
		return nil
	}
	var dur Duration
	if err := dur.UnmarshalYAML(n); err != nil {
		return fmt.Errorf("invalid hedge delay %q: use seconds (0.5), a duration (\"250ms\") or a percentile of observed time to first byte (\"p95\")", n.Value)
	}
	*d = HedgeDelay{After: dur.D()}
	return nil
}

// UnmarshalYAML reads a byte count or a size with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseByteSize parses "268435456", "256MiB", "1GB", "512 KiB".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	f, err := strconv.ParseFloat(num, 64)
	mult, ok := map[string]float64{
		"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30,
	}[unit]
	if err != nil || !ok || f < 0 {
		return 0, fmt.Errorf("invalid size %q: use bytes or a unit, e.g. \"256MiB\"", s)
	}
	return ByteSize(f * mult), nil
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// Marshal renders cfg as YAML with secrets redacted, for `config show`.
func Marshal(cfg *Config) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	return buf.Bytes(), nil
}
