package phone

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// LogicFile is the shipped login page's logic, under the Mini Program
// folder. The stand-in of the page runs this very file.
const LogicFile = "pages/login/logic.js"

// ReadLogic reads LogicFile under dir and checks that it is the page's
// logic (it defines the global ScanLoginPage).
func ReadLogic(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(LogicFile)))
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(b, []byte("ScanLoginPage")) {
		return nil, errors.New(LogicFile + " does not define ScanLoginPage")
	}
	return b, nil
}

// Mini is what the Mini Program stand-in needs.
type Mini struct {
	// APIBase is where the page's wx.request calls go: the wechat-callback
	// origin, as apiBase in the shipped page's config.js.
	APIBase string
	// Logic is the shipped page's logic.js; nil: not found, and a Mini
	// Program code's page offers wx.login alone.
	Logic []byte
	// LogicPath is where Logic was read from, for the pages.
	LogicPath string
	// Codes are the Mini Program codes made, as the account's WithMiniURL
	// records them. Nil: none are listed.
	Codes *MiniCodes
}

// maxMiniCodes bounds the codes MiniCodes remembers.
const maxMiniCodes = 500

// MiniCodes remembers the IDs of the Mini Program codes the account made,
// so that the pages can list them and find one by its scene. The account
// only answers by ID.
type MiniCodes struct {
	mu  sync.Mutex // guards ids
	ids []string   // oldest first
}

// Add records the code id; pass it to wechattest.WithMiniURL's function.
func (m *MiniCodes) Add(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.ids) >= maxMiniCodes {
		m.ids = append(m.ids[:0], m.ids[1:]...)
	}
	m.ids = append(m.ids, id)
}

// recent returns up to n codes of acct, newest first.
func (m *MiniCodes) recent(acct *wechattest.Account, n int) []wechattest.WxaCode {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	ids := append([]string(nil), m.ids...)
	m.mu.Unlock()
	var out []wechattest.WxaCode
	for i := len(ids) - 1; i >= 0 && len(out) < n; i-- {
		if c, ok := acct.WxaCodeByID(ids[i]); ok {
			out = append(out, c)
		}
	}
	return out
}

// miniByScene sends the browser to the newest Mini Program code made for
// ?scene=, as if the phone had scanned it: the login page links here in
// development, since it knows the scene but not the code's ID.
func (p *Phone) miniByScene(w http.ResponseWriter, r *http.Request) {
	scene := r.URL.Query().Get("scene")
	for _, c := range p.mini.Codes.recent(p.acct, maxMiniCodes) {
		if scene != "" && c.Scene == scene {
			http.Redirect(w, r, "/mp/"+url.PathEscape(c.ID), http.StatusSeeOther)
			return
		}
	}
	p.render(w, http.StatusNotFound, "problem.html", problemData{Title: "Unknown Mini Program code",
		Message: "No Mini Program code was made for this scene.", Back: "/"})
}

type miniAppData struct {
	Info    Info
	Mini    Mini
	Code    wechattest.WxaCode
	OpenID  string
	Profile wechattest.User
}

// miniPage is what a Mini Program code opens. First the phone's user is
// chosen (?who=, as on the scan page; it becomes ?openid= so that every
// wx.login of the visit is the same person); with ?openid= and the
// shipped page's logic, the page runs it.
func (p *Phone) miniPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, ok := p.acct.WxaCodeByID(id)
	if !ok {
		p.render(w, http.StatusNotFound, "problem.html", problemData{Title: "Unknown Mini Program code", Message: ErrUnknownCode.Error()})
		return
	}
	q := r.URL.Query()
	if who := q.Get("who"); who != "" {
		openid := who
		switch who {
		case "new":
			openid = wechattest.NewOpenID()
		case "other":
			openid = q.Get("openid")
		}
		if !openIDRE.MatchString(openid) {
			p.render(w, http.StatusBadRequest, "problem.html", problemData{Title: "Cannot open", Message: "type an OpenID", Back: "/mp/" + id})
			return
		}
		http.Redirect(w, r, "/mp/"+url.PathEscape(id)+"?openid="+url.QueryEscape(openid), http.StatusSeeOther)
		return
	}
	if openid := q.Get("openid"); openid != "" && p.mini.Logic != nil && openIDRE.MatchString(openid) {
		u, _ := p.acct.User(openid)
		p.render(w, http.StatusOK, "miniapp.html", miniAppData{Info: p.info, Mini: p.mini, Code: c, OpenID: openid, Profile: u})
		return
	}
	p.render(w, http.StatusOK, "mini.html", miniData{Info: p.info, Mini: p.mini, Code: c, Followers: p.acct.Followers()})
}

// serveLogic serves the shipped page's logic.js, as read at start.
func (p *Phone) serveLogic(w http.ResponseWriter, r *http.Request) {
	if p.mini.Logic == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(p.mini.Logic)
}

// serveApp serves the script that runs the logic with a simulated wx.
func (p *Phone) serveApp(w http.ResponseWriter, r *http.Request) {
	b, err := staticFS.ReadFile("static/miniapp.js")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// miniRequestTimeout bounds one relayed wx.request (the page's own is 15 s).
const miniRequestTimeout = 15 * time.Second

// requestFailed marks a relay answer that stands for a failed request, not
// the backend's answer: the page's wx.request then calls fail, as WeChat's
// does when it cannot reach the server.
const requestFailed = "X-Sim-Request-Failed"

// miniRequest relays the page's wx.request to the backend. WeChat's client
// makes these requests itself, so no CORS applies; a web page cannot, so
// the simulator does it. Only the two paths of the backend API are relayed.
func (p *Phone) miniRequest(w http.ResponseWriter, r *http.Request) {
	op := r.PathValue("op")
	if op != "scan" && op != "confirm" {
		http.NotFound(w, r)
		return
	}
	fail := func(status int, msg string) {
		w.Header().Set(requestFailed, "1")
		http.Error(w, msg, status)
	}
	if p.mini.APIBase == "" {
		fail(http.StatusServiceUnavailable, "no SIM_MINIPROGRAM_API_BASE")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		fail(http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), miniRequestTimeout)
	defer cancel()
	target := p.mini.APIBase + "/miniprogram/" + op
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		fail(http.StatusBadGateway, err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	// As WeChat sends them: the Referer names the Mini Program's AppID.
	req.Header.Set("Referer", "https://servicewechat.com/"+p.info.AppID+"/devtools/page-frame.html")
	req.Header.Set("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50 miniProgram wechat-sim")
	resp, err := p.client.Do(req)
	if err != nil {
		p.log.Warn("mini program request", "path", "/miniprogram/"+op, "err", err)
		fail(http.StatusBadGateway, "request:fail "+err.Error())
		return
	}
	defer resp.Body.Close()
	// Bodies hold login codes and confirm secrets: log the status only.
	p.log.Info("mini program request", "path", "/miniprogram/"+op, "status", resp.StatusCode)
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}
