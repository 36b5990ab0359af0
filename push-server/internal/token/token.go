// Package token mints and verifies scanlogin's login tokens: JWTs signed
// with Ed25519 (alg EdDSA), whose public key is published as a JWK set.
package token

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Claims are the claims of a login token.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"` // the user's openid
	IssuedAt  int64  `json:"iat"`
	Expiry    int64  `json:"exp"`
	ID        string `json:"jti"`
	SessionID string `json:"sid"`
	UnionID   string `json:"unionid,omitempty"`
}

// Issuer mints and verifies tokens with one Ed25519 key.
type Issuer struct {
	key    ed25519.PrivateKey
	kid    string
	issuer string
	ttl    time.Duration
	header string // the protected header, base64url, and "."
	jwks   []byte
}

// LoadKey reads an Ed25519 private key from a PKCS#8 PEM file.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("read key: no PKCS#8 \"PRIVATE KEY\" PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse key: %T is not an Ed25519 key", k)
	}
	return ek, nil
}

// GenerateKey returns a fresh Ed25519 key.
func GenerateKey() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(rand.Reader) // crypto/rand never fails
	return k
}

// New returns an Issuer that signs with key, names itself issuer, and mints
// tokens valid for ttl. The key id is the key's RFC 7638 thumbprint, so every
// instance with the same key publishes the same kid.
func New(key ed25519.PrivateKey, issuer string, ttl time.Duration) (*Issuer, error) {
	pub := jose.JSONWebKey{Key: key.Public(), Algorithm: string(jose.EdDSA), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(jose.EdDSA), pub.KeyID, "JWT"})
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return &Issuer{key: key, kid: pub.KeyID, issuer: issuer, ttl: ttl,
		header: base64.RawURLEncoding.EncodeToString(header) + ".", jwks: jwks}, nil
}

// KeyID is the kid of the signing key.
func (i *Issuer) KeyID() string { return i.kid }

// JWKS is the public key as a JWK set, for /.well-known/jwks.json.
func (i *Issuer) JWKS() []byte { return i.jwks }

// Mint returns a signed token for openid, logged in through session sid.
func (i *Issuer) Mint(openid, unionid, sid string, now time.Time) (string, error) {
	c := Claims{
		Issuer:    i.issuer,
		Subject:   openid,
		IssuedAt:  now.Unix(),
		Expiry:    now.Add(i.ttl).Unix(),
		ID:        randomJTI(),
		SessionID: sid,
		UnionID:   unionid,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	// A JWT is the compact JWS of its claims (RFC 7515, 7.1): header and
	// payload in base64url joined by ".", then the Ed25519 signature of
	// exactly those bytes (RFC 8037). The header never changes, so it is
	// encoded once. go-jose's signer encodes it again and copies the parts
	// for every token, a large share of what a login allocates
	// (docs/benchmarks.md). Verify parses with go-jose, and so do the tests.
	enc := base64.RawURLEncoding
	b := make([]byte, 0, len(i.header)+enc.EncodedLen(len(payload))+1+enc.EncodedLen(ed25519.SignatureSize))
	b = append(b, i.header...)
	b = enc.AppendEncode(b, payload)
	sig := ed25519.Sign(i.key, b)
	b = append(b, '.')
	b = enc.AppendEncode(b, sig)
	return string(b), nil
}

// Leeway is how long after its exp (and before its iat) Verify still accepts
// a token: clock skew between the instance that minted it and the one that
// checks it, no more.
const Leeway = 5 * time.Second

// ErrInvalid: the token is malformed, not ours, or expired.
var ErrInvalid = errors.New("invalid token")

// Verify checks a token's signature, issuer and times, and returns its claims.
func (i *Issuer) Verify(raw string, now time.Time) (*Claims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var std jwt.Claims
	var c Claims
	if err := tok.Claims(i.key.Public(), &std, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: i.issuer, Time: now}, Leeway); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.Subject == "" || std.Expiry == nil {
		return nil, fmt.Errorf("%w: no sub or exp", ErrInvalid)
	}
	return &c, nil
}

// ValidUntil is the last moment Verify accepts the token: exp plus Leeway.
// A connection bound with the token ends then.
func (c *Claims) ValidUntil() time.Time { return time.Unix(c.Expiry, 0).Add(Leeway) }

func randomJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
