package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-sim/internal/account"
)

const (
	appID  = "wx0123456789abcdef"
	secret = "s3cret"
)

// clock is a settable clock for token and code expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t     *testing.T
	url   string
	acct  *account.Account
	clock *clock
}

func newFixture(t *testing.T, ttl time.Duration) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: &clock{t: time.Unix(1_700_000_000, 0)}}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	f.acct = account.New(account.Config{
		AppID: appID, Secret: secret, TokenTTL: ttl, Now: f.clock.Now,
		ScanURL: func(id string) string { return srv.URL + "/scan/" + id },
		MiniURL: func(id string) string { return srv.URL + "/mp/" + id },
	})
	New(slog.New(slog.DiscardHandler), f.acct, Options{WxaPages: []string{"pages/index/index"}}).Register(mux)
	return f
}

// do sends a request and returns the response and its body.
func (f *fixture) do(method, path string, body string) (*http.Response, []byte) {
	f.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, r)
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
	if msg, _ := m["errmsg"].(string); !strings.HasPrefix(msg, account.ErrMsg(want)) {
		f.t.Fatalf("errmsg %q, want it to start with %q", msg, account.ErrMsg(want))
	}
}

func stableBody(appid, sec string, force bool) string {
	b, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": appid, "secret": sec, "force_refresh": force})
	return string(b)
}

func (f *fixture) stable(force bool) (string, int) {
	f.t.Helper()
	m := f.call("POST", "/cgi-bin/stable_token", stableBody(appID, secret, force))
	tok, _ := m["access_token"].(string)
	if tok == "" {
		f.t.Fatalf("no access_token: %v", m)
	}
	return tok, int(m["expires_in"].(float64))
}

const strScene = `{"expire_seconds":120,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"login_3f2a9c"}}}`

func (f *fixture) createQR(tok, body string) map[string]any {
	f.t.Helper()
	return f.call("POST", "/cgi-bin/qrcode/create?access_token="+url.QueryEscape(tok), body)
}

func TestTokenErrors(t *testing.T) {
	f := newFixture(t, time.Hour)
	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"wrong appid", "grant_type=client_credential&appid=wxother&secret=" + secret, account.ErrInvalidAppID},
		{"wrong secret", "grant_type=client_credential&appid=" + appID + "&secret=nope", account.ErrInvalidSecret},
		{"no appid", "grant_type=client_credential&secret=" + secret, account.ErrAppIDMissing},
		{"no secret", "grant_type=client_credential&appid=" + appID, account.ErrSecretMissing},
		{"bad grant", "grant_type=password&appid=" + appID + "&secret=" + secret, account.ErrInvalidGrantType},
	} {
		t.Run("token/"+tc.name, func(t *testing.T) {
			f.t = t
			f.wantErr(f.call("GET", "/cgi-bin/token?"+tc.query, ""), tc.want)
		})
	}
	f.t = t
	f.wantErr(f.call("POST", "/cgi-bin/stable_token", stableBody("wxother", secret, false)), account.ErrInvalidAppID)
	f.wantErr(f.call("POST", "/cgi-bin/stable_token", stableBody(appID, "nope", false)), account.ErrInvalidSecret)
	f.wantErr(f.call("POST", "/cgi-bin/stable_token", "grant_type=client_credential"), account.ErrDataFormat)
	f.wantErr(f.call("GET", "/cgi-bin/stable_token", ""), account.ErrRequirePOST)
	f.wantErr(f.call("POST", "/cgi-bin/token", ""), account.ErrRequireGET)
	f.wantErr(f.call("GET", "/cgi-bin/no/such/api", ""), account.ErrInvalidURL)
	f.wantErr(f.call("GET", "/sns/jsCode2Session", ""), account.ErrInvalidURL)
}

