// Package phone is the simulator's stand-in for the WeChat app: the page a
// scan URL opens, where a developer picks who scans a QR code, and the
// request that makes the scan happen (the event goes to the callback, the
// reply is shown as the chat would show it). It also serves the
// simulator's home page and a stand-in for Mini Program pages.
//
//	GET  /              home: settings, live QR codes, followers, latest scans
//	GET  /scan/{id}     the phone page of a QR code (the scan URL)
//	POST /scan/{id}     scan it; form or JSON in, HTML or JSON out
//	GET  /mp?scene=     the newest Mini Program code made for that scene
//	GET  /mp/{id}       what a Mini Program code opens: pick the user, then
//	                    the shipped login page runs with a simulated wx
//	POST /mp/{id}       wx.login() there: a js_code for /sns/jscode2session
//	POST /sim/miniprogram/{scan,confirm}  the page's wx.request, relayed
//	                    to the backend (Mini.APIBase)
//	GET  /sim/mini/logic.js, /sim/mini/app.js  the page's logic, its wx
//	POST /sim/jscode    a js_code without a Mini Program code (JSON)
//	POST /sim/expire-tokens  expire every access token now
//	GET  /sim/open?url=&as=  tap a link of a reply as that user (links.go)
//
// The page itself is a plain form posting to POST /scan/{id}, so a browser
// test clicks real buttons. Scripts post form values or JSON and ask for
// JSON with "Accept: application/json".
package phone

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/scanlogin/scanlogin/wechat-sim/internal/deliver"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"left": func(t, now time.Time) string {
		d := t.Sub(now).Round(time.Second)
		if d < 0 {
			d = 0
		}
		return d.String()
	},
	"ms":       func(d time.Duration) int64 { return d.Milliseconds() },
	"segments": Segments,
	"links":    Links,
	"openpath": OpenPath,
}).ParseFS(templateFS, "templates/*.html"))

// Info is what the pages tell about the simulator's settings.
type Info struct {
	AppID       string // of the account and of its Mini Program
	OriginalID  string
	CallbackURL string
	SafeMode    bool
	TokenTTL    time.Duration
	RetryAfter  time.Duration
	Retries     int
}

// Phone serves the pages. Create it with New.
type Phone struct {
	log    *slog.Logger
	acct   *wechattest.Account
	sender *deliver.Sender
	info   Info
	mini   Mini
	client *http.Client // relays the Mini Program page's requests

	mu      sync.Mutex // guards history
	history []*ScanResult
}

// New returns the phone of acct, delivering through sender; mini sets up
// the Mini Program stand-in.
func New(log *slog.Logger, acct *wechattest.Account, sender *deliver.Sender, info Info, mini Mini) *Phone {
	return &Phone{log: log, acct: acct, sender: sender, info: info, mini: mini, client: &http.Client{}}
}

// Register adds the pages to mux.
func (p *Phone) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", p.home)
	mux.HandleFunc("GET /scan/{id}", p.scanPage)
	mux.HandleFunc("POST /scan/{id}", p.scan)
	mux.HandleFunc("GET /mp", p.miniByScene)
	mux.HandleFunc("GET /mp/{id}", p.miniPage)
	mux.HandleFunc("POST /mp/{id}", p.miniLogin)
	mux.HandleFunc("POST /sim/miniprogram/{op}", p.miniRequest)
	mux.HandleFunc("GET /sim/mini/logic.js", p.serveLogic)
	mux.HandleFunc("GET /sim/mini/app.js", p.serveApp)
	mux.HandleFunc("POST /sim/jscode", p.jsCode)
	mux.HandleFunc("POST /sim/expire-tokens", p.expireTokens)
	mux.HandleFunc("GET /sim/open", p.open)
}

