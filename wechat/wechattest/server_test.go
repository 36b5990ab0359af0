package wechattest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
	"github.com/scanlogin/scanlogin/wechat/wechattest/internal/qrscan"
)

const (
	appID  = "wxtest0000000001"
	secret = "secret-of-the-test-account"
)

type fixture struct {
	t     *testing.T
	srv   *wechattest.Server
	clock *wechattest.Clock
}

// newFixture serves an account on a settable clock whose codes encode
// "<server>/scan/<id>".
func newFixture(t *testing.T, opts ...wechattest.Option) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: wechattest.NewClock(time.Unix(1_700_000_000, 0))}
	var base string
	opts = append([]wechattest.Option{
		wechattest.WithClock(f.clock.Now),
		wechattest.WithScanURL(func(id string) string { return base + "/scan/" + id }),
		wechattest.WithMiniURL(func(id string) string { return base + "/mp/" + id }),
	}, opts...)
	f.srv = wechattest.New(t, appID, secret, opts...)
	base = f.srv.URL()
	return f
}

// do sends a request and returns the response and its body.
func (f *fixture) do(method, path, body string) (*http.Response, []byte) {
	f.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.srv.URL()+path, r)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, b
}

// call sends a request that WeChat answers with JSON and decodes it; it
// checks WeChat's status and Content-Type.
func (f *fixture) call(method, path, body string) map[string]any {
	f.t.Helper()
	resp, b := f.do(method, path, body)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("%s %s: status %d, want 200 (WeChat answers errors with 200)", method, path, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; encoding=utf-8" {
		f.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		f.t.Fatalf("%s %s: %v: %s", method, path, err, b)
	}
	return m
}

func errcode(m map[string]any) int {
	n, _ := m["errcode"].(float64)
	return int(n)
}

func (f *fixture) wantErr(m map[string]any, want int) {
	f.t.Helper()
	if got := errcode(m); got != want {
		f.t.Fatalf("errcode %d, want %d (%v)", got, want, m)
	}
	if msg, _ := m["errmsg"].(string); !strings.HasPrefix(msg, wechattest.ErrMsg(want)+" rid: ") {
		f.t.Fatalf("errmsg %q, want %q and a request id", msg, wechattest.ErrMsg(want))
	}
}

func stableBody(appid, sec string, force bool) string {
	b, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": appid, "secret": sec, "force_refresh": force})
	return string(b)
}

func (f *fixture) stable(force bool) (string, int) {
	f.t.Helper()
	m := f.call("POST", wechattest.PathStableToken, stableBody(appID, secret, force))
	tok, _ := m["access_token"].(string)
	if tok == "" {
		f.t.Fatalf("no access_token: %v", m)
	}
	return tok, int(m["expires_in"].(float64))
}

const strScene = `{"expire_seconds":120,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"login_3f2a9c"}}}`

func (f *fixture) createQR(tok, body string) map[string]any {
	f.t.Helper()
	return f.call("POST", wechattest.PathQRCreate+"?access_token="+url.QueryEscape(tok), body)
}

