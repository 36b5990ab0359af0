package wechat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
)

// Errcodes of /sns/jscode2session.
const (
	ErrCodeBusy          = -1    // WeChat is busy; try again later
	ErrCodeInvalidAppID  = 40013 // AppID unknown (a configuration error)
	ErrCodeInvalidCode   = 40029 // the login code is unknown or expired
	ErrCodeInvalidSecret = 40125 // AppSecret wrong (a configuration error)
	ErrCodeCodeUsed      = 40163 // the login code was exchanged before
	ErrCodeHighRiskUser  = 40226 // WeChat blocked the user as high-risk
	ErrCodeMinuteQuota   = 45011 // too many calls for this user this minute
)

// MaxJSCodeLen is the longest Mini Program login code we send to WeChat;
// real ones are 32 characters.
const MaxJSCodeLen = 128

// ErrInvalidJSCode is returned by [Client.Code2Session] for a login code it
// refuses before calling WeChat: empty, longer than 128 bytes, or holding a
// byte outside printable ASCII.
var ErrInvalidJSCode = errors.New("wechat: jscode2session: login code must be 1..128 printable ASCII characters")

// Session is what /sns/jscode2session tells about the Mini Program user
// whose login code was exchanged. SessionKey signs and decrypts the user's
// data; it must never leave the service, so String, GoString and LogValue
// leave it out (and the ids too: read the fields).
type Session struct {
	OpenID  string // the user's OpenID for the Mini Program
	UnionID string // set only when the Mini Program is bound to an Open Platform account
	// SessionKey is WeChat's session_key (secret).
	SessionKey string
}

// String describes s without its session key, and without the ids, which
// are personal data that logs must not hold.
func (s Session) String() string {
	return fmt.Sprintf("wechat.Session{OpenID:%s UnionID:%s SessionKey:[redacted]}", isSet(s.OpenID), isSet(s.UnionID))
}

func isSet(s string) string {
	if s == "" {
		return "[empty]"
	}
	return "[set]"
}

// GoString is String, so that %#v hides the session key too.
func (s Session) GoString() string { return s.String() }

// LogValue logs s without its session key (nor the ids, which are personal
// data: only whether they are set).
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("openid", s.OpenID != ""),
		slog.Bool("unionid", s.UnionID != ""),
		slog.String("session_key", "[redacted]"),
	)
}

// Code2Session exchanges a Mini Program login code (what wx.login gives the
// Mini Program) at /sns/jscode2session with the client's AppID and secret,
// which must be the Mini Program's. No access token is involved. A code
// works once, for about five minutes. WeChat's refusals are *APIError
// (ErrCodeInvalidCode, ErrCodeCodeUsed, ErrCodeMinuteQuota, ErrCodeBusy,
// ...). The answer's OpenID is checked with ValidOpenID; a UnionID that is
// not of that shape is dropped. Neither the secret nor the code appears in
// an error.
func (c *Client) Code2Session(ctx context.Context, jsCode string) (Session, error) {
	if !ValidJSCode(jsCode) {
		return Session{}, ErrInvalidJSCode
	}
	q := url.Values{
		"appid":      {c.appID},
		"secret":     {c.secret},
		"js_code":    {jsCode},
		"grant_type": {"authorization_code"},
	}
	var resp struct {
		codeUser
		SessionKey string `json:"session_key"`
	}
	if err := c.exchangeCode(ctx, "jscode2session", "/sns/jscode2session", q, &resp, &resp.codeUser); err != nil {
		return Session{}, err
	}
	return Session{OpenID: resp.OpenID, UnionID: resp.UnionID, SessionKey: resp.SessionKey}, nil
}

// codeUser is who WeChat says a one-time code belongs to.
type codeUser struct {
	OpenID  string `json:"openid"`
	UnionID string `json:"unionid"`
}

// exchangeCode exchanges a one-time code at path (GET, no access token)
// into resp, whose user part is u: the OpenID must be one (ValidOpenID),
// and a UnionID that is not of that shape is dropped with a warning.
func (c *Client) exchangeCode(ctx context.Context, name, path string, q url.Values, resp any, u *codeUser) error {
	if err := c.call(ctx, name, http.MethodGet, path, q, nil, resp, ""); err != nil {
		return fmt.Errorf("wechat: %s: %w", name, err)
	}
	if !ValidOpenID(u.OpenID) {
		return fmt.Errorf("wechat: %s: answer without a valid openid", name)
	}
	if u.UnionID != "" && !ValidUnionID(u.UnionID) {
		c.log.Warn("wechat: unionid dropped, not a UnionID", "call", name)
		u.UnionID = ""
	}
	return nil
}

// ValidJSCode reports whether code has the shape Code2Session accepts: 1
// to MaxJSCodeLen bytes of printable ASCII, no space.
func ValidJSCode(code string) bool {
	if len(code) == 0 || len(code) > MaxJSCodeLen {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] <= ' ' || code[i] > '~' {
			return false
		}
	}
	return true
}
