package wechattest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
)

// Limits WeChat documents.
const (
	// DefaultTokenLifetime is WeChat's token life, 7200 s.
	DefaultTokenLifetime = 7200 * time.Second
	// DefaultQRExpire is the life of a temporary QR code created without
	// expire_seconds.
	DefaultQRExpire = 60 * time.Second
	// MaxQRExpire is the longest life of a temporary QR code, 30 days.
	MaxQRExpire = 30 * 24 * time.Hour
	// MaxSceneStr is the longest scene_str.
	MaxSceneStr = 64
	// MaxLimitSceneID is the largest scene_id of a permanent QR code.
	MaxLimitSceneID = 100000
	// StableRotateMargin is how long before expiry stable_token stops
	// handing out the current token (capped at half the token's life).
	StableRotateMargin = 5 * time.Minute
	// ClassicOverlap is how long a classic token stays valid after the
	// next /cgi-bin/token call replaces it.
	ClassicOverlap = 5 * time.Minute
	// ForceRefreshPerDay is how many force_refresh calls stable_token
	// allows a day before answering 45009.
	ForceRefreshPerDay = 20
	// JSCodeLife is how long a Mini Program login code can be exchanged.
	JSCodeLife = 5 * time.Minute
	// forget is how long expired tokens and codes are remembered (and so
	// answered as expired rather than unknown).
	forget = time.Hour
)

// Option configures an Account.
type Option func(*Account)

// WithTokenLifetime sets the life of issued access tokens (default 7200 s);
// a short one (60 s) exercises the client's refresh.
func WithTokenLifetime(d time.Duration) Option { return func(a *Account) { a.tokenLife = d } }

// WithLatency delays every answer by d, e.g. to make concurrent callers
// overlap or to hit a client timeout. See also SetLatency.
func WithLatency(d time.Duration) Option { return func(a *Account) { a.latency = d } }

// WithClock replaces the clock that decides token and code expiry.
func WithClock(now func() time.Time) Option { return func(a *Account) { a.now = now } }

// WithScanURL sets what the image of the QR code with id encodes (the
// "url" of qrcode/create); default "http://weixin.qq.com/q/<id>", as on
// WeChat. The simulator points it at its phone page.
func WithScanURL(f func(id string) string) Option { return func(a *Account) { a.scanURL = f } }

// WithMiniURL sets what the image of the Mini Program code with id
// encodes; the simulator points it at its Mini Program page.
func WithMiniURL(f func(id string) string) Option { return func(a *Account) { a.miniURL = f } }

// WithWxaPages sets the published pages of the Mini Program (default
// pages/index/index); getwxacodeunlimit with check_path for another page
// answers 41030.
func WithWxaPages(pages ...string) Option { return func(a *Account) { a.wxaPages = pages } }

// WithLogger logs the API's errors and the codes it creates (default:
// nothing). No secret or token is logged.
func WithLogger(l *slog.Logger) Option { return func(a *Account) { a.log = l } }

// Account is a fake WeChat official account with its Mini Program: the
// access tokens it has issued, its QR codes, who follows it, and the Mini
// Program login codes of its users, with WeChat's rules about them. It is
// also the http.Handler of the API that serves that state. Create it with
// NewAccount, or serve it for a test with New.
//
// Every method is safe for concurrent use. Errors are WeChat errcodes
// (see Err* and ErrMsg).
type Account struct {
	appID, secret string
	tokenLife     time.Duration
	now           func() time.Time
	scanURL       func(id string) string
	miniURL       func(id string) string
	wxaPages      []string
	log           *slog.Logger
	handler       http.Handler

	mu sync.Mutex // guards everything below
	// What tests steer and observe.
	latency      time.Duration
	calls        map[string]int
	tokenFetches int
	fails        map[string][]failure
	// The account's state.
	tokens    map[string]*issuedToken
	stable    string // the token stable_token hands out in normal mode
	classic   string // the latest token of /cgi-bin/token
	forced    []time.Time
	qrs       []*QR          // oldest first
	qrByID    map[string]*QR // by ID
	tickets   map[string]*QR // by Ticket
	users     map[string]*User
	jsCodes   map[string]*jsCode
	wxaCodes  map[string]WxaCode
	oauth     oauthState // web authorization (oauth.go)
	permanent int
	swept     time.Time // last sweep
}

type issuedToken struct {
	expires time.Time
	revoked bool // superseded by force_refresh
}