func TestTokenErrors(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"wrong appid", "grant_type=client_credential&appid=wxother&secret=" + secret, wechattest.ErrInvalidAppID},
		{"wrong secret", "grant_type=client_credential&appid=" + appID + "&secret=nope", wechattest.ErrInvalidSecret},
		{"no appid", "grant_type=client_credential&secret=" + secret, wechattest.ErrAppIDMissing},
		{"no secret", "grant_type=client_credential&appid=" + appID, wechattest.ErrSecretMissing},
		{"bad grant", "grant_type=password&appid=" + appID + "&secret=" + secret, wechattest.ErrInvalidGrantType},
	} {
		t.Run("token/"+tc.name, func(t *testing.T) {
			f.t = t
			f.wantErr(f.call("GET", wechattest.PathToken+"?"+tc.query, ""), tc.want)
		})
	}
	f.t = t
	f.wantErr(f.call("POST", wechattest.PathStableToken, stableBody("wxother", secret, false)), wechattest.ErrInvalidAppID)
	f.wantErr(f.call("POST", wechattest.PathStableToken, stableBody(appID, "nope", false)), wechattest.ErrInvalidSecret)
	f.wantErr(f.call("POST", wechattest.PathStableToken, stableBody("", secret, false)), wechattest.ErrAppIDMissing)
	f.wantErr(f.call("POST", wechattest.PathStableToken, `{"grant_type":"x","appid":"`+appID+`","secret":"`+secret+`"}`), wechattest.ErrInvalidGrantType)
	f.wantErr(f.call("POST", wechattest.PathStableToken, "grant_type=client_credential"), wechattest.ErrDataFormat)
	f.wantErr(f.call("GET", wechattest.PathStableToken, ""), wechattest.ErrRequirePOST)
	f.wantErr(f.call("POST", wechattest.PathToken, ""), wechattest.ErrRequireGET)
	f.wantErr(f.call("GET", "/cgi-bin/no/such/api", ""), wechattest.ErrInvalidURL)
	f.wantErr(f.call("GET", "/sns/jsCode2Session", ""), wechattest.ErrInvalidURL)
	if n := f.srv.TokenFetches(); n != 12 {
		t.Errorf("TokenFetches = %d, want 12 (every request, whatever the answer)", n)
	}
}

func TestStableTokenRotation(t *testing.T) {
	const ttl = 30 * time.Second
	f := newFixture(t, wechattest.WithTokenLifetime(ttl))
	tok1, left := f.stable(false)
	if left != 30 {
		t.Fatalf("expires_in %d, want 30", left)
	}
	f.clock.Advance(10 * time.Second)
	if tok2, left := f.stable(false); tok2 != tok1 || left != 20 {
		t.Fatalf("normal mode: %d s left of a new token, want the same token with 20 s left", left)
	}
	// Within min(5 min, ttl/2) of its expiry the token is replaced, and the
	// old one keeps working to its end.
	f.clock.Advance(6 * time.Second)
	tok3, left := f.stable(false)
	if tok3 == tok1 {
		t.Fatal("normal mode kept handing out a token near its expiry")
	}
	if left != 30 || f.srv.CurrentToken() != tok3 {
		t.Fatalf("new token expires_in %d, want 30; CurrentToken is not it", left)
	}
	if m := f.createQR(tok1, strScene); errcode(m) != 0 {
		t.Fatalf("old token refused before its expiry: %v", m)
	}
	f.clock.Advance(15 * time.Second)
	f.wantErr(f.createQR(tok1, strScene), wechattest.ErrTokenExpired)
	if m := f.createQR(tok3, strScene); errcode(m) != 0 {
		t.Fatalf("current token refused: %v", m)
	}

	// force_refresh revokes the current token at once.
	tok4, _ := f.stable(true)
	if tok4 == tok3 {
		t.Fatal("force_refresh returned the same token")
	}
	f.wantErr(f.createQR(tok3, strScene), wechattest.ErrInvalidCredential)
	f.wantErr(f.createQR("made-up", strScene), wechattest.ErrInvalidCredential)
	f.wantErr(f.createQR("", strScene), wechattest.ErrTokenMissing)

	// After the lifetime every token is expired: 42001.
	f.clock.Advance(ttl)
	f.wantErr(f.createQR(tok4, strScene), wechattest.ErrTokenExpired)
	if f.srv.CurrentToken() != "" {
		t.Error("CurrentToken returns an expired token")
	}
}

func TestForceRefreshQuota(t *testing.T) {
	f := newFixture(t)
	for range wechattest.ForceRefreshPerDay {
		f.stable(true)
	}
	f.wantErr(f.call("POST", wechattest.PathStableToken, stableBody(appID, secret, true)), wechattest.ErrDailyQuota)
	f.stable(false) // normal mode has no such limit
	f.clock.Advance(24 * time.Hour)
	f.stable(true)
}

