package testkey

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
)

func TestWriteMakesAReadableKey(t *testing.T) {
	path, key := Write(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("not a PKCS#8 PEM: %q", raw)
	}
	got, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(got) {
		t.Fatal("the file holds another key")
	}
}
