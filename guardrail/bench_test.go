package guardrail

import (
	"strings"
	"testing"
)

// benchGuards are the example config's pii guardrail: the pii and
// credentials bundles, 16 detectors.
func benchGuards(b *testing.B) []*Guard {
	g, err := Compile(Config{Name: "pii", Params: Params{Guardrail: "litellm_content_filter", Mode: Modes{"pre_call", "post_call"},
		Patterns: []Pattern{{Type: "prebuilt", Name: "pii", Action: "MASK"}, {Type: "prebuilt", Name: "credentials", Action: "BLOCK"}}}})
	if err != nil {
		b.Fatal(err)
	}
	return []*Guard{g}
}

// A chat request of about 2,000 tokens (8 KB of prose in a system prompt
// and two turns) with one e-mail address to mask.
func BenchmarkInput8KB(b *testing.B) {
	guards := benchGuards(b)
	prose := strings.Repeat("The quarterly report covers revenue, churn and the hiring plan for 2027. ", 36)
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"` + prose + `"},` +
		`{"role":"user","content":"` + prose + `"},{"role":"assistant","content":"Noted."},` +
		`{"role":"user","content":"` + prose + ` Send it to cfo@example.com."}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Input(guards, body); err != nil {
			b.Fatal(err)
		}
	}
}

// A streamed answer of 500 chunks of a few words each.
func BenchmarkStream500Chunks(b *testing.B) {
	guards := benchGuards(b)
	list := make([]string, 0, 501)
	for i := range 500 {
		list = append(list, chunk([]string{"The plan ", "covers revenue ", "and churn. "}[i%3], false))
	}
	list = append(list, chunk("", true))
	b.ReportAllocs()
	for b.Loop() {
		src := NewStream(guards, &events{list: list})
		for {
			if _, err := src.Recv(); err != nil {
				break
			}
		}
	}
}
