package wechattest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

const (
	appID  = "wxtest0000000001"
	secret = "secret-of-the-test-account"
)

type answer struct {
	ErrCode       int    `json:"errcode"`
	ErrMsg        string `json:"errmsg"`
	AccessToken   string `json:"access_token"`
	ExpiresIn     int    `json:"expires_in"`
	Ticket        string `json:"ticket"`
	ExpireSeconds int    `json:"expire_seconds"`
	URL           string `json:"url"`
	OpenID        string `json:"openid"`
}

func do(t *testing.T, method, u, body string) (int, answer) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	raw, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("%s %s: %v: %s", method, u, err, raw)
		}
	}
	return resp.StatusCode, a
}

func stableBody(appID, secret string, force bool) string {
	b, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": appID, "secret": secret, "force_refresh": force})
	return string(b)
}

func TestTokenEndpoints(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	stable := srv.URL() + wechattest.PathStableToken
	tests := []struct {
		name, method, url, body string
		code                    int
	}{
		{"stable ok", "POST", stable, stableBody(appID, secret, false), 0},
		{"stable wrong appid", "POST", stable, stableBody("wxother", secret, false), 40013},
		{"stable wrong secret", "POST", stable, stableBody(appID, "nope", false), 40125},
		{"stable missing appid", "POST", stable, stableBody("", secret, false), 41002},
		{"stable GET", "GET", stable, "", 43002},
		{"stable bad json", "POST", stable, "grant_type=client_credential", 47001},
		{"stable grant type", "POST", stable, `{"grant_type":"x","appid":"` + appID + `","secret":"` + secret + `"}`, 40002},
		{"classic ok", "GET", srv.URL() + wechattest.PathToken + "?grant_type=client_credential&appid=" + appID + "&secret=" + secret, "", 0},
		{"classic wrong secret", "GET", srv.URL() + wechattest.PathToken + "?grant_type=client_credential&appid=" + appID + "&secret=x", "", 40125},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, a := do(t, tt.method, tt.url, tt.body)
			if status != 200 || a.ErrCode != tt.code {
				t.Fatalf("status %d, errcode %d (%s), want 200, %d", status, a.ErrCode, a.ErrMsg, tt.code)
			}
			if tt.code != 0 && a.ErrMsg != wechattest.ErrMsg(tt.code) {
				t.Errorf("errmsg = %q", a.ErrMsg)
			}
			if tt.code == 0 && (a.AccessToken == "" || a.ExpiresIn != 7200) {
				t.Errorf("answer = %+v", a)
			}
		})
	}
	if n := srv.TokenFetches(); n != len(tests) {
		t.Errorf("TokenFetches = %d, want %d", n, len(tests))
	}
}

func TestStableTokenNormalForceAndRotation(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	srv := wechattest.New(t, appID, secret, wechattest.WithTokenLifetime(60*time.Second), wechattest.WithClock(clock))
	stable := srv.URL() + wechattest.PathStableToken

	_, a := do(t, "POST", stable, stableBody(appID, secret, false))
	_, b := do(t, "POST", stable, stableBody(appID, secret, false))
	if a.AccessToken != b.AccessToken || a.ExpiresIn != 60 {
		t.Fatalf("normal mode: %+v then %+v, want the same 60 s token", a, b)
	}
	advance(20 * time.Second)
	_, b = do(t, "POST", stable, stableBody(appID, secret, false))
	if b.AccessToken != a.AccessToken || b.ExpiresIn != 40 {
		t.Errorf("after 20s: %+v, want the same token with 40 s left", b)
	}
	advance(15 * time.Second) // 25 s left < 30 s: rotate
	_, c := do(t, "POST", stable, stableBody(appID, secret, false))
	if c.AccessToken == a.AccessToken || c.ExpiresIn != 60 {
		t.Errorf("near expiry: %+v, want a new token", c)
	}
	if srv.CurrentToken() != c.AccessToken {
		t.Error("CurrentToken is not the new token")
	}
	// The old token stays valid to its end; force refresh kills the current.
	if _, q := do(t, "POST", srv.URL()+wechattest.PathQRCreate+"?access_token="+url.QueryEscape(a.AccessToken), qrBody("s", 60)); q.ErrCode != 0 {
		t.Errorf("old token before its end: errcode %d", q.ErrCode)
	}
	_, d := do(t, "POST", stable, stableBody(appID, secret, true))
	if d.AccessToken == c.AccessToken {
		t.Error("force_refresh returned the same token")
	}
	if _, q := do(t, "POST", srv.URL()+wechattest.PathQRCreate+"?access_token="+url.QueryEscape(c.AccessToken), qrBody("s", 60)); q.ErrCode != 42001 {
		t.Errorf("token replaced by force refresh: errcode %d, want 42001", q.ErrCode)
	}
}

func qrBody(scene string, expire int) string {
	b, _ := json.Marshal(map[string]any{
		"expire_seconds": expire, "action_name": "QR_STR_SCENE",
		"action_info": map[string]any{"scene": map[string]any{"scene_str": scene}},
	})
	return string(b)
}

func token(t *testing.T, srv *wechattest.Server) string {
	t.Helper()
	_, a := do(t, "POST", srv.URL()+wechattest.PathStableToken, stableBody(appID, secret, false))
	if a.AccessToken == "" {
		t.Fatalf("no token: %+v", a)
	}
	return a.AccessToken
}

