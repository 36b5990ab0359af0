package wechat_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// miniCodes starts a fake WeChat whose Mini Program has published page
// "pages/index/index", and returns a function listing the codes it made.
func miniCodes(t *testing.T) (*wechattest.Server, func() []wechattest.WxaCode) {
	var mu sync.Mutex
	var ids []string
	srv := wechattest.New(t, appID, secret, wechattest.WithMiniURL(func(id string) string {
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, id)
		return "https://mp.weixin.qq.com/a/" + id
	}))
	return srv, func() []wechattest.WxaCode {
		mu.Lock()
		defer mu.Unlock()
		var out []wechattest.WxaCode
		for _, id := range ids {
			c, _ := srv.WxaCodeByID(id)
			out = append(out, c)
		}
		return out
	}
}

func TestCreateWxaCode(t *testing.T) {
	srv, codes := miniCodes(t)
	c, _ := newClient(t, srv)
	const scene = "AbC-_09xyzAbC-_09xyzAb"

	img, typ, err := c.CreateWxaCode(t.Context(), wechat.WxaCodeRequest{
		Scene: scene, Page: "pages/index/index", EnvVersion: "release", CheckPath: true, Width: 280})
	if err != nil {
		t.Fatal(err)
	}
	if typ != wechat.ContentTypeJPEG || wechat.ImageType(img) != typ {
		t.Errorf("content type %q of an image starting %q", typ, img[:4])
	}
	if got := codes(); len(got) != 1 || got[0].Scene != scene || got[0].Page != "pages/index/index" {
		t.Errorf("codes made: %+v", got)
	}

	// An unpublished page: refused with check_path, made without.
	req := wechat.WxaCodeRequest{Scene: scene, Page: "pages/login/login", EnvVersion: "develop", CheckPath: true}
	_, _, err = c.CreateWxaCode(t.Context(), req)
	var ae *wechat.APIError
	if !errors.As(err, &ae) || ae.Code != wechattest.ErrInvalidPage || ae.Op != "getwxacodeunlimit" {
		t.Fatalf("unpublished page with check_path: %v", err)
	}
	req.CheckPath = false
	if _, _, err := c.CreateWxaCode(t.Context(), req); err != nil {
		t.Fatalf("unpublished page without check_path: %v", err)
	}
}

func TestCreateWxaCodeErrors(t *testing.T) {
	for _, code := range []int{wechattest.ErrInvalidPage, wechattest.ErrInvalidScene, wechattest.ErrInvalidSceneLength,
		wechattest.ErrDailyQuota, wechattest.ErrSystem} {
		t.Run(wechattest.ErrMsg(code), func(t *testing.T) {
			srv, codes := miniCodes(t)
			c, _ := newClient(t, srv)
			srv.FailNext(wechattest.PathWxaCode, code, 1)
			img, _, err := c.CreateWxaCode(t.Context(), wechat.WxaCodeRequest{Scene: "s1", Page: "pages/index/index"})
			var ae *wechat.APIError
			if !errors.As(err, &ae) || ae.Code != code || img != nil {
				t.Fatalf("CreateWxaCode = %d bytes, %v; want errcode %d", len(img), err, code)
			}
			if n := srv.Calls(wechattest.PathWxaCode); n != 1 || len(codes()) != 0 {
				t.Errorf("calls = %d, codes = %d; want 1 call, no retry", n, len(codes()))
			}
		})
	}
	// Bad scenes reach WeChat and come back with its errcode.
	srv, _ := miniCodes(t)
	c, _ := newClient(t, srv)
	for scene, code := range map[string]int{"a%20b": wechattest.ErrInvalidScene, strings.Repeat("a", 33): wechattest.ErrInvalidSceneLength} {
		_, _, err := c.CreateWxaCode(t.Context(), wechat.WxaCodeRequest{Scene: scene})
		var ae *wechat.APIError
		if !errors.As(err, &ae) || ae.Code != code {
			t.Errorf("scene %q: %v, want errcode %d", scene, err, code)
		}
	}
}

