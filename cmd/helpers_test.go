package cmd

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"
)

type rawResponse struct {
	status int
	header http.Header
	text   string
}

func (r rawResponse) json() map[string]any {
	var m map[string]any
	_ = json.Unmarshal([]byte(r.text), &m)
	return m
}

func rawPost(t *testing.T, l *lumen, path, key, body string) rawResponse {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, l.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return rawDo(t, req, key)
}

// rawForm POSTs a multipart body of fields and, unless data is nil, a file
// part named file (filename "upload") holding data.
func rawForm(t *testing.T, l *lumen, path, key string, fields map[string]string, file string, data []byte) rawResponse {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		w.WriteField(k, v)
	}
	if data != nil {
		fw, _ := w.CreateFormFile(file, "upload")
		fw.Write(data)
	}
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, l.URL+path, &b)
	req.Header.Set("Content-Type", w.FormDataContentType())
	return rawDo(t, req, key)
}

// rawDo sends req with key as a Bearer token (none when empty).
func rawDo(t *testing.T, req *http.Request, key string) rawResponse {
	t.Helper()
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, header: resp.Header, text: string(b)}
}

// rawGet reads base+path with key as a Bearer token (none when empty)
// and returns the body.
func rawGet(t *testing.T, base, path, key string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	return []byte(rawDo(t, req, key).text)
}

// waitFor polls cond for up to 10 s: for effects that land asynchronously
// (a log line after the response). It fails only if cond never holds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