func TestClassicToken(t *testing.T) {
	f := newFixture(t, wechattest.WithTokenLifetime(time.Hour))
	get := func() string {
		m := f.call("GET", wechattest.PathToken+"?grant_type=client_credential&appid="+appID+"&secret="+secret, "")
		if m["expires_in"].(float64) != 3600 {
			t.Fatalf("expires_in %v", m["expires_in"])
		}
		return m["access_token"].(string)
	}
	a, b := get(), get()
	if a == b {
		t.Fatal("classic token not renewed")
	}
	stable, _ := f.stable(false)
	f.clock.Advance(wechattest.ClassicOverlap - time.Second)
	if m := f.createQR(a, strScene); errcode(m) != 0 {
		t.Fatalf("replaced token refused within the overlap: %v", m)
	}
	f.clock.Advance(2 * time.Second)
	f.wantErr(f.createQR(a, strScene), wechattest.ErrTokenExpired)
	for _, tok := range []string{b, stable} {
		if m := f.createQR(tok, strScene); errcode(m) != 0 {
			t.Fatalf("token refused: %v", m)
		}
	}
}

func TestQRCreate(t *testing.T) {
	f := newFixture(t)
	tok, _ := f.stable(false)
	for _, tc := range []struct {
		name, body string
		want       int
		expire     float64 // 0: not in the answer
	}{
		{"str scene", strScene, 0, 120},
		{"int scene", `{"expire_seconds":300,"action_name":"QR_SCENE","action_info":{"scene":{"scene_id":123}}}`, 0, 300},
		{"default expiry", `{"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"x"}}}`, 0, 60},
		{"capped expiry", `{"expire_seconds":99999999,"action_name":"QR_SCENE","action_info":{"scene":{"scene_id":5}}}`, 0, 2592000},
		{"permanent", `{"action_name":"QR_LIMIT_SCENE","action_info":{"scene":{"scene_id":100000}}}`, 0, 0},
		{"permanent str", `{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"shop"}}}`, 0, 0},
		{"unknown action", `{"action_name":"QR_NOPE","action_info":{"scene":{"scene_str":"x"}}}`, wechattest.ErrInvalidActionInfo, 0},
		{"no scene wrapper", `{"action_name":"QR_SCENE","action_info":{"scene_id":5}}`, wechattest.ErrInvalidActionInfo, 0},
		{"empty scene", `{"action_name":"QR_STR_SCENE","action_info":{"scene":{}}}`, wechattest.ErrInvalidActionInfo, 0},
		{"long scene_str", `{"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"` + strings.Repeat("a", 65) + `"}}}`, wechattest.ErrInvalidActionInfo, 0},
		{"zero scene_id", `{"action_name":"QR_SCENE","action_info":{"scene":{"scene_id":0}}}`, wechattest.ErrInvalidActionInfo, 0},
		{"permanent id too big", `{"action_name":"QR_LIMIT_SCENE","action_info":{"scene":{"scene_id":100001}}}`, wechattest.ErrInvalidActionInfo, 0},
		{"not json", `action_name=QR_SCENE`, wechattest.ErrDataFormat, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			m := f.createQR(tok, tc.body)
			if tc.want != 0 {
				f.wantErr(m, tc.want)
				return
			}
			if errcode(m) != 0 {
				t.Fatalf("%v", m)
			}
			ticket, _ := m["ticket"].(string)
			for _, ch := range "+/=" {
				if !strings.ContainsRune(ticket, ch) {
					t.Errorf("ticket %q lacks %q", ticket, ch)
				}
			}
			if u, _ := m["url"].(string); !strings.HasPrefix(u, f.srv.URL()+"/scan/") {
				t.Fatalf("url %q is not a scan URL", u)
			}
			if got, _ := m["expire_seconds"].(float64); got != tc.expire {
				t.Fatalf("expire_seconds %v, want %v", got, tc.expire)
			}
		})
	}
}

