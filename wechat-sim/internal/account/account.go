// Package account is the simulated WeChat official account: the access
// tokens it has issued, its parametric QR codes, who follows it, and the
// Mini Program login codes of its users. It holds state and WeChat's rules
// about that state; the HTTP shapes are in package api and the phone page in
// package phone.
//
// Every method is safe for concurrent use. Errors are WeChat errcodes, the
// numbers the real API answers with (see Err* and ErrMsg).
package account

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strconv"
	"sync"
	"time"
)

// WeChat errcodes the simulated account answers with.
const (
	ErrSystem             = -1
	ErrInvalidCredential  = 40001 // unknown or superseded access token
	ErrInvalidGrantType   = 40002
	ErrInvalidOpenID      = 40003
	ErrInvalidAppID       = 40013
	ErrInvalidCode        = 40029 // js_code unknown or expired
	ErrInvalidActionInfo  = 40053
	ErrInvalidURL         = 40066
	ErrInvalidArgs        = 40097
	ErrInvalidSecret      = 40125
	ErrInvalidScene       = 40129
	ErrCodeUsed           = 40163
	ErrInvalidSceneLength = 40169 // also: the body is not JSON
	ErrTokenMissing       = 41001
	ErrAppIDMissing       = 41002
	ErrSecretMissing      = 41004
	ErrCodeMissing        = 41008
	ErrInvalidPage        = 41030
	ErrTokenExpired       = 42001
	ErrRequireGET         = 43001
	ErrRequirePOST        = 43002
	ErrDailyQuota         = 45009
	ErrDataFormat         = 47001
)

var errMsgs = map[int]string{
	ErrSystem:             "system error",
	ErrInvalidCredential:  "invalid credential, access_token is invalid or not latest",
	ErrInvalidGrantType:   "invalid grant_type",
	ErrInvalidOpenID:      "invalid openid",
	ErrInvalidAppID:       "invalid appid",
	ErrInvalidCode:        "invalid code",
	ErrInvalidActionInfo:  "invalid action info",
	ErrInvalidURL:         "invalid url",
	ErrInvalidArgs:        "invalid args",
	ErrInvalidSecret:      "invalid appsecret",
	ErrInvalidScene:       "invalid scene",
	ErrCodeUsed:           "code been used",
	ErrInvalidSceneLength: "invalid length for scene, or the data is not json string",
	ErrTokenMissing:       "access_token missing",
	ErrAppIDMissing:       "appid missing",
	ErrSecretMissing:      "appsecret missing",
	ErrCodeMissing:        "missing code",
	ErrInvalidPage:        "invalid page",
	ErrTokenExpired:       "access_token expired",
	ErrRequireGET:         "require GET method",
	ErrRequirePOST:        "require POST method",
	ErrDailyQuota:         "reach max api daily quota limit",
	ErrDataFormat:         "data format error",
}

// ErrMsg returns WeChat's errmsg for errcode.
func ErrMsg(errcode int) string {
	if m, ok := errMsgs[errcode]; ok {
		return m
	}
	return "error " + strconv.Itoa(errcode)
}

