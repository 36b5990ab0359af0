// Package wechattest runs an in-process fake of the WeChat API for tests.
//
// A [Server] serves, over real HTTP on a loopback port, the API paths that
// scanlogin calls:
//
//	POST /cgi-bin/stable_token    access token, normal and force mode
//	GET  /cgi-bin/token           access token, classic
//	POST /cgi-bin/qrcode/create   temporary and permanent parametric QR codes
//	GET  /cgi-bin/showqrcode      the QR image (image/jpeg), 404 for unknown or expired tickets
//	GET  /cgi-bin/user/info       users added with AddUser
//
// It answers like WeChat: HTTP 200 with JSON {"errcode":N,"errmsg":"..."} on
// errors, using WeChat's codes (40013 wrong appid, 40125 wrong secret, 40001
// unknown token, 42001 expired token, 41001 missing token, 40053 bad action
// info, 40003 unknown openid, 43002 wrong method, 47001 bad JSON). Tickets
// contain '+', '/' and '=', as real ones do, so that a client that forgets
// to escape them gets 404 from showqrcode.
//
// Serve the API and the showqrcode host from the same Server: point both
// wechat.Config.APIBase and wechat.Config.MPBase at [Server.URL].
//
// Tests steer and observe it with [Server.FailNext], [Server.FailNextStatus],
// [Server.ExpireTokens], [Server.SetLatency], [Server.TokenFetches],
// [Server.Calls], [Server.QRCodes] and [Server.TicketForScene]. All methods
// are safe for concurrent use.
package wechattest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
)

// API paths served by a Server; use them with FailNext and Calls.
const (
	PathStableToken = "/cgi-bin/stable_token"
	PathToken       = "/cgi-bin/token"
	PathQRCreate    = "/cgi-bin/qrcode/create"
	PathShowQR      = "/cgi-bin/showqrcode"
	PathUserInfo    = "/cgi-bin/user/info"
)

// Default settings of a Server.
const (
	// DefaultTokenLifetime is WeChat's token life, 7200 s.
	DefaultTokenLifetime = 7200 * time.Second
	// DefaultQRExpire is what WeChat grants when expire_seconds is absent.
	DefaultQRExpire = 60 * time.Second
)

// Messages that go with the errcodes the Server uses, as WeChat words them.
var errMsgs = map[int]string{
	-1:    "system error",
	40001: "invalid credential, access_token is invalid or not latest",
	40002: "invalid grant_type",
	40003: "invalid openid",
	40013: "invalid appid",
	40014: "invalid access_token",
	40053: "invalid action info",
	40125: "invalid appsecret",
	41001: "access_token missing",
	41002: "appid missing",
	41004: "appsecret missing",
	42001: "access_token expired",
	43002: "require POST method",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit  mustslower  retry next minute",
	47001: "data format error",
}

// ErrMsg returns the errmsg the Server sends with errcode.
func ErrMsg(errcode int) string {
	if m, ok := errMsgs[errcode]; ok {
		return m
	}
	return "error " + strconv.Itoa(errcode)
}

// QR is one QR code the Server created.
type QR struct {
	ActionName    string // QR_STR_SCENE, QR_SCENE, QR_LIMIT_STR_SCENE or QR_LIMIT_SCENE
	Scene         string // scene_str, or scene_id in decimal
	ExpireSeconds int    // as granted; 0 for permanent codes
	Ticket        string
	URL           string // the "url" answered, the QR content
	CreatedAt     time.Time
}

// expired reports whether q is no longer valid at now.
func (q QR) expired(now time.Time) bool {
	return q.ExpireSeconds > 0 && !now.Before(q.CreatedAt.Add(time.Duration(q.ExpireSeconds)*time.Second))
}

// Option configures a Server.
type Option func(*Server)

// WithTokenLifetime sets the life of issued access tokens (default 7200 s);
// a short one (60 s) exercises the client's refresh. Like WeChat,
// stable_token hands out the same token until min(5 min, lifetime/2) before
// its expiry, then a new one while the old stays valid to its end.
func WithTokenLifetime(d time.Duration) Option { return func(s *Server) { s.tokenLife = d } }

// WithLatency delays every answer by d, e.g. to make concurrent callers
// overlap or to hit a client timeout. See also SetLatency.
func WithLatency(d time.Duration) Option { return func(s *Server) { s.latency = d } }

// WithClock replaces the clock that decides token and QR expiry.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// Server is a fake WeChat API server for one official account.
type Server struct {
	srv           *httptest.Server
	appID, secret string
	tokenLife     time.Duration
	now           func() time.Time
	image         []byte
	conns         atomic.Int64 // TCP connections accepted

	mu           sync.Mutex // guards all below
	latency      time.Duration
	tokens       map[string]time.Time // issued token -> expiry
	stable       string               // current stable_token token
	tokenFetches int
	calls        map[string]int
	qrs          []QR
	tickets      map[string]int // ticket -> index in qrs
	users        map[string]wechat.UserInfo
	fails        map[string][]failure
}

type failure struct {
	errcode int // when status == 0
	status  int
	n       int
}

