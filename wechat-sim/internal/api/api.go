// Package api serves the WeChat API paths that scanlogin calls, with
// WeChat's request and answer formats and its error codes:
//
//	GET  /cgi-bin/token             classic access token
//	POST /cgi-bin/stable_token      stable access token, normal and force mode
//	POST /cgi-bin/qrcode/create     parametric QR codes, temporary and permanent
//	GET  /cgi-bin/showqrcode        the PNG image of a code; 404 unknown or expired ticket
//	GET  /cgi-bin/user/info         a user the account has met
//	GET  /cgi-bin/getcallbackip     the addresses events come from
//	POST /wxa/getwxacodeunlimit     a Mini Program code image; JSON on error
//	GET  /sns/jscode2session        a Mini Program login code exchange
//
// Like WeChat, errors are HTTP 200 with {"errcode":N,"errmsg":"..."} and
// Content-Type "application/json; encoding=utf-8"; other paths under
// /cgi-bin/, /wxa/ and /sns/ answer 40066 invalid url.
package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scanlogin/scanlogin/wechat-sim/internal/account"
	"github.com/scanlogin/scanlogin/wechat-sim/internal/qrimage"
)

// maxBody bounds every JSON request body.
const maxBody = 64 << 10

// Options configure the API.
type Options struct {
	// WxaPages are the published pages of the simulated Mini Program; a
	// getwxacodeunlimit with check_path for another page gets 41030.
	WxaPages []string
}

// API is the HTTP face of an account.
type API struct {
	log  *slog.Logger
	acct *account.Account
	opt  Options
}

// New returns the API of acct.
func New(log *slog.Logger, acct *account.Account, opt Options) *API {
	return &API{log: log, acct: acct, opt: opt}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("/cgi-bin/token", a.get(a.token))
	mux.HandleFunc("/cgi-bin/stable_token", a.post(a.stableToken))
	mux.HandleFunc("/cgi-bin/qrcode/create", a.post(a.qrCreate))
	mux.HandleFunc("/cgi-bin/showqrcode", a.showQR)
	mux.HandleFunc("/cgi-bin/user/info", a.get(a.userInfo))
	mux.HandleFunc("/cgi-bin/getcallbackip", a.get(a.callbackIP))
	mux.HandleFunc("/wxa/getwxacodeunlimit", a.post(a.wxaCode))
	mux.HandleFunc("/sns/jscode2session", a.get(a.code2Session))
	for _, prefix := range []string{"/cgi-bin/", "/wxa/", "/sns/"} {
		mux.HandleFunc(prefix, func(w http.ResponseWriter, r *http.Request) {
			a.fail(w, r, account.ErrInvalidURL)
		})
	}
}

// get and post answer another method with 43001/43002, as WeChat does.
func (a *API) get(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			a.fail(w, r, account.ErrRequireGET)
			return
		}
		h(w, r)
	}
}

func (a *API) post(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			a.fail(w, r, account.ErrRequirePOST)
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
func (a *API) fail(w http.ResponseWriter, r *http.Request, errcode int) {
	rid := account.RandomHex(4) + "-" + account.RandomHex(4)
	a.log.Info("api error", "path", r.URL.Path, "errcode", errcode, "rid", rid)
	writeJSON(w, map[string]any{"errcode": errcode, "errmsg": account.ErrMsg(errcode) + " rid: " + rid})
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

func (a *API) token(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if code := a.acct.CheckCredentials(q.Get("grant_type"), q.Get("appid"), q.Get("secret")); code != 0 {
		a.fail(w, r, code)
		return
	}
	tok, life := a.acct.ClassicToken()
	a.log.Debug("classic token issued", "expires_in", life)
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": seconds(life)})
}

func (a *API) stableToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if !decode(w, r, &req) {
		a.fail(w, r, account.ErrDataFormat)
		return
	}
	if code := a.acct.CheckCredentials(req.GrantType, req.AppID, req.Secret); code != 0 {
		a.fail(w, r, code)
		return
	}
	tok, left, code := a.acct.StableToken(req.ForceRefresh)
	if code != 0 {
		a.fail(w, r, code)
		return
	}
	a.log.Debug("stable token", "force_refresh", req.ForceRefresh, "expires_in", left)
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": seconds(left)})
}

// checkToken answers the access_token's error and returns false if it is
// not valid.
func (a *API) checkToken(w http.ResponseWriter, r *http.Request) bool {
	if code := a.acct.CheckToken(r.URL.Query().Get("access_token")); code != 0 {
		a.fail(w, r, code)
		return false
	}
	return true
}

func (a *API) qrCreate(w http.ResponseWriter, r *http.Request) {
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
		a.fail(w, r, account.ErrDataFormat)
		return
	}
	// Without the "scene" wrapper WeChat would still answer, with a code
	// whose events carry scene 0; we refuse it so the bug shows.
	if req.ActionInfo == nil || req.ActionInfo.Scene == nil {
		a.fail(w, r, account.ErrInvalidActionInfo)
		return
	}
	q, code := a.acct.CreateQR(account.QRRequest{
		ActionName:    req.ActionName,
		SceneStr:      req.ActionInfo.Scene.SceneStr,
		SceneID:       req.ActionInfo.Scene.SceneID,
		ExpireSeconds: req.ExpireSeconds,
	})
	if code != 0 {
		a.fail(w, r, code)
		return
	}
	a.log.Info("qr code created", "action", q.ActionName, "scene", q.Scene, "url", q.URL, "expires", q.ExpiresAt)
	resp := map[string]any{"ticket": q.Ticket, "url": q.URL}
	if q.Temporary() {
		resp["expire_seconds"] = seconds(q.ExpiresAt.Sub(q.CreatedAt))
	}
	writeJSON(w, resp)
}