func TestStableTokenRotation(t *testing.T) {
	const ttl = 30 * time.Second
	f := newFixture(t, ttl)
	tok1, left := f.stable(false)
	if left != 30 {
		t.Fatalf("expires_in %d, want 30", left)
	}
	if tok2, _ := f.stable(false); tok2 != tok1 {
		t.Fatal("normal mode rotated a fresh token")
	}
	// Within min(5 min, ttl/2) of its expiry the token is replaced, and the
	// old one keeps working to its end.
	f.clock.Advance(16 * time.Second)
	tok3, left := f.stable(false)
	if tok3 == tok1 {
		t.Fatal("normal mode kept handing out a token near its expiry")
	}
	if left != 30 {
		t.Fatalf("new token expires_in %d, want 30", left)
	}
	if m := f.createQR(tok1, strScene); errcode(m) != 0 {
		t.Fatalf("old token refused before its expiry: %v", m)
	}
	f.clock.Advance(15 * time.Second)
	f.wantErr(f.createQR(tok1, strScene), account.ErrTokenExpired)
	if m := f.createQR(tok3, strScene); errcode(m) != 0 {
		t.Fatalf("current token refused: %v", m)
	}

	// force_refresh revokes the current token at once.
	tok4, _ := f.stable(true)
	if tok4 == tok3 {
		t.Fatal("force_refresh returned the same token")
	}
	f.wantErr(f.createQR(tok3, strScene), account.ErrInvalidCredential)
	f.wantErr(f.createQR("made-up", strScene), account.ErrInvalidCredential)
	f.wantErr(f.createQR("", strScene), account.ErrTokenMissing)

	// After the TTL every token is expired: 42001.
	f.clock.Advance(ttl)
	f.wantErr(f.createQR(tok4, strScene), account.ErrTokenExpired)
}

func TestForceRefreshQuota(t *testing.T) {
	f := newFixture(t, time.Hour)
	for range account.ForceRefreshPerDay {
		f.stable(true)
	}
	f.wantErr(f.call("POST", "/cgi-bin/stable_token", stableBody(appID, secret, true)), account.ErrDailyQuota)
	f.stable(false) // normal mode has no such limit
	f.clock.Advance(24 * time.Hour)
	f.stable(true)
}

func TestClassicToken(t *testing.T) {
	f := newFixture(t, time.Hour)
	get := func() string {
		m := f.call("GET", "/cgi-bin/token?grant_type=client_credential&appid="+appID+"&secret="+secret, "")
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
	f.clock.Advance(account.ClassicOverlap - time.Second)
	if m := f.createQR(a, strScene); errcode(m) != 0 {
		t.Fatalf("replaced token refused within the overlap: %v", m)
	}
	f.clock.Advance(2 * time.Second)
	f.wantErr(f.createQR(a, strScene), account.ErrTokenExpired)
	for _, tok := range []string{b, stable} {
		if m := f.createQR(tok, strScene); errcode(m) != 0 {
			t.Fatalf("token refused: %v", m)
		}
	}
}

func TestQRCreate(t *testing.T) {
	f := newFixture(t, time.Hour)
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
		{"unknown action", `{"action_name":"QR_NOPE","action_info":{"scene":{"scene_str":"x"}}}`, account.ErrInvalidActionInfo, 0},
		{"no scene wrapper", `{"action_name":"QR_SCENE","action_info":{"scene_id":5}}`, account.ErrInvalidActionInfo, 0},
		{"empty scene_str", `{"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":""}}}`, account.ErrInvalidActionInfo, 0},
		{"long scene_str", `{"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"` + strings.Repeat("a", 65) + `"}}}`, account.ErrInvalidActionInfo, 0},
		{"zero scene_id", `{"action_name":"QR_SCENE","action_info":{"scene":{"scene_id":0}}}`, account.ErrInvalidActionInfo, 0},
		{"permanent id too big", `{"action_name":"QR_LIMIT_SCENE","action_info":{"scene":{"scene_id":100001}}}`, account.ErrInvalidActionInfo, 0},
		{"not json", `action_name=QR_SCENE`, account.ErrDataFormat, 0},
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
			if !strings.ContainsAny(ticket, "+/=") {
				t.Fatalf("ticket %q has none of + / =", ticket)
			}
			if u, _ := m["url"].(string); !strings.HasPrefix(u, f.url+"/scan/") {
				t.Fatalf("url %q is not a scan URL", u)
			}
			if got, _ := m["expire_seconds"].(float64); got != tc.expire {
				t.Fatalf("expire_seconds %v, want %v", got, tc.expire)
			}
		})
	}
}

