package miniprogram_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/miniprogram"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient/pushtest"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

const (
	appID  = "wxminiprogram0001"
	secret = "mini-secret-0123456789"
	scene  = "AbCdEfGhIjKlMnOpQrStUv_-" // 24 characters, as push-server makes them
	life   = 120 * time.Second
)

var requester = &pushv1.Requester{Browser: "Chrome 120", Os: "Windows 10", Ip: "203.0.113.7", AtMs: 1_700_000_000_000}

// fixture is one Mini Program API over real HTTP, with the fake WeChat and
// the fake push server (over real gRPC), all on one settable clock.
type fixture struct {
	t     *testing.T
	clock *wechattest.Clock
	wx    *wechattest.Server
	push  *pushtest.Server
	url   string
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func defaultConfig() config.MiniProgram {
	return config.MiniProgram{
		AppID: appID, Secret: secret, SiteName: "Example Shop",
		TrustedProxies: []string{"127.0.0.1"},
		ScansPerIP:     config.Rate{N: 20, Per: time.Minute},
		ConfirmsPerIP:  config.Rate{N: 30, Per: time.Minute},
		ScansPerScene:  10,
	}
}

func newFixture(t *testing.T, mod ...func(*config.MiniProgram)) *fixture {
	t.Helper()
	clock := wechattest.NewClock(time.Unix(1_700_000_000, 0))
	f := &fixture{t: t, clock: clock, wx: wechattest.New(t, appID, secret, wechattest.WithClock(clock.Now)),
		push: pushtest.Start(t)}
	f.push.SetNow(clock.Now)
	f.url = f.serve(miniprogram.NewMemory(clock.Now), mod...)
	return f
}

// serve starts another API instance on store and returns its URL.
func (f *fixture) serve(store miniprogram.Store, mod ...func(*config.MiniProgram)) string {
	t := f.t
	cfg := defaultConfig()
	for _, m := range mod {
		m(&cfg)
	}
	wxc, err := wechat.NewClient(f.wx.Config())
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pushclient.New(f.push.Addr(), "", 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if f.logs == nil {
		f.logs = new(syncBuffer)
	}
	h, err := miniprogram.New(miniprogram.Deps{
		Logger:     slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Config:     cfg,
		Sessions:   wxc,
		Notifier:   pc,
		Store:      store,
		Registerer: prometheus.NewRegistry(),
		Now:        f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// answer is a decoded reply.
type answer struct {
	status     int
	retryAfter string
	body       map[string]any
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

// post sends body (a JSON-encodable value, or a string sent as is) from
// client address ip.
func (f *fixture) post(base, path, ip string, body any) answer {
	f.t.Helper()
	raw, ok := body.(string)
	if !ok {
		b, err := json.Marshal(body)
		if err != nil {
			f.t.Fatal(err)
		}
		raw = string(b)
	}
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(raw))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if ip != "" {
		req.Header.Set("X-Forwarded-For", ip)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if err := json.Unmarshal(data, &a.body); err != nil {
		f.t.Fatalf("%s: answer %d is not JSON: %q", path, resp.StatusCode, data)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		f.t.Errorf("%s: Content-Type %q", path, resp.Header.Get("Content-Type"))
	}
	if a.status != http.StatusOK {
		if a.str("error") == "" || a.str("message") == "" || len(a.body) != 2 {
			f.t.Errorf("%s: error answer %d is not {error, message}: %s", path, a.status, data)
		}
	}
	return a
}

// scan scans scene as the person with official-account openid person, from
// ip, with a fresh login code.
func (f *fixture) scan(base, person, ip string) answer {
	f.t.Helper()
	code, _ := f.wx.IssueJSCode(person)
	return f.post(base, "/miniprogram/scan", ip, map[string]any{"scene": scene, "code": code})
}

func (f *fixture) confirm(base, secret string, approve bool, ip string) answer {
	f.t.Helper()
	return f.post(base, "/miniprogram/confirm", ip, map[string]any{"scene": scene, "confirm": secret, "approve": approve})
}

func (f *fixture) want(a answer, status int, code string) {
	f.t.Helper()
	if a.status != status || a.str("error") != code {
		f.t.Fatalf("answer %d %v, want %d %q", a.status, a.body, status, code)
	}
}

func (f *fixture) session() pushtest.TwoStep {
	f.t.Helper()
	ts, ok := f.push.TwoStep(scene)
	if !ok {
		f.t.Fatal("no session")
	}
	return ts
}

func (f *fixture) addSession() {
	f.push.AddTwoStep(scene, f.clock.Now().Add(life), requester)
}

func miniOpenID(wx *wechattest.Server, person string) (openid, unionid string) {
	_, u := wx.IssueJSCode(person)
	return u.MiniOpenID, u.UnionID
}

func TestScanThenConfirm(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	f.clock.Advance(20 * time.Second)
	code, _ := f.wx.IssueJSCode("oAnn")
	// An unknown field is ignored.
	a := f.post(f.url, "/miniprogram/scan", "", map[string]any{"scene": scene, "code": code, "version": 2})
	if a.status != 200 {
		t.Fatalf("scan: %d %v", a.status, a.body)
	}
	secretT := a.str("confirm")
	if secretT == "" || a.body["expires_in"] != float64(100) || a.str("site") != "Example Shop" {
		t.Errorf("scan answer %v", a.body)
	}
	wantReq := map[string]any{"browser": "Chrome 120", "os": "Windows 10", "ip": "203.0.113.7", "at": float64(1_700_000_000_000)}
	if got, _ := a.body["requester"].(map[string]any); !mapsEqual(got, wantReq) {
		t.Errorf("requester = %v, want %v", got, wantReq)
	}
	openid, unionid := miniOpenID(f.wx, "oAnn")
	calls := f.push.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d Notify calls", len(calls))
	}
	c := calls[0]
	if c.GetEvent() != pushv1.Event_EVENT_SCANNED || c.GetTicket() != "" || c.GetScene() != scene ||
		c.GetUser().GetOpenid() != openid || c.GetUser().GetUnionid() != unionid || c.GetEventId() == "" {
		t.Errorf("scan Notify = %v", c)
	}
	if ts := f.session(); ts.State != pushtest.StateScanned || ts.Scanner != openid {
		t.Fatalf("session %+v", ts)
	}

	a = f.confirm(f.url, secretT, true, "")
	if a.status != 200 || a.str("result") != "confirmed" {
		t.Fatalf("confirm: %d %v", a.status, a.body)
	}
	ts := f.session()
	if ts.State != pushtest.StateConfirmed || ts.Confirmer != openid || strings.Join(ts.Sent, ",") != "scanned,login" {
		t.Fatalf("session %+v", ts)
	}
	c = f.push.Calls()[1]
	if c.GetEvent() != pushv1.Event_EVENT_CONFIRMED || c.GetConfirm() != secretT || c.GetUser().GetUnionid() != unionid {
		t.Errorf("confirm Notify = %v", c)
	}

	// Replayed: refused, nothing sent again.
	f.want(f.confirm(f.url, secretT, true, ""), 409, "already_used")
	f.want(f.confirm(f.url, secretT, false, ""), 409, "already_used")
	f.want(f.scan(f.url, "oAnn", ""), 409, "already_used")
	if ts := f.session(); strings.Join(ts.Sent, ",") != "scanned,login" {
		t.Errorf("after replays the browser got %v", ts.Sent)
	}

	// The log holds no openid, unionid, code or secret.
	logs := f.logs.String()
	for _, s := range []string{openid, unionid, code, secretT, secret} {
		if strings.Contains(logs, s) {
			t.Errorf("log holds %q:\n%s", s, logs)
		}
	}
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSameUserScansAgain: a second scan by the same user while waiting for
// the confirmation is 200 again; the browser is told "scanned" once.
func TestSameUserScansAgain(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	first := f.scan(f.url, "oAnn", "")
	second := f.scan(f.url, "oAnn", "")
	if first.status != 200 || second.status != 200 {
		t.Fatalf("scans: %d, %d", first.status, second.status)
	}
	// This fake push server replaces the secret on a new scan.
	f.want(f.confirm(f.url, first.str("confirm"), true, ""), 403, "forbidden")
	if a := f.confirm(f.url, second.str("confirm"), true, ""); a.status != 200 {
		t.Fatalf("confirm: %d %v", a.status, a.body)
	}
	if ts := f.session(); strings.Join(ts.Sent, ",") != "scanned,login" {
		t.Errorf("browser got %v", ts.Sent)
	}
}

// TestSecondUserRefused: once one user scanned, another gets 409 and
// changes nothing; the first still confirms.
func TestSecondUserRefused(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	ann := f.scan(f.url, "oAnn", "")
	if ann.status != 200 {
		t.Fatalf("scan: %d %v", ann.status, ann.body)
	}
	f.want(f.scan(f.url, "oBob", ""), 409, "already_used")
	// Bob replaying Ann's secret: bound to Ann, so Ann's user is sent;
	// the push server accepts only Ann's latest secret, and Bob has none.
	f.want(f.confirm(f.url, "bobs-guess-0123456789", true, ""), 403, "forbidden")
	annID, _ := miniOpenID(f.wx, "oAnn")
	if ts := f.session(); ts.State != pushtest.StateScanned || ts.Scanner != annID {
		t.Fatalf("session %+v", ts)
	}
	if a := f.confirm(f.url, ann.str("confirm"), true, ""); a.status != 200 {
		t.Fatalf("Ann's confirm: %d %v", a.status, a.body)
	}
}

// TestLoginCodeRefused: every way WeChat refuses a login code, and WeChat
// failing; none reaches the push server.
func TestLoginCodeRefused(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	used, _ := f.wx.IssueJSCode("oAnn")
	if _, err := mustClient(t, f.wx).Code2Session(t.Context(), used); err != nil {
		t.Fatal(err)
	}
	late, _ := f.wx.IssueJSCode("oAnn")
	f.clock.Advance(wechattest.JSCodeLife)
	f.addSession() // a fresh session, after the clock moved
	fresh := func() string { c, _ := f.wx.IssueJSCode("oAnn"); return c }

	for _, tt := range []struct {
		name       string
		code       string
		inject     int // errcode of WeChat's next answer
		httpStatus int // or an HTTP status of WeChat's next answer
		status     int
		errCode    string
	}{
		{"unknown code", "never-issued-code", 0, 0, 401, "invalid_code"},
		{"used code", used, 0, 0, 401, "invalid_code"},
		{"expired code", late, 0, 0, 401, "invalid_code"},
		{"40029", fresh(), wechattest.ErrInvalidCode, 0, 401, "invalid_code"},
		{"40163", fresh(), wechattest.ErrCodeUsed, 0, 401, "invalid_code"},
		{"40226 high-risk user", fresh(), wechat.ErrCodeHighRiskUser, 0, 401, "invalid_code"},
		{"-1 busy", fresh(), wechattest.ErrSystem, 0, 503, "unavailable"},
		{"45011 minute quota", fresh(), wechattest.ErrMinuteQuota, 0, 429, "rate_limited"},
		{"40125 our secret wrong", fresh(), wechattest.ErrInvalidSecret, 0, 503, "unavailable"},
		{"HTTP 502", fresh(), 0, http.StatusBadGateway, 503, "unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.inject != 0 {
				f.wx.FailNext(wechattest.PathJSCode2Session, tt.inject, 1)
			}
			if tt.httpStatus != 0 {
				f.wx.FailNextStatus(wechattest.PathJSCode2Session, tt.httpStatus, 1)
			}
			a := f.post(f.url, "/miniprogram/scan", "", map[string]any{"scene": scene, "code": tt.code})
			f.want(a, tt.status, tt.errCode)
			if tt.status == 429 && a.retryAfter != "60" {
				t.Errorf("Retry-After %q", a.retryAfter)
			}
		})
	}
	if n := len(f.push.Calls()); n != 0 {
		t.Errorf("%d Notify calls", n)
	}
	if ts := f.session(); ts.State != pushtest.StateWaiting {
		t.Errorf("session %+v", ts)
	}
	if !strings.Contains(f.logs.String(), "errcode=40125") || !strings.Contains(f.logs.String(), "MINIPROGRAM_SECRET") {
		t.Errorf("a misconfiguration is not logged clearly:\n%s", f.logs)
	}
}

func mustClient(t *testing.T, wx *wechattest.Server) *wechat.Client {
	c, err := wechat.NewClient(wx.Config())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCancelThenConfirm: after a cancel the same secret cannot confirm.
func TestCancelThenConfirm(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	a := f.scan(f.url, "oAnn", "")
	if a.status != 200 {
		t.Fatalf("scan %d", a.status)
	}
	if c := f.confirm(f.url, a.str("confirm"), false, ""); c.status != 200 || c.str("result") != "cancelled" {
		t.Fatalf("cancel: %d %v", c.status, c.body)
	}
	f.want(f.confirm(f.url, a.str("confirm"), true, ""), 409, "already_used")
	if ts := f.session(); ts.State != pushtest.StateCancelled || strings.Join(ts.Sent, ",") != "scanned,cancelled" {
		t.Errorf("session %+v", ts)
	}
}

func TestWrongSecret(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	a := f.scan(f.url, "oAnn", "")
	for _, wrong := range []string{"x", a.str("confirm") + "x", strings.ToUpper(a.str("confirm"))} {
		f.want(f.confirm(f.url, wrong, true, ""), 403, "forbidden")
	}
	if ts := f.session(); ts.State != pushtest.StateScanned {
		t.Fatalf("session %+v", ts)
	}
	if c := f.confirm(f.url, a.str("confirm"), true, ""); c.status != 200 {
		t.Fatalf("confirm %d", c.status)
	}
}

func TestExpired(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	a := f.scan(f.url, "oAnn", "")
	f.clock.Advance(life)
	f.want(f.confirm(f.url, a.str("confirm"), true, ""), 410, "expired")
	f.want(f.scan(f.url, "oAnn", ""), 410, "expired")
	if ts := f.session(); ts.State != pushtest.StateScanned || len(ts.Sent) != 1 {
		t.Errorf("session %+v", ts)
	}
}

func TestNotFound(t *testing.T) {
	f := newFixture(t)
	f.want(f.scan(f.url, "oAnn", ""), 404, "not_found")
	f.want(f.confirm(f.url, "some-secret", true, ""), 403, "forbidden")
	// A scene WeChat allows but push-server never makes: 404 without
	// spending the login code.
	code, _ := f.wx.IssueJSCode("oAnn")
	calls := f.wx.Calls(wechattest.PathJSCode2Session)
	f.want(f.post(f.url, "/miniprogram/scan", "", map[string]any{"scene": "abc!def*ghi(jkl)mno~pqr", "code": code}), 404, "not_found")
	if f.wx.Calls(wechattest.PathJSCode2Session) != calls {
		t.Error("jscode2session called for a scene that cannot exist")
	}
	// An official-account session: the ticket check refuses the scan.
	f.push.SetResult(scene, pushv1.Result_RESULT_TICKET_MISMATCH)
	f.want(f.scan(f.url, "oAnn", ""), 404, "not_found")
}

func TestPushServerDown(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	a := f.scan(f.url, "oAnn", "")
	f.push.Stop()
	f.want(f.scan(f.url, "oAnn", ""), 503, "unavailable")
	f.want(f.confirm(f.url, a.str("confirm"), true, ""), 503, "unavailable")
	f.push.Restart()
	if c := f.confirm(f.url, a.str("confirm"), true, ""); c.status != 200 {
		t.Fatalf("confirm after restart: %d %v", c.status, c.body)
	}
}

func TestRateLimits(t *testing.T) {
	t.Run("scans per IP", func(t *testing.T) {
		f := newFixture(t, func(c *config.MiniProgram) { c.ScansPerIP = config.Rate{N: 3, Per: time.Minute} })
		f.addSession()
		for range 3 {
			if a := f.scan(f.url, "oAnn", "198.51.100.1"); a.status != 200 {
				t.Fatalf("scan %d", a.status)
			}
		}
		calls := f.wx.Calls(wechattest.PathJSCode2Session)
		a := f.scan(f.url, "oAnn", "198.51.100.1")
		f.want(a, 429, "rate_limited")
		if a.retryAfter != "20" {
			t.Errorf("Retry-After %q, want 20", a.retryAfter)
		}
		if f.wx.Calls(wechattest.PathJSCode2Session) != calls {
			t.Error("a limited scan reached WeChat")
		}
		// Another client address (named by the trusted proxy) is not limited.
		if a := f.scan(f.url, "oAnn", "198.51.100.2"); a.status != 200 {
			t.Fatalf("other address: %d", a.status)
		}
		// Refill: one every 20 s.
		f.clock.Advance(20 * time.Second)
		if a := f.scan(f.url, "oAnn", "198.51.100.1"); a.status != 200 {
			t.Fatalf("after refill: %d", a.status)
		}
	})
	t.Run("X-Forwarded-For of an untrusted peer", func(t *testing.T) {
		f := newFixture(t, func(c *config.MiniProgram) {
			c.ScansPerIP = config.Rate{N: 1, Per: time.Minute}
			c.TrustedProxies = nil
		})
		f.addSession()
		f.scan(f.url, "oAnn", "198.51.100.1")
		f.want(f.scan(f.url, "oAnn", "198.51.100.2"), 429, "rate_limited")
	})
	t.Run("scans per scene", func(t *testing.T) {
		f := newFixture(t, func(c *config.MiniProgram) { c.ScansPerScene = 2 })
		f.addSession()
		f.scan(f.url, "oAnn", "198.51.100.1")
		f.scan(f.url, "oAnn", "198.51.100.2")
		calls := f.wx.Calls(wechattest.PathJSCode2Session)
		a := f.scan(f.url, "oAnn", "198.51.100.3")
		f.want(a, 429, "rate_limited")
		if a.retryAfter != "600" || f.wx.Calls(wechattest.PathJSCode2Session) != calls {
			t.Errorf("Retry-After %q; WeChat calls %d → %d", a.retryAfter, calls, f.wx.Calls(wechattest.PathJSCode2Session))
		}
	})
	t.Run("confirms per IP", func(t *testing.T) {
		f := newFixture(t, func(c *config.MiniProgram) { c.ConfirmsPerIP = config.Rate{N: 2, Per: time.Minute} })
		f.addSession()
		f.confirm(f.url, "guess-1", true, "198.51.100.1")
		f.confirm(f.url, "guess-2", true, "198.51.100.1")
		f.want(f.confirm(f.url, "guess-3", true, "198.51.100.1"), 429, "rate_limited")
	})
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	f.addSession()
	code, _ := f.wx.IssueJSCode("oAnn")
	long := `{"scene":"` + scene + `","code":"` + code + `","pad":"` + strings.Repeat("x", miniprogram.MaxBodyBytes) + `"}`
	for _, tt := range []struct {
		name, path, body string
		status           int
	}{
		{"not JSON", "scan", `scene=x&code=y`, 400},
		{"empty", "scan", ``, 400},
		{"null", "scan", `null`, 400},
		{"array", "scan", `[]`, 400},
		{"trailing data", "scan", `{"scene":"` + scene + `","code":"c"} {}`, 400},
		{"no scene", "scan", `{"code":"c"}`, 400},
		{"no code", "scan", `{"scene":"` + scene + `"}`, 400},
		{"scene not a string", "scan", `{"scene":12,"code":"c"}`, 400},
		{"scene short", "scan", `{"scene":"abc","code":"c"}`, 400},
		{"scene 33", "scan", `{"scene":"` + strings.Repeat("a", 33) + `","code":"c"}`, 400},
		{"scene with space", "scan", `{"scene":"` + scene[:20] + ` abc","code":"c"}`, 400},
		{"scene with percent", "scan", `{"scene":"` + scene[:20] + `%20ab","code":"c"}`, 400},
		{"empty code", "scan", `{"scene":"` + scene + `","code":""}`, 400},
		{"code with space", "scan", `{"scene":"` + scene + `","code":"a b"}`, 400},
		{"long code", "scan", `{"scene":"` + scene + `","code":"` + strings.Repeat("c", 129) + `"}`, 400},
		{"too large", "scan", long, 413},
		{"no approve", "confirm", `{"scene":"` + scene + `","confirm":"s"}`, 400},
		{"approve not bool", "confirm", `{"scene":"` + scene + `","confirm":"s","approve":"yes"}`, 400},
		{"no confirm", "confirm", `{"scene":"` + scene + `","approve":true}`, 400},
		{"empty confirm", "confirm", `{"scene":"` + scene + `","confirm":"","approve":true}`, 400},
		{"long confirm", "confirm", `{"scene":"` + scene + `","confirm":"` + strings.Repeat("s", 129) + `","approve":true}`, 400},
		{"confirm bad scene", "confirm", `{"scene":"x","confirm":"s","approve":true}`, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := f.post(f.url, "/miniprogram/"+tt.path, "", tt.body)
			f.want(a, tt.status, "bad_request")
		})
	}
	if n := f.wx.Calls(wechattest.PathJSCode2Session); n != 0 {
		t.Errorf("%d jscode2session calls", n)
	}
	if ts := f.session(); ts.State != pushtest.StateWaiting || len(f.push.Calls()) != 0 {
		t.Errorf("session %+v, %d calls", ts, len(f.push.Calls()))
	}
	// Other paths and methods: JSON errors too.
	resp, err := http.Get(f.url + "/miniprogram/scan")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET scan: %d", resp.StatusCode)
	}
	f.want(f.post(f.url, "/miniprogram/other", "", "{}"), 404, "not_found")
}

func TestMetricsCountOutcomes(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	wxc := mustClient(t, f.wx)
	pc, err := pushclient.New(f.push.Addr(), "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	h, err := miniprogram.New(miniprogram.Deps{
		Logger: slog.New(slog.DiscardHandler), Config: defaultConfig(), Sessions: wxc, Notifier: pc,
		Store: miniprogram.NewMemory(f.clock.Now), Registerer: reg, Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	f.addSession()
	a := f.scan(srv.URL, "oAnn", "")
	f.confirm(srv.URL, a.str("confirm"), true, "")
	f.confirm(srv.URL, a.str("confirm"), true, "")
	f.post(srv.URL, "/miniprogram/scan", "", "{")
	want := `
# HELP wechat_callback_miniprogram_requests_total Mini Program API requests by endpoint (scan, confirm) and outcome (ok, confirmed, cancelled, or the error code).
# TYPE wechat_callback_miniprogram_requests_total counter
wechat_callback_miniprogram_requests_total{endpoint="confirm",outcome="already_used"} 1
wechat_callback_miniprogram_requests_total{endpoint="confirm",outcome="confirmed"} 1
wechat_callback_miniprogram_requests_total{endpoint="scan",outcome="bad_request"} 1
wechat_callback_miniprogram_requests_total{endpoint="scan",outcome="ok"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wechat_callback_miniprogram_requests_total"); err != nil {
		t.Error(err)
	}
}
