package wechat

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
)

// ErrInvalidOAuthCode is returned by [Client.OAuthAccessToken] for a code it
// refuses before calling WeChat: empty, longer than 128 bytes, or holding a
// byte outside printable ASCII. WeChat's own refusals are *APIError:
// ErrCodeInvalidCode (unknown or expired) and ErrCodeCodeUsed.
var ErrInvalidOAuthCode = errors.New("wechat: oauth2/access_token: code must be 1..128 printable ASCII characters")

// OAuthUser is what /sns/oauth2/access_token tells about the official-account
// user who opened a web-authorization link. The web access token is not kept:
// snsapi_base needs nothing but the openid.
type OAuthUser struct {
	OpenID  string // the user's OpenID for the official account
	UnionID string // set only when WeChat sends it
	Scope   string // "snsapi_base" or "snsapi_userinfo"
}

// LogValue logs u without its ids, which are personal data.
func (u OAuthUser) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("openid", u.OpenID != ""),
		slog.Bool("unionid", u.UnionID != ""),
		slog.String("scope", u.Scope),
	)
}

// OAuthAccessToken exchanges the code of a web authorization (what WeChat
// appends to redirect_uri after /connect/oauth2/authorize) at
// /sns/oauth2/access_token with the client's AppID and secret, which must be
// the official account's. No API access token is involved. A code works
// once, for about five minutes: WeChat answers ErrCodeInvalidCode (40029)
// for an unknown or expired code and ErrCodeCodeUsed (40163) for a used one,
// as *APIError. The answer's OpenID is checked with ValidOpenID; a UnionID
// that is not of that shape is dropped. Neither the secret nor the code
// appears in an error.
func (c *Client) OAuthAccessToken(ctx context.Context, code string) (OAuthUser, error) {
	if !ValidJSCode(code) { // the same shape as a Mini Program login code
		return OAuthUser{}, ErrInvalidOAuthCode
	}
	q := url.Values{
		"appid":      {c.appID},
		"secret":     {c.secret},
		"code":       {code},
		"grant_type": {"authorization_code"},
	}
	var resp struct {
		codeUser
		Scope string `json:"scope"`
	}
	if err := c.exchangeCode(ctx, "oauth2/access_token", "/sns/oauth2/access_token", q, &resp, &resp.codeUser); err != nil {
		return OAuthUser{}, err
	}
	return OAuthUser{OpenID: resp.OpenID, UnionID: resp.UnionID, Scope: resp.Scope}, nil
}