// showQR serves the image of a ticket: a PNG of the scan URL. The ticket
// must be query-escaped, as WeChat requires: an unescaped '+' arrives as a
// space and the ticket is not found.
func (a *API) showQR(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q, ok := a.acct.QRByTicket(r.URL.Query().Get("ticket"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	img, err := qrimage.PNG(q.URL, qrimage.Options{Size: 430})
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

func (a *API) userInfo(w http.ResponseWriter, r *http.Request) {
	if !a.checkToken(w, r) {
		return
	}
	openid := r.URL.Query().Get("openid")
	u, ok := a.acct.User(openid)
	if !ok {
		a.fail(w, r, account.ErrInvalidOpenID)
		return
	}
	if !u.Subscribed {
		// Nothing else is available about a non-follower.
		writeJSON(w, map[string]any{"subscribe": 0, "openid": u.OpenID})
		return
	}
	sceneName := "ADD_SCENE_OTHERS"
	if u.QRScene != "" {
		sceneName = "ADD_SCENE_QR_CODE"
	}
	qrScene := 0
	if n, err := strconv.Atoi(u.QRScene); err == nil {
		qrScene = n
	}
	// Nickname, avatar, sex and region are no longer returned (since
	// 2021-12-27); like WeChat we still send some of the keys, empty.
	writeJSON(w, map[string]any{
		"subscribe":       1,
		"openid":          u.OpenID,
		"nickname":        "",
		"sex":             0,
		"language":        "zh_CN",
		"city":            "",
		"province":        "",
		"country":         "",
		"headimgurl":      "",
		"subscribe_time":  u.SubscribeTime.Unix(),
		"unionid":         u.UnionID,
		"remark":          "",
		"groupid":         0,
		"tagid_list":      []int{},
		"subscribe_scene": sceneName,
		"qr_scene":        qrScene,
		"qr_scene_str":    u.QRScene,
	})
}

func (a *API) callbackIP(w http.ResponseWriter, r *http.Request) {
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
func (a *API) wxaCode(w http.ResponseWriter, r *http.Request) {
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
		a.fail(w, r, account.ErrInvalidSceneLength)
		return
	}
	switch {
	case req.Scene == "" || len(req.Scene) > 32:
		a.fail(w, r, account.ErrInvalidSceneLength)
		return
	case !validWxaScene(req.Scene):
		a.fail(w, r, account.ErrInvalidScene)
		return
	case strings.HasPrefix(req.Page, "/") || strings.Contains(req.Page, "?"):
		a.fail(w, r, account.ErrInvalidPage)
		return
	case req.EnvVersion != "" && req.EnvVersion != "release" && req.EnvVersion != "trial" && req.EnvVersion != "develop":
		a.fail(w, r, account.ErrInvalidArgs)
		return
	}
	checkPath := req.CheckPath == nil || *req.CheckPath
	if checkPath && req.Page != "" && !slices.Contains(a.opt.WxaPages, req.Page) {
		a.fail(w, r, account.ErrInvalidPage)
		return
	}
	width := req.Width
	if width == 0 {
		width = 430
	}
	width = min(max(width, 280), 1280)
	content := a.acct.CreateWxaCode(req.Scene, req.Page).URL
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
		a.fail(w, r, account.ErrSystem)
		return
	}
	w.Header().Set("Content-Type", mime)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "wxacode."+ext))
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	_, _ = w.Write(img)
}

func (a *API) code2Session(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if code := a.acct.CheckApp(q.Get("appid"), q.Get("secret")); code != 0 {
		a.fail(w, r, code)
		return
	}
	if q.Get("grant_type") != "authorization_code" {
		a.fail(w, r, account.ErrInvalidGrantType)
		return
	}
	s, code := a.acct.Code2Session(q.Get("js_code"))
	if code != 0 {
		a.fail(w, r, code)
		return
	}
	writeJSON(w, map[string]any{"openid": s.OpenID, "session_key": s.SessionKey, "unionid": s.UnionID})
}