func TestQRCodesAndTicketForScene(t *testing.T) {
	f := newFixture(t)
	tok, _ := f.stable(false)
	m := f.createQR(tok, strScene)
	if got, ok := f.srv.TicketForScene("login_3f2a9c"); !ok || got != m["ticket"] {
		t.Errorf("TicketForScene = %q, %v", got, ok)
	}
	if _, ok := f.srv.TicketForScene("other"); ok {
		t.Error("TicketForScene(other) found a ticket")
	}
	qrs := f.srv.QRCodes()
	if len(qrs) != 1 {
		t.Fatalf("QRCodes() = %+v", qrs)
	}
	if q := qrs[0]; q.Scene != "login_3f2a9c" || q.ActionName != "QR_STR_SCENE" || q.ExpireSeconds != 120 ||
		q.Ticket != m["ticket"] || q.URL != m["url"] || !q.CreatedAt.Equal(f.clock.Now()) {
		t.Errorf("QRCodes()[0] = %+v", q)
	}
}

func TestShowQRCode(t *testing.T) {
	f := newFixture(t)
	tok, _ := f.stable(false)
	m := f.createQR(tok, strScene)
	ticket, scanURL := m["ticket"].(string), m["url"].(string)

	show := wechattest.PathShowQR + "?ticket="
	resp, body := f.do("GET", show+url.QueryEscape(ticket), "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if got := qrscan.Decode(t, img); got != scanURL {
		t.Fatalf("QR content %q, want the scan URL %q", got, scanURL)
	}
	if resp, body := f.do("HEAD", show+url.QueryEscape(ticket), ""); resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("HEAD: status %d, %d bytes", resp.StatusCode, len(body))
	}

	// An unescaped ticket loses its '+': 404, as on WeChat.
	if resp, _ := f.do("GET", show+ticket, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unescaped ticket: status %d, want 404", resp.StatusCode)
	}
	if resp, _ := f.do("GET", show+"gQFunknown", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown ticket: status %d, want 404", resp.StatusCode)
	}
	f.clock.Advance(120 * time.Second)
	if resp, _ := f.do("GET", show+url.QueryEscape(ticket), ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("expired ticket: status %d, want 404", resp.StatusCode)
	}
}

func TestUserInfo(t *testing.T) {
	f := newFixture(t)
	tok, _ := f.stable(false)
	q := wechattest.PathUserInfo + "?lang=zh_CN&access_token=" + url.QueryEscape(tok) + "&openid="
	f.wantErr(f.call("GET", q+"oNobody", ""), wechattest.ErrInvalidOpenID)
	f.wantErr(f.call("GET", wechattest.PathUserInfo+"?openid=x&access_token=bad", ""), wechattest.ErrInvalidCredential)

	f.srv.Follow("oFollower", "login_3f2a9c", "Bob")
	m := f.call("GET", q+"oFollower", "")
	if m["subscribe"].(float64) != 1 || m["openid"] != "oFollower" || m["qr_scene_str"] != "login_3f2a9c" ||
		m["subscribe_scene"] != "ADD_SCENE_QR_CODE" || m["unionid"] == "" || m["nickname"] != "" {
		t.Fatalf("follower: %v", m)
	}
	// The project's client parses it.
	var ui wechat.UserInfo
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, &ui); err != nil || ui.Subscribe != 1 || ui.UnionID == "" {
		t.Fatalf("wechat.UserInfo: %+v, %v", ui, err)
	}

	f.srv.Unfollow("oFollower")
	m = f.call("GET", q+"oFollower", "")
	if m["subscribe"].(float64) != 0 || len(m) != 2 {
		t.Fatalf("former follower: %v", m)
	}

	// AddUser sets what is answered.
	f.srv.AddUser(wechat.UserInfo{Subscribe: 1, OpenID: "oAdded", UnionID: "uAdded", Nickname: "Ann",
		HeadImgURL: "http://img/1", SubscribeTime: 1_600_000_000, TagIDList: []int64{2, 127}})
	m = f.call("GET", q+"oAdded", "")
	b, _ = json.Marshal(m)
	if err := json.Unmarshal(b, &ui); err != nil || ui.UnionID != "uAdded" || ui.Nickname != "Ann" || ui.HeadImgURL != "http://img/1" ||
		ui.SubscribeTime != 1_600_000_000 || len(ui.TagIDList) != 2 || ui.SubscribeScene != "ADD_SCENE_OTHERS" {
		t.Fatalf("added user: %v", m)
	}
}