func (p *Phone) render(w http.ResponseWriter, status int, name string, data any) {
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		p.log.Error("render page", "page", name, "err", err)
		http.Error(w, "cannot render page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, b.String())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// wantsJSON reports whether the client sent or asked for JSON.
func wantsJSON(r *http.Request) bool {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

type homeData struct {
	Info      Info
	Mini      Mini
	Now       time.Time
	QRs       []wechattest.QR
	MiniCodes []wechattest.WxaCode
	Followers []wechattest.User
	History   []*ScanResult
}

func (p *Phone) home(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, "home.html", homeData{
		Info: p.info, Mini: p.mini, Now: p.acct.Now(), QRs: p.acct.ActiveQRs(), MiniCodes: p.mini.Codes.recent(p.acct, 20),
		Followers: p.acct.Followers(), History: p.History(),
	})
}

type scanPageData struct {
	Info      Info
	Now       time.Time
	QR        wechattest.QR
	Followers []wechattest.User
	Problem   string
	Expired   bool
}

func (p *Phone) scanPage(w http.ResponseWriter, r *http.Request) {
	qr, ok := p.acct.QRByID(r.PathValue("id"))
	if !ok {
		p.render(w, http.StatusNotFound, "problem.html", problemData{Title: "Unknown QR code", Message: ErrUnknownCode.Error()})
		return
	}
	now := p.acct.Now()
	d := scanPageData{Info: p.info, Now: now, QR: qr, Followers: p.acct.Followers(), Expired: qr.ExpiredAt(now)}
	status := http.StatusOK
	if d.Expired {
		status = http.StatusGone
	}
	p.render(w, status, "scan.html", d)
}

type problemData struct {
	Title, Message string
	Back           string
}

// scanInput reads a scan request from a form or JSON. A form from the
// phone page has "who": "new", "other" (use field openid) or a follower's
// OpenID; scripts may send openid and follow directly.
func scanInput(w http.ResponseWriter, r *http.Request) (ScanRequest, error) {
	var in struct {
		OpenID   string `json:"openid"`
		Follow   string `json:"follow"`
		Nickname string `json:"nickname"`
		Who      string `json:"who"`
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&in); err != nil && !errors.Is(err, io.EOF) {
			return ScanRequest{}, errors.Join(ErrBadRequest, err)
		}
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			return ScanRequest{}, errors.Join(ErrBadRequest, err)
		}
		in.OpenID, in.Follow, in.Nickname, in.Who = r.Form.Get("openid"), r.Form.Get("follow"), r.Form.Get("nickname"), r.Form.Get("who")
	}
	req := ScanRequest{OpenID: strings.TrimSpace(in.OpenID), Follow: in.Follow, Nickname: in.Nickname}
	switch in.Who {
	case "":
	case "new":
		req.OpenID, req.Follow = "", FollowNew
	case "other":
		if req.OpenID == "" {
			return ScanRequest{}, errors.Join(ErrBadRequest, errors.New("type an OpenID"))
		}
	default:
		req.OpenID, req.Follow = in.Who, FollowExisting
	}
	return req, nil
}

// scanJSON is the JSON answer of POST /scan/{id}.
type scanJSON struct {
	OpenID   string        `json:"openid"`
	Event    string        `json:"event"`
	EventKey string        `json:"event_key"`
	Ticket   string        `json:"ticket"`
	Scene    string        `json:"scene"`
	SafeMode bool          `json:"safe_mode"`
	Attempts []attemptJSON `json:"attempts"`
	Reply    replyJSON     `json:"reply"`
	Request  requestJSON   `json:"request"`
}

