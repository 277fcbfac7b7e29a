package loop

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestStep(t *testing.T) {
	var logs bytes.Buffer
	log := zerolog.New(&logs)
	ran := false
	if Step(log, "quiet", func() { ran = true }) || !ran || logs.Len() != 0 {
		t.Fatalf("a step that returns: ran %v, log %q", ran, logs.String())
	}
	if !Step(log, "saving spend", func() { panic("boom") }) {
		t.Fatal("a panic was not reported")
	}
	var line struct{ Level, Loop, Panic, Stack, Message string }
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("%v: %q", err, logs.String())
	}
	if line.Level != "error" || line.Loop != "saving spend" || line.Panic != "boom" ||
		!strings.Contains(line.Stack, "loop.TestStep") || !strings.Contains(line.Message, "goes on") {
		t.Fatalf("log line %+v", line)
	}
}