// QR is a parametric QR code the account created.
type QR struct {
	ID         string // in the scan URL
	ActionName string // QR_STR_SCENE, QR_SCENE, QR_LIMIT_STR_SCENE or QR_LIMIT_SCENE
	// Scene is scene_str, or scene_id in decimal.
	Scene         string
	ExpireSeconds int // as granted; 0 for a permanent code
	Ticket        string
	// URL is what the image encodes (see WithScanURL).
	URL       string
	CreatedAt time.Time
	// ExpiresAt is zero for a permanent code.
	ExpiresAt time.Time
}

// Temporary reports whether q expires.
func (q QR) Temporary() bool { return !q.ExpiresAt.IsZero() }

// ExpiredAt reports whether q no longer works at t.
func (q QR) ExpiredAt(t time.Time) bool { return q.Temporary() && !t.Before(q.ExpiresAt) }

// WxaCode is a Mini Program code made by getwxacodeunlimit.
type WxaCode struct {
	ID    string
	Scene string
	Page  string
	// URL is what the image encodes (see WithMiniURL).
	URL string
}

// User is someone the account has met: a follower, a former follower, or a
// Mini Program user.
type User struct {
	OpenID  string // for the official account
	UnionID string // the same person across the apps of one Open Platform account
	// MiniOpenID is the person's OpenID for the Mini Program; it differs
	// from OpenID, as on WeChat.
	MiniOpenID string
	// Nickname is shown by the simulator; user/info answers it only when
	// AddUser set it (WeChat no longer returns it).
	Nickname      string
	Subscribed    bool
	SubscribeTime time.Time
	// QRScene is the scene of the QR code through which the user last
	// followed, empty for another way.
	QRScene string

	profile *wechat.UserInfo // set by AddUser: the other fields user/info answers
}

type jsCode struct {
	openid  string // the person's official-account OpenID
	expires time.Time
	used    bool
}

// NewAccount returns the account appID/secret with no tokens, codes or
// users.
func NewAccount(appID, secret string, opts ...Option) *Account {
	a := &Account{
		appID:     appID,
		secret:    secret,
		tokenLife: DefaultTokenLifetime,
		now:       time.Now,
		scanURL:   func(id string) string { return "http://weixin.qq.com/q/" + id },
		miniURL:   func(id string) string { return "https://mp.weixin.qq.com/a/" + id },
		wxaPages:  []string{"pages/index/index"},
		log:       slog.New(slog.DiscardHandler),
		calls:     map[string]int{},
		fails:     map[string][]failure{},
		tokens:    map[string]*issuedToken{},
		qrByID:    map[string]*QR{},
		tickets:   map[string]*QR{},
		users:     map[string]*User{},
		jsCodes:   map[string]*jsCode{},
		wxaCodes:  map[string]WxaCode{},
		oauth:     oauthState{codes: map[string]*oauthCode{}},
	}
	for _, o := range opts {
		o(a)
	}
	a.handler = a.middleware(a.routes())
	return a
}

// AppID returns the account's AppID.
func (a *Account) AppID() string { return a.appID }

// Now returns the account's clock.
func (a *Account) Now() time.Time { return a.now() }

// CheckCredentials returns the errcode of a token request, 0 if appid and
// secret are the account's and grantType is client_credential.
func (a *Account) CheckCredentials(grantType, appID, secret string) int {
	if code := a.CheckApp(appID, secret); code != 0 {
		return code
	}
	if grantType != "client_credential" {
		return ErrInvalidGrantType
	}
	return 0
}

// CheckApp returns the errcode for appid and secret, 0 if they are the
// account's.
func (a *Account) CheckApp(appID, secret string) int {
	switch {
	case appID == "":
		return ErrAppIDMissing
	case appID != a.appID:
		return ErrInvalidAppID
	case secret == "":
		return ErrSecretMissing
	case secret != a.secret:
		return ErrInvalidSecret
	}
	return 0
}

