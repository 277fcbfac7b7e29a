package tokens

import (
	"encoding/base64"
	"strings"
	"testing"
)

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

// A file counts by what it holds: a PDF by its pages, text as text.
func TestFile(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	threePages := "%PDF-1.4\n1 0 obj <</Type /Pages /Kids [2 0 R 3 0 R 4 0 R] /Count 3>> endobj\n" +
		"2 0 obj <</Type /Page /Parent 1 0 R>> endobj\n3 0 obj <</Type/Page /Parent 1 0 R>> endobj\n4 0 obj <</Type /Page>> endobj\n%%EOF"
	compressed := "%PDF-1.5\n" + strings.Repeat("x", 120_000) // page objects inside compressed streams
	for _, tt := range []struct {
		name, data string
		want       int
	}{
		{"pdf pages", "data:application/pdf;base64," + b64(threePages), 3 * PDFPageTokens},
		{"pdf, pages not readable", "data:application/pdf;base64," + b64(compressed), 3 * PDFPageTokens},
		{"text", "data:text/plain;base64," + b64("Meeting moved to Tuesday."), Count("Meeting moved to Tuesday.")},
		{"file id, no data", "", PDFPageTokens},
	} {
		if got := File(tt.data); got != tt.want {
			t.Errorf("%s: File = %d, want %d", tt.name, got, tt.want)
		}
	}
	body := `{"messages":[{"role":"user","content":[{"type":"text","text":"Summarise."},{"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,` +
		b64(threePages) + `"}}]}]}`
	if got, want := Prompt([]byte(body)), perRequest+perMessage+Count("Summarise.")+3*PDFPageTokens; got != want {
		t.Errorf("Prompt with a PDF = %d, want %d", got, want)
	}
}
