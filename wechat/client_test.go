package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/testlog"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

const (
	appID  = "wx0123456789abcdef"
	secret = "s3cr3t-0123456789abcdef0123456789"
)

// newClient returns a client of srv whose log goes to the returned buffer.
func newClient(t *testing.T, srv *wechattest.Server, mod ...func(*wechat.Config)) (*wechat.Client, *testlog.Buffer) {
	t.Helper()
	logs := new(testlog.Buffer)
	cfg := srv.Config()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, m := range mod {
		m(&cfg)
	}
	c, err := wechat.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, logs
}

func TestAccessTokenCached(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	ctx := t.Context()
	first, err := c.AccessToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		tok, err := c.AccessToken(ctx)
		if err != nil || tok != first {
			t.Fatalf("AccessToken = %q, %v; want the cached token", tok, err)
		}
	}
	if _, err := c.CreateTempQR(ctx, "login_1", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := srv.TokenFetches(); n != 1 {
		t.Errorf("token fetches = %d, want 1", n)
	}
}

// Bursts of concurrent calls reuse kept-alive connections. With net/http's
// default of 2 idle connections per host every burst opened (and closed)
// nearly one connection per call: against WeChat, a TLS handshake each.
func TestConcurrentCallsReuseConnections(t *testing.T) {
	srv := wechattest.New(t, appID, secret, wechattest.WithLatency(20*time.Millisecond))
	c, _ := newClient(t, srv)
	if _, err := c.AccessToken(t.Context()); err != nil {
		t.Fatal(err)
	}
	const width, bursts = 16, 5
	for b := range bursts {
		var wg sync.WaitGroup
		errs := make([]error, width)
		for i := range width {
			wg.Go(func() {
				_, errs[i] = c.CreateTempQR(t.Context(), fmt.Sprintf("login_%d_%d", b, i), 2*time.Minute)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := srv.Connections(); n > width+1 {
		t.Errorf("%d bursts of %d calls opened %d connections, want at most %d (one per concurrent call)", bursts, width, n, width+1)
	}
}

func TestAccessTokenConcurrentCallersShareOneFetch(t *testing.T) {
	srv := wechattest.New(t, appID, secret, wechattest.WithLatency(50*time.Millisecond))
	c, _ := newClient(t, srv)
	var wg sync.WaitGroup
	toks := make([]string, 50)
	errs := make([]error, 50)
	for i := range 50 {
		wg.Go(func() { toks[i], errs[i] = c.AccessToken(t.Context()) })
	}
	wg.Wait()
	for i := range 50 {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Fatalf("caller %d: %q, %v", i, toks[i], errs[i])
		}
	}
	if n := srv.TokenFetches(); n != 1 {
		t.Errorf("token fetches = %d, want 1", n)
	}
}

func TestAccessTokenWaiterCancellation(t *testing.T) {
	// A caller that gives up does not fail the fetch for the others.
	srv := wechattest.New(t, appID, secret, wechattest.WithLatency(200*time.Millisecond))
	c, _ := newClient(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := c.AccessToken(t.Context()); done <- err }()
	if _, err := c.AccessToken(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient caller: err = %v, want deadline exceeded", err)
	}
	if err := <-done; err != nil {
		t.Errorf("patient caller: %v", err)
	}
	if n := srv.TokenFetches(); n != 1 {
		t.Errorf("token fetches = %d, want 1", n)
	}
}

func TestAccessTokenExpiresAndIsRefetched(t *testing.T) {
	srv := wechattest.New(t, appID, secret, wechattest.WithTokenLifetime(60*time.Second))
	c, _ := newClient(t, srv)
	var mu sync.Mutex
	now := time.Now()
	wechat.SetClock(c, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	ctx := t.Context()
	if _, err := c.AccessToken(ctx); err != nil {
		t.Fatal(err)
	}
	advance(29 * time.Second) // a 60 s token is used for 30 s
	if _, err := c.AccessToken(ctx); err != nil {
		t.Fatal(err)
	}
	if n := srv.TokenFetches(); n != 1 {
		t.Fatalf("after 29s: token fetches = %d, want 1", n)
	}
	advance(2 * time.Second)
	if _, err := c.AccessToken(ctx); err != nil {
		t.Fatal(err)
	}
	if n := srv.TokenFetches(); n != 2 {
		t.Errorf("after 31s: token fetches = %d, want 2", n)
	}
}

func TestTokenInvalidRetriedOnce(t *testing.T) {
	for _, code := range []int{40001, 40014, 42001} {
		t.Run(wechattest.ErrMsg(code), func(t *testing.T) {
			srv := wechattest.New(t, appID, secret)
			c, _ := newClient(t, srv)
			if _, err := c.AccessToken(t.Context()); err != nil {
				t.Fatal(err)
			}
			srv.FailNext(wechattest.PathQRCreate, code, 1)
			qr, err := c.CreateTempQR(t.Context(), "login_retry", time.Minute)
			if err != nil {
				t.Fatalf("CreateTempQR: %v", err)
			}
			if ticket, _ := srv.TicketForScene("login_retry"); ticket != qr.Ticket {
				t.Errorf("ticket = %q, server made %q", qr.Ticket, ticket)
			}
			if n := srv.TokenFetches(); n != 2 {
				t.Errorf("token fetches = %d, want 2 (one refetch)", n)
			}
			if n := srv.Calls(wechattest.PathQRCreate); n != 2 {
				t.Errorf("qrcode/create calls = %d, want 2 (one retry)", n)
			}
		})
	}
}

func TestExpiredTokenOnServerRefetched(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	old, err := c.AccessToken(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.ExpireTokens()
	if _, err := c.CreateTempQR(t.Context(), "login_exp", time.Minute); err != nil {
		t.Fatalf("CreateTempQR: %v", err)
	}
	tok, _ := c.AccessToken(t.Context())
	if tok == old || tok != srv.CurrentToken() {
		t.Errorf("token after 42001 = old %v, current %v", tok == old, tok == srv.CurrentToken())
	}
	if n := srv.TokenFetches(); n != 2 {
		t.Errorf("token fetches = %d, want 2", n)
	}
}

func TestPersistentTokenErrorDoesNotLoop(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	srv.FailNext(wechattest.PathQRCreate, 40001, 1000)
	_, err := c.CreateTempQR(t.Context(), "login_x", time.Minute)
	if !wechat.IsTokenInvalid(err) {
		t.Fatalf("err = %v, want a token-invalid APIError", err)
	}
	if n := srv.Calls(wechattest.PathQRCreate); n != 2 {
		t.Errorf("qrcode/create calls = %d, want 2", n)
	}
	if n := srv.TokenFetches(); n != 2 {
		t.Errorf("token fetches = %d, want 2", n)
	}
}

// hookCache is a shared TokenCache that runs a hook before Invalidate.
type hookCache struct {
	wechat.MemoryTokenCache
	beforeInvalidate func()
}

func (h *hookCache) Invalidate(ctx context.Context, v string) error {
	if f := h.beforeInvalidate; f != nil {
		h.beforeInvalidate = nil
		f()
	}
	return h.MemoryTokenCache.Invalidate(ctx, v)
}

func TestCompareAndInvalidateKeepsNewerToken(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	shared := new(hookCache)
	c, _ := newClient(t, srv, func(cfg *wechat.Config) { cfg.Tokens = shared })
	// other plays a second process that refreshes the shared token first.
	other, _ := newClient(t, srv)
	old, err := c.AccessToken(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.ExpireTokens()
	var newer string
	shared.beforeInvalidate = func() {
		newer, err = other.AccessToken(t.Context())
		if err != nil {
			t.Error(err)
		}
		shared.Store(t.Context(), wechat.Token{Value: newer, ExpiresAt: time.Now().Add(time.Hour)})
	}
	if _, err := c.CreateTempQR(t.Context(), "login_cas", time.Minute); err != nil {
		t.Fatalf("CreateTempQR: %v", err)
	}
	if newer == "" || newer == old {
		t.Fatal("hook did not store a newer token")
	}
	if got, ok, _ := shared.Load(t.Context()); !ok || got.Value != newer {
		t.Errorf("shared cache lost the newer token")
	}
	// c invalidated nothing and used the newer token: no fetch of its own.
	if n := srv.TokenFetches(); n != 2 {
		t.Errorf("token fetches = %d, want 2 (c's first and other's)", n)
	}
}

func TestTicketIsEscapedInImageURL(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	qr, err := c.CreateTempQR(t.Context(), "login-Scene_09", 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.ContainsAny(qr.Ticket, "+") || !strings.Contains(qr.Ticket, "/") || !strings.Contains(qr.Ticket, "=") {
		t.Fatalf("fake ticket %q lacks + / =", qr.Ticket)
	}
	want := srv.URL() + "/cgi-bin/showqrcode?ticket=" + url.QueryEscape(qr.Ticket)
	if qr.ImageURL != want {
		t.Errorf("ImageURL = %s, want %s", qr.ImageURL, want)
	}
	if qr.ExpireSeconds != 120 || !strings.HasPrefix(qr.URL, "http://weixin.qq.com/q/") {
		t.Errorf("QRCode = %+v", qr)
	}
	got := srv.QRCodes()
	if len(got) != 1 || got[0].Scene != "login-Scene_09" || got[0].ExpireSeconds != 120 || got[0].ActionName != "QR_STR_SCENE" {
		t.Errorf("server saw %+v", got)
	}

	resp, err := http.Get(qr.ImageURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || len(body) == 0 {
		t.Errorf("showqrcode: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	// Unescaped, '+' reads as a space: WeChat (and the fake) answer 404.
	resp, err = http.Get(srv.URL() + "/cgi-bin/showqrcode?ticket=" + qr.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unescaped ticket: status %d, want 404", resp.StatusCode)
	}
}

func TestCreateTempQRValidation(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	tests := []struct {
		name   string
		scene  string
		expire time.Duration
		want   error
	}{
		{"empty scene", "", time.Minute, wechat.ErrInvalidScene},
		{"long scene", strings.Repeat("a", 65), time.Minute, wechat.ErrInvalidScene},
		{"space", "a b", time.Minute, wechat.ErrInvalidScene},
		{"non-ascii", "登录", time.Minute, wechat.ErrInvalidScene},
		{"zero expire", "a", 0, wechat.ErrInvalidExpire},
		{"sub-second", "a", 1500 * time.Millisecond, wechat.ErrInvalidExpire},
		{"too long", "a", wechat.MaxQRExpire + time.Second, wechat.ErrInvalidExpire},
		{"negative", "a", -time.Second, wechat.ErrInvalidExpire},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.CreateTempQR(t.Context(), tt.scene, tt.expire); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := c.CreateTempQR(t.Context(), strings.Repeat("Z", 64), wechat.MaxQRExpire); err != nil {
		t.Errorf("longest scene and expiry: %v", err)
	}
	if n := srv.Calls(wechattest.PathQRCreate); n != 1 {
		t.Errorf("qrcode/create calls = %d, want 1 (invalid arguments never sent)", n)
	}
}

func TestAPIError(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	srv.FailNext(wechattest.PathQRCreate, 45009, 1)
	_, err := c.CreateTempQR(t.Context(), "login_q", time.Minute)
	var apiErr *wechat.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if apiErr.Code != 45009 || !strings.HasPrefix(apiErr.Msg, "reach max api daily quota limit rid: ") || apiErr.Op != "qrcode/create" {
		t.Errorf("APIError = %+v", apiErr)
	}
	if wechat.IsTokenInvalid(err) {
		t.Error("45009 counted as token invalid")
	}
	if got := apiErr.Error(); !strings.HasPrefix(got, "wechat qrcode/create: errcode 45009: reach max api daily quota limit rid: ") {
		t.Errorf("Error() = %q", got)
	}
	if !strings.HasPrefix(err.Error(), "wechat: create qr: ") {
		t.Errorf("err not wrapped with context: %q", err)
	}
	if n := srv.Calls(wechattest.PathQRCreate); n != 1 {
		t.Errorf("qrcode/create calls = %d, want 1 (no retry for 45009)", n)
	}
}

func TestBadCredentials(t *testing.T) {
	for _, tt := range []struct {
		name, appID, secret string
		code                int
	}{
		{"appid", "wx_other", secret, 40013},
		{"secret", appID, "wrong", 40125},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := wechattest.New(t, appID, secret)
			c, _ := newClient(t, srv, func(cfg *wechat.Config) { cfg.AppID, cfg.Secret = tt.appID, tt.secret })
			_, err := c.AccessToken(t.Context())
			var apiErr *wechat.APIError
			if !errors.As(err, &apiErr) || apiErr.Code != tt.code || apiErr.Op != "stable_token" {
				t.Fatalf("err = %v, want errcode %d", err, tt.code)
			}
			if strings.Contains(err.Error(), tt.secret) {
				t.Errorf("secret in error: %v", err)
			}
		})
	}
}

func TestTokenNeverInErrorsOrLogs(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, logs := newClient(t, srv, func(cfg *wechat.Config) {
		cfg.HTTPClient = &http.Client{Timeout: 100 * time.Millisecond}
	})
	tok, err := c.AccessToken(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	// Token error after the one retry.
	srv.FailNext(wechattest.PathQRCreate, 40001, 2)
	_, err = c.CreateTempQR(t.Context(), "a", time.Minute)
	errs = append(errs, err)
	tok2, _ := c.AccessToken(t.Context())
	// HTTP status.
	srv.FailNextStatus(wechattest.PathQRCreate, http.StatusBadGateway, 1)
	_, err = c.CreateTempQR(t.Context(), "a", time.Minute)
	errs = append(errs, err)
	// Timeout: net/http's error names the full URL.
	srv.SetLatency(time.Second)
	_, err = c.CreateTempQR(t.Context(), "a", time.Minute)
	errs = append(errs, err)
	_, err = c.UserInfo(t.Context(), "oUser")
	errs = append(errs, err)
	srv.SetLatency(0)
	// Cancelled context.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = c.UserInfo(ctx, "oUser")
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("error %d is nil", i)
		}
		for _, secretText := range []string{tok, tok2, url.QueryEscape(tok), secret} {
			if strings.Contains(err.Error(), secretText) {
				t.Errorf("error %d leaks a token or secret: %v", i, err)
			}
		}
	}
	if !strings.Contains(errs[1].Error(), "HTTP status 502") {
		t.Errorf("status error = %v", errs[1])
	}
	if !strings.Contains(errs[2].Error(), srv.URL()+"/cgi-bin/qrcode/create") {
		t.Errorf("timeout error should name the redacted URL: %v", errs[2])
	}
	if !errors.Is(errs[4], context.Canceled) {
		t.Errorf("cancelled: %v", errs[4])
	}
	for _, secretText := range []string{tok, tok2, secret} {
		if strings.Contains(logs.String(), secretText) {
			t.Errorf("log leaks a token or secret:\n%s", logs)
		}
	}
}

func TestUserInfo(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	want := wechat.UserInfo{
		Subscribe: 1, OpenID: "oUser_1", UnionID: "uUnion_1", SubscribeScene: "ADD_SCENE_QR_CODE",
		QRSceneStr: "login_1", SubscribeTime: 1700000000, TagIDList: []int64{2, 127},
	}
	srv.AddUser(want)
	got, err := c.UserInfo(t.Context(), "oUser_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.OpenID != want.OpenID || got.UnionID != want.UnionID || got.SubscribeTime != want.SubscribeTime ||
		got.QRSceneStr != want.QRSceneStr || len(got.TagIDList) != 2 || got.TagIDList[1] != 127 {
		t.Errorf("UserInfo = %+v", got)
	}
	_, err = c.UserInfo(t.Context(), "oUnknown")
	var apiErr *wechat.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != 40003 {
		t.Errorf("unknown openid: %v", err)
	}
	if _, err := c.UserInfo(t.Context(), ""); err == nil {
		t.Error("empty openid accepted")
	}
	// Token errors are retried for user/info too.
	srv.FailNext(wechattest.PathUserInfo, 42001, 1)
	if _, err := c.UserInfo(t.Context(), "oUser_1"); err != nil {
		t.Errorf("after 42001: %v", err)
	}
}
