package mock

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
)

func TestChatEchoWithUsage(t *testing.T) {
	c, _ := New(providers.Config{Model: "demo"})
	resp, err := c.Do(context.Background(), &providers.Request{Body: []byte(`{"model":"demo","messages":[{"role":"user","content":"hello world"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Object  string
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		t.Fatal(err)
	}
	if out.Object != "chat.completion" || out.Choices[0].Message.Content != "Echo: hello world" || out.Choices[0].FinishReason != "stop" {
		t.Fatalf("unexpected body %s", resp.Body)
	}
	if out.Usage.CompletionTokens != resp.Usage.CompletionTokens || resp.Usage.CompletionTokens != 4 || resp.Usage.PromptTokens == 0 {
		t.Fatalf("usage %+v vs body %+v", resp.Usage, out.Usage)
	}
}

func TestStreamFraming(t *testing.T) {
	for _, op := range []providers.Op{providers.OpChat, providers.OpCompletion} {
		c, _ := New(providers.Config{Model: "demo", Mock: providers.MockConfig{Response: "one two three"}})
		s, err := c.DoStream(context.Background(), &providers.Request{Op: op, Stream: true, Body: []byte(`{"prompt":"x","messages":[]}`)})
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		var finish string
		var usage int
		for {
			b, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			var ch struct {
				Choices []struct {
					Text         string
					Delta        struct{ Content string }
					FinishReason *string `json:"finish_reason"`
				}
				Usage *struct {
					CompletionTokens int `json:"completion_tokens"`
				}
			}
			if err := json.Unmarshal(b, &ch); err != nil {
				t.Fatalf("chunk %s: %v", b, err)
			}
			for _, c := range ch.Choices {
				text.WriteString(c.Text + c.Delta.Content)
				if c.FinishReason != nil {
					finish = *c.FinishReason
				}
			}
			if ch.Usage != nil {
				usage = ch.Usage.CompletionTokens
			}
		}
		if text.String() != "one two three" || finish != "stop" || usage != 3 {
			t.Fatalf("op %v: text %q finish %q usage %d", op, text.String(), finish, usage)
		}
	}
}

func TestLatencyHonoursContext(t *testing.T) {
	c, _ := New(providers.Config{Model: "demo", Mock: providers.MockConfig{Latency: time.Hour}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, &providers.Request{Body: []byte(`{}`)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestFailureRate(t *testing.T) {
	c, _ := New(providers.Config{Model: "demo", Mock: providers.MockConfig{FailureRate: 1}})
	_, err := c.Do(context.Background(), &providers.Request{Body: []byte(`{}`)})
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 500 || !ue.Retryable {
		t.Fatalf("err = %v", err)
	}
}

func TestEmbeddingSimilarity(t *testing.T) {
	a, b, c := Vector("the cat sat", 64), Vector("the cat sat!", 64), Vector("quantum chromodynamics", 64)
	dot := func(x, y []float32) (s float32) {
		for i := range x {
			s += x[i] * y[i]
		}
		return
	}
	if dot(a, b) < 0.99 || dot(a, c) > 0.5 {
		t.Fatalf("similarities %v %v", dot(a, b), dot(a, c))
	}
}