type attemptJSON struct {
	Status     int    `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
}

type replyJSON struct {
	Kind      string   `json:"kind"`
	Text      string   `json:"text"`
	Links     []string `json:"links"` // the http(s) links in Text
	Encrypted bool     `json:"encrypted"`
	Problem   string   `json:"problem,omitempty"`
	Raw       string   `json:"raw"`
	Plain     string   `json:"plain,omitempty"`
}

type requestJSON struct {
	URL   string `json:"url"`
	Body  string `json:"body"`
	Plain string `json:"plain"`
}

func toJSON(s *ScanResult) scanJSON {
	res := s.Result
	out := scanJSON{
		OpenID: s.OpenID, Event: s.Event, EventKey: s.EventKey, Ticket: s.QR.Ticket, Scene: s.QR.Scene,
		SafeMode: res.Request.Encrypted,
		Reply: replyJSON{Kind: res.Reply.Kind, Text: res.Reply.Text, Links: Links(res.Reply.Text), Encrypted: res.Reply.Encrypted,
			Problem: res.Reply.Problem, Raw: res.Reply.Raw, Plain: res.Reply.Plain},
		Request:  requestJSON{URL: res.Request.URL, Body: res.Request.Body, Plain: res.Request.Plain},
		Attempts: []attemptJSON{},
	}
	for _, a := range res.Attempts {
		out.Attempts = append(out.Attempts, attemptJSON{Status: a.Status, DurationMS: a.Duration.Milliseconds(), Error: a.Err})
	}
	return out
}

type resultData struct {
	Info      Info
	Scan      *ScanResult
	Follow    bool // the scan made the user follow
	Followers []wechattest.User
}

func (p *Phone) scan(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	asJSON := wantsJSON(r)
	fail := func(status int, err error) {
		if asJSON {
			writeJSON(w, status, map[string]string{"error": err.Error()})
			return
		}
		p.render(w, status, "problem.html", problemData{Title: "Cannot scan", Message: err.Error(), Back: "/scan/" + id})
	}
	req, err := scanInput(w, r)
	if err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	// The delivery outlives a client that gives up, like WeChat's does.
	ctx := context.WithoutCancel(r.Context())
	res, err := p.Scan(ctx, id, req)
	switch {
	case errors.Is(err, ErrUnknownCode):
		fail(http.StatusNotFound, err)
		return
	case errors.Is(err, ErrExpired):
		fail(http.StatusGone, err)
		return
	case errors.Is(err, ErrBadRequest):
		fail(http.StatusBadRequest, err)
		return
	case err != nil:
		p.log.Error("scan", "err", err)
		fail(http.StatusInternalServerError, err)
		return
	}
	// The phone is now this user's, for the web authorization of a link.
	setPhoneUser(w, res.OpenID)
	if asJSON {
		writeJSON(w, http.StatusOK, toJSON(res))
		return
	}
	p.render(w, http.StatusOK, "result.html", resultData{Info: p.info, Scan: res, Follow: res.Event == "subscribe", Followers: p.acct.Followers()})
}

type miniData struct {
	Info      Info
	Mini      Mini
	Code      wechattest.WxaCode
	Followers []wechattest.User
	JSCode    string
	User      wechattest.User
}

// jsCodeJSON is the JSON answer of a wx.login() stand-in.
type jsCodeJSON struct {
	Code       string `json:"code"`
	OpenID     string `json:"openid"`      // official-account OpenID of the person
	MiniOpenID string `json:"mini_openid"` // what jscode2session will answer
	UnionID    string `json:"unionid"`
	Scene      string `json:"scene,omitempty"`
	Page       string `json:"page,omitempty"`
}

func (p *Phone) issueCode(w http.ResponseWriter, r *http.Request) (string, wechattest.User, error) {
	req, err := scanInput(w, r)
	if err != nil {
		return "", wechattest.User{}, err
	}
	if req.OpenID == "" {
		req.OpenID = wechattest.NewOpenID()
	}
	if !openIDRE.MatchString(req.OpenID) {
		return "", wechattest.User{}, ErrBadRequest
	}
	code, u := p.acct.IssueJSCode(req.OpenID)
	return code, u, nil
}

func (p *Phone) miniLogin(w http.ResponseWriter, r *http.Request) {
	c, ok := p.acct.WxaCodeByID(r.PathValue("id"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	code, u, err := p.issueCode(w, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, jsCodeJSON{Code: code, OpenID: u.OpenID, MiniOpenID: u.MiniOpenID, UnionID: u.UnionID, Scene: c.Scene, Page: c.Page})
		return
	}
	p.render(w, http.StatusOK, "mini.html", miniData{Info: p.info, Mini: p.mini, Code: c, Followers: p.acct.Followers(), JSCode: code, User: u})
}

func (p *Phone) jsCode(w http.ResponseWriter, r *http.Request) {
	code, u, err := p.issueCode(w, r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, jsCodeJSON{Code: code, OpenID: u.OpenID, MiniOpenID: u.MiniOpenID, UnionID: u.UnionID})
}

func (p *Phone) expireTokens(w http.ResponseWriter, r *http.Request) {
	p.acct.ExpireTokens()
	p.log.Info("every access token expired on request")
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
