// Command lumen is a self-hosted LLM gateway with an OpenAI-compatible API.
package main

import (
	_ "embed"
	"os"

	"github.com/lumengw/lumen/cmd"
)

//go:embed config.example.yaml
var exampleConfig []byte

func main() { os.Exit(cmd.Main(exampleConfig)) }
