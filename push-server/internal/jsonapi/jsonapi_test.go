package jsonapi

import (
	"bytes"
	"encoding/json"
	"os"
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
