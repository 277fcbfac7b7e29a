package cache

import (
	"net/http"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

func TestParseDirective(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		body   string
		want   Directive
	}{
		{"none", nil, `{"model":"m"}`, Directive{}},
		{"header no-cache", []string{"no-cache"}, "", Directive{NoCache: true}},
		{"header no-store among others", []string{"private, No-Store"}, "", Directive{NoStore: true}},
		{"header max-age", []string{"max-age=60"}, "", Directive{MaxAge: time.Minute}},
		{"header max-age=0 is no-cache", []string{"max-age=0"}, "", Directive{NoCache: true}},
		{"header several lines", []string{"max-age=60", "s-maxage=30"}, "", Directive{MaxAge: 30 * time.Second}},
		{"header garbage ignored", []string{"max-age=soon, , =x"}, "", Directive{}},
		{"body no-cache", nil, `{"cache":{"no-cache":true}}`, Directive{NoCache: true}},
		{"body no-store", nil, `{"cache":{"no-store":true}}`, Directive{NoStore: true}},
		{"body false", nil, `{"cache":{"no-cache":false,"no-store":false}}`, Directive{}},
		{"body ttl", nil, `{"cache":{"ttl":600}}`, Directive{TTL: 10 * time.Minute}},
		{"body fractional ttl", nil, `{"cache":{"ttl":1.5}}`, Directive{TTL: 1500 * time.Millisecond}},
		{"body bad ttl ignored", nil, `{"cache":{"ttl":"600"}}`, Directive{}},
		{"body negative ttl ignored", nil, `{"cache":{"ttl":-5}}`, Directive{}},
		{"body s-maxage", nil, `{"cache":{"s-maxage":120}}`, Directive{MaxAge: 2 * time.Minute}},
		{"body namespace", nil, `{"cache":{"namespace":"evals"}}`, Directive{Namespace: "evals"}},
		{"cache not an object", nil, `{"cache":true}`, Directive{}},
		{"both: stricter wins", []string{"max-age=60"}, `{"cache":{"s-maxage":600,"no-store":true,"ttl":5}}`,
			Directive{NoStore: true, MaxAge: time.Minute, TTL: 5 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.header {
				h.Add("Cache-Control", v)
			}
			if got := ParseDirective(h, []byte(gjson.Get(tt.body, "cache").Raw)); got != tt.want {
				t.Errorf("ParseDirective() = %+v, want %+v", got, tt.want)
			}
		})
	}
	if !(Directive{NoStore: true}).Bypass() || !(Directive{NoCache: true}).Bypass() || (Directive{TTL: 1}).Bypass() {
		t.Error("Bypass() wrong")
	}
}
