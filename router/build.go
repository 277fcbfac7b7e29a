package router

import (
	"fmt"
	"strings"

	"github.com/lumengw/lumen/config"
	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/providers/anthropic"
	"github.com/lumengw/lumen/providers/bedrock"
	"github.com/lumengw/lumen/providers/gemini"
	"github.com/lumengw/lumen/providers/mock"
	"github.com/lumengw/lumen/providers/openai"
)

// Build is the Builder for every provider compiled into Lumen.
func Build(cfg providers.Config) (providers.Provider, error) {
	switch {
	case cfg.Provider == "mock":
		return mock.New(cfg)
	case cfg.Provider == "anthropic":
		return anthropic.New(cfg)
	case cfg.Provider == "gemini":
		return gemini.New(cfg)
	case cfg.Provider == "bedrock":
		return bedrock.New(cfg)
	case config.IsOpenAIShaped(cfg.Provider):
		return openai.New(cfg)
	default:
		return nil, fmt.Errorf("provider %q is not built into this version of Lumen (built in: mock, anthropic, gemini, bedrock, %s)",
			cfg.Provider, strings.Join(openaiShaped(), ", "))
	}
}

func openaiShaped() []string {
	var out []string
	for _, p := range config.KnownProviders() {
		if config.IsOpenAIShaped(p) {
			out = append(out, p)
		}
	}
	return out
}