// decodeQR reads the QR code in an image.
func decodeQR(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decode QR: %v", err)
	}
	return res.GetText()
}

func TestShowQRCode(t *testing.T) {
	f := newFixture(t, time.Hour)
	tok, _ := f.stable(false)
	m := f.createQR(tok, strScene)
	ticket, scanURL := m["ticket"].(string), m["url"].(string)

	resp, body := f.do("GET", "/cgi-bin/showqrcode?ticket="+url.QueryEscape(ticket), "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if got := decodeQR(t, img); got != scanURL {
		t.Fatalf("QR content %q, want the scan URL %q", got, scanURL)
	}
	if resp, body := f.do("HEAD", "/cgi-bin/showqrcode?ticket="+url.QueryEscape(ticket), ""); resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("HEAD: status %d, %d bytes", resp.StatusCode, len(body))
	}

	// An unescaped ticket loses its '+': 404, as on WeChat.
	if resp, _ := f.do("GET", "/cgi-bin/showqrcode?ticket="+ticket, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unescaped ticket: status %d, want 404", resp.StatusCode)
	}
	if resp, _ := f.do("GET", "/cgi-bin/showqrcode?ticket=gQFunknown", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown ticket: status %d, want 404", resp.StatusCode)
	}
	f.clock.Advance(120 * time.Second)
	if resp, _ := f.do("GET", "/cgi-bin/showqrcode?ticket="+url.QueryEscape(ticket), ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("expired ticket: status %d, want 404", resp.StatusCode)
	}
}

func TestUserInfo(t *testing.T) {
	f := newFixture(t, time.Hour)
	tok, _ := f.stable(false)
	q := "/cgi-bin/user/info?lang=zh_CN&access_token=" + url.QueryEscape(tok) + "&openid="
	f.wantErr(f.call("GET", q+"oNobody", ""), account.ErrInvalidOpenID)
	f.wantErr(f.call("GET", "/cgi-bin/user/info?openid=x&access_token=bad", ""), account.ErrInvalidCredential)

	f.acct.Follow("oFollower", "login_3f2a9c", "")
	m := f.call("GET", q+"oFollower", "")
	if m["subscribe"].(float64) != 1 || m["openid"] != "oFollower" || m["qr_scene_str"] != "login_3f2a9c" ||
		m["subscribe_scene"] != "ADD_SCENE_QR_CODE" || m["unionid"] == "" {
		t.Fatalf("follower: %v", m)
	}
	// The project's client parses it.
	var ui wechat.UserInfo
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, &ui); err != nil || ui.Subscribe != 1 || ui.UnionID == "" {
		t.Fatalf("wechat.UserInfo: %+v, %v", ui, err)
	}

	f.acct.Unfollow("oFollower")
	m = f.call("GET", q+"oFollower", "")
	if m["subscribe"].(float64) != 0 || len(m) != 2 {
		t.Fatalf("former follower: %v", m)
	}
}