// Limits WeChat documents (protocol notes §5, §6, §8).
const (
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

// Config describes the account.
type Config struct {
	AppID, Secret string
	// TokenTTL is the life of an access token (WeChat: 7200 s).
	TokenTTL time.Duration
	// ScanURL returns the content of the QR image of the code with id: the
	// simulator's phone page for it.
	ScanURL func(id string) string
	// MiniURL returns the content of a Mini Program code image with id:
	// the simulator's stand-in for the Mini Program page.
	MiniURL func(id string) string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Account is the simulated official account. Create it with New.
type Account struct {
	cfg Config
	now func() time.Time

	mu        sync.Mutex // guards everything below
	tokens    map[string]*issuedToken
	stable    string // the token stable_token hands out in normal mode
	classic   string // the latest token of /cgi-bin/token
	forced    []time.Time
	qrs       map[string]*QR // by ID
	tickets   map[string]*QR // by Ticket
	users     map[string]*User
	jsCodes   map[string]*jsCode
	wxaCodes  map[string]WxaCode
	permanent int
	swept     time.Time // last sweep
}

// WxaCode is a Mini Program code made by getwxacodeunlimit.
type WxaCode struct {
	ID    string
	Scene string
	Page  string
	// URL is what the image encodes: the simulator's Mini Program page.
	URL string
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
	Scene  string
	Ticket string
	// URL is what the image encodes: the simulator's scan URL.
	URL       string
	CreatedAt time.Time
	// ExpiresAt is zero for a permanent code.
	ExpiresAt time.Time
}

// Temporary reports whether q expires.
func (q QR) Temporary() bool { return !q.ExpiresAt.IsZero() }

// ExpiredAt reports whether q no longer works at t.
func (q QR) ExpiredAt(t time.Time) bool { return q.Temporary() && !t.Before(q.ExpiresAt) }

// User is someone the account has met: a follower, a former follower, or a
// Mini Program user.
type User struct {
	OpenID  string // for the official account
	UnionID string // the same person across the apps of one Open Platform account
	// MiniOpenID is the person's OpenID for the Mini Program; it differs
	// from OpenID, as on WeChat.
	MiniOpenID    string
	Nickname      string // shown by the simulator only; WeChat no longer returns it
	Subscribed    bool
	SubscribeTime time.Time
	// QRScene is the scene of the QR code through which the user last
	// followed, empty for another way.
	QRScene string
}

type jsCode struct {
	openid  string // the person's official-account OpenID
	expires time.Time
	used    bool
}

// New returns an account with no tokens, codes or users.
func New(cfg Config) *Account {
	a := &Account{
		cfg:      cfg,
		now:      cfg.Now,
		tokens:   map[string]*issuedToken{},
		qrs:      map[string]*QR{},
		tickets:  map[string]*QR{},
		users:    map[string]*User{},
		jsCodes:  map[string]*jsCode{},
		wxaCodes: map[string]WxaCode{},
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// AppID returns the account's AppID.
func (a *Account) AppID() string { return a.cfg.AppID }

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
	case appID != a.cfg.AppID:
		return ErrInvalidAppID
	case secret == "":
		return ErrSecretMissing
	case secret != a.cfg.Secret:
		return ErrInvalidSecret
	}
	return 0
}

// StableToken is /cgi-bin/stable_token after the credentials were checked.
// In normal mode it returns the current token until it comes within
// StableRotateMargin (at most half the TTL) of its expiry, then a new one
// while the old stays valid to its end. force rotates now and revokes the
// previous token; more than ForceRefreshPerDay forced calls in 24 hours get
// ErrDailyQuota. It returns the token and its remaining life.
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
	margin := min(StableRotateMargin, a.cfg.TokenTTL/2)
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
	return a.classic, a.cfg.TokenTTL
}

// issue makes a new token; mu must be held.
func (a *Account) issue(now time.Time) string {
	tok := "86_" + base64.RawURLEncoding.EncodeToString(randBytes(96))
	a.tokens[tok] = &issuedToken{expires: now.Add(a.cfg.TokenTTL)}
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

// ExpireTokens makes every token issued so far expired, as if the TTL had
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
	} else {
		if a.permanent >= MaxLimitSceneID {
			return QR{}, ErrDailyQuota
		}
		a.permanent++
	}
	q.ID = base64.RawURLEncoding.EncodeToString(randBytes(12))
	q.Ticket = newTicket()
	q.URL = a.cfg.ScanURL(q.ID)
	a.qrs[q.ID] = &q
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
	q, ok := a.qrs[id]
	if !ok {
		return QR{}, false
	}
	return *q, true
}

// ActiveQRs returns the codes that have not expired, newest first.
func (a *Account) ActiveQRs() []QR {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	var out []QR
	for _, q := range a.qrs {
		if !q.ExpiredAt(now) {
			out = append(out, *q)
		}
	}
	slices.SortFunc(out, func(x, y QR) int { return y.CreatedAt.Compare(x.CreatedAt) })
	return out
}

// Now returns the account's clock.
func (a *Account) Now() time.Time { return a.now() }

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
			UnionID:    derive("unionid", a.cfg.AppID, openid),
			MiniOpenID: derive("mini", a.cfg.AppID, openid),
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
	openid := derive("seed", a.cfg.AppID, nickname)
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

// Meet remembers openid without changing whether it follows.
func (a *Account) Meet(openid, nickname string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u := a.user(openid); nickname != "" {
		u.Nickname = nickname
	}
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
		return compareStrings(x.OpenID, y.OpenID)
	})
	return out
}

func compareStrings(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
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
	c.URL = a.cfg.MiniURL(c.ID)
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
	for k, q := range a.qrs {
		if q.Temporary() && q.ExpiresAt.Before(old) {
			delete(a.qrs, k)
			delete(a.tickets, q.Ticket)
		}
	}
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

// RandomHex returns n random bytes in hex.
func RandomHex(n int) string { return hex.EncodeToString(randBytes(n)) }

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails
	return b
}
