package jsonapi

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// The document served is the one committed for readers, docs/api/openapi.json.
func TestServedDocumentIsTheCommittedOne(t *testing.T) {
	committed, err := os.ReadFile("../../../docs/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, OpenAPI) {
		t.Fatal("push-server/internal/jsonapi/openapi.json and docs/api/openapi.json differ: copy one over the other")
	}
	if !json.Valid(OpenAPI) {
		t.Fatal("openapi.json is not JSON")
	}
}

// A bad body's message says what is wrong and where, in a batch down to
// the push, without echoing the body's values.
func TestBodyErrorsSayWhatAndWhere(t *testing.T) {
	type batch struct {
		Pushes []*pushBody `json:"pushes"`
	}
	for _, tc := range []struct {
		body  string
		batch bool
		want  string
	}{
		{"", false, "empty"},
		{" \n{}", false, ""},
		{`{"session":"s1"`, false, "truncated JSON"},
		{`{"session":"s1"}x`, false, "not JSON (offset 16)"},
		{`{"session":"s1"} {}`, false, "not JSON (offset 17)"},
		{`null`, false, "must be a JSON object"},
		{`[]`, false, "must be a JSON object"},
		{`{"session":"s1","extra":1}`, false, `unknown field "extra"`},
		{`{"Session":"s1"}`, false, `unknown field "Session"`},
		{`{"event":"a","event":"b"}`, false, `field "event" given twice`},
		{`{"event":1}`, false, "event must be a string"},
		{"{\"event\":\"\xff\"}", false, "not JSON (offset 10)"},
		{`{"pushes":{}}`, true, "pushes must be an array"},
		{`{"pushes":[{"event":"a"},{"y":"secret"}]}`, true, `pushes[1]: unknown field "y"`},
		{`{"pushes":[{"event":"a"},{"event":2}]}`, true, "pushes[1]: event must be a string"},
		{`{"pushes":[{"event":"a"},{"openid":"o","openid":"p"}]}`, true, `pushes[1]: field "openid" given twice`},
		{`{"pushes":[{"event":"a"},"s"]}`, true, "pushes[1]: must be a JSON object"},
		{`{"` + strings.Repeat("n", 1000) + `":1}`, false, `unknown field "` + strings.Repeat("n", 64) + `…"`},
	} {
		var err error
		if tc.batch {
			err = parse([]byte(tc.body), &batch{})
		} else {
			err = parse([]byte(tc.body), &pushBody{})
		}
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%q: %q, want %q", tc.body, got, tc.want)
		}
	}
}
