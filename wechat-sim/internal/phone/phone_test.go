package phone

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-sim/internal/deliver"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

const (
	appID      = "wx0123456789abcdef"
	token      = "tok123"
	aesKey     = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	originalID = "gh_0123456789ab"
)

type fixture struct {
	t      *testing.T
	url    string
	acct   *wechattest.Account
	clock  *wechattest.Clock
	mini   Mini
	mu     sync.Mutex        // guards events, api and reply
	events []*wechat.Message // what the callback received, decrypted
	reply  string            // the callback's reply text; empty: "got <event>"
	api    []*http.Request   // Mini Program API requests the backend received
	bodies []string          // and their bodies
}

// newFixture runs the phone pages with a callback that decrypts each
// event and answers an encrypted text naming the event.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: wechattest.NewClock(time.Now())}
	cr, err := wechat.NewCrypter(token, aesKey, appID)
	if err != nil {
		t.Fatal(err)
	}
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		env, err := wechat.ParseMessage(body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		plain, err := cr.Decrypt(env.Encrypt)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		m, _ := wechat.ParseMessage(plain)
		f.mu.Lock()
		f.events = append(f.events, m)
		text := f.reply
		f.mu.Unlock()
		if text == "" {
			text = "got " + m.Event
		}
		reply := wechat.TextReply(m.FromUserName, m.ToUserName, time.Now().Unix(), text)
		out, _ := cr.EncryptReply(reply, r.URL.Query().Get("timestamp"), "nonce")
		w.Write(out)
	}))
	t.Cleanup(cb.Close)

	// The Mini Program backend: answers 409 already_used to scan, 200 to confirm.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.api = append(f.api, r)
		f.bodies = append(f.bodies, string(body))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/miniprogram/scan" {
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":"already_used","message":"x"}`)
			return
		}
		io.WriteString(w, `{"result":"confirmed"}`)
	}))
	t.Cleanup(api.Close)
	logic, err := ReadLogic("../../../miniprogram")
	if err != nil {
		t.Fatal(err)
	}
	f.mini = Mini{APIBase: api.URL, Logic: logic, LogicPath: "miniprogram/" + LogicFile, Codes: &MiniCodes{}}

	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	f.acct = wechattest.NewAccount(appID, "s", wechattest.WithTokenLifetime(time.Hour), wechattest.WithClock(f.clock.Now),
		wechattest.WithScanURL(func(id string) string { return srv.URL + "/scan/" + id }),
		wechattest.WithMiniURL(func(id string) string {
			f.mini.Codes.Add(id)
			return srv.URL + "/mp/" + id
		}),
	)
	sender, err := deliver.New(deliver.Config{URL: cb.URL, Token: token, AESKey: aesKey, AppID: appID, OriginalID: originalID, RetryAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	New(log, f.acct, sender, Info{AppID: appID, OriginalID: originalID, CallbackURL: cb.URL, SafeMode: true, RetryAfter: time.Second, Retries: 3}, f.mini).Register(mux)
	return f
}

func (f *fixture) qr(expire int64) wechattest.QR {
	f.t.Helper()
	q, code := f.acct.CreateQR(wechattest.QRRequest{ActionName: "QR_STR_SCENE", SceneStr: "login_abc", ExpireSeconds: expire})
	if code != 0 {
		f.t.Fatal(code)
	}
	return q
}

func (f *fixture) get(path string) (int, string) {
	f.t.Helper()
	resp, err := http.Get(f.url + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// postJSON posts a JSON scan and decodes the JSON answer.
func (f *fixture) postJSON(path string, in any, out any) int {
	f.t.Helper()
	b, _ := json.Marshal(in)
	resp, err := http.Post(f.url+path, "application/json", strings.NewReader(string(b)))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		f.t.Fatalf("POST %s: Content-Type %q", path, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode
}

// postForm posts the phone page's form and returns the HTML.
func (f *fixture) postForm(path string, form url.Values) (int, string) {
	f.t.Helper()
	resp, err := http.PostForm(f.url+path, form)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestScanFlow(t *testing.T) {
	f := newFixture(t)
	alice := f.acct.AddFollower("Alice")
	q := f.qr(120)

	status, page := f.get("/scan/" + q.ID)
	for _, want := range []string{`action="/scan/` + q.ID + `"`, `id="who-new" checked`, `value="` + alice.OpenID + `"`, `id="scan"`, "Alice"} {
		if status != 200 || !strings.Contains(page, want) {
			t.Fatalf("phone page (status %d) lacks %q", status, want)
		}
	}

	// A new user: subscribe with qrscene_, and the user now follows.
	var res scanJSON
	if s := f.postJSON("/scan/"+q.ID, map[string]string{"who": "new"}, &res); s != 200 {
		t.Fatalf("status %d: %+v", s, res)
	}
	if res.Event != "subscribe" || res.EventKey != "qrscene_login_abc" || res.Ticket != q.Ticket || !res.SafeMode {
		t.Fatalf("%+v", res)
	}
	if res.Reply.Kind != "text" || res.Reply.Text != "got subscribe" || !res.Reply.Encrypted {
		t.Fatalf("reply %+v", res.Reply)
	}
	if u, ok := f.acct.User(res.OpenID); !ok || !u.Subscribed || u.QRScene != "login_abc" {
		t.Fatalf("user %+v", u)
	}
	newUser := res.OpenID

	// The same user again, as remembered: SCAN with the bare scene.
	status, html := f.postForm("/scan/"+q.ID, url.Values{"who": {"other"}, "openid": {newUser}})
	if status != 200 || !strings.Contains(html, `id="reply" data-kind="text">got SCAN<`) || !strings.Contains(html, `data-event="SCAN"`) {
		t.Fatalf("form scan: status %d\n%s", status, html)
	}
	// A listed follower.
	var res2 scanJSON
	f.postJSON("/scan/"+q.ID, map[string]string{"who": alice.OpenID}, &res2)
	if res2.Event != "SCAN" || res2.EventKey != "login_abc" || res2.OpenID != alice.OpenID {
		t.Fatalf("%+v", res2)
	}
	// follow=new turns a follower into a new follower; follow=follower the other way round.
	f.postJSON("/scan/"+q.ID, map[string]string{"openid": alice.OpenID, "follow": FollowNew}, &res2)
	if res2.Event != "subscribe" {
		t.Fatalf("follow=new: %+v", res2)
	}
	f.postJSON("/scan/"+q.ID, map[string]string{"openid": "oStranger", "follow": FollowExisting}, &res2)
	if res2.Event != "SCAN" {
		t.Fatalf("follow=follower: %+v", res2)
	}

	f.mu.Lock()
	n := len(f.events)
	f.mu.Unlock()
	if n != 5 {
		t.Fatalf("callback got %d events, want 5", n)
	}
	if _, home := f.get("/"); !strings.Contains(home, newUser) || !strings.Contains(home, "login_abc") {
		t.Fatal("home page lists neither the scan nor the code")
	}
}

func TestScanErrors(t *testing.T) {
	f := newFixture(t)
	q := f.qr(60)
	var e map[string]string
	for _, tc := range []struct {
		path string
		in   map[string]string
		want int
	}{
		{"/scan/nope", map[string]string{"who": "new"}, 404},
		{"/scan/" + q.ID, map[string]string{"follow": "maybe"}, 400},
		{"/scan/" + q.ID, map[string]string{"openid": "bad openid!"}, 400},
		{"/scan/" + q.ID, map[string]string{"who": "other"}, 400},
	} {
		if s := f.postJSON(tc.path, tc.in, &e); s != tc.want || e["error"] == "" {
			t.Errorf("%s %v: status %d %v, want %d", tc.path, tc.in, s, e, tc.want)
		}
	}
	if s, _ := f.get("/scan/nope"); s != 404 {
		t.Errorf("unknown page: %d", s)
	}
	f.clock.Advance(61 * time.Second)
	if s := f.postJSON("/scan/"+q.ID, map[string]string{"who": "new"}, &e); s != http.StatusGone {
		t.Errorf("expired: %d %v", s, e)
	}
	if s, page := f.get("/scan/" + q.ID); s != http.StatusGone || !strings.Contains(page, `id="expired"`) || strings.Contains(page, `id="scan"`) {
		t.Errorf("expired page: %d", s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) != 0 {
		t.Fatalf("%d events sent for refused scans", len(f.events))
	}
}

func TestMiniProgram(t *testing.T) {
	f := newFixture(t)
	c := f.acct.CreateWxaCode("sid=42", "pages/index/index")
	if s, page := f.get("/mp/" + c.ID); s != 200 || !strings.Contains(page, "scene=sid=42") {
		t.Fatalf("mini page %d", s)
	}
	var got jsCodeJSON
	if s := f.postJSON("/mp/"+c.ID, map[string]string{"openid": "oPerson"}, &got); s != 200 || got.Scene != "sid=42" {
		t.Fatalf("%d %+v", s, got)
	}
	sess, code := f.acct.Code2Session(got.Code)
	if code != 0 || sess.OpenID != got.MiniOpenID || sess.UnionID != got.UnionID || got.OpenID != "oPerson" {
		t.Fatalf("%+v %d %+v", sess, code, got)
	}
	if s := f.postJSON("/sim/jscode", map[string]string{}, &got); s != 200 || got.Code == "" {
		t.Fatalf("%d %+v", s, got)
	}
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (f *fixture) location(path string) (int, string) {
	f.t.Helper()
	resp, err := noRedirect.Get(f.url + path)
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestMiniByScene: the login page knows a code's scene, not its ID; the
// simulator finds the newest code made for the scene.
func TestMiniByScene(t *testing.T) {
	f := newFixture(t)
	f.acct.CreateWxaCode("AbCdEfGhIjKlMnOpQrStUv01", "pages/login/login")
	c := f.acct.CreateWxaCode("AbCdEfGhIjKlMnOpQrStUv01", "pages/login/login")
	other := f.acct.CreateWxaCode("other-scene-0123456789ab", "pages/login/login")
	if s, loc := f.location("/mp?scene=AbCdEfGhIjKlMnOpQrStUv01"); s != http.StatusSeeOther || loc != "/mp/"+c.ID {
		t.Fatalf("%d %q, want the newest code %s", s, loc, c.ID)
	}
	if s, loc := f.location("/mp?scene=" + other.Scene); s != http.StatusSeeOther || loc != "/mp/"+other.ID {
		t.Fatalf("%d %q", s, loc)
	}
	for _, q := range []string{"", "?scene=", "?scene=nope"} {
		if s, _ := f.get("/mp" + q); s != http.StatusNotFound {
			t.Errorf("/mp%s: %d, want 404", q, s)
		}
	}
	if s, page := f.get("/"); s != 200 || !strings.Contains(page, "/mp/"+c.ID) || !strings.Contains(page, other.Scene) {
		t.Fatalf("home page does not list the Mini Program codes")
	}
}

// TestMiniPage: the user is chosen first and kept as an OpenID (every
// wx.login of the visit is the same person); then the shipped logic runs.
func TestMiniPage(t *testing.T) {
	f := newFixture(t)
	c := f.acct.CreateWxaCode("AbCdEfGhIjKlMnOpQrStUv01", "pages/login/login")
	s, loc := f.location("/mp/" + c.ID + "?who=new")
	if s != http.StatusSeeOther || !strings.HasPrefix(loc, "/mp/"+c.ID+"?openid=") {
		t.Fatalf("who=new: %d %q", s, loc)
	}
	if _, again := f.location("/mp/" + c.ID + "?who=new"); again == loc {
		t.Fatal("two new users with one OpenID")
	}
	if _, l := f.location("/mp/" + c.ID + "?who=other&openid=oBob"); l != "/mp/"+c.ID+"?openid=oBob" {
		t.Fatalf("who=other: %q", l)
	}
	if s, _ := f.get("/mp/" + c.ID + "?who=other&openid=a%20b"); s != http.StatusBadRequest {
		t.Fatalf("bad OpenID: %d", s)
	}
	s, page := f.get(loc)
	openid := strings.TrimPrefix(loc, "/mp/"+c.ID+"?openid=")
	for _, want := range []string{`id="mp-root"`, `data-openid="` + openid + `"`, `data-scene="AbCdEfGhIjKlMnOpQrStUv01"`, `src="/sim/mini/logic.js"`, `src="/sim/mini/app.js"`} {
		if s != 200 || !strings.Contains(page, want) {
			t.Fatalf("the Mini Program page (%d) lacks %s:\n%s", s, want, page)
		}
	}
	if s, js := f.get("/sim/mini/logic.js"); s != 200 || js != string(f.mini.Logic) {
		t.Fatalf("logic.js: %d", s)
	}
	if s, js := f.get("/sim/mini/app.js"); s != 200 || !strings.Contains(js, "ScanLoginPage.page(") {
		t.Fatalf("app.js: %d", s)
	}
	// The chooser asks who, then opens the page with GET.
	if s, page := f.get("/mp/" + c.ID); s != 200 || !strings.Contains(page, `method="get"`) || !strings.Contains(page, `id="mp-open"`) {
		t.Fatalf("chooser: %d", s)
	}
}

// TestMiniPageWithoutLogic: without the shipped page, a bare wx.login.
func TestMiniPageWithoutLogic(t *testing.T) {
	f := newFixture(t)
	f.mini.Logic = nil // read by the handlers through the Phone's copy: rebuild one
	mux := http.NewServeMux()
	New(slog.New(slog.DiscardHandler), f.acct, nil, Info{}, f.mini).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	f.url = srv.URL
	c := f.acct.CreateWxaCode("AbCdEfGhIjKlMnOpQrStUv01", "pages/login/login")
	if s, page := f.get("/mp/" + c.ID + "?openid=oBob"); s != 200 || !strings.Contains(page, `id="no-logic"`) || !strings.Contains(page, `method="post"`) {
		t.Fatalf("%d:\n%s", s, page)
	}
	if s, _ := f.get("/sim/mini/logic.js"); s != http.StatusNotFound {
		t.Fatalf("logic.js without logic: %d", s)
	}
}

// TestMiniRelay: the page's wx.request reaches the backend through the
// simulator, answers and all; only the API's two paths are relayed, and an
// unreachable backend is a failed request, not an answer.
func TestMiniRelay(t *testing.T) {
	f := newFixture(t)
	post := func(path, body string) (*http.Response, string) {
		resp, err := http.Post(f.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := post("/sim/miniprogram/scan", `{"scene":"s","code":"c"}`)
	if resp.StatusCode != http.StatusConflict || body != `{"error":"already_used","message":"x"}` || resp.Header.Get(requestFailed) != "" {
		t.Fatalf("scan: %d %q", resp.StatusCode, body)
	}
	resp, body = post("/sim/miniprogram/confirm", `{"approve":true}`)
	if resp.StatusCode != 200 || body != `{"result":"confirmed"}` {
		t.Fatalf("confirm: %d %q", resp.StatusCode, body)
	}
	f.mu.Lock()
	if len(f.api) != 2 || f.api[0].URL.Path != "/miniprogram/scan" || f.bodies[0] != `{"scene":"s","code":"c"}` ||
		f.api[0].Header.Get("Content-Type") != "application/json" || !strings.Contains(f.api[0].Header.Get("Referer"), appID) {
		t.Fatalf("backend got %d requests: %v", len(f.api), f.bodies)
	}
	f.mu.Unlock()
	if resp, _ := post("/sim/miniprogram/anything", `{}`); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("other path relayed: %d", resp.StatusCode)
	}

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	mux := http.NewServeMux()
	f.mini.APIBase = down.URL
	New(slog.New(slog.DiscardHandler), f.acct, nil, Info{}, f.mini).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	f.url = srv.URL
	if resp, _ := post("/sim/miniprogram/scan", `{}`); resp.StatusCode != http.StatusBadGateway || resp.Header.Get(requestFailed) != "1" {
		t.Fatalf("backend down: %d %q", resp.StatusCode, resp.Header.Get(requestFailed))
	}
}
