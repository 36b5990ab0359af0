package wechattest

import (
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"time"
)

// Web authorization (OAuth 2.0 of official accounts); the package doc says
// how the fake learns which user opens a link.

// Paths of web authorization.
const (
	PathOAuthAuthorize = "/connect/oauth2/authorize"
	PathOAuthToken     = "/sns/oauth2/access_token"
)

// OAuthUserParam is the query parameter and cookie that name the user of
// the in-app browser at /connect/oauth2/authorize.
const OAuthUserParam = "wechattest_openid"

// OAuthCodeLife is how long a web-authorization code can be exchanged.
const OAuthCodeLife = 5 * time.Minute

// maxOAuthState bounds state, as WeChat does.
const maxOAuthState = 128

// oauthState is the web-authorization part of an Account, guarded by its mu.
type oauthState struct {
	domain string // the web-authorization domain; empty: any host
	codes  map[string]*oauthCode
	swept  time.Time
}

type oauthCode struct {
	openid  string
	scope   string
	expires time.Time
	used    bool
}

// OAuthCookie returns the cookie that makes the in-app browser at
// /connect/oauth2/authorize belong to openid.
func OAuthCookie(openid string) *http.Cookie {
	return &http.Cookie{Name: OAuthUserParam, Value: openid, Path: "/connect/", SameSite: http.SameSiteLaxMode}
}

// SetOAuthDomain makes /connect/oauth2/authorize refuse a redirect_uri
// whose host (with its port, if any) is not host, as WeChat refuses one
// outside the account's web-authorization domain. Empty: any host.
func (a *Account) SetOAuthDomain(host string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.oauth.domain = host
}

// IssueOAuthCode returns a web-authorization code of scope snsapi_base for
// the user openid, as /connect/oauth2/authorize would append it.
func (a *Account) IssueOAuthCode(openid string) string {
	return a.issueOAuthCode(openid, "snsapi_base")
}

func (a *Account) issueOAuthCode(openid, scope string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if now.Sub(a.oauth.swept) >= sweepEvery {
		a.oauth.swept = now
		for k, c := range a.oauth.codes {
			if c.expires.Before(now.Add(-forget)) {
				delete(a.oauth.codes, k)
			}
		}
	}
	a.user(openid)
	code := base64.RawURLEncoding.EncodeToString(randBytes(24))
	a.oauth.codes[code] = &oauthCode{openid: openid, scope: scope, expires: now.Add(OAuthCodeLife)}
	return code
}

// OAuthGrant is the answer of /sns/oauth2/access_token.
type OAuthGrant struct {
	OpenID, UnionID, Scope string
}

// ExchangeOAuthCode exchanges a web-authorization code: ErrCodeMissing,
// ErrInvalidCode (unknown or expired) or ErrCodeUsed.
func (a *Account) ExchangeOAuthCode(code string) (OAuthGrant, int) {
	if code == "" {
		return OAuthGrant{}, ErrCodeMissing
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.oauth.codes[code]
	switch {
	case !ok || !a.now().Before(c.expires):
		return OAuthGrant{}, ErrInvalidCode
	case c.used:
		return OAuthGrant{}, ErrCodeUsed
	}
	c.used = true
	u := a.user(c.openid)
	return OAuthGrant{OpenID: u.OpenID, UnionID: u.UnionID, Scope: c.scope}, 0
}

// authorize is /connect/oauth2/authorize as WeChat's in-app browser sees it.
func (a *Account) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		oauthPage(w, http.StatusMethodNotAllowed, "请使用 GET 打开此链接")
		return
	}
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	a.mu.Lock()
	domain := a.oauth.domain
	a.mu.Unlock()
	state := q.Get("state")
	switch {
	case q.Get("appid") != a.appID:
		oauthPage(w, http.StatusBadRequest, "appid 参数错误 (invalid appid)")
		return
	case err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "":
		oauthPage(w, http.StatusBadRequest, "redirect_uri 参数错误 (invalid redirect_uri)")
		return
	case domain != "" && redirect.Host != domain:
		oauthPage(w, http.StatusBadRequest, "redirect_uri 域名与后台配置不一致 (redirect_uri not in the web-authorization domain)")
		return
	case q.Get("response_type") != "code":
		oauthPage(w, http.StatusBadRequest, "response_type 参数错误 (invalid response_type)")
		return
	case q.Get("scope") != "snsapi_base" && q.Get("scope") != "snsapi_userinfo":
		oauthPage(w, http.StatusBadRequest, "scope 参数错误或没有 scope 权限 (invalid scope)")
		return
	case !validOAuthState(state):
		oauthPage(w, http.StatusBadRequest, "state 参数错误 (invalid state)")
		return
	}
	openid := q.Get(OAuthUserParam)
	if openid == "" {
		if c, err := r.Cookie(OAuthUserParam); err == nil {
			openid = c.Value
		}
	}
	if openid == "" {
		oauthPage(w, http.StatusOK, "请在微信客户端打开链接 (open the link in WeChat)")
		return
	}
	code := a.issueOAuthCode(openid, q.Get("scope"))
	extra := "code=" + url.QueryEscape(code) + "&state=" + url.QueryEscape(state)
	if redirect.RawQuery != "" {
		redirect.RawQuery += "&" + extra
	} else {
		redirect.RawQuery = extra
	}
	redirect.Fragment, redirect.RawFragment = "", ""
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// validOAuthState reports whether s is a state WeChat passes back: up to
// 128 letters and digits.
func validOAuthState(s string) bool {
	if len(s) > maxOAuthState {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// oauthPage answers a small HTML page, as WeChat's in-app browser shows.
func oauthPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>微信</title><p>%s</p>\n", html.EscapeString(msg))
}

// oauthToken is /sns/oauth2/access_token.
func (a *Account) oauthToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !a.codeGrant(w, r, q) {
		return
	}
	g, code := a.ExchangeOAuthCode(q.Get("code"))
	if code != 0 {
		a.fail(w, r, code)
		return
	}
	ans := map[string]any{
		"access_token":  base64.RawURLEncoding.EncodeToString(randBytes(32)),
		"expires_in":    7200,
		"refresh_token": base64.RawURLEncoding.EncodeToString(randBytes(32)),
		"openid":        g.OpenID,
		"scope":         g.Scope,
	}
	if g.UnionID != "" {
		ans["unionid"] = g.UnionID
	}
	writeJSON(w, ans)
}
