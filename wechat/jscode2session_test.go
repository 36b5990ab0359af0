package wechat_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

func TestCode2Session(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	code, u := srv.IssueJSCode("oPerson")
	s, err := c.Code2Session(t.Context(), code)
	if err != nil {
		t.Fatal(err)
	}
	if s.OpenID != u.MiniOpenID || s.UnionID != u.UnionID || s.SessionKey == "" {
		t.Fatalf("session = %q, %q (key set: %v), want openid %s unionid %s", s.OpenID, s.UnionID, s.SessionKey != "", u.MiniOpenID, u.UnionID)
	}
	if srv.TokenFetches() != 0 {
		t.Errorf("jscode2session fetched an access token")
	}
}

func TestCode2SessionErrors(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	clock := wechattest.NewClock(start)
	srv := wechattest.New(t, appID, secret, wechattest.WithClock(clock.Now))
	c, _ := newClient(t, srv)

	late, _ := srv.IssueJSCode("oPerson")
	clock.Advance(wechattest.JSCodeLife)
	used, _ := srv.IssueJSCode("oPerson")
	if _, err := c.Code2Session(t.Context(), used); err != nil {
		t.Fatal(err)
	}
	fresh := func() string { code, _ := srv.IssueJSCode("oOther"); return code }

	for _, tt := range []struct {
		name    string
		code    string
		inject  int // errcode of the next answer; 0: none
		errcode int
	}{
		{"unknown", "not-a-code", 0, wechat.ErrCodeInvalidCode},
		{"used", used, 0, wechat.ErrCodeCodeUsed},
		{"expired", late, 0, wechat.ErrCodeInvalidCode},
		{"busy", fresh(), wechattest.ErrSystem, wechat.ErrCodeBusy},
		{"minute quota", fresh(), wechattest.ErrMinuteQuota, wechat.ErrCodeMinuteQuota},
		{"high risk", fresh(), wechat.ErrCodeHighRiskUser, wechat.ErrCodeHighRiskUser},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.inject != 0 {
				srv.FailNext(wechattest.PathJSCode2Session, tt.inject, 1)
			}
			_, err := c.Code2Session(t.Context(), tt.code)
			var apiErr *wechat.APIError
			if !errors.As(err, &apiErr) || apiErr.Code != tt.errcode || apiErr.Op != "jscode2session" {
				t.Fatalf("err = %v, want errcode %d", err, tt.errcode)
			}
			if strings.Contains(err.Error(), tt.code) || strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the code or the secret: %v", err)
			}
		})
	}
}

func TestCode2SessionWrongSecret(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv, func(cfg *wechat.Config) { cfg.Secret = "wrong-secret" })
	code, _ := srv.IssueJSCode("oPerson")
	_, err := c.Code2Session(t.Context(), code)
	var apiErr *wechat.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != wechat.ErrCodeInvalidSecret {
		t.Fatalf("err = %v, want errcode %d", err, wechat.ErrCodeInvalidSecret)
	}
}

func TestCode2SessionTransportErrorsHideQuery(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv, func(cfg *wechat.Config) {
		cfg.HTTPClient = &http.Client{Timeout: 100 * time.Millisecond}
	})
	code, _ := srv.IssueJSCode("oPerson")
	srv.FailNextStatus(wechattest.PathJSCode2Session, http.StatusBadGateway, 1)
	_, err1 := c.Code2Session(t.Context(), code)
	srv.SetLatency(time.Second)
	_, err2 := c.Code2Session(t.Context(), code)
	for i, err := range []error{err1, err2} {
		var apiErr *wechat.APIError
		if err == nil || errors.As(err, &apiErr) {
			t.Fatalf("error %d = %v, want a transport error", i, err)
		}
		if strings.Contains(err.Error(), code) || strings.Contains(err.Error(), secret) {
			t.Errorf("error %d leaks the code or the secret: %v", i, err)
		}
	}
}

func TestCode2SessionRefusesBadCodesWithoutCalling(t *testing.T) {
	srv := wechattest.New(t, appID, secret)
	c, _ := newClient(t, srv)
	for _, code := range []string{"", "a b", "a\nb", "é", strings.Repeat("a", wechat.MaxJSCodeLen+1)} {
		if _, err := c.Code2Session(t.Context(), code); !errors.Is(err, wechat.ErrInvalidJSCode) {
			t.Errorf("Code2Session(%q) = %v, want ErrInvalidJSCode", code, err)
		}
	}
	if n := srv.Calls(wechattest.PathJSCode2Session); n != 0 {
		t.Errorf("%d calls reached WeChat", n)
	}
	if !wechat.ValidJSCode(strings.Repeat("~", wechat.MaxJSCodeLen)) {
		t.Errorf("a code of MaxJSCodeLen printable characters is refused")
	}
}

func TestSessionKeyNeverPrinted(t *testing.T) {
	s := wechat.Session{OpenID: "oMini", UnionID: "oUnion", SessionKey: "c2Vzc2lvbi1rZXktc2VjcmV0"}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("session", "s", s)
	log.Info("session pointer", "s", &s)
	out := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s),
		fmt.Sprintf("%v %+v %#v", &s, &s, &s), logs.String(),
	}
	for _, o := range out {
		if strings.Contains(o, s.SessionKey) {
			t.Errorf("session key printed: %s", o)
		}
	}
	for _, o := range out {
		if strings.Contains(o, s.OpenID) || strings.Contains(o, s.UnionID) {
			t.Errorf("id printed: %s", o)
		}
	}
}