func TestCreateWxaCodeTokenInvalidRetriedOnce(t *testing.T) {
	for _, code := range []int{wechattest.ErrInvalidCredential, wechattest.ErrTokenExpired} {
		t.Run(wechattest.ErrMsg(code), func(t *testing.T) {
			srv, codes := miniCodes(t)
			c, _ := newClient(t, srv)
			if _, err := c.AccessToken(t.Context()); err != nil {
				t.Fatal(err)
			}
			srv.FailNext(wechattest.PathWxaCode, code, 1)
			if _, _, err := c.CreateWxaCode(t.Context(), wechat.WxaCodeRequest{Scene: "retry"}); err != nil {
				t.Fatalf("CreateWxaCode: %v", err)
			}
			if srv.TokenFetches() != 2 || srv.Calls(wechattest.PathWxaCode) != 2 || len(codes()) != 1 {
				t.Errorf("token fetches %d, calls %d, codes %d; want 2, 2, 1",
					srv.TokenFetches(), srv.Calls(wechattest.PathWxaCode), len(codes()))
			}
		})
	}
}

// WeChat's headers are not to be trusted: only the body's first bytes say
// whether it is an image.
func TestCreateWxaCodeToldByMagicBytes(t *testing.T) {
	const png = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
	var answer func(w http.ResponseWriter, r *http.Request)
	c := handWritten(t, "T0KEN", &answer)
	tests := []struct {
		name, ctype, body string
		status            int
		wantType          string // "" for an error
		wantCode          int    // errcode of the APIError, when an error
		wantErr           string
	}{
		{"jpeg", "image/jpeg", "\xff\xd8\xff\xe0JFIF", 200, wechat.ContentTypeJPEG, 0, ""},
		{"png", "image/png", png, 200, wechat.ContentTypePNG, 0, ""},
		{"image with JSON type", "application/json; encoding=utf-8", png, 200, wechat.ContentTypePNG, 0, ""},
		{"JSON error with image type", "image/jpeg", `{"errcode":41030,"errmsg":"invalid page rid: 1"}`, 200, "", 41030, ""},
		{"JSON error", "application/json; encoding=utf-8", `{"errcode":45009,"errmsg":"reach max api daily quota limit"}`, 200, "", 45009, ""},
		{"token in errmsg", "application/json", `{"errcode":-1,"errmsg":"system error T0KEN"}`, 200, "", -1, ""},
		{"JSON without errcode", "image/jpeg", `{"errcode":0,"errmsg":"ok"}`, 200, "", 0, "neither"},
		{"html", "image/jpeg", "<html>busy</html>", 200, "", 0, "neither"},
		{"empty", "image/jpeg", "", 200, "", 0, "neither"},
		{"gif", "image/gif", "GIF89a", 200, "", 0, "neither"},
		{"status", "image/jpeg", "\xff\xd8\xff\xe0", 502, "", 0, "HTTP status 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer = func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.URL.Path != "/wxa/getwxacodeunlimit" || r.URL.Query().Get("access_token") != "T0KEN" ||
					string(body) != `{"scene":"s1","page":"pages/login/login","check_path":false,"env_version":"trial","width":280}` {
					t.Errorf("request %s %s", r.URL.Path, body)
				}
				w.Header().Set("Content-Type", tt.ctype)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}
			img, typ, err := c.CreateWxaCode(t.Context(), wechat.WxaCodeRequest{
				Scene: "s1", Page: "pages/login/login", EnvVersion: "trial", Width: 280})
			if tt.wantType != "" {
				if err != nil || typ != tt.wantType || string(img) != tt.body {
					t.Fatalf("CreateWxaCode = %q, %q, %v", img, typ, err)
				}
				return
			}
			if err == nil || img != nil || typ != "" {
				t.Fatalf("CreateWxaCode = %q, %q, nil; want an error", img, typ)
			}
			if strings.Contains(err.Error(), "T0KEN") {
				t.Errorf("token in error %v", err)
			}
			var ae *wechat.APIError
			if tt.wantCode != 0 && (!errors.As(err, &ae) || ae.Code != tt.wantCode) {
				t.Errorf("err = %v, want errcode %d", err, tt.wantCode)
			}
			if tt.wantErr != "" && (errors.As(err, &ae) || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want a non-API error with %q", err, tt.wantErr)
			}
		})
	}
}
