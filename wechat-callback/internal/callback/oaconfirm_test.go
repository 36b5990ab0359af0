package callback

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/scanlogin/scanlogin/internal/testlog"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/confirm"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/oaconfirm"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient/pushtest"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

const (
	oaSecret  = "oa-secret-0123456789abcdef"
	oaScene   = "OaSceneAbCdEfGhIjKlMnOp"
	oaTicket  = "gQF+ticket/value=="
	scanner   = "oScanner_openid_0001"
	bystander = "oOther_openid_0002"
)

var oaRequester = &pushv1.Requester{Browser: "Chrome 120", Os: "Windows 10", Ip: "203.0.113.7", AtMs: 1}

// oaEnv is the callback with OA_CONFIRM on, over real HTTP, with the fake
// WeChat (API and web authorization) and the fake push server.
type oaEnv struct {
	*testEnv
	wx       *wechattest.Server
	clock    *wechattest.Clock
	front    *httptest.Server // the callback at CALLBACK_PUBLIC_URL
	pageLogs *testlog.Buffer
}

func newOAEnv(t *testing.T, extra ...envOption) *oaEnv {
	t.Helper()
	clock := wechattest.NewClock(time.Now())
	wx := wechattest.New(t, testAppID, oaSecret, wechattest.WithClock(clock.Now))
	var h atomic.Value
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	wx.SetOAuthDomain(strings.TrimPrefix(front.URL, "http://"))
	push := pushtest.Start(t)
	push.SetNow(clock.Now)
	pc, err := pushclient.New(push.Addr(), "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	client, err := wechat.NewClient(wechat.Config{APIBase: wx.URL(), AppID: testAppID, Secret: oaSecret})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	svc, err := oaconfirm.New(oaconfirm.Deps{
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Config: config.OAConfirm{Enabled: true, PublicURL: front.URL, OpenBase: wx.URL(), SiteName: "Example Shop"},
		AppID:  testAppID, Exchanger: client, Notifier: pc, Store: confirm.NewMemory(clock.Now),
		Registerer: prometheus.NewRegistry(), Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]envOption{
		withPush(push),
		withEnv("OA_CONFIRM", "true", "CALLBACK_PUBLIC_URL", front.URL, "WECHAT_APPID", testAppID,
			"WECHAT_SECRET", oaSecret, "WECHAT_OPEN_BASE", wx.URL(), "SITE_NAME", "Example Shop"),
		func(_ *testEnv, _ map[string]string, d *Deps) { d.OAConfirm = svc },
	}, extra...)
	e := newEnv(t, opts...)
	h.Store(e.h)
	return &oaEnv{testEnv: e, wx: wx, clock: clock, front: front, pageLogs: logs}
}

// scan posts a SCAN event of user for the oa session and returns the
// reply text.
func (e *oaEnv) scan(user string, createTime int64) string {
	e.t.Helper()
	r := e.post(e.query(), event(user, createTime, "SCAN", oaScene, oaTicket))
	if r.status != http.StatusOK {
		e.t.Fatalf("callback: %d %s", r.status, r.body)
	}
	return parseText(e.t.(*testing.T), r.body).Content
}

var linkRE = regexp.MustCompile(`https?://\S+/oa/confirm\?\S+`)

// phone is WeChat's in-app browser of one user: it follows redirects to
// the fake WeChat, which knows the user by its cookie.
func (e *oaEnv) phone(openid string) *http.Client {
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(e.wx.URL())
	jar.SetCookies(u, []*http.Cookie{wechattest.OAuthCookie(openid)})
	return &http.Client{Jar: jar}
}

type page struct {
	status int
	url    *url.URL // after redirects
	body   string
	header http.Header
}

func fetch(t *testing.T, c *http.Client, method, u string, form url.Values) page {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = c.PostForm(u, form)
	} else {
		resp, err = c.Get(u)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Request.URL, string(b), resp.Header}
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="(\w+)" value="([^"]*)">`)

// formOf returns the hidden fields of the page's form.
func formOf(t *testing.T, body string) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], m[2])
	}
	if v.Get("f") == "" {
		t.Fatalf("no form in %s", body)
	}
	return v
}

func logins(t *testing.T, push *pushtest.Server) []string {
	ts, _ := push.TwoStep(oaScene)
	return ts.Sent
}

