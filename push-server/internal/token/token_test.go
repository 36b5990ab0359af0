package token

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestMintVerify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	iss, err := New(GenerateKey(), "scanlogin", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint("oAlice", "uAlice", "sid1", now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Verify(tok, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "oAlice" || c.UnionID != "uAlice" || c.SessionID != "sid1" || c.Issuer != "scanlogin" ||
		c.IssuedAt != now.Unix() || c.Expiry != now.Add(5*time.Minute).Unix() || c.ID == "" {
		t.Fatalf("claims = %+v", c)
	}

	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("go-jose parse: %v", err)
	}
	if h := jws.Signatures[0].Protected; h.Algorithm != "EdDSA" || h.KeyID != iss.KeyID() || h.ExtraHeaders["typ"] != "JWT" {
		t.Fatalf("protected header = %+v, want alg EdDSA, kid %s, typ JWT", h, iss.KeyID())
	}

	other, _ := New(GenerateKey(), "scanlogin", 5*time.Minute)
	otherIssuer, _ := New(iss.key, "someone-else", 5*time.Minute)
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]
	for name, tc := range map[string]struct {
		iss *Issuer
		tok string
		at  time.Time
	}{
		"expired":      {iss, tok, now.Add(6 * time.Minute)},
		"future":       {iss, tok, now.Add(-5 * time.Minute)},
		"other key":    {other, tok, now},
		"other issuer": {otherIssuer, tok, now},
		"tampered":     {iss, tampered, now},
		"garbage":      {iss, "a.b.c", now},
	} {
		if _, err := tc.iss.Verify(tc.tok, tc.at); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestJWKSAndKeyFile(t *testing.T) {
	key := GenerateKey()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadKey(path)
	if err != nil || !loaded.Equal(key) {
		t.Fatalf("LoadKey = %v", err)
	}
	a, _ := New(key, "i", time.Minute)
	b, _ := New(loaded, "i", time.Minute)
	if a.KeyID() != b.KeyID() || string(a.JWKS()) != string(b.JWKS()) {
		t.Error("the same key gives different kids or JWKS")
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(a.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s: %v", a.JWKS(), err)
	}
	k := set.Keys[0]
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["kid"] != a.KeyID() || k["d"] != "" {
		t.Errorf("jwk = %v", k)
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := LoadKey(bad); err == nil {
		t.Error("LoadKey accepted a non-PEM file")
	}
}

// A token is accepted up to Leeway after its exp, on the verifier's clock,
// and refused a second later.
func TestVerifyLeeway(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	iss, err := New(GenerateKey(), "scanlogin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := iss.Mint("oAlice", "", "sid1", now)
	exp := now.Add(time.Minute)
	if Leeway > 5*time.Second {
		t.Fatalf("Leeway = %s, want at most 5s", Leeway)
	}
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{
		{exp, true},
		{exp.Add(Leeway - time.Second), true},
		{exp.Add(Leeway), true},
		{exp.Add(Leeway + time.Second), false},
		{exp.Add(30 * time.Second), false},
	} {
		c, err := iss.Verify(tok, tc.at)
		if (err == nil) != tc.ok {
			t.Errorf("Verify at exp%+v: %v, want accepted %v", tc.at.Sub(exp), err, tc.ok)
		}
		if err == nil && !c.ValidUntil().Equal(exp.Add(Leeway)) {
			t.Errorf("ValidUntil = %v, want exp+Leeway", c.ValidUntil())
		}
	}
}
