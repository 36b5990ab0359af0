// Package wechattest is the fake WeChat: one official account (with its
// Mini Program) and the WeChat API paths that scanlogin calls, with
// WeChat's rules and error codes. Tests serve it with [New]; the WeChat
// simulator mounts the same [Account] and adds its phone pages and event
// delivery.
//
//	GET  /cgi-bin/token             classic access token
//	POST /cgi-bin/stable_token      stable access token, normal and force mode
//	POST /cgi-bin/qrcode/create     parametric QR codes, temporary and permanent
//	GET  /cgi-bin/showqrcode        the PNG image of a code; 404 unknown or expired ticket
//	GET  /cgi-bin/user/info         a user the account has met
//	GET  /cgi-bin/getcallbackip     the addresses events come from
//	POST /wxa/getwxacodeunlimit     a Mini Program code image; JSON on error
//	GET  /sns/jscode2session        a Mini Program login code exchange
//	GET  /connect/oauth2/authorize  web authorization: 302 to redirect_uri?code=&state=
//	GET  /sns/oauth2/access_token   a web-authorization code exchange
//
// Like WeChat, errors are HTTP 200 with {"errcode":N,"errmsg":"... rid: ..."}
// and Content-Type "application/json; encoding=utf-8"; other paths under
// /cgi-bin/, /wxa/ and /sns/ answer 40066 invalid url. Tickets contain '+',
// '/' and '=', as real ones do, so that a client that forgets to escape
// them gets 404 from showqrcode.
//
// Serve the API and the showqrcode host from the same Server: point both
// wechat.Config.APIBase and wechat.Config.MPBase at [Server.URL].
//
// Tests steer and observe it with [Account.FailNext],
// [Account.FailNextStatus], [Account.ExpireTokens], [Account.SetLatency],
// [Account.TokenFetches], [Account.Calls], [Account.QRCodes],
// [Account.TicketForScene], [Account.AddUser], [Account.Follow],
// [Account.IssueOAuthCode] and [Account.SetOAuthDomain].
//
// Web authorization: /connect/oauth2/authorize plays WeChat's in-app
// browser, which knows its user. The fake learns who opens the link from
// the query parameter wechattest_openid ([OAuthUserParam]) of the authorize
// request or, without it, from the cookie of that name on the fake's host
// (a phone page sets it for the user it shows; a test puts [OAuthCookie]
// in its cookie jar). The value is the user's official-account OpenID. It
// then answers 302 to redirect_uri with code and state appended; without a
// user it answers WeChat's page "open the link in the WeChat client" (200,
// no redirect); a bad appid, redirect_uri (see [Account.SetOAuthDomain]),
// response_type, scope or state gets a 400 page. Codes are single-use and
// live [OAuthCodeLife]; /sns/oauth2/access_token answers 40029 for an
// unknown or expired code, 40163 for a used one, 40013/40125 for a wrong
// appid/secret, 40002 for another grant_type.
package wechattest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/scanlogin/scanlogin/wechat"
)

// Server is an Account served over real HTTP on a loopback port for a
// test.
type Server struct {
	*Account
	srv   *httptest.Server
	conns atomic.Int64 // TCP connections accepted
}

// New starts a Server for the account appID/secret; it is closed when the
// test ends.
func New(t testing.TB, appID, secret string, opts ...Option) *Server {
	t.Helper()
	s := &Server{Account: NewAccount(appID, secret, opts...)}
	s.srv = httptest.NewUnstartedServer(s.Account)
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.Start()
	t.Cleanup(s.Close)
	return s
}

// URL returns the base URL of the server, e.g. http://127.0.0.1:41234, for
// both wechat.Config.APIBase and MPBase.
func (s *Server) URL() string { return s.srv.URL }

// Connections returns how many TCP connections the server has accepted.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Close shuts the server down; New arranges it for the end of the test.
func (s *Server) Close() { s.srv.Close() }

// Config returns a wechat.Config for this server and account.
func (s *Server) Config() wechat.Config {
	return wechat.Config{APIBase: s.URL(), MPBase: s.URL(), AppID: s.appID, Secret: s.secret}
}