// New starts a Server for the account appID/secret; it is closed when the
// test ends.
func New(t testing.TB, appID, secret string, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		appID:     appID,
		secret:    secret,
		tokenLife: DefaultTokenLifetime,
		now:       time.Now,
		image:     jpegImage(),
		tokens:    map[string]time.Time{},
		calls:     map[string]int{},
		tickets:   map[string]int{},
		users:     map[string]wechat.UserInfo{},
		fails:     map[string][]failure{},
	}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(PathStableToken, s.handleStableToken)
	mux.HandleFunc(PathToken, s.handleToken)
	mux.HandleFunc(PathQRCreate, s.handleQRCreate)
	mux.HandleFunc(PathShowQR, s.handleShowQR)
	mux.HandleFunc(PathUserInfo, s.handleUserInfo)
	s.srv = httptest.NewUnstartedServer(s.middleware(mux))
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

// SetLatency delays every following answer by d (0: none).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// FailNext makes the next n requests to path answer {"errcode":errcode}
// (HTTP 200) without doing anything else. Calls queue up: FailNext(p, 40001,
// 1) then FailNext(p, 45009, 1) fails the next two calls in that order.
func (s *Server) FailNext(path string, errcode, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails[path] = append(s.fails[path], failure{errcode: errcode, n: n})
}

// FailNextStatus makes the next n requests to path answer with HTTP status
// and a plain-text body, as a broken proxy would.
func (s *Server) FailNextStatus(path string, status, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails[path] = append(s.fails[path], failure{status: status, n: n})
}

// ExpireTokens makes every token issued so far expired: API calls with them
// get 42001, and the next token request issues a new token.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.now().Add(-time.Second)
	for tok := range s.tokens {
		s.tokens[tok] = past
	}
	s.stable = ""
}

// CurrentToken returns the token stable_token currently hands out, or ""
// when none is valid. Tests use it to check that it never leaks.
func (s *Server) CurrentToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stable != "" && s.now().Before(s.tokens[s.stable]) {
		return s.stable
	}
	return ""
}

// TokenFetches returns how many requests reached /cgi-bin/stable_token and
// /cgi-bin/token, successful or not.
func (s *Server) TokenFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenFetches
}

// Calls returns how many requests reached path, whatever the answer.
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// QRCodes returns the QR codes created so far, oldest first.
func (s *Server) QRCodes() []QR {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]QR(nil), s.qrs...)
}

// TicketForScene returns the ticket of the newest QR code created for scene,
// so that a test can simulate the scan of the code its code under test made.
func (s *Server) TicketForScene(scene string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.qrs) - 1; i >= 0; i-- {
		if s.qrs[i].Scene == scene {
			return s.qrs[i].Ticket, true
		}
	}
	return "", false
}

// AddUser makes /cgi-bin/user/info answer u for u.OpenID. Unknown openids
// get 40003.
func (s *Server) AddUser(u wechat.UserInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.OpenID] = u
}

// middleware counts calls, applies latency and injected failures.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[r.URL.Path]++
		if r.URL.Path == PathStableToken || r.URL.Path == PathToken {
			s.tokenFetches++
		}
		latency := s.latency
		var f *failure
		if q := s.fails[r.URL.Path]; len(q) > 0 {
			cp := q[0]
			f = &cp
			if q[0].n--; q[0].n <= 0 {
				s.fails[r.URL.Path] = q[1:]
			}
		}
		s.mu.Unlock()

		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		switch {
		case f != nil && f.status != 0:
			http.Error(w, http.StatusText(f.status), f.status)
		case f != nil:
			writeErr(w, f.errcode)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	// WeChat's real header says "encoding", not "charset".
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, errcode int) {
	writeJSON(w, map[string]any{"errcode": errcode, "errmsg": ErrMsg(errcode)})
}

// checkCredentials returns the errcode for a token request, 0 if it is good.
func (s *Server) checkCredentials(grantType, appID, secret string) int {
	switch {
	case grantType != "client_credential":
		return 40002
	case appID == "":
		return 41002
	case appID != s.appID:
		return 40013
	case secret == "":
		return 41004
	case secret != s.secret:
		return 40125
	}
	return 0
}

func (s *Server) handleStableToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002)
		return
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, 47001)
		return
	}
	if code := s.checkCredentials(req.GrantType, req.AppID, req.Secret); code != 0 {
		writeErr(w, code)
		return
	}
	s.mu.Lock()
	now := s.now()
	if req.ForceRefresh && s.stable != "" {
		s.tokens[s.stable] = now.Add(-time.Second)
		s.stable = ""
	}
	// Like WeChat, hand out the same token until it nears expiry, then a
	// new one while the old stays valid to its end.
	rotate := min(5*time.Minute, s.tokenLife/2)
	if s.stable == "" || s.tokens[s.stable].Sub(now) < rotate {
		s.stable = newToken()
		s.tokens[s.stable] = now.Add(s.tokenLife)
	}
	tok, left := s.stable, s.tokens[s.stable].Sub(now)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": int(left.Round(time.Second) / time.Second)})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErr(w, 43002)
		return
	}
	q := r.URL.Query()
	if code := s.checkCredentials(q.Get("grant_type"), q.Get("appid"), q.Get("secret")); code != 0 {
		writeErr(w, code)
		return
	}
	// Classic tokens are a separate family; each fetch issues a new one.
	s.mu.Lock()
	tok := newToken()
	s.tokens[tok] = s.now().Add(s.tokenLife)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": int(s.tokenLife / time.Second)})
}