func TestWxaCode(t *testing.T) {
	f := newFixture(t)
	tok, _ := f.stable(false)
	path := wechattest.PathWxaCode + "?access_token=" + url.QueryEscape(tok)
	resp, body := f.do("POST", path, `{"scene":"a=1&b=2","page":"pages/index/index","width":280}`)
	if resp.Header.Get("Content-Type") != "image/jpeg" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("headers %v: %s", resp.Header, body)
	}
	img, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not a JPEG: %v", err)
	}
	content := qrscan.Decode(t, img)
	if !strings.HasPrefix(content, f.srv.URL()+"/mp/") {
		t.Fatalf("wxacode content %q", content)
	}
	if c, ok := f.srv.WxaCodeByID(strings.TrimPrefix(content, f.srv.URL()+"/mp/")); !ok || c.Scene != "a=1&b=2" || c.Page != "pages/index/index" {
		t.Fatalf("WxaCodeByID: %+v, %v", c, ok)
	}
	resp, body = f.do("POST", path, `{"scene":"x","check_path":false,"page":"pages/unpublished/p","is_hyaline":true}`)
	if resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("is_hyaline: Content-Type %q: %s", resp.Header.Get("Content-Type"), body)
	}
	for _, body := range []string{`{"scene":""}`, `{"scene":"` + strings.Repeat("a", 33) + `"}`, `scene=abc`} {
		f.wantErr(f.call("POST", path, body), wechattest.ErrInvalidSceneLength)
	}
	f.wantErr(f.call("POST", path, `{"scene":"100%"}`), wechattest.ErrInvalidScene)
	f.wantErr(f.call("POST", path, `{"scene":"a","page":"pages/missing/missing"}`), wechattest.ErrInvalidPage)
	f.wantErr(f.call("POST", path, `{"scene":"a","page":"/pages/index/index"}`), wechattest.ErrInvalidPage)
	f.wantErr(f.call("POST", path, `{"scene":"a","env_version":"beta"}`), wechattest.ErrInvalidArgs)
	f.wantErr(f.call("POST", wechattest.PathWxaCode+"?access_token=bad", `{"scene":"a"}`), wechattest.ErrInvalidCredential)
}

func TestJSCode2Session(t *testing.T) {
	f := newFixture(t)
	code, u := f.srv.IssueJSCode("oPerson")
	q := func(appid, sec, code string) string {
		return wechattest.PathJSCode2Session + "?grant_type=authorization_code&appid=" + appid + "&secret=" + sec + "&js_code=" + url.QueryEscape(code)
	}
	f.wantErr(f.call("GET", q(appID, "bad", code), ""), wechattest.ErrInvalidSecret)
	f.wantErr(f.call("GET", q("wxother", secret, code), ""), wechattest.ErrInvalidAppID)
	f.wantErr(f.call("GET", q(appID, secret, "nope"), ""), wechattest.ErrInvalidCode)
	f.wantErr(f.call("GET", q(appID, secret, ""), ""), wechattest.ErrCodeMissing)
	m := f.call("GET", q(appID, secret, code), "")
	if m["openid"] != u.MiniOpenID || m["unionid"] != u.UnionID || m["session_key"] == "" || m["openid"] == "oPerson" {
		t.Fatalf("%v", m)
	}
	f.wantErr(f.call("GET", q(appID, secret, code), ""), wechattest.ErrCodeUsed)
	late, _ := f.srv.IssueJSCode("oPerson")
	f.clock.Advance(wechattest.JSCodeLife)
	f.wantErr(f.call("GET", q(appID, secret, late), ""), wechattest.ErrInvalidCode)
}