// StableToken is /cgi-bin/stable_token after the credentials were checked.
// In normal mode it returns the current token until it comes within
// StableRotateMargin (at most half the lifetime) of its expiry, then a new
// one while the old stays valid to its end. force rotates now and revokes
// the previous token (40001 from then on); more than ForceRefreshPerDay
// forced calls in 24 hours get ErrDailyQuota. It returns the token and its
// remaining life.
func (a *Account) StableToken(force bool) (string, time.Duration, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweep(now)
	if force {
		a.forced = slices.DeleteFunc(a.forced, func(t time.Time) bool { return now.Sub(t) >= 24*time.Hour })
		if len(a.forced) >= ForceRefreshPerDay {
			return "", 0, ErrDailyQuota
		}
		a.forced = append(a.forced, now)
		if t, ok := a.tokens[a.stable]; ok {
			t.revoked = true
		}
		a.stable = ""
	}
	margin := min(StableRotateMargin, a.tokenLife/2)
	if t, ok := a.tokens[a.stable]; !ok || t.revoked || t.expires.Sub(now) <= margin {
		a.stable = a.issue(now)
	}
	return a.stable, a.tokens[a.stable].expires.Sub(now), 0
}

// ClassicToken is /cgi-bin/token after the credentials were checked: every
// call issues a new token, and the previous one stays valid for at most
// ClassicOverlap more. Classic and stable tokens do not affect each other.
func (a *Account) ClassicToken() (string, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweep(now)
	if t, ok := a.tokens[a.classic]; ok {
		if end := now.Add(ClassicOverlap); t.expires.After(end) {
			t.expires = end
		}
	}
	a.classic = a.issue(now)
	return a.classic, a.tokenLife
}

// issue makes a new token shaped like WeChat's (long, [A-Za-z0-9_-]); mu
// must be held.
func (a *Account) issue(now time.Time) string {
	tok := "86_" + base64.RawURLEncoding.EncodeToString(randBytes(96))
	a.tokens[tok] = &issuedToken{expires: now.Add(a.tokenLife)}
	return tok
}

// CheckToken returns the errcode for an access_token, 0 if it is valid:
// ErrTokenMissing, ErrInvalidCredential (unknown or revoked) or
// ErrTokenExpired.
func (a *Account) CheckToken(tok string) int {
	if tok == "" {
		return ErrTokenMissing
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tokens[tok]
	switch {
	case !ok || t.revoked:
		return ErrInvalidCredential
	case !a.now().Before(t.expires):
		return ErrTokenExpired
	}
	return 0
}

// CurrentToken returns the token stable_token currently hands out, or ""
// when none is valid. Tests use it to check that it never leaks.
func (a *Account) CurrentToken() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.tokens[a.stable]; ok && !t.revoked && a.now().Before(t.expires) {
		return a.stable
	}
	return ""
}

// ExpireTokens makes every token issued so far expired, as if its life had
// passed: API calls with them get 42001 and the next token request gets a
// new one.
func (a *Account) ExpireTokens() {
	a.mu.Lock()
	defer a.mu.Unlock()
	past := a.now().Add(-time.Second)
	for _, t := range a.tokens {
		if t.expires.After(past) {
			t.expires = past
		}
	}
}

// QRRequest is the body of /cgi-bin/qrcode/create.
type QRRequest struct {
	ActionName    string
	SceneStr      string
	SceneID       int64
	ExpireSeconds int64
}

