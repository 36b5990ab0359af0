package wechat_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
)

func TestTokenLifetime(t *testing.T) {
	for _, tt := range []struct{ in, want time.Duration }{
		{7200 * time.Second, 6900 * time.Second},
		{600 * time.Second, 300 * time.Second},
		{300 * time.Second, 150 * time.Second},
		{60 * time.Second, 30 * time.Second},
		{1 * time.Second, 500 * time.Millisecond},
	} {
		if got := wechat.TokenLifetime(tt.in); got != tt.want {
			t.Errorf("tokenLifetime(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestMemoryTokenCacheCompareAndInvalidate(t *testing.T) {
	var m wechat.MemoryTokenCache
	ctx := t.Context()
	if _, ok, _ := m.Load(ctx); ok {
		t.Fatal("zero cache not empty")
	}
	m.Store(ctx, wechat.Token{Value: "b"})
	m.Invalidate(ctx, "a")
	if got, ok, _ := m.Load(ctx); !ok || got.Value != "b" {
		t.Errorf("Invalidate(a) dropped b")
	}
	m.Invalidate(ctx, "b")
	if _, ok, _ := m.Load(ctx); ok {
		t.Error("Invalidate(b) kept b")
	}
}

func TestNewClientValidation(t *testing.T) {
	ok := wechat.Config{AppID: "wx1", Secret: "very-secret-value"}
	tests := []struct {
		name string
		mod  func(*wechat.Config)
		ok   bool
	}{
		{"defaults", func(*wechat.Config) {}, true},
		{"simulator", func(c *wechat.Config) { c.APIBase, c.MPBase = "http://127.0.0.1:9000/", "http://localhost:9000/mp" }, true},
		{"no appid", func(c *wechat.Config) { c.AppID = "" }, false},
		{"no secret", func(c *wechat.Config) { c.Secret = "" }, false},
		{"relative", func(c *wechat.Config) { c.APIBase = "api.weixin.qq.com" }, false},
		{"ftp", func(c *wechat.Config) { c.APIBase = "ftp://api.weixin.qq.com" }, false},
		{"no host", func(c *wechat.Config) { c.MPBase = "https://" }, false},
		{"query", func(c *wechat.Config) { c.APIBase = "https://api.weixin.qq.com?x=1" }, false},
		{"user", func(c *wechat.Config) { c.APIBase = "https://u:p@api.weixin.qq.com" }, false},
		{"garbage", func(c *wechat.Config) { c.MPBase = "http://[::1" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			c, err := wechat.NewClient(cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("NewClient err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && (strings.Contains(err.Error(), "very-secret-value") || strings.Contains(err.Error(), ":p@")) {
				t.Errorf("error leaks a secret: %v", err)
			}
			if c != nil && tt.name == "simulator" {
				if got := c.QRImageURL("a+b"); got != "http://localhost:9000/mp/cgi-bin/showqrcode?ticket=a%2Bb" {
					t.Errorf("QRImageURL = %s", got)
				}
			}
		})
	}
}

// handWritten is a client of a fake WeChat that hands out access token
// token and answers every other call with *answer, which each case sets.
func handWritten(t *testing.T, token string, answer *func(w http.ResponseWriter, r *http.Request)) *wechat.Client {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cgi-bin/stable_token" {
			io.WriteString(w, `{"access_token":"`+token+`","expires_in":7200}`)
			return
		}
		(*answer)(w, r)
	}))
	t.Cleanup(hs.Close)
	c, err := wechat.NewClient(wechat.Config{APIBase: hs.URL, MPBase: hs.URL, AppID: "wx", Secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAnswerShapes checks the decoding rules with hand-written answers.
func TestAnswerShapes(t *testing.T) {
	var answer func(w http.ResponseWriter, r *http.Request)
	c := handWritten(t, "T", &answer)
	tests := []struct {
		name    string
		body    string
		status  int
		wantErr string
	}{
		{"without errcode", `{"ticket":"t","expire_seconds":60,"url":"u"}`, 200, ""},
		{"with errcode 0", `{"errcode":0,"errmsg":"ok","ticket":"t","expire_seconds":60,"url":"u"}`, 200, ""},
		{"errcode", `{"errcode":-1,"errmsg":"system error"}`, 200, "errcode -1: system error"},
		{"status", `{"ticket":"t"}`, 503, "HTTP status 503"},
		{"not json", `<html>`, 200, "decode answer"},
		{"no ticket", `{"expire_seconds":60}`, 200, "without ticket"},
		{"too large", `{"ticket":"t","url":"` + strings.Repeat("x", 1<<20) + `"}`, 200, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer = func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("access_token") != "T" || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("request %s without token or JSON type", r.URL.Path)
				}
				body, _ := io.ReadAll(r.Body)
				if string(body) != `{"expire_seconds":60,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"s_1"}}}` {
					t.Errorf("request body = %s", body)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}
			qr, err := c.CreateTempQR(t.Context(), "s_1", time.Minute)
			if tt.wantErr == "" {
				if err != nil || qr.Ticket != "t" || qr.ExpireSeconds != 60 || qr.URL != "u" {
					t.Errorf("CreateTempQR = %+v, %v", qr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}

	t.Run("lenient user info", func(t *testing.T) {
		answer = func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"subscribe":"1","openid":"o1","nickname":"","headimgurl":null,"sex":0,
				"subscribe_time":1700000000.0,"unionid":"u1","groupid":"","tagid_list":[1,"2"],
				"qr_scene":0,"qr_scene_str":"login_1","extra":{"a":[1]}}`)
		}
		u, err := c.UserInfo(t.Context(), "o1")
		if err != nil {
			t.Fatal(err)
		}
		if u.Subscribe != 1 || u.OpenID != "o1" || u.UnionID != "u1" || u.SubscribeTime != 1700000000 ||
			u.QRSceneStr != "login_1" || len(u.TagIDList) != 2 || u.TagIDList[1] != 2 {
			t.Errorf("UserInfo = %+v", u)
		}
	})
}