// checkToken answers the errcode for the request's access_token; 0 if valid.
func (s *Server) checkToken(r *http.Request) int {
	tok := r.URL.Query().Get("access_token")
	if tok == "" {
		return 41001
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	switch {
	case !ok:
		return 40001
	case !s.now().Before(exp):
		return 42001
	}
	return 0
}

func (s *Server) handleQRCreate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002)
		return
	}
	if code := s.checkToken(r); code != 0 {
		writeErr(w, code)
		return
	}
	var req struct {
		ExpireSeconds int64  `json:"expire_seconds"`
		ActionName    string `json:"action_name"`
		ActionInfo    struct {
			Scene struct {
				SceneStr string `json:"scene_str"`
				SceneID  int64  `json:"scene_id"`
			} `json:"scene"`
		} `json:"action_info"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, 47001)
		return
	}
	scene := req.ActionInfo.Scene
	var q QR
	q.ActionName = req.ActionName
	switch req.ActionName {
	case "QR_STR_SCENE", "QR_LIMIT_STR_SCENE":
		if scene.SceneStr == "" || len(scene.SceneStr) > 64 {
			writeErr(w, 40053)
			return
		}
		q.Scene = scene.SceneStr
	case "QR_SCENE":
		if scene.SceneID == 0 || scene.SceneID > 1<<32-1 || scene.SceneID < -(1<<31) {
			writeErr(w, 40053)
			return
		}
		q.Scene = strconv.FormatInt(scene.SceneID, 10)
	case "QR_LIMIT_SCENE":
		if scene.SceneID < 1 || scene.SceneID > 100000 {
			writeErr(w, 40053)
			return
		}
		q.Scene = strconv.FormatInt(scene.SceneID, 10)
	default:
		writeErr(w, 40053)
		return
	}
	if req.ActionName == "QR_STR_SCENE" || req.ActionName == "QR_SCENE" {
		switch {
		case req.ExpireSeconds <= 0:
			q.ExpireSeconds = int(DefaultQRExpire / time.Second)
		case req.ExpireSeconds > 2592000:
			q.ExpireSeconds = 2592000
		default:
			q.ExpireSeconds = int(req.ExpireSeconds)
		}
	}
	q.Ticket = newTicket()
	q.URL = "http://weixin.qq.com/q/" + randHex(12)
	s.mu.Lock()
	q.CreatedAt = s.now()
	s.tickets[q.Ticket] = len(s.qrs)
	s.qrs = append(s.qrs, q)
	s.mu.Unlock()
	resp := map[string]any{"ticket": q.Ticket, "url": q.URL}
	if q.ExpireSeconds > 0 {
		resp["expire_seconds"] = q.ExpireSeconds
	}
	writeJSON(w, resp)
}

func (s *Server) handleShowQR(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	i, ok := s.tickets[ticket]
	ok = ok && !s.qrs[i].expired(s.now())
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "max-age=604800")
	w.Header().Set("Content-Length", strconv.Itoa(len(s.image)))
	_, _ = w.Write(s.image)
}

func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErr(w, 43002)
		return
	}
	if code := s.checkToken(r); code != 0 {
		writeErr(w, code)
		return
	}
	s.mu.Lock()
	u, ok := s.users[r.URL.Query().Get("openid")]
	s.mu.Unlock()
	if !ok {
		writeErr(w, 40003)
		return
	}
	if u.TagIDList == nil {
		u.TagIDList = []int64{}
	}
	writeJSON(w, u)
}

// newToken returns a token shaped like WeChat's: long, [A-Za-z0-9_-].
func newToken() string {
	return "86_" + base64.RawURLEncoding.EncodeToString(randBytes(96))
}

// newTicket returns a unique ticket that, like WeChat's base64 tickets,
// contains '+', '/' and '='.
func newTicket() string {
	return "gQF+" + base64.RawStdEncoding.EncodeToString(randBytes(24)) + "/" +
		base64.StdEncoding.EncodeToString(randBytes(16)) // ends in "=="
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

func randHex(n int) string { return hex.EncodeToString(randBytes(n)) }

// jpegImage returns a small checkerboard JPEG to stand in for a QR image.
func jpegImage() []byte {
	img := image.NewGray(image.Rect(0, 0, 21, 21))
	for y := range 21 {
		for x := range 21 {
			if (x/3+y/3)%2 == 0 {
				img.SetGray(x, y, color.Gray{Y: 0})
			} else {
				img.SetGray(x, y, color.Gray{Y: 255})
			}
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		panic(err)
	}
	return b.Bytes()
}