// TestOAConfirm runs the whole confirmation as WeChat's in-app browser
// would, with every refusal on the way: only the scanner's own
// confirmation logs the browser in, once.
func TestOAConfirm(t *testing.T) {
	e := newOAEnv(t)
	e.push.AddTwoStepOA(oaScene, oaTicket, e.clock.Now().Add(2*time.Minute), oaRequester)
	ct := e.clock.Now().Unix()
	text := e.scan(scanner, ct)
	for _, want := range []string{"Example Shop", "Chrome 120", "Windows 10", "203.0.113.7"} {
		if !strings.Contains(text, want) {
			t.Errorf("reply %q lacks %q", text, want)
		}
	}
	link := linkRE.FindString(text)
	if !strings.HasPrefix(link, e.front.URL+"/oa/confirm?") {
		t.Fatalf("reply %q has no confirm link", text)
	}
	if calls := e.push.Calls(); len(calls) != 1 || calls[0].GetEvent() != pushv1.Event_EVENT_SCANNED || calls[0].GetTicket() != oaTicket || calls[0].GetUser().GetOpenid() != scanner {
		t.Fatalf("notify calls %v", calls)
	}
	if got := logins(t, e.push); strings.Join(got, ",") != "scanned" {
		t.Fatalf("browser got %v", got)
	}
	// WeChat's retry is answered with the same link.
	if again := e.scan(scanner, ct); again != text {
		t.Fatalf("retry answered %q, first %q", again, text)
	}
	if u, _ := url.Parse(link); strings.Contains(link, "secret") || len(u.Query()) != 2 {
		t.Fatalf("link %s carries more than the scene and token", link)
	}

	// The 302 to WeChat's web authorization.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	if resp.StatusCode != http.StatusFound || loc.Scheme+"://"+loc.Host != e.wx.URL() || loc.Path != "/connect/oauth2/authorize" ||
		q.Get("appid") != testAppID || q.Get("redirect_uri") != link || q.Get("response_type") != "code" ||
		q.Get("scope") != "snsapi_base" || !regexp.MustCompile(`^[A-Za-z0-9]{1,128}$`).MatchString(q.Get("state")) ||
		loc.Fragment != "wechat_redirect" {
		t.Fatalf("redirect %d to %s", resp.StatusCode, loc)
	}
	if !strings.Contains(resp.Header.Get("Location"), "redirect_uri="+url.QueryEscape(link)+"&") {
		t.Errorf("redirect_uri is not the URL-encoded link: %s", resp.Header.Get("Location"))
	}

	// Another user opens the link: refused, nothing changes.
	if p := fetch(t, e.phone(bystander), http.MethodGet, link, nil); p.status != http.StatusForbidden || strings.Contains(p.body, "<form") {
		t.Fatalf("another user: %d %s", p.status, p.body)
	}

	// A forged state with a good code of the scanner.
	forged := link + "&code=" + e.wx.IssueOAuthCode(scanner) + "&state=" + strings.Repeat("A", 32)
	if p := fetch(t, http.DefaultClient, http.MethodGet, forged, nil); p.status != http.StatusForbidden {
		t.Fatalf("forged state: %d", p.status)
	}
	// A state of this link with a code WeChat refuses.
	if p := fetch(t, http.DefaultClient, http.MethodGet, link+"&code=not-a-code&state="+q.Get("state"), nil); p.status != http.StatusForbidden {
		t.Fatalf("refused code: %d", p.status)
	}

	// The scanner opens the link: the page.
	p := fetch(t, e.phone(scanner), http.MethodGet, link, nil)
	if p.status != http.StatusOK {
		t.Fatalf("scanner: %d %s", p.status, p.body)
	}
	for _, want := range []string{`<form method="post">`, `<button class="confirm" type="submit" name="decision" value="confirm">`,
		`name="decision" value="cancel"`, "Example Shop", "Chrome 120", "Windows 10", "203.0.113.7", `<html lang="`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
		p.header.Get("X-Frame-Options") != "DENY" || p.header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", p.header)
	}
	if strings.Contains(p.body, scanner) {
		t.Error("the page shows the openid")
	}
	// The same code and state again (a reload, or someone who saw the URL).
	if again := fetch(t, http.DefaultClient, http.MethodGet, p.url.String(), nil); again.status != http.StatusForbidden || strings.Contains(again.body, "<form") {
		t.Fatalf("reused code: %d", again.status)
	}
	// A used code with a fresh state of this link.
	resp, _ = noFollow.Get(link)
	resp.Body.Close()
	fresh, _ := url.Parse(resp.Header.Get("Location"))
	if r := fetch(t, http.DefaultClient, http.MethodGet, link+"&code="+p.url.Query().Get("code")+"&state="+fresh.Query().Get("state"), nil); r.status != http.StatusForbidden {
		t.Fatalf("used code: %d", r.status)
	}

	form := formOf(t, p.body)
	// A forged form value.
	bad := url.Values{"s": {form.Get("s")}, "t": {form.Get("t")}, "f": {"forged-value"}, "decision": {"confirm"}}
	if r := fetch(t, http.DefaultClient, http.MethodPost, p.url.String(), bad); r.status != http.StatusForbidden {
		t.Fatalf("forged form: %d", r.status)
	}
	if got := logins(t, e.push); strings.Join(got, ",") != "scanned" {
		t.Fatalf("before the confirmation the browser got %v", got)
	}

	form.Set("decision", "confirm")
	if r := fetch(t, http.DefaultClient, http.MethodPost, p.url.String(), form); r.status != http.StatusOK || !strings.Contains(r.body, "logged in") {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	ts, _ := e.push.TwoStep(oaScene)
	if strings.Join(ts.Sent, ",") != "scanned,login" || ts.Confirmer != scanner {
		t.Fatalf("after confirm: %+v", ts)
	}
	// The same POST again, and the cancel button afterwards: 409.
	for _, d := range []string{"confirm", "cancel"} {
		form.Set("decision", d)
		if r := fetch(t, http.DefaultClient, http.MethodPost, p.url.String(), form); r.status != http.StatusConflict {
			t.Fatalf("second POST (%s): %d", d, r.status)
		}
	}
	if p := fetch(t, e.phone(scanner), http.MethodGet, link, nil); p.status != http.StatusConflict {
		t.Fatalf("link after the decision: %d", p.status)
	}
	if ts, _ := e.push.TwoStep(oaScene); strings.Join(ts.Sent, ",") != "scanned,login" {
		t.Fatalf("exactly one login: %v", ts.Sent)
	}
	if strings.Contains(e.pageLogs.String(), scanner) || strings.Contains(e.logs.String(), scanner) {
		t.Error("an openid in the logs")
	}
	if n := strings.Count(e.pageLogs.String(), "oa confirm refused"); n < 8 {
		t.Errorf("%d refusal log lines, want one per refusal", n)
	}
}

// TestOAConfirmCancel: the scanner cancels; the browser gets cancelled and
// a later confirm is refused.
func TestOAConfirmCancel(t *testing.T) {
	e := newOAEnv(t, safeMode)
	e.push.AddTwoStepOA(oaScene, oaTicket, e.clock.Now().Add(2*time.Minute), oaRequester)
	q, body := e.encrypted(e.query(), event(scanner, e.clock.Now().Unix(), "subscribe", "qrscene_"+oaScene, oaTicket))
	r := e.post(q, body)
	link := linkRE.FindString(openReply(t, r.body).Content)
	if link == "" {
		t.Fatalf("no link in the encrypted reply")
	}
	p := fetch(t, e.phone(scanner), http.MethodGet, link, nil)
	form := formOf(t, p.body)
	form.Set("decision", "cancel")
	if r := fetch(t, http.DefaultClient, http.MethodPost, p.url.String(), form); r.status != http.StatusOK {
		t.Fatalf("cancel: %d", r.status)
	}
	form.Set("decision", "confirm")
	if r := fetch(t, http.DefaultClient, http.MethodPost, p.url.String(), form); r.status != http.StatusConflict {
		t.Fatalf("confirm after cancel: %d", r.status)
	}
	if ts, _ := e.push.TwoStep(oaScene); strings.Join(ts.Sent, ",") != "scanned,cancelled" {
		t.Fatalf("browser got %v", ts.Sent)
	}
}

// TestOAConfirmExpiry: once the session ended, the link and the form are
// refused with 410 and nobody logs in.
func TestOAConfirmExpiry(t *testing.T) {
	e := newOAEnv(t)
	e.push.AddTwoStepOA(oaScene, oaTicket, e.clock.Now().Add(2*time.Minute), oaRequester)
	link := linkRE.FindString(e.scan(scanner, e.clock.Now().Unix()))
	p := fetch(t, e.phone(scanner), http.MethodGet, link, nil)
	form := formOf(t, p.body)
	e.clock.Advance(2 * time.Minute)
	if r := fetch(t, e.phone(scanner), http.MethodGet, link, nil); r.status != http.StatusGone {
		t.Fatalf("link after expiry: %d", r.status)
	}
	form.Set("decision", "confirm")
	if r := fetch(t, http.DefaultClient, http.MethodPost, p.url.String(), form); r.status != http.StatusGone {
		t.Fatalf("confirm after expiry: %d", r.status)
	}
	if ts, _ := e.push.TwoStep(oaScene); strings.Join(ts.Sent, ",") != "scanned" {
		t.Fatalf("browser got %v", ts.Sent)
	}
}

// TestOAConfirmRelayedCode: a second user scanning a code that is already
// scanned gets no link, and the first scanner's binding holds.
func TestOAConfirmRelayedCode(t *testing.T) {
	e := newOAEnv(t)
	e.push.AddTwoStepOA(oaScene, oaTicket, e.clock.Now().Add(2*time.Minute), oaRequester)
	e.scan(scanner, e.clock.Now().Unix())
	text := e.scan(bystander, e.clock.Now().Unix())
	if linkRE.MatchString(text) || text != e.cfg.Replies.NotFound {
		t.Fatalf("second scanner got %q", text)
	}
	if ts, _ := e.push.TwoStep(oaScene); ts.Scanner != scanner || strings.Join(ts.Sent, ",") != "scanned" {
		t.Fatalf("session %+v", ts)
	}
}