func TestWxaCode(t *testing.T) {
	f := newFixture(t, time.Hour)
	tok, _ := f.stable(false)
	path := "/wxa/getwxacodeunlimit?access_token=" + url.QueryEscape(tok)
	resp, body := f.do("POST", path, `{"scene":"a=1&b=2","page":"pages/index/index","width":280}`)
	if resp.Header.Get("Content-Type") != "image/jpeg" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("headers %v: %s", resp.Header, body)
	}
	img, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not a JPEG: %v", err)
	}
	if got := decodeQR(t, img); !strings.HasPrefix(got, f.url+"/mp/") {
		t.Fatalf("wxacode content %q", got)
	}
	resp, body = f.do("POST", path, `{"scene":"x","check_path":false,"page":"pages/unpublished/p","is_hyaline":true}`)
	if resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("is_hyaline: Content-Type %q: %s", resp.Header.Get("Content-Type"), body)
	}
	for _, tc := range []struct{ body string }{
		{`{"scene":""}`},
		{`{"scene":"` + strings.Repeat("a", 33) + `"}`},
		{`scene=abc`},
	} {
		f.wantErr(f.call("POST", path, tc.body), account.ErrInvalidSceneLength)
	}
	f.wantErr(f.call("POST", path, `{"scene":"100%"}`), account.ErrInvalidScene)
	f.wantErr(f.call("POST", path, `{"scene":"a","page":"pages/missing/missing"}`), account.ErrInvalidPage)
	f.wantErr(f.call("POST", path, `{"scene":"a","page":"/pages/index/index"}`), account.ErrInvalidPage)
	f.wantErr(f.call("POST", "/wxa/getwxacodeunlimit?access_token=bad", `{"scene":"a"}`), account.ErrInvalidCredential)
}

func TestJSCode2Session(t *testing.T) {
	f := newFixture(t, time.Hour)
	code, u := f.acct.IssueJSCode("oPerson")
	q := func(appid, sec, code string) string {
		return "/sns/jscode2session?grant_type=authorization_code&appid=" + appid + "&secret=" + sec + "&js_code=" + url.QueryEscape(code)
	}
	f.wantErr(f.call("GET", q(appID, "bad", code), ""), account.ErrInvalidSecret)
	f.wantErr(f.call("GET", q("wxother", secret, code), ""), account.ErrInvalidAppID)
	f.wantErr(f.call("GET", q(appID, secret, "nope"), ""), account.ErrInvalidCode)
	f.wantErr(f.call("GET", q(appID, secret, ""), ""), account.ErrCodeMissing)
	m := f.call("GET", q(appID, secret, code), "")
	if m["openid"] != u.MiniOpenID || m["unionid"] != u.UnionID || m["session_key"] == "" || m["openid"] == "oPerson" {
		t.Fatalf("%v", m)
	}
	f.wantErr(f.call("GET", q(appID, secret, code), ""), account.ErrCodeUsed)
	late, _ := f.acct.IssueJSCode("oPerson")
	f.clock.Advance(account.JSCodeLife)
	f.wantErr(f.call("GET", q(appID, secret, late), ""), account.ErrInvalidCode)
}

// TestProjectClient drives the simulator with the project's own WeChat
// client, through a token expiry that the client must recover from.
func TestProjectClient(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	c, err := wechat.NewClient(wechat.Config{APIBase: f.url, MPBase: f.url, AppID: appID, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	qr, err := c.CreateTempQR(ctx, "login_abc", 120*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if qr.ExpireSeconds != 120 || !strings.HasPrefix(qr.URL, f.url+"/scan/") {
		t.Fatalf("%+v", qr)
	}
	resp, _ := f.do("GET", strings.TrimPrefix(qr.ImageURL, f.url), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("image URL of the client: status %d", resp.StatusCode)
	}
	// The client still holds the token; the simulator says it expired.
	f.acct.ExpireTokens()
	if _, err := c.CreateTempQR(ctx, "login_def", 120*time.Second); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	f.acct.Follow("oUser", "login_abc", "")
	if ui, err := c.UserInfo(ctx, "oUser"); err != nil || ui.Subscribe != 1 || ui.QRSceneStr != "login_abc" {
		t.Fatalf("user info: %+v, %v", ui, err)
	}
	// With a wrong secret the client reports WeChat's code.
	bad, _ := wechat.NewClient(wechat.Config{APIBase: f.url, MPBase: f.url, AppID: appID, Secret: "wrong"})
	_, err = bad.AccessToken(ctx)
	var ae *wechat.APIError
	if !errors.As(err, &ae) || ae.Code != account.ErrInvalidSecret {
		t.Fatalf("wrong secret: %v", err)
	}
}
