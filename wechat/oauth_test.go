package wechat_test

import (
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

func TestOAuthAccessToken(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, logs := newClient(t, srv)
	code := srv.IssueOAuthCode("oScanner0123456789")
	u, err := c.OAuthAccessToken(t.Context(), code)
	if err != nil {
		t.Fatal(err)
	}
	if u.OpenID != "oScanner0123456789" || u.Scope != "snsapi_base" {
		t.Fatalf("user = %+v", u)
	}
	if srv.TokenFetches() != 0 {
		t.Error("the exchange fetched an API access token")
	}
	_, err = c.OAuthAccessToken(t.Context(), code)
	var apiErr *wechat.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != wechat.ErrCodeCodeUsed {
		t.Fatalf("second exchange: %v, want errcode 40163", err)
	}
	if strings.Contains(err.Error(), code) || strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), code) {
		t.Error("the code or secret leaked into an error or the log")
	}
}

func TestOAuthAccessTokenErrors(t *testing.T) {
	clock := wechattest.NewClock(time.Unix(1_700_000_000, 0))
	srv := wechattest.New(t, appID, secret, wechattest.WithClock(clock.Now))
	late := srv.IssueOAuthCode("oLate")
	clock.Advance(wechattest.OAuthCodeLife)
	good, _ := newClient(t, srv)
	wrongSecret, _ := newClient(t, srv, func(c *wechat.Config) { c.Secret = "another-secret" })
	wrongApp, _ := newClient(t, srv, func(c *wechat.Config) { c.AppID = "wxanotherapp" })
	for _, tt := range []struct {
		name    string
		c       *wechat.Client
		code    string
		errcode int
	}{
		{"unknown", good, "not-a-code", wechat.ErrCodeInvalidCode},
		{"expired", good, late, wechat.ErrCodeInvalidCode},
		{"secret", wrongSecret, srv.IssueOAuthCode("oA"), wechat.ErrCodeInvalidSecret},
		{"appid", wrongApp, srv.IssueOAuthCode("oA"), wechat.ErrCodeInvalidAppID},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.OAuthAccessToken(t.Context(), tt.code)
			var apiErr *wechat.APIError
			if !errors.As(err, &apiErr) || apiErr.Code != tt.errcode {
				t.Fatalf("err = %v, want errcode %d", err, tt.errcode)
			}
		})
	}
	if _, err := good.OAuthAccessToken(t.Context(), "bad code"); !errors.Is(err, wechat.ErrInvalidOAuthCode) {
		t.Fatalf("a code with a space: %v", err)
	}
}

// TestOAuthAuthorizeRedirect follows the authorize step as WeChat's in-app
// browser does, for the user named by the cookie.
func TestOAuthAuthorizeRedirect(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	srv.SetOAuthDomain("site.example:8443")
	jar, _ := cookiejar.New(nil)
	base, _ := url.Parse(srv.URL())
	jar.SetCookies(base, []*http.Cookie{wechattest.OAuthCookie("oPhoneUser")})
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	authorize := func(redirect, state string, extra ...string) *http.Response {
		t.Helper()
		q := url.Values{"appid": {appID}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"snsapi_base"}, "state": {state}}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		resp, err := hc.Get(srv.URL() + wechattest.PathOAuthAuthorize + "?" + q.Encode() + "#wechat_redirect")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := authorize("https://site.example:8443/oa/confirm?s=abc&t=def", "St4te")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	if loc.Host != "site.example:8443" || loc.Path != "/oa/confirm" || q.Get("s") != "abc" || q.Get("t") != "def" || q.Get("state") != "St4te" || q.Get("code") == "" {
		t.Fatalf("redirect to %s", loc)
	}
	c, _ := newClient(t, srv)
	u, err := c.OAuthAccessToken(t.Context(), q.Get("code"))
	if err != nil || u.OpenID != "oPhoneUser" {
		t.Fatalf("exchange: %+v %v", u, err)
	}

	// The query parameter names another user.
	resp = authorize("https://site.example:8443/x", "s", wechattest.OAuthUserParam, "oOtherUser")
	loc, _ = url.Parse(resp.Header.Get("Location"))
	if u, err := c.OAuthAccessToken(t.Context(), loc.Query().Get("code")); err != nil || u.OpenID != "oOtherUser" {
		t.Fatalf("exchange: %+v %v", u, err)
	}

	for _, tt := range []struct {
		name     string
		redirect string
		state    string
		extra    []string
	}{
		{"other domain", "https://evil.example/x", "s", nil},
		{"bad state", "https://site.example:8443/x", "not-alnum!", nil},
		{"long state", "https://site.example:8443/x", strings.Repeat("a", 129), nil},
		{"other appid", "https://site.example:8443/x", "s", []string{"appid", "wxother"}},
		{"scope", "https://site.example:8443/x", "s", []string{"scope", "snsapi_login"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if resp := authorize(tt.redirect, tt.state, tt.extra...); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
		})
	}

	// Outside WeChat (no user): a page, no code.
	plain := &http.Client{CheckRedirect: hc.CheckRedirect}
	r, err := plain.Get(srv.URL() + wechattest.PathOAuthAuthorize + "?appid=" + appID + "&redirect_uri=https%3A%2F%2Fsite.example%3A8443%2F&response_type=code&scope=snsapi_base&state=s")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK || r.Header.Get("Location") != "" {
		t.Fatalf("without a user: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
}