// CreateQR creates a parametric QR code, or returns ErrInvalidActionInfo
// for an unknown action or a scene outside WeChat's limits. A temporary code
// without expire_seconds lives DefaultQRExpire; longer than MaxQRExpire is
// cut to it.
func (a *Account) CreateQR(req QRRequest) (QR, int) {
	q := QR{ActionName: req.ActionName}
	temporary := false
	switch req.ActionName {
	case "QR_STR_SCENE", "QR_LIMIT_STR_SCENE":
		if req.SceneStr == "" || len(req.SceneStr) > MaxSceneStr {
			return QR{}, ErrInvalidActionInfo
		}
		q.Scene = req.SceneStr
		temporary = req.ActionName == "QR_STR_SCENE"
	case "QR_SCENE":
		// A 32-bit non-zero integer.
		if req.SceneID == 0 || req.SceneID > 1<<32-1 || req.SceneID < -(1<<31) {
			return QR{}, ErrInvalidActionInfo
		}
		q.Scene = strconv.FormatInt(req.SceneID, 10)
		temporary = true
	case "QR_LIMIT_SCENE":
		if req.SceneID < 1 || req.SceneID > MaxLimitSceneID {
			return QR{}, ErrInvalidActionInfo
		}
		q.Scene = strconv.FormatInt(req.SceneID, 10)
	default:
		return QR{}, ErrInvalidActionInfo
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweep(now)
	q.CreatedAt = now
	if temporary {
		life := DefaultQRExpire
		if req.ExpireSeconds > 0 {
			life = min(time.Duration(req.ExpireSeconds)*time.Second, MaxQRExpire)
		}
		q.ExpiresAt = now.Add(life)
		q.ExpireSeconds = int(life / time.Second)
	} else {
		if a.permanent >= MaxLimitSceneID {
			return QR{}, ErrDailyQuota
		}
		a.permanent++
	}
	q.ID = base64.RawURLEncoding.EncodeToString(randBytes(12))
	q.Ticket = newTicket()
	q.URL = a.scanURL(q.ID)
	a.qrs = append(a.qrs, &q)
	a.qrByID[q.ID] = &q
	a.tickets[q.Ticket] = &q
	return q, 0
}

// QRByTicket returns the code of ticket if it has not expired.
func (a *Account) QRByTicket(ticket string) (QR, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	q, ok := a.tickets[ticket]
	if !ok || q.ExpiredAt(a.now()) {
		return QR{}, false
	}
	return *q, true
}

// QRByID returns the code with id, expired or not, as long as the account
// remembers it (an hour past its expiry).
func (a *Account) QRByID(id string) (QR, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	q, ok := a.qrByID[id]
	if !ok {
		return QR{}, false
	}
	return *q, true
}

// QRCodes returns the QR codes the account remembers, oldest first.
func (a *Account) QRCodes() []QR {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]QR, 0, len(a.qrs))
	for _, q := range a.qrs {
		out = append(out, *q)
	}
	return out
}

// ActiveQRs returns the codes that have not expired, newest first.
func (a *Account) ActiveQRs() []QR {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	var out []QR
	for _, q := range slices.Backward(a.qrs) {
		if !q.ExpiredAt(now) {
			out = append(out, *q)
		}
	}
	return out
}

// TicketForScene returns the ticket of the newest QR code created for scene,
// so that a test can simulate the scan of the code its code under test made.
func (a *Account) TicketForScene(scene string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, q := range slices.Backward(a.qrs) {
		if q.Scene == scene {
			return q.Ticket, true
		}
	}
	return "", false
}

// NewOpenID returns a fresh OpenID shaped like WeChat's: 28 characters,
// starting with "o".
func NewOpenID() string {
	return "o" + base64.RawURLEncoding.EncodeToString(randBytes(20))[:27]
}

// user returns the user with openid, creating it; mu must be held.
func (a *Account) user(openid string) *User {
	u, ok := a.users[openid]
	if !ok {
		u = &User{
			OpenID:     openid,
			UnionID:    derive("unionid", a.appID, openid),
			MiniOpenID: derive("mini", a.appID, openid),
		}
		a.users[openid] = u
	}
	return u
}

// derive makes a stable OpenID-shaped id for openid in a namespace.
func derive(ns, appID, openid string) string {
	sum := sha256.Sum256([]byte(ns + "|" + appID + "|" + openid))
	return "o" + base64.RawURLEncoding.EncodeToString(sum[:])[:27]
}

// AddUser makes /cgi-bin/user/info answer u for u.OpenID: a follower if
// u.Subscribe is 1, with u's other fields; else only subscribe 0 and the
// openid. Unknown openids get 40003.
func (a *Account) AddUser(u wechat.UserInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := a.user(u.OpenID)
	rec.UnionID = u.UnionID
	rec.Nickname = u.Nickname
	rec.Subscribed = u.Subscribe == 1
	rec.SubscribeTime = time.Unix(u.SubscribeTime, 0)
	rec.QRScene = u.QRSceneStr
	rec.profile = &u
}

// Follow makes openid a follower that followed through scene ("" for
// another way), remembering the user. It reports whether the user already
// followed.
func (a *Account) Follow(openid, scene, nickname string) (already bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.user(openid)
	if nickname != "" {
		u.Nickname = nickname
	}
	if u.Subscribed {
		return true
	}
	u.Subscribed, u.SubscribeTime, u.QRScene = true, a.now(), scene
	return false
}

// AddFollower makes a follower named nickname whose OpenID is derived from
// the name and the AppID, so it is the same on every start.
func (a *Account) AddFollower(nickname string) User {
	openid := derive("seed", a.appID, nickname)
	a.Follow(openid, "", nickname)
	u, _ := a.User(openid)
	return u
}

