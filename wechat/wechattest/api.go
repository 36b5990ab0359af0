package wechattest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scanlogin/scanlogin/wechat/wechattest/internal/qrimage"
)

// API paths an Account serves; use them with FailNext and Calls.
const (
	PathToken          = "/cgi-bin/token"
	PathStableToken    = "/cgi-bin/stable_token"
	PathQRCreate       = "/cgi-bin/qrcode/create"
	PathShowQR         = "/cgi-bin/showqrcode"
	PathUserInfo       = "/cgi-bin/user/info"
	PathCallbackIP     = "/cgi-bin/getcallbackip"
	PathWxaCode        = "/wxa/getwxacodeunlimit"
	PathJSCode2Session = "/sns/jscode2session"
)

// prefixes are the path prefixes of WeChat's API; unknown paths under
// them answer 40066.
var prefixes = []string{"/cgi-bin/", "/wxa/", "/sns/", "/connect/"}

// maxBody bounds every JSON request body.
const maxBody = 64 << 10

// showQRSize is the width in pixels of a showqrcode image.
const showQRSize = 430

// ServeHTTP serves WeChat's API for the account.
func (a *Account) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// Register adds the API's paths (everything under /cgi-bin/, /wxa/, /sns/
// and /connect/) to mux.
func (a *Account) Register(mux *http.ServeMux) {
	for _, p := range prefixes {
		mux.Handle(p, a)
	}
}

func (a *Account) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathToken, a.get(a.token))
	mux.HandleFunc(PathStableToken, a.post(a.stableToken))
	mux.HandleFunc(PathQRCreate, a.post(a.qrCreate))
	mux.HandleFunc(PathShowQR, a.showQR)
	mux.HandleFunc(PathUserInfo, a.get(a.userInfo))
	mux.HandleFunc(PathCallbackIP, a.get(a.callbackIP))
	mux.HandleFunc(PathWxaCode, a.post(a.wxaCode))
	mux.HandleFunc(PathJSCode2Session, a.get(a.code2Session))
	mux.HandleFunc(PathOAuthToken, a.get(a.oauthToken))
	mux.HandleFunc(PathOAuthAuthorize, a.authorize)
	for _, p := range prefixes {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { a.fail(w, r, ErrInvalidURL) })
	}
	return mux
}

type failure struct {
	errcode int // when status == 0
	status  int
	n       int
}

// SetLatency delays every following answer by d (0: none).
func (a *Account) SetLatency(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.latency = d
}

// FailNext makes the next n requests to path answer {"errcode":errcode}
// (HTTP 200) without doing anything else. Calls queue up: FailNext(p, 40001,
// 1) then FailNext(p, 45009, 1) fails the next two calls in that order.
func (a *Account) FailNext(path string, errcode, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fails[path] = append(a.fails[path], failure{errcode: errcode, n: n})
}

// FailNextStatus makes the next n requests to path answer with HTTP status
// and a plain-text body, as a broken proxy would.
func (a *Account) FailNextStatus(path string, status, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fails[path] = append(a.fails[path], failure{status: status, n: n})
}

// TokenFetches returns how many requests reached /cgi-bin/stable_token and
// /cgi-bin/token, successful or not.
func (a *Account) TokenFetches() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tokenFetches
}

// Calls returns how many requests reached path, whatever the answer.
func (a *Account) Calls(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[path]
}

// middleware counts calls, applies latency and injected failures.
func (a *Account) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.calls[r.URL.Path]++
		if r.URL.Path == PathStableToken || r.URL.Path == PathToken {
			a.tokenFetches++
		}
		latency := a.latency
		var f *failure
		if q := a.fails[r.URL.Path]; len(q) > 0 {
			cp := q[0]
			f = &cp
			if q[0].n--; q[0].n <= 0 {
				a.fails[r.URL.Path] = q[1:]
			}
		}
		a.mu.Unlock()

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
			a.fail(w, r, f.errcode)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// get and post answer another method with 43001/43002, as WeChat does.
func (a *Account) get(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			a.fail(w, r, ErrRequireGET)
			return
		}
		h(w, r)
	}
}

func (a *Account) post(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			a.fail(w, r, ErrRequirePOST)
			return
		}
		h(w, r)
	}
}

// writeJSON answers v with WeChat's Content-Type (it says "encoding", not
// "charset").
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

// fail answers errcode the way WeChat does: HTTP 200, a JSON body, and an
// errmsg that ends in a request id.
func (a *Account) fail(w http.ResponseWriter, r *http.Request, errcode int) {
	rid := hex.EncodeToString(randBytes(4)) + "-" + hex.EncodeToString(randBytes(4))
	a.log.Info("api error", "path", r.URL.Path, "errcode", errcode, "rid", rid)
	writeJSON(w, map[string]any{"errcode": errcode, "errmsg": ErrMsg(errcode) + " rid: " + rid})
}

// decode reads a JSON body into v; false when it is not JSON.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

func seconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

func (a *Account) token(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if code := a.CheckCredentials(q.Get("grant_type"), q.Get("appid"), q.Get("secret")); code != 0 {
		a.fail(w, r, code)
		return
	}
	tok, life := a.ClassicToken()
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": seconds(life)})
}

func (a *Account) stableToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if !decode(w, r, &req) {
		a.fail(w, r, ErrDataFormat)
		return
	}
	if code := a.CheckCredentials(req.GrantType, req.AppID, req.Secret); code != 0 {
		a.fail(w, r, code)
		return
	}
	tok, left, code := a.StableToken(req.ForceRefresh)
	if code != 0 {
		a.fail(w, r, code)
		return
	}
	a.log.Debug("stable token", "force_refresh", req.ForceRefresh, "expires_in", left)
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": seconds(left)})
}

// checkToken answers the access_token's error and returns false if it is
// not valid.
func (a *Account) checkToken(w http.ResponseWriter, r *http.Request) bool {
	if code := a.CheckToken(r.URL.Query().Get("access_token")); code != 0 {
		a.fail(w, r, code)
		return false
	}
	return true
}

func (a *Account) qrCreate(w http.ResponseWriter, r *http.Request) {
	if !a.checkToken(w, r) {
		return
	}
	var req struct {
		ExpireSeconds int64  `json:"expire_seconds"`
		ActionName    string `json:"action_name"`
		ActionInfo    *struct {
			Scene *struct {
				SceneStr string `json:"scene_str"`
				SceneID  int64  `json:"scene_id"`
			} `json:"scene"`
		} `json:"action_info"`
	}
	if !decode(w, r, &req) {
		a.fail(w, r, ErrDataFormat)
		return
	}
	// Without the "scene" wrapper WeChat would still answer, with a code
	// whose events carry scene 0; we refuse it so the bug shows.
	if req.ActionInfo == nil || req.ActionInfo.Scene == nil {
		a.fail(w, r, ErrInvalidActionInfo)
		return
	}
	q, code := a.CreateQR(QRRequest{
		ActionName:    req.ActionName,
		SceneStr:      req.ActionInfo.Scene.SceneStr,
		SceneID:       req.ActionInfo.Scene.SceneID,
		ExpireSeconds: req.ExpireSeconds,
	})
	if code != 0 {
		a.fail(w, r, code)
		return
	}
	a.log.Info("qr code created", "action", q.ActionName, "url", q.URL, "expires", q.ExpiresAt)
	resp := map[string]any{"ticket": q.Ticket, "url": q.URL}
	if q.Temporary() {
		resp["expire_seconds"] = q.ExpireSeconds
	}
	writeJSON(w, resp)
}

