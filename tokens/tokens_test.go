package tokens

import "testing"

func TestCount(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"hello", 1},
		{"Hello, world!", 4},
		{"The quick brown fox", 4},
		{"12345", 2},
		{"你好世界", 4},
		{"internationalization", 4},
		{"func main() {}", 6},
	}
	for _, tt := range tests {
		if got := Count(tt.in); got != tt.want {
			t.Errorf("Count(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestPrompt(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"hello there"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}`)
	// 3 request + 2*4 message overhead + "Be brief." (1+1+1=3) + "hello there" (1+1=2) + image 765
	if got, want := Prompt(body), 3+8+3+2+765; got != want {
		t.Fatalf("Prompt = %d, want %d", got, want)
	}
	if got := Prompt([]byte(`{"input":["ab","cd"]}`)); got != 2 {
		t.Fatalf("embedding input = %d, want 2", got)
	}
}

func BenchmarkCount(b *testing.B) {
	s := "The request hot path does no disk I/O and no needless allocation: ledger and audit writes are batched off the path. "
	b.ReportAllocs()
	for b.Loop() {
		Count(s)
	}
}