// Unfollow makes openid a former follower; it reports whether the user
// followed.
func (a *Account) Unfollow(openid string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.users[openid]
	if !ok || !u.Subscribed {
		return false
	}
	u.Subscribed = false
	return true
}

// User returns the user with openid, if the account has met them.
func (a *Account) User(openid string) (User, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.users[openid]
	if !ok {
		return User{}, false
	}
	return *u, true
}

// Followers returns the current followers, earliest follow first.
func (a *Account) Followers() []User {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []User
	for _, u := range a.users {
		if u.Subscribed {
			out = append(out, *u)
		}
	}
	slices.SortFunc(out, func(x, y User) int {
		if c := x.SubscribeTime.Compare(y.SubscribeTime); c != 0 {
			return c
		}
		return strings.Compare(x.OpenID, y.OpenID)
	})
	return out
}

// IssueJSCode returns a Mini Program login code (what wx.login gives the
// Mini Program) for the person with official-account OpenID openid. It can
// be exchanged once, within JSCodeLife, with /sns/jscode2session.
func (a *Account) IssueJSCode(openid string) (code string, u User) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweep(now)
	code = base64.RawURLEncoding.EncodeToString(randBytes(24))
	a.jsCodes[code] = &jsCode{openid: openid, expires: now.Add(JSCodeLife)}
	return code, *a.user(openid)
}

// maxWxaCodes bounds the Mini Program codes remembered: they never expire.
const maxWxaCodes = 10000

// CreateWxaCode remembers a Mini Program code for scene and page.
func (a *Account) CreateWxaCode(scene, page string) WxaCode {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.wxaCodes) >= maxWxaCodes {
		for k := range a.wxaCodes { // forget any one
			delete(a.wxaCodes, k)
			break
		}
	}
	c := WxaCode{ID: base64.RawURLEncoding.EncodeToString(randBytes(12)), Scene: scene, Page: page}
	c.URL = a.miniURL(c.ID)
	a.wxaCodes[c.ID] = c
	return c
}

// WxaCodeByID returns the Mini Program code with id.
func (a *Account) WxaCodeByID(id string) (WxaCode, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.wxaCodes[id]
	return c, ok
}

// Session is the answer of /sns/jscode2session.
type Session struct {
	OpenID, UnionID, SessionKey string
}

// Code2Session exchanges a Mini Program login code: ErrCodeMissing,
// ErrInvalidCode (unknown or expired) or ErrCodeUsed.
func (a *Account) Code2Session(code string) (Session, int) {
	if code == "" {
		return Session{}, ErrCodeMissing
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.jsCodes[code]
	switch {
	case !ok || !a.now().Before(c.expires):
		return Session{}, ErrInvalidCode
	case c.used:
		return Session{}, ErrCodeUsed
	}
	c.used = true
	u := a.user(c.openid)
	return Session{
		OpenID:     u.MiniOpenID,
		UnionID:    u.UnionID,
		SessionKey: base64.StdEncoding.EncodeToString(randBytes(16)),
	}, 0
}

// sweepEvery spaces sweeps out: each walks every token and code, so
// sweeping on every call would cost O(codes) per QR code created.
const sweepEvery = 10 * time.Second

// sweep forgets tokens, QR codes and login codes that expired more than
// an hour ago, at most every sweepEvery; mu must be held.
func (a *Account) sweep(now time.Time) {
	if now.Sub(a.swept) < sweepEvery {
		return
	}
	a.swept = now
	old := now.Add(-forget)
	for k, t := range a.tokens {
		if t.expires.Before(old) {
			delete(a.tokens, k)
		}
	}
	a.qrs = slices.DeleteFunc(a.qrs, func(q *QR) bool {
		if q.Temporary() && q.ExpiresAt.Before(old) {
			delete(a.qrByID, q.ID)
			delete(a.tickets, q.Ticket)
			return true
		}
		return false
	})
	for k, c := range a.jsCodes {
		if c.expires.Before(old) {
			delete(a.jsCodes, k)
		}
	}
}

// newTicket returns a ticket that, like WeChat's base64 tickets, contains
// '+', '/' and '=', so a client that forgets to escape it gets 404.
func newTicket() string {
	return "gQF+" + base64.RawStdEncoding.EncodeToString(randBytes(30)) + "/" +
		base64.StdEncoding.EncodeToString(randBytes(16)) // ends in "=="
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails
	return b
}

// Clock is a settable clock for WithClock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock that stands at t until advanced.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
