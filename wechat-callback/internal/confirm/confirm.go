// Package confirm is what the two confirm-on-the-phone flows of
// wechat-callback share: the Mini Program API (internal/miniprogram) and the
// official-account confirm page (internal/oaconfirm). Both bind a scan to
// the scanner's openid and a one-time confirm secret from the push server,
// keep that binding in a [Store] (memory or Redis, keyed by hashes), limit
// requests per client address ([IPLimit]) and turn the push server's
// answers into the same refusals ([Refuse], [RefuseError]).
package confirm

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Refusal codes shared by both flows (the Mini Program API's "error" field).
const (
	CodeBadRequest  = "bad_request"
	CodeForbidden   = "forbidden"
	CodeNotFound    = "not_found"
	CodeAlreadyUsed = "already_used"
	CodeExpired     = "expired"
	CodeRateLimited = "rate_limited"
	CodeUnavailable = "unavailable"
)

const (
	// BindingGrace keeps a binding past the session's end, so that a late
	// request is told "expired" rather than "forbidden".
	BindingGrace = 10 * time.Minute
	// maxBindingTTL caps how long a binding is kept.
	maxBindingTTL = 31 * 24 * time.Hour
)

// Refuse maps a Notify result that is neither delivered nor stored to the
// HTTP status and code of the refusal: not found (also a ticket mismatch:
// the scene belongs to another flow or QR code) 404, expired 410, already
// used 409, forbidden (wrong secret or user) 403, anything else 503.
func Refuse(r pushv1.Result) (httpStatus int, code string) {
	switch r {
	case pushv1.Result_RESULT_NOT_FOUND, pushv1.Result_RESULT_TICKET_MISMATCH:
		return http.StatusNotFound, CodeNotFound
	case pushv1.Result_RESULT_EXPIRED:
		return http.StatusGone, CodeExpired
	case pushv1.Result_RESULT_ALREADY_USED:
		return http.StatusConflict, CodeAlreadyUsed
	case pushv1.Result_RESULT_FORBIDDEN:
		return http.StatusForbidden, CodeForbidden
	}
	return http.StatusServiceUnavailable, CodeUnavailable
}

// RefuseError maps a failed Notify call: a request the push server calls
// invalid or unknown is not found (no session of ours has it), anything
// else is unavailable.
func RefuseError(err error) (httpStatus int, code string) {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound:
		return http.StatusNotFound, CodeNotFound
	}
	return http.StatusServiceUnavailable, CodeUnavailable
}

// BindingTTL is how long to keep a binding made at now for a session that
// ends at expires: until then plus BindingGrace, within bounds.
func BindingTTL(expires, now time.Time) time.Duration {
	return min(max(expires.Sub(now), 0)+BindingGrace, maxBindingTTL)
}

// Digest hashes parts, separated by NUL, to hex: store keys and event ids
// that hold no secret.
func Digest(parts ...string) string {
	h := sha256.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Short names a scene or a user in logs by a hash prefix.
func Short(s string) string {
	if s == "" {
		return ""
	}
	return Digest(s)[:12]
}

// RandomHex returns n random bytes in hex.
func RandomHex(n int) string {
	return hex.EncodeToString(randomBytes(n))
}

// RandomToken returns n random bytes as unpadded base64url: a value safe in
// a URL and a form.
func RandomToken(n int) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(n))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails
	return b
}
