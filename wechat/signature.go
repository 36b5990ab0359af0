package wechat

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
)

// Signature returns WeChat's SHA-1 signature of parts: the parts sorted
// byte-wise, concatenated without separator, hashed with SHA-1 and written as
// 40 lowercase hex digits. WeChat signs callbacks this way with
// (token, timestamp, nonce) for "signature" and with
// (token, timestamp, nonce, Encrypt) for "msg_signature".
func Signature(parts ...string) string {
	sorted := slices.Clone(parts)
	slices.Sort(sorted)
	sum := sha1.Sum([]byte(strings.Join(sorted, "")))
	return hex.EncodeToString(sum[:])
}

// VerifySignature reports whether sig is Signature(parts...). The comparison
// takes constant time so that a caller cannot learn the expected signature
// byte by byte. sig must be lowercase hex, as WeChat sends it.
func VerifySignature(sig string, parts ...string) bool {
	want := Signature(parts...)
	return subtle.ConstantTimeCompare([]byte(sig), []byte(want)) == 1
}
