package guardrail

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"gopkg.in/yaml.v3"
)

func mustSet(t *testing.T, src string) *Set {
	t.Helper()
	var list []Config
	if err := yaml.Unmarshal([]byte(src), &list); err != nil {
		t.Fatal(err)
	}
	if p := Validate(list, nil); len(p) > 0 {
		t.Fatalf("validate: %v", p)
	}
	s, err := NewSet(list)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const testConfig = `
- guardrail_name: pii
  litellm_params:
    guardrail: litellm_content_filter
    mode: [pre_call, post_call]
    default_on: true
    patterns:
      - {pattern_type: prebuilt, pattern_name: email, action: MASK}
      - {pattern_type: prebuilt, pattern_name: credit_card, action: MASK}
      - {pattern_type: prebuilt, pattern_name: us_ssn, action: BLOCK}
- guardrail_name: secrets
  litellm_params:
    guardrail: litellm_content_filter
    mode: pre_call
    patterns:
      - {pattern_type: prebuilt, pattern_name: credentials}
      - {pattern_type: regex, pattern: 'EMP-\d{6}', name: employee_id, action: MASK}
    blocked_words:
      - {keyword: project falcon, action: BLOCK, description: unreleased product}
`

func TestValidateNamesTheField(t *testing.T) {
	var list []Config
	src := `
- guardrail_name: a
  litellm_params: {guardrail: presidio, mode: pre_call, patterns: [{pattern_name: email}]}
- guardrail_name: a
  litellm_params:
    guardrail: litellm_content_filter
    mode: [pre_call, sometimes]
    patterns:
      - {pattern_type: prebuilt, pattern_name: emails}
      - {pattern_type: regex, pattern: '(?<=x)y'}
      - {pattern_type: regex, pattern: 'x', action: REDACT}
    blocked_words: [{keyword: ' '}]
- guardrail_name: b
  litellm_params: {guardrail: content_filter}
- guardrail_name: m1
  litellm_params: {guardrail: openai_moderation, mode: [pre_call, post_call], patterns: [{pattern_name: email}]}
- guardrail_name: m2
  litellm_params: {guardrail: openai_moderation, mode: pre_call, model: nosuch}
- guardrail_name: m3
  litellm_params: {guardrail: openai_moderation, mode: during_call, model: mod}
`
	if err := yaml.Unmarshal([]byte(src), &list); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(Validate(list, map[string]bool{"mod": true}), "\n")
	for _, want := range []string{
		`guardrails[0].litellm_params.guardrail: "presidio" is not a guardrail Lumen runs`,
		`guardrails[1].guardrail_name: "a" is already the name of guardrails[0]`,
		`guardrails[1].litellm_params.mode: unknown mode "sometimes"`,
		`guardrails[1].litellm_params.patterns[0].pattern_name: unknown prebuilt pattern "emails"`,
		`guardrails[1].litellm_params.patterns[1].pattern: not a valid regular expression`,
		`guardrails[1].litellm_params.patterns[2].action: unknown action "REDACT"`,
		`guardrails[1].litellm_params.blocked_words[0].keyword: required`,
		`guardrails[2].litellm_params.mode: required`,
		`guardrails[2].litellm_params: a content filter needs patterns or blocked_words`,
		`guardrails[3].litellm_params.model: required: the model group that answers /v1/moderations`,
		`guardrails[3].litellm_params.mode: a moderation guardrail checks requests: use pre_call or during_call`,
		`guardrails[3].litellm_params: patterns and blocked_words belong to a litellm_content_filter guardrail`,
		`guardrails[4].litellm_params.model: unknown model group "nosuch"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "guardrails[5]") {
		t.Errorf("a valid moderation guardrail was refused:\n%s", got)
	}
}

func TestFlagged(t *testing.T) {
	answer := []byte(`{"results":[{"flagged":false,"categories":{"violence":false}},` +
		`{"flagged":true,"categories":{"violence":true,"harassment":true,"self-harm":false}},{"flagged":true,"categories":{}}]}`)
	for cats, want := range map[string]string{"": "violence,harassment,flagged", "self-harm": "", "harassment,self-harm": "harassment"} {
		var filter []string
		if cats != "" {
			filter = strings.Split(cats, ",")
		}
		got, err := Flagged(answer, filter)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("categories %q: %v %v, want %s", cats, got, err, want)
		}
	}
	if _, err := Flagged([]byte(`{"error":{}}`), nil); err == nil {
		t.Error("an answer without results is not an error")
	}
}

func TestDetectors(t *testing.T) {
	cases := []struct {
		name, text string
		want       bool
	}{
		{"email", "write to jane.doe+x@example.co.uk today", true},
		{"email", "no at sign here", false},
		{"us_ssn", "SSN 123-45-6789", true},
		{"us_ssn", "SSN 000-45-6789", false}, // never issued
		{"us_ssn", "SSN 666-45-6789", false},
		{"credit_card", "card 4111 1111 1111 1111 exp", true},
		{"credit_card", "card 4111-1111-1111-1112", false}, // Luhn fails
		{"credit_card", "order 1234567890123456", false},   // no network starts with 1
		{"credit_card", "amex 378282246310005", true},
		{"iban", "IBAN GB82 WEST 1234 5698 7654 32", true},
		{"iban", "IBAN GB83 WEST 1234 5698 7654 32", false}, // mod-97 fails
		{"us_phone", "call (415) 555-0132", true},
		{"ipv4", "host 10.0.12.255 up", true},
		{"ipv4", "version 1.2.3", false},
		{"aws_access_key", "AKIAIOSFODNN7EXAMPLE", true},
		{"github_token", "ghp_" + strings.Repeat("a", 36), true},
		{"openai_key", "key sk-proj-" + strings.Repeat("Ab1", 10), true},
		{"anthropic_key", "sk-ant-api03-" + strings.Repeat("x", 30), true},
		{"lumen_key", "key lumen-sk-" + testLumenSecret, true},
		{"lumen_key", "key token_lumen-sk-" + testLumenSecret + ".", true},
		{"lumen_key", "shown as lumen-sk-0a1B", false}, // the display prefix is no secret
		{"lumen_key", "key lumen-sk-" + testLumenSecret[:42], false},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTYifQ.SflKxwRJSMeKKF2QT4fwpMeJf36", true},
		{"private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", true},
		{"generic_api_key", `api_key = "abcdef0123456789xyz"`, true},
		{"generic_api_key", `the api key is in the vault`, false},
	}
	for _, c := range cases {
		g, err := Compile(Config{Name: "t", Params: Params{Guardrail: "content_filter", Mode: Modes{"pre_call"},
			Patterns: []Pattern{{Type: "prebuilt", Name: c.name, Action: "MASK"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(g.find(c.text)) > 0; got != c.want {
			t.Errorf("%s on %q: found %v, want %v", c.name, c.text, got, c.want)
		}
	}
}

// testLumenSecret is the 43 base62 digits after a virtual key's
// "lumen-sk-" (ledger.KeyPrefix).
const testLumenSecret = "0aZ9bY8cX7dW6eV5fU4gT3hS2iR1jQ0kP9lO8mN7oM6"

// A Lumen virtual key is masked whole, "lumen-" included, by lumen_key
// (alone or in the credentials bundle) and by openai_key, whose sk-
// pattern it also fits; where both run, it is named lumen_key.
func TestLumenKeyMaskedWhole(t *testing.T) {
	key := "lumen-sk-" + testLumenSecret
	for _, c := range []struct {
		pattern, text, want, rule string
	}{
		{"lumen_key", "use " + key + " now", "use [LUMEN_KEY_REDACTED] now", "lumen_key"},
		{"credentials", "use " + key + " now", "use [LUMEN_KEY_REDACTED] now", "lumen_key"},
		{"credentials", `{"auth":"Bearer ` + key + `"}`, `{"auth":"Bearer [LUMEN_KEY_REDACTED]"}`, "lumen_key"},
		{"openai_key", "use " + key + " now", "use [OPENAI_KEY_REDACTED] now", "openai_key"},
		{"openai_key", "token_" + key, "token_[OPENAI_KEY_REDACTED]", "openai_key"},
		{"credentials", "token_" + key, "token_[LUMEN_KEY_REDACTED]", "lumen_key"},
	} {
		g, err := Compile(Config{Name: "t", Params: Params{Guardrail: "content_filter", Mode: Modes{"pre_call"},
			Patterns: []Pattern{{Type: "prebuilt", Name: c.pattern, Action: "MASK"}}}})
		if err != nil {
			t.Fatal(err)
		}
		for range 5 { // sort order of equal findings must not vary
			got, hits, err := InputText([]*Guard{g}, c.text, "input")
			if err != nil || got != c.want || len(hits) != 1 || hits[0].Rule != c.rule {
				t.Fatalf("%s on %q: %q %+v %v, want %q by %s", c.pattern, c.text, got, hits, err, c.want, c.rule)
			}
		}
	}
	g, err := Compile(Config{Name: "secrets", Params: Params{Guardrail: "content_filter", Mode: Modes{"pre_call"},
		Patterns: []Pattern{{Type: "prebuilt", Name: "credentials", Action: "BLOCK"}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = InputText([]*Guard{g}, "my key is "+key, "messages[0].content")
	if err == nil || err.Error() != `guardrail "secrets" blocked the request: pattern "lumen_key" detected in messages[0].content` {
		t.Fatalf("block: %v", err)
	}
}

func TestInputMasksTextOnly(t *testing.T) {
	s := mustSet(t, testConfig)
	guards, err := s.Select(nil)
	if err != nil || len(guards) != 1 || guards[0].Name != "pii" {
		t.Fatalf("default guards: %v %v", guards, err)
	}
	body := `{"model":"m","messages":[{"role":"system","content":"Reply to ops@example.com"},` +
		`{"role":"user","content":[{"type":"text","text":"my card is 4111 1111 1111 1111"},` +
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,am9lQGV4YW1wbGUuY29t"}}]},` +
		`{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"mail","arguments":"{\"to\":\"bob@example.com\"}"}}]}],` +
		`"user":"carol@example.com"}`
	out, hits, err := Input(guards, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !gjson.ValidBytes(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	if got := gjson.GetBytes(out, "messages.0.content").Str; got != "Reply to [EMAIL_REDACTED]" {
		t.Errorf("system: %q", got)
	}
	if got := gjson.GetBytes(out, "messages.1.content.0.text").Str; got != "my card is [CREDIT_CARD_REDACTED]" {
		t.Errorf("part: %q", got)
	}
	// Not text: image data, tool arguments, the user field.
	for _, path := range []string{"messages.1.content.1.image_url.url", "messages.2.tool_calls.0.function.arguments", "user"} {
		if gjson.GetBytes(out, path).Str != gjson.Get(body, path).Str {
			t.Errorf("%s changed: %s", path, gjson.GetBytes(out, path).Str)
		}
	}
	if len(hits) != 2 || hits[0].Rule != "email" || hits[1].Rule != "credit_card" || hits[0].Action != Mask {
		t.Errorf("hits %+v", hits)
	}
}

func TestInputBlocksNamingTheField(t *testing.T) {
	s := mustSet(t, testConfig)
	guards, err := s.Select([]string{"secrets"})
	if err != nil || len(guards) != 2 {
		t.Fatalf("%v %v", guards, err)
	}
	for body, want := range map[string]string{
		`{"messages":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"text","text":"SSN 123-45-6789"}]}]}`: `guardrail "pii" blocked the request: pattern "us_ssn" detected in messages[1].content[0].text`,
		`{"system":[{"type":"text","text":"About Project  Falcon"}],"messages":[]}`:                                         `guardrail "secrets" blocked the request: blocked word "project falcon" (unreleased product) detected in system[0].text`,
		`{"input":"deploy with AKIAIOSFODNN7EXAMPLE"}`:                                                                      `guardrail "secrets" blocked the request: pattern "aws_access_key" detected in input`,
	} {
		_, _, err := Input(guards, []byte(body))
		var be *BlockedError
		if !errors.As(err, &be) || err.Error() != want {
			t.Errorf("%s:\n got %v\nwant %s", body, err, want)
		}
		if strings.Contains(err.Error(), "6789") || strings.Contains(err.Error(), "AKIA") {
			t.Errorf("the error repeats the match: %v", err)
		}
	}
	// pre_call only: answers pass.
	out, _, err := Output(guards[1:], []byte(`{"choices":[{"message":{"content":"EMP-123456"}}]}`))
	if err != nil || !strings.Contains(string(out), "EMP-123456") {
		t.Errorf("a pre_call guard checked an answer: %s %v", out, err)
	}
	if _, err := s.Select([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "available: pii, secrets") {
		t.Errorf("unknown guard: %v", err)
	}
}

func TestOutputMasksAnswers(t *testing.T) {
	s := mustSet(t, testConfig)
	guards, _ := s.Select(nil)
	for body, path := range map[string]string{
		`{"choices":[{"index":0,"message":{"role":"assistant","content":"mail x@y.io"}}]}`:                            "choices.0.message.content",
		`{"type":"message","content":[{"type":"text","text":"mail x@y.io"}]}`:                                         "content.0.text",
		`{"object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"mail x@y.io"}]}]}`: "output.0.content.0.text",
	} {
		out, _, err := Output(guards, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(out, path).Str; got != "mail [EMAIL_REDACTED]" {
			t.Errorf("%s: %q", body, got)
		}
	}
}

// events is a Source of fixed events.
type events struct{ list []string }

func (e *events) Recv() ([]byte, error) {
	if len(e.list) == 0 {
		return nil, io.EOF
	}
	d := e.list[0]
	e.list = e.list[1:]
	return []byte(d), nil
}
func (e *events) Close() error { return nil }

func drain(t *testing.T, src Source) ([]string, error) {
	t.Helper()
	var out []string
	for {
		d, err := src.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, string(d))
	}
}

func chunk(content string, finish bool) string {
	fr := "null"
	if finish {
		fr = `"stop"`
	}
	return `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":` + quote(content) + `},"finish_reason":` + fr + `}]}`
}

func TestStreamMasksAcrossChunks(t *testing.T) {
	s := mustSet(t, testConfig)
	guards, _ := s.Select(nil)
	long := strings.Repeat("word ", 20)
	src := &events{list: []string{chunk(long+"mail bob@exa", false), chunk("mple.com and ", false), chunk("card 4111 1111 ", false), chunk("1111 1111 thanks", false), chunk("", true)}}
	out, err := drain(t, NewStream(guards, src))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for i, e := range out {
		c := gjson.Get(e, "choices.0.delta.content").Str
		if strings.Contains(c, "bob") || strings.Contains(c, "4111") {
			t.Errorf("event %d sent part of a match: %q", i, c)
		}
		text.WriteString(c)
	}
	if want := long + "mail [EMAIL_REDACTED] and card [CREDIT_CARD_REDACTED] thanks"; text.String() != want {
		t.Errorf("text:\n got %q\nwant %q", text.String(), want)
	}
	// Only the word being written is held.
	if first := gjson.Get(out[0], "choices.0.delta.content").Str; first != long+"mail " {
		t.Errorf("first event released %q", first)
	}
}

func TestStreamTailWithoutFinish(t *testing.T) {
	s := mustSet(t, testConfig)
	guards, _ := s.Select(nil)
	out, err := drain(t, NewStream(guards, &events{list: []string{chunk("hi x@y.io", false)}}))
	if err != nil || len(out) != 2 {
		t.Fatalf("%v %v", out, err)
	}
	if got := gjson.Get(out[0], "choices.0.delta.content").Str + gjson.Get(out[1], "choices.0.delta.content").Str; got != "hi [EMAIL_REDACTED]" || gjson.Get(out[1], "id").Str != "c1" {
		t.Errorf("tail %q, %s", got, out[1])
	}
}

// Each kind of pattern holds back only what could still grow into a
// match: the word being written, a trailing number, the last k words of
// a phrase, an unclosed private key, the last Holdback bytes of a custom
// regex.
func TestStreamHoldsBackLittle(t *testing.T) {
	prose := strings.Repeat("plain words here ", 10)
	for _, c := range []struct {
		pattern, text, held string
	}{
		{`{pattern_name: email}`, prose + "write to bob@exa", "bob@exa"},
		{`{pattern_name: credit_card}`, prose + "card 4111 1111 11", "4111 1111 11"},
		{`{pattern_name: iban}`, prose + "iban GB82 WEST 12", "GB82 WEST 12"},
		{`{pattern_name: private_key}`, prose + "-----BEGIN RSA PRIVATE KEY-----\nMIIEow", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow"},
		{`{pattern_name: generic_api_key}`, prose + "api_key = 'abc", "api_key = 'abc"},
		{`{pattern_name: generic_api_key}`, prose + "the key is", "is"},
		{`{pattern_name: generic_api_key}`, prose + "set api_key ", "api_key "},
		{`{pattern_type: regex, pattern: 'EMP-\d+'}`, prose + "id", (prose + "id")[len(prose)+2-Holdback:]},
	} {
		s := mustSet(t, "- {guardrail_name: g, litellm_params: {guardrail: content_filter, mode: post_call, default_on: true, patterns: ["+c.pattern+"]}}")
		guards, _ := s.Select(nil)
		st := NewStream(guards, &events{list: []string{chunk(c.text, false)}})
		first, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(first, "choices.0.delta.content").Str; got+c.held != c.text {
			t.Errorf("%s: released %q, want all but %q", c.pattern, got, c.held)
		}
	}
	s := mustSet(t, "- {guardrail_name: g, litellm_params: {guardrail: content_filter, mode: post_call, blocked_words: [{keyword: project falcon}]}}")
	guards, _ := s.Select([]string{"g"})
	first, _ := NewStream(guards, &events{list: []string{chunk(prose+"the project fal", false)}}).Recv()
	if got := gjson.GetBytes(first, "choices.0.delta.content").Str; got != prose+"the " {
		t.Errorf("phrase: released %q", got)
	}
}

func TestStreamBlocksBeforeSending(t *testing.T) {
	s := mustSet(t, testConfig)
	guards, _ := s.Select(nil)
	out, err := drain(t, NewStream(guards, &events{list: []string{chunk("fine so far. ", false), chunk("SSN 123-45-", false), chunk("6789", false), chunk("", true)}}))
	var be *BlockedError
	if !errors.As(err, &be) || !be.Output || be.Guard != "pii" {
		t.Fatalf("err %v", err)
	}
	for _, e := range out {
		if strings.Contains(e, "123-45") {
			t.Errorf("sent %s", e)
		}
	}
}

func TestStreamAnthropicAndResponsesEvents(t *testing.T) {
	s := mustSet(t, testConfig)
	guards, _ := s.Select(nil)
	out, err := drain(t, NewStream(guards, &events{list: []string{
		`{"type":"message_start","message":{"id":"m1","content":[]}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"reach me at a@b.co"}}`,
		`{"type":"content_block_stop","index":0}`,
		`{"type":"message_stop"}`,
	}}))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, e := range out {
		text.WriteString(gjson.Get(e, "delta.text").Str)
	}
	if text.String() != "reach me at [EMAIL_REDACTED]" || gjson.Get(out[4], "type").Str != "content_block_stop" {
		t.Errorf("anthropic: %q %v", text.String(), out)
	}

	out, err = drain(t, NewStream(guards, &events{list: []string{
		`{"type":"response.output_text.delta","sequence_number":4,"item_id":"i1","output_index":0,"content_index":0,"delta":"mail a@b.co"}`,
		`{"type":"response.output_text.done","sequence_number":5,"item_id":"i1","output_index":0,"content_index":0,"text":"mail a@b.co"}`,
		`{"type":"response.completed","sequence_number":6,"response":{"output":[{"type":"message","content":[{"type":"output_text","text":"mail a@b.co"}]}]}}`,
	}}))
	if err != nil {
		t.Fatal(err)
	}
	text.Reset()
	for i, e := range out {
		if n := gjson.Get(e, "sequence_number").Int(); n != int64(4+i) {
			t.Errorf("event %d has sequence_number %d", i, n)
		}
		text.WriteString(gjson.Get(e, "delta").Str)
	}
	if text.String() != "mail [EMAIL_REDACTED]" || len(out) != 4 {
		t.Errorf("responses deltas %q (%d events)", text.String(), len(out))
	}
	if gjson.Get(out[2], "text").Str != "mail [EMAIL_REDACTED]" || gjson.Get(out[3], "response.output.0.content.0.text").Str != "mail [EMAIL_REDACTED]" {
		t.Errorf("done events: %s / %s", out[2], out[3])
	}
}

func TestLoggedMasksWhatWouldBlock(t *testing.T) {
	s := mustSet(t, `
- guardrail_name: logs
  litellm_params: {guardrail: litellm_content_filter, mode: logging_only, default_on: true, patterns: [{pattern_name: us_ssn, action: BLOCK}]}
`)
	guards, _ := s.Select(nil)
	body := []byte(`{"messages":[{"role":"user","content":"SSN 123-45-6789"}]}`)
	if out, hits, err := Input(guards, body); err != nil || string(out) != string(body) || len(hits) != 0 {
		t.Errorf("a logging_only guard checked the request: %s %v %v", out, hits, err)
	}
	out, hits := Logged(guards, body)
	if gjson.GetBytes(out, "messages.0.content").Str != "SSN [US_SSN_REDACTED]" || len(hits) != 1 || hits[0].Action != Mask {
		t.Errorf("logged %s %+v", out, hits)
	}
}

// A Responses stream that ends without output_text.done still gets the
// text it held, in a delta event numbered after the last one.
func TestStreamResponsesTailAtEOF(t *testing.T) {
	s := mustSet(t, testConfig)
	guards, _ := s.Select(nil)
	out, err := drain(t, NewStream(guards, &events{list: []string{
		`{"type":"response.output_text.delta","sequence_number":7,"item_id":"i1","output_index":0,"content_index":0,"delta":"mail a@b.co"}`,
	}}))
	if err != nil || len(out) != 2 {
		t.Fatalf("%v %v", out, err)
	}
	if got := gjson.Get(out[0], "delta").Str + gjson.Get(out[1], "delta").Str; got != "mail [EMAIL_REDACTED]" ||
		gjson.Get(out[1], "sequence_number").Int() != 8 || gjson.Get(out[1], "item_id").Str != "i1" {
		t.Errorf("tail %q: %s", got, out[1])
	}
}
