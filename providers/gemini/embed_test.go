package gemini

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"github.com/lumengw/lumen/providers"
	"github.com/lumengw/lumen/tokens"
)

// fakeEmbedder answers batchEmbedContents as
// https://ai.google.dev/api/embeddings documents it: one embedding per
// request, values of outputDimensionality length (default 3 here), the
// first the text's number when it is one, else the request's index. More
// than 100 requests is the 400 Google answers.
func fakeEmbedder(t *testing.T, got *[]byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1beta/models/gemini-embedding-001:batchEmbedContents" || r.Header.Get("X-Goog-Api-Key") != fakeKey {
			t.Errorf("fake gemini embed: %s %s key %q", r.Method, r.URL.Path, r.Header.Get("X-Goog-Api-Key"))
		}
		body, _ := io.ReadAll(r.Body)
		*got = body
		reqs := gjson.GetBytes(body, "requests").Array()
		if len(reqs) > 0 && reqs[0].Get("content.parts.0.text").Str == "fail" {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":{"code":429,"message":"Quota exceeded for quota metric 'Embed content requests'","status":"RESOURCE_EXHAUSTED"}}`)
			return
		}
		if len(reqs) > 100 {
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"code":400,"message":"* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n","status":"INVALID_ARGUMENT"}}`)
			return
		}
		var out []string
		for i, rq := range reqs {
			if rq.Get("model").Str != "models/gemini-embedding-001" {
				t.Errorf("fake gemini embed: request %d model %q", i, rq.Get("model").Str)
			}
			n := int(rq.Get("outputDimensionality").Int())
			if n == 0 {
				n = 3
			}
			first := float64(i)
			if v, err := strconv.Atoi(rq.Get("content.parts.0.text").Str); err == nil {
				first = float64(v)
			}
			vals := make([]float64, n)
			for j := range vals {
				vals[j] = first + float64(j)/4
			}
			b, _ := json.Marshal(vals)
			out = append(out, `{"values":`+string(b)+`}`)
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_, _ = io.WriteString(w, `{"embeddings":[`+strings.Join(out, ",")+`]}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestEmbeddings(t *testing.T) {
	var sent []byte
	srv := fakeEmbedder(t, &sent)
	c := newTestClient(t, srv.URL)
	embed := func(body string) (*providers.Response, error) {
		return c.Do(context.Background(), &providers.Request{Op: providers.OpEmbedding, Model: "gemini-embedding-001", Body: []byte(body)})
	}

	resp, err := embed(`{"model":"e","input":["hello world","second"],"dimensions":2}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(sent); got != `{"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"hello world"}]},"outputDimensionality":2},`+
		`{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"second"}]},"outputDimensionality":2}]}` {
		t.Errorf("sent %s", got)
	}
	var er openai.CreateEmbeddingResponse
	if err := json.Unmarshal(resp.Body, &er); err != nil {
		t.Fatalf("not an openai.CreateEmbeddingResponse: %v\n%s", err, resp.Body)
	}
	if er.Object != "list" || len(er.Data) != 2 || er.Data[1].Index != 1 || len(er.Data[1].Embedding) != 2 || er.Data[1].Embedding[1] != 1.25 {
		t.Errorf("answer = %s", resp.Body)
	}
	if resp.Usage.PromptTokens == 0 || er.Usage.PromptTokens != int64(resp.Usage.PromptTokens) {
		t.Errorf("usage %+v body %s: the estimate must be reported", resp.Usage, resp.Body)
	}

	resp, err = embed(`{"model":"e","input":"one","encoding_format":"base64"}`)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(gjson.GetBytes(resp.Body, "data.0.embedding").Str)
	if err != nil || len(raw) != 12 || math.Float32frombits(binary.LittleEndian.Uint32(raw[4:])) != 0.25 {
		t.Errorf("base64 embedding = %s (%v)", resp.Body, err)
	}

	_, err = embed(`{"model":"e","input":[[1,2,3]]}`)
	var ie *providers.InvalidRequestError
	if !errors.As(err, &ie) || ie.Param != "input" {
		t.Errorf("token input: err = %v, want a 400 on input", err)
	}

	_, err = embed(`{"model":"e","input":"fail"}`)
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 429 || !ue.Retryable {
		t.Errorf("quota error = %v", err)
	}
}

// OpenAI takes up to 2,048 inputs in one embeddings request (LangChain
// sends 1,000 at a time), batchEmbedContents 100: a larger request goes
// out in batches of 100 and its vectors come back in input order.
func TestEmbeddingsOverOneBatch(t *testing.T) {
	var sent []byte
	srv := fakeEmbedder(t, &sent)
	c := newTestClient(t, srv.URL)
	inputs := make([]string, 250)
	for i := range inputs {
		inputs[i] = strconv.Itoa(i)
	}
	body, _ := json.Marshal(map[string]any{"model": "e", "input": inputs})
	resp, err := c.Do(context.Background(), &providers.Request{Op: providers.OpEmbedding, Model: "gemini-embedding-001", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(gjson.GetBytes(sent, "requests").Array()); n != 50 {
		t.Errorf("last batch had %d requests, want 50", n)
	}
	var er openai.CreateEmbeddingResponse
	if err := json.Unmarshal(resp.Body, &er); err != nil {
		t.Fatal(err)
	}
	if len(er.Data) != len(inputs) {
		t.Fatalf("%d embeddings for %d inputs", len(er.Data), len(inputs))
	}
	for i, d := range er.Data {
		if d.Index != int64(i) || len(d.Embedding) != 3 || d.Embedding[0] != float64(i) {
			t.Fatalf("data[%d] = index %d, embedding %v", i, d.Index, d.Embedding)
		}
	}
}

// A batch that fails after others were embedded fails the request, but
// Google bills the batches it embedded: the error carries their tokens
// (Lumen's estimate, as for a whole answer), and stays the upstream's
// 429 for the router and the client. A first batch that fails spent
// nothing.
func TestEmbeddingsBatchFailsAfterOthers(t *testing.T) {
	var sent []byte
	c := newTestClient(t, fakeEmbedder(t, &sent).URL)
	for _, tt := range []struct {
		name      string
		failAt    int // the input that makes its batch fail
		wantSpent int // inputs billed
	}{
		{"third batch", 200, 200},
		{"second batch", 100, 100},
		{"first batch", 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inputs := make([]string, 250)
			want := 0
			for i := range inputs {
				inputs[i] = "passage " + strconv.Itoa(i) + " of the manual"
				if i == tt.failAt {
					inputs[i] = "fail"
				}
				if i < tt.wantSpent {
					want += tokens.Count(inputs[i])
				}
			}
			body, _ := json.Marshal(map[string]any{"model": "e", "input": inputs})
			_, err := c.Do(context.Background(), &providers.Request{Op: providers.OpEmbedding, Model: "gemini-embedding-001", Body: body})
			var ue *providers.UpstreamError
			if !errors.As(err, &ue) || ue.Status != http.StatusTooManyRequests || !ue.Retryable {
				t.Fatalf("err = %v, want the upstream's 429", err)
			}
			if got := providers.Spent(err); got != (providers.Usage{PromptTokens: want}) {
				t.Errorf("spent %+v, want %d prompt tokens", got, want)
			}
		})
	}
}
