package main

import (
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/redistest"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient/pushtest"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// TestRunOAConfirm runs the service with OA_CONFIRM=true (and Redis): a
// scan answers the confirm link, which leads through the fake WeChat's web
// authorization to the page, whose Confirm logs the browser in.
func TestRunOAConfirm(t *testing.T) {
	wx := wechattest.New(t, "wxoa0001", "oa-secret")
	push := pushtest.Start(t)
	push.AddTwoStepOA("scene1", "T", time.Now().Add(time.Minute), &pushv1.Requester{Browser: "Firefox 128", Os: "Linux", Ip: "198.51.100.4"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	base, stop := start(t, map[string]string{
		"CALLBACK_HTTP_ADDR":  addr,
		"WECHAT_TOKEN":        "tok3n",
		"PUSH_GRPC_TARGET":    push.Addr(),
		"REDIS_URL":           redistest.Start(t).URL(),
		"OA_CONFIRM":          "true",
		"CALLBACK_PUBLIC_URL": "http://" + addr,
		"WECHAT_APPID":        "wxoa0001",
		"WECHAT_SECRET":       "oa-secret",
		"WECHAT_API_BASE":     wx.URL(),
		"WECHAT_OPEN_BASE":    wx.URL(),
		"SITE_NAME":           "Run Shop",
	})
	reply := post(t, base, "SCAN", "scene1")
	link := regexp.MustCompile(`http://\S+/oa/confirm\?[^\s<\]]+`).FindString(reply)
	if link == "" || !strings.Contains(reply, "Run Shop") || !strings.Contains(reply, "Firefox 128") {
		t.Fatalf("reply %s", reply)
	}
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(wx.URL())
	jar.SetCookies(u, []*http.Cookie{wechattest.OAuthCookie("o1")})
	phone := &http.Client{Jar: jar}
	resp, err := phone.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<form method="post">`) {
		t.Fatalf("page %d %s", resp.StatusCode, body)
	}
	form := url.Values{"decision": {"confirm"}}
	for _, m := range regexp.MustCompile(`name="(\w)" value="([^"]*)"`).FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], m[2])
	}
	resp, err = phone.PostForm(resp.Request.URL.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %d", resp.StatusCode)
	}
	if ts, _ := push.TwoStep("scene1"); strings.Join(ts.Sent, ",") != "scanned,login" || ts.Confirmer != "o1" {
		t.Fatalf("session %+v", ts)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
