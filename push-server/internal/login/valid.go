package login

import (
	"encoding/base64"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/scanlogin/scanlogin/wechat"
)

// The rules for what callers name: every entry (gRPC, the HTTP/JSON API,
// /ws) checks with these, so a value that no one could have been given
// never reaches a key, a channel or a frame.

// MaxEventName bounds the event name of a Push.
const MaxEventName = 64

// ValidSessionID reports whether id has the shape of the ids NewSessionID
// makes: unpadded base64url of idBytes random bytes.
func ValidSessionID(id string) bool {
	return len(id) == base64.RawURLEncoding.EncodedLen(idBytes) && base64url(id)
}

// base64url reports whether s holds only characters of unpadded base64url.
func base64url(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ValidConfirm reports whether secret has the shape of the confirm secrets
// NewConfirmSecret makes: unpadded base64url of confirmBytes random bytes.
func ValidConfirm(secret string) bool {
	return len(secret) == base64.RawURLEncoding.EncodedLen(confirmBytes) && base64url(secret)
}

// ValidEventName reports whether event is a Push event name: 1 to
// MaxEventName characters from a set that needs no escaping in JSON.
func ValidEventName(event string) bool {
	if event == "" || len(event) > MaxEventName {
		return false
	}
	for i := 0; i < len(event); i++ {
		switch c := event[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// CheckPush reports, as an ErrInvalid, what is wrong with the arguments of
// a Push (data as it will be sent: JSON, "null" for none).
func CheckPush(to Target, event string, data []byte) error {
	switch {
	case (to.SessionID == "") == (to.OpenID == ""):
		return fmt.Errorf("%w: exactly one of session_id and openid", ErrInvalid)
	case to.OpenID != "" && !wechat.ValidOpenID(to.OpenID):
		return fmt.Errorf("%w: openid must be 1..%d of A-Z a-z 0-9 _ -", ErrInvalid, wechat.MaxIDLen)
	case to.SessionID != "" && !ValidSessionID(to.SessionID):
		return fmt.Errorf("%w: session_id is not a session id", ErrInvalid)
	case !ValidEventName(event):
		return fmt.Errorf("%w: event must be 1..%d of A-Z a-z 0-9 . _ : -", ErrInvalid, MaxEventName)
	case len(data) > MaxPushData:
		return fmt.Errorf("%w: data over %d bytes", ErrInvalid, MaxPushData)
	case !jsontext.Value(data).IsValid():
		// I-JSON: a browser drops a text frame that is not UTF-8, and
		// what a repeated name means depends on who reads it.
		return fmt.Errorf("%w: data is not JSON of RFC 7493 (UTF-8, every name once)", ErrInvalid)
	}
	return nil
}