func TestQRCreateAndShow(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := wechattest.New(t, appID, secret, wechattest.WithClock(clock))
	tok := token(t, srv)
	create := srv.URL() + wechattest.PathQRCreate + "?access_token=" + url.QueryEscape(tok)

	tests := []struct {
		name, url, body string
		code            int
	}{
		{"no token", srv.URL() + wechattest.PathQRCreate, qrBody("s", 60), 41001},
		{"unknown token", srv.URL() + wechattest.PathQRCreate + "?access_token=nope", qrBody("s", 60), 40001},
		{"no scene", create, `{"expire_seconds":60,"action_name":"QR_STR_SCENE","action_info":{"scene":{}}}`, 40053},
		{"long scene", create, qrBody(strings.Repeat("a", 65), 60), 40053},
		{"bad action", create, `{"action_name":"QR_WHAT","action_info":{"scene":{"scene_str":"a"}}}`, 40053},
		{"not json", create, `action_name=QR_STR_SCENE`, 47001},
		{"int scene", create, `{"expire_seconds":30,"action_name":"QR_SCENE","action_info":{"scene":{"scene_id":7}}}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, a := do(t, "POST", tt.url, tt.body); a.ErrCode != tt.code {
				t.Errorf("errcode %d (%s), want %d", a.ErrCode, a.ErrMsg, tt.code)
			}
		})
	}

	_, a := do(t, "POST", create, qrBody("login_abc", 120))
	if a.ErrCode != 0 || a.ExpireSeconds != 120 || !strings.HasPrefix(a.URL, "http://weixin.qq.com/q/") {
		t.Fatalf("create: %+v", a)
	}
	for _, ch := range "+/=" {
		if !strings.ContainsRune(a.Ticket, ch) {
			t.Errorf("ticket %q lacks %q", a.Ticket, ch)
		}
	}
	if got, ok := srv.TicketForScene("login_abc"); !ok || got != a.Ticket {
		t.Errorf("TicketForScene = %q, %v", got, ok)
	}
	if _, ok := srv.TicketForScene("other"); ok {
		t.Error("TicketForScene(other) found a ticket")
	}
	qrs := srv.QRCodes()
	if last := qrs[len(qrs)-1]; last.Scene != "login_abc" || last.ExpireSeconds != 120 || last.Ticket != a.Ticket || !last.CreatedAt.Equal(clock()) {
		t.Errorf("QRCodes()[last] = %+v", last)
	}

	show := srv.URL() + wechattest.PathShowQR + "?ticket="
	if status, _ := do(t, "GET", show+url.QueryEscape(a.Ticket), ""); status != 200 {
		t.Errorf("showqrcode: %d", status)
	}
	if status, _ := do(t, "GET", show+"unknown", ""); status != 404 {
		t.Errorf("showqrcode(unknown): %d, want 404", status)
	}
	mu.Lock()
	now = now.Add(120 * time.Second)
	mu.Unlock()
	if status, _ := do(t, "GET", show+url.QueryEscape(a.Ticket), ""); status != 404 {
		t.Errorf("showqrcode(expired): %d, want 404", status)
	}
}

func TestExpireTokensAndFailures(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	tok := token(t, srv)
	create := srv.URL() + wechattest.PathQRCreate + "?access_token=" + url.QueryEscape(tok)

	srv.FailNext(wechattest.PathQRCreate, 40001, 2)
	srv.FailNext(wechattest.PathQRCreate, 45009, 1)
	srv.FailNextStatus(wechattest.PathQRCreate, 502, 1)
	for i, want := range []int{40001, 40001, 45009} {
		if _, a := do(t, "POST", create, qrBody("s", 60)); a.ErrCode != want {
			t.Errorf("call %d: errcode %d, want %d", i, a.ErrCode, want)
		}
	}
	if status, _ := do(t, "POST", create, qrBody("s", 60)); status != 502 {
		t.Errorf("status %d, want 502", status)
	}
	if _, a := do(t, "POST", create, qrBody("s", 60)); a.ErrCode != 0 {
		t.Errorf("after the failures: errcode %d", a.ErrCode)
	}
	if n := srv.Calls(wechattest.PathQRCreate); n != 5 {
		t.Errorf("Calls = %d, want 5", n)
	}

	srv.ExpireTokens()
	if srv.CurrentToken() != "" {
		t.Error("CurrentToken after ExpireTokens")
	}
	if _, a := do(t, "POST", create, qrBody("s", 60)); a.ErrCode != 42001 {
		t.Errorf("expired token: errcode %d, want 42001", a.ErrCode)
	}
	if tok2 := token(t, srv); tok2 == tok {
		t.Error("stable_token handed out the expired token again")
	}
}

func TestLatency(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	srv.SetLatency(100 * time.Millisecond)
	start := time.Now()
	token(t, srv)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("answer after %v, want >= 100ms", d)
	}
}

func TestUserInfo(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	srv.AddUser(wechat.UserInfo{Subscribe: 1, OpenID: "oUser_1", UnionID: "u1"})
	tok := token(t, srv)
	base := srv.URL() + wechattest.PathUserInfo + "?lang=zh_CN&access_token=" + url.QueryEscape(tok) + "&openid="
	if _, a := do(t, "GET", base+"oUser_1", ""); a.ErrCode != 0 || a.OpenID != "oUser_1" {
		t.Errorf("known user: %+v", a)
	}
	if _, a := do(t, "GET", base+"oNobody", ""); a.ErrCode != 40003 {
		t.Errorf("unknown user: errcode %d, want 40003", a.ErrCode)
	}
}

func TestClientAgainstServer(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, err := wechat.NewClient(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	qr, err := c.CreateTempQR(t.Context(), "login_cfg", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.TicketForScene("login_cfg"); got != qr.Ticket {
		t.Errorf("ticket %q, server %q", qr.Ticket, got)
	}
}