func TestExpireTokensAndFailures(t *testing.T) {
	f := newFixture(t)
	tok, _ := f.stable(false)
	f.srv.FailNext(wechattest.PathQRCreate, 40001, 2)
	f.srv.FailNext(wechattest.PathQRCreate, 45009, 1)
	f.srv.FailNextStatus(wechattest.PathQRCreate, 502, 1)
	for _, want := range []int{40001, 40001, 45009} {
		f.wantErr(f.createQR(tok, strScene), want)
	}
	if resp, _ := f.do("POST", wechattest.PathQRCreate+"?access_token="+url.QueryEscape(tok), strScene); resp.StatusCode != 502 {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	if m := f.createQR(tok, strScene); errcode(m) != 0 {
		t.Errorf("after the failures: %v", m)
	}
	if n := f.srv.Calls(wechattest.PathQRCreate); n != 5 {
		t.Errorf("Calls = %d, want 5", n)
	}
	if n := len(f.srv.QRCodes()); n != 1 {
		t.Errorf("%d QR codes created, want 1 (failed calls do nothing)", n)
	}

	f.srv.ExpireTokens()
	if f.srv.CurrentToken() != "" {
		t.Error("CurrentToken after ExpireTokens")
	}
	f.wantErr(f.createQR(tok, strScene), wechattest.ErrTokenExpired)
	if tok2, _ := f.stable(false); tok2 == tok {
		t.Error("stable_token handed out the expired token again")
	}
}

func TestLatency(t *testing.T) {
	f := newFixture(t)
	f.srv.SetLatency(100 * time.Millisecond)
	start := time.Now()
	f.stable(false)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("answer after %v, want >= 100ms", d)
	}
}

// TestProjectClient drives the fake with the project's own WeChat client,
// through a token expiry that the client must recover from.
func TestProjectClient(t *testing.T) {
	f := newFixture(t, wechattest.WithTokenLifetime(30*time.Second))
	c, err := wechat.NewClient(f.srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	qr, err := c.CreateTempQR(ctx, "login_abc", 120*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.srv.TicketForScene("login_abc"); got != qr.Ticket || qr.ExpireSeconds != 120 || !strings.HasPrefix(qr.URL, f.srv.URL()+"/scan/") {
		t.Fatalf("%+v, server ticket %q", qr, got)
	}
	resp, _ := f.do("GET", strings.TrimPrefix(qr.ImageURL, f.srv.URL()), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("image URL of the client: status %d", resp.StatusCode)
	}
	// The client still holds the token; the fake says it expired.
	f.srv.ExpireTokens()
	if _, err := c.CreateTempQR(ctx, "login_def", 120*time.Second); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	f.srv.Follow("oUser", "login_abc", "")
	if ui, err := c.UserInfo(ctx, "oUser"); err != nil || ui.Subscribe != 1 || ui.QRSceneStr != "login_abc" {
		t.Fatalf("user info: %+v, %v", ui, err)
	}
	// With a wrong secret the client reports WeChat's code.
	bad, _ := wechat.NewClient(wechat.Config{APIBase: f.srv.URL(), MPBase: f.srv.URL(), AppID: appID, Secret: "wrong"})
	_, err = bad.AccessToken(ctx)
	var ae *wechat.APIError
	if !errors.As(err, &ae) || ae.Code != wechattest.ErrInvalidSecret {
		t.Fatalf("wrong secret: %v", err)
	}
}
