package providers

import (
	"bytes"
	"mime/multipart"
	"testing"
)

// SetFormValue replaces the model field and leaves the file, its headers
// and the other fields byte for byte; ParseForm reads them back.
func TestSetFormValue(t *testing.T) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	w.WriteField("model", "ears")
	fw, _ := w.CreateFormFile("file", "hello.wav")
	audio := []byte("RIFF\x00\x01\x02--not-a-boundary\r\n\xff")
	fw.Write(audio)
	w.WriteField("language", "fr")
	w.Close()
	ct := w.FormDataContentType()

	out, err := SetFormValue(b.Bytes(), ct, "model", "whisper-1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseForm(out, ct)
	if err != nil {
		t.Fatal(err)
	}
	if f.Values["model"] != "whisper-1" || f.Values["language"] != "fr" || f.Files["file"] != len(audio) ||
		!bytes.Contains(out, []byte(`filename="hello.wav"`)) || !bytes.Contains(out, audio) {
		t.Fatalf("form %+v\n%q", f, out)
	}
	// A body without the field gets it.
	out, err = SetFormValue(out, ct, "prompt", "names: Lumen")
	if f, _ := ParseForm(out, ct); err != nil || f.Values["prompt"] != "names: Lumen" || f.Values["model"] != "whisper-1" {
		t.Fatalf("added field: %+v %v", f, err)
	}
	if _, err := ParseForm([]byte(`{"model":"x"}`), "application/json"); err == nil {
		t.Error("a JSON body parsed as a form")
	}
}
