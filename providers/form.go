package providers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
)

// A multipart/form-data body (OpTranscription's, OpImageEdit's) is read and rewritten
// here, so that the server and the providers agree on it.

// Form is what Lumen reads of a multipart/form-data body: its text fields,
// the size of each file and the first file of each field.
type Form struct {
	Values map[string]string
	Files  map[string]int    // field name → bytes (summed over its parts: image[] may repeat)
	Data   map[string][]byte // field name → its first file's bytes
}

// boundary returns contentType's multipart boundary.
func boundary(contentType string) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return "", fmt.Errorf("the body must be multipart/form-data with a boundary, not %q", contentType)
	}
	return params["boundary"], nil
}

// ParseForm reads body, a multipart/form-data body of contentType.
func ParseForm(body []byte, contentType string) (Form, error) {
	b, err := boundary(contentType)
	if err != nil {
		return Form{}, err
	}
	f := Form{Values: map[string]string{}, Files: map[string]int{}, Data: map[string][]byte{}}
	r := multipart.NewReader(bytes.NewReader(body), b)
	for {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		if err != nil {
			return Form{}, fmt.Errorf("reading the multipart body: %w", err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return Form{}, fmt.Errorf("reading the multipart body: %w", err)
		}
		if p.FileName() != "" {
			f.Files[p.FormName()] += len(data)
			if _, ok := f.Data[p.FormName()]; !ok {
				f.Data[p.FormName()] = data
			}
		} else {
			f.Values[p.FormName()] = string(data)
		}
	}
}

// SetFormValue returns body with its text field name set to value, the
// other parts as they were, under the same boundary (so contentType still
// describes it).
func SetFormValue(body []byte, contentType, name, value string) ([]byte, error) {
	b, err := boundary(contentType)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w := multipart.NewWriter(&out)
	if err := w.SetBoundary(b); err != nil {
		return nil, fmt.Errorf("rewriting the multipart body: %w", err)
	}
	r := multipart.NewReader(bytes.NewReader(body), b)
	set := false
	for {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the multipart body: %w", err)
		}
		if p.FormName() == name && p.FileName() == "" {
			if err := w.WriteField(name, value); err != nil {
				return nil, fmt.Errorf("rewriting the multipart body: %w", err)
			}
			set = true
			continue
		}
		pw, err := w.CreatePart(p.Header)
		if err != nil {
			return nil, fmt.Errorf("rewriting the multipart body: %w", err)
		}
		if _, err := io.Copy(pw, p); err != nil {
			return nil, fmt.Errorf("rewriting the multipart body: %w", err)
		}
	}
	if !set {
		if err := w.WriteField(name, value); err != nil {
			return nil, fmt.Errorf("rewriting the multipart body: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("rewriting the multipart body: %w", err)
	}
	return out.Bytes(), nil
}
