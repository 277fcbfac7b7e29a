package providers

import (
	"regexp"
	"strconv"
	"strings"
)

// What Claude models accept differs by version; the Anthropic and Bedrock
// translators both need to know.

var (
	claudeFamily = regexp.MustCompile(`claude-(opus|sonnet|haiku)-(\d{1,2})(?:-(\d{1,2}))?(?:[-@.:]|$)`)
	claudeOld    = regexp.MustCompile(`claude-(\d)-(\d)-(opus|sonnet|haiku)`)
)

// ClaudeVersion returns model's family (opus, sonnet, haiku, fable,
// mythos) and version times ten (4.5 is 45, 5 is 50); "" and 0 for an id
// that is not a Claude model's.
func ClaudeVersion(model string) (string, int) {
	m := strings.ToLower(model)
	for _, f := range [...]string{"fable", "mythos"} {
		if strings.Contains(m, "claude-"+f) {
			return f, 50
		}
	}
	if g := claudeFamily.FindStringSubmatch(m); g != nil {
		major, _ := strconv.Atoi(g[2])
		minor, _ := strconv.Atoi(g[3])
		return g[1], major*10 + minor
	}
	if g := claudeOld.FindStringSubmatch(m); g != nil {
		major, _ := strconv.Atoi(g[1])
		minor, _ := strconv.Atoi(g[2])
		return g[3], major*10 + minor
	}
	return "", 0
}

// FixedSampling reports whether model refuses temperature, top_p and
// top_k set to anything but their defaults (a 400): Claude Opus 4.7 and
// later, Sonnet and Haiku 5 and later, Fable and Mythos.
func FixedSampling(model string) bool {
	f, v := ClaudeVersion(model)
	switch f {
	case "fable", "mythos":
		return true
	case "opus":
		return v >= 47
	case "sonnet", "haiku":
		return v >= 50
	}
	return false
}
