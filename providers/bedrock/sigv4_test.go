package bedrock

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSignVectors checks the signer against AWS's published examples: the
// SigV4 test suite (get-vanilla, get-vanilla-query-order-key-case,
// post-vanilla; service "service") and the worked example of the signing
// guide (IAM ListUsers with a Content-Type header).
func TestSignVectors(t *testing.T) {
	creds := Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	at := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	const empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	for _, tt := range []struct {
		name, method, url, service, contentType, want string
	}{
		{"get-vanilla", "GET", "https://example.amazonaws.com/", "service", "",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"get-vanilla-query-order-key-case", "GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", "service", "",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
		{"post-vanilla", "POST", "https://example.amazonaws.com/", "service", "",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
		{"iam ListUsers", "GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08", "iam", "application/x-www-form-urlencoded; charset=utf-8",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			req.Header.Set("User-Agent", "lumen") // unsigned: the client may change it
			sign(req, creds, "us-east-1", tt.service, empty, at)
			if got := req.Header.Get("Authorization"); got != tt.want {
				t.Errorf("Authorization\n got %s\nwant %s", got, tt.want)
			}
			if got := req.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Errorf("X-Amz-Date = %q", got)
			}
		})
	}
}

func TestSignSessionTokenAndModelPath(t *testing.T) {
	req, _ := http.NewRequest("POST", "https://bedrock-runtime.us-west-2.amazonaws.com/model/x", nil)
	req.URL.Path = "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse"
	req.URL.RawPath = "/model/" + uriEncode("anthropic.claude-3-5-haiku-20241022-v1:0") + "/converse"
	sign(req, Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret", SessionToken: "tok"}, "us-west-2", "bedrock", hashHex(nil), time.Unix(0, 0))
	if req.Header.Get("X-Amz-Security-Token") != "tok" || !strings.Contains(req.Header.Get("Authorization"), "SignedHeaders=host;x-amz-date;x-amz-security-token,") {
		t.Errorf("session token not sent and signed: %v", req.Header)
	}
	if got := canonicalURI(req.URL); got != "/model/anthropic.claude-3-5-haiku-20241022-v1%253A0/converse" {
		t.Errorf("canonical URI = %s; the model id's colon is encoded twice for non-S3 services", got)
	}
	if got := req.URL.EscapedPath(); got != "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse" {
		t.Errorf("path on the wire = %s", got)
	}
}