// showQR serves the image of a ticket: a PNG QR code of its URL. The
// ticket must be query-escaped, as WeChat requires: an unescaped '+'
// arrives as a space and the ticket is not found.
func (a *Account) showQR(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q, ok := a.QRByTicket(r.URL.Query().Get("ticket"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	img, err := qrimage.PNG(q.URL, qrimage.Options{Size: showQRSize})
	if err != nil {
		a.log.Error("render qr", "err", err)
		http.Error(w, "cannot render", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	// The code never changes, but it stops working at expiry.
	w.Header().Set("Cache-Control", "max-age=604800")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(img)
}

// userInfoJSON is the answer of /cgi-bin/user/info about a follower.
// Nickname, avatar, sex and region are no longer returned (since
// 2021-12-27); like WeChat it still sends some of the keys, empty.
type userInfoJSON struct {
	Subscribe      int     `json:"subscribe"`
	OpenID         string  `json:"openid"`
	Nickname       string  `json:"nickname"`
	Sex            int     `json:"sex"`
	Language       string  `json:"language"`
	City           string  `json:"city"`
	Province       string  `json:"province"`
	Country        string  `json:"country"`
	HeadImgURL     string  `json:"headimgurl"`
	SubscribeTime  int64   `json:"subscribe_time"`
	UnionID        string  `json:"unionid,omitempty"`
	Remark         string  `json:"remark"`
	GroupID        int64   `json:"groupid"`
	TagIDList      []int64 `json:"tagid_list"`
	SubscribeScene string  `json:"subscribe_scene"`
	QRScene        int64   `json:"qr_scene"`
	QRSceneStr     string  `json:"qr_scene_str"`
}

func (a *Account) userInfo(w http.ResponseWriter, r *http.Request) {
	if !a.checkToken(w, r) {
		return
	}
	u, ok := a.User(r.URL.Query().Get("openid"))
	if !ok {
		a.fail(w, r, ErrInvalidOpenID)
		return
	}
	if !u.Subscribed {
		// Nothing else is available about a non-follower.
		writeJSON(w, map[string]any{"subscribe": 0, "openid": u.OpenID})
		return
	}
	out := userInfoJSON{
		Subscribe: 1, OpenID: u.OpenID, Language: "zh_CN", SubscribeTime: u.SubscribeTime.Unix(),
		UnionID: u.UnionID, TagIDList: []int64{}, SubscribeScene: "ADD_SCENE_OTHERS", QRSceneStr: u.QRScene,
	}
	if u.QRScene != "" {
		out.SubscribeScene = "ADD_SCENE_QR_CODE"
	}
	if n, err := strconv.ParseInt(u.QRScene, 10, 64); err == nil {
		out.QRScene = n
	}
	if p := u.profile; p != nil {
		out.Nickname, out.HeadImgURL, out.Remark, out.GroupID = p.Nickname, p.HeadImgURL, p.Remark, p.GroupID
		if p.Language != "" {
			out.Language = p.Language
		}
		if p.SubscribeScene != "" {
			out.SubscribeScene = p.SubscribeScene
		}
		if p.QRScene != 0 {
			out.QRScene = p.QRScene
		}
		if p.TagIDList != nil {
			out.TagIDList = p.TagIDList
		}
	}
	writeJSON(w, out)
}

func (a *Account) callbackIP(w http.ResponseWriter, r *http.Request) {
	if !a.checkToken(w, r) {
		return
	}
	writeJSON(w, map[string]any{"ip_list": []string{"127.0.0.1", "::1"}})
}

// sceneChars are the characters getwxacodeunlimit accepts in scene, besides
// ASCII letters and digits.
const sceneChars = "!#$&'()*+,/:;=?@-._~"

func validWxaScene(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(sceneChars, c) >= 0) {
			return false
		}
	}
	return true
}

// wxaCode is getwxacodeunlimit: the image bytes on success (JPEG, or PNG
// with a transparent background for is_hyaline), JSON on error. Clients
// tell them apart by Content-Type or by Content-Disposition, so both are
// set as WeChat sets them.
func (a *Account) wxaCode(w http.ResponseWriter, r *http.Request) {
	if !a.checkToken(w, r) {
		return
	}
	var req struct {
		Scene      string `json:"scene"`
		Page       string `json:"page"`
		CheckPath  *bool  `json:"check_path"`
		EnvVersion string `json:"env_version"`
		Width      int    `json:"width"`
		IsHyaline  bool   `json:"is_hyaline"`
	}
	if !decode(w, r, &req) {
		a.fail(w, r, ErrInvalidSceneLength)
		return
	}
	switch {
	case req.Scene == "" || len(req.Scene) > 32:
		a.fail(w, r, ErrInvalidSceneLength)
		return
	case !validWxaScene(req.Scene):
		a.fail(w, r, ErrInvalidScene)
		return
	case strings.HasPrefix(req.Page, "/") || strings.Contains(req.Page, "?"):
		a.fail(w, r, ErrInvalidPage)
		return
	case req.EnvVersion != "" && req.EnvVersion != "release" && req.EnvVersion != "trial" && req.EnvVersion != "develop":
		a.fail(w, r, ErrInvalidArgs)
		return
	}
	checkPath := req.CheckPath == nil || *req.CheckPath
	if checkPath && req.Page != "" && !slices.Contains(a.wxaPages, req.Page) {
		a.fail(w, r, ErrInvalidPage)
		return
	}
	width := req.Width
	if width == 0 {
		width = 430
	}
	width = min(max(width, 280), 1280)
	content := a.CreateWxaCode(req.Scene, req.Page).URL
	var (
		img  []byte
		err  error
		ext  = "jpeg"
		mime = "image/jpeg"
	)
	if req.IsHyaline {
		img, err = qrimage.PNG(content, qrimage.Options{Size: width, Transparent: true})
		ext, mime = "png", "image/png"
	} else {
		img, err = qrimage.JPEG(content, qrimage.Options{Size: width})
	}
	if err != nil {
		a.log.Error("render wxacode", "err", err)
		a.fail(w, r, ErrSystem)
		return
	}
	w.Header().Set("Content-Type", mime)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "wxacode."+ext))
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	_, _ = w.Write(img)
}

// codeGrant checks what WeChat's code exchanges (jscode2session, the web
// OAuth access_token) check before the code: the app's credentials and
// grant_type=authorization_code. It answers WeChat's error when one fails.
func (a *Account) codeGrant(w http.ResponseWriter, r *http.Request, q url.Values) bool {
	if code := a.CheckApp(q.Get("appid"), q.Get("secret")); code != 0 {
		a.fail(w, r, code)
		return false
	}
	if q.Get("grant_type") != "authorization_code" {
		a.fail(w, r, ErrInvalidGrantType)
		return false
	}
	return true
}

func (a *Account) code2Session(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !a.codeGrant(w, r, q) {
		return
	}
	s, code := a.Code2Session(q.Get("js_code"))
	if code != 0 {
		a.fail(w, r, code)
		return
	}
	writeJSON(w, map[string]any{"openid": s.OpenID, "session_key": s.SessionKey, "unionid": s.UnionID})
}
