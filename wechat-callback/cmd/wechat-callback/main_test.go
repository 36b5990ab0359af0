package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"github.com/redis/go-redis/v9"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/proctest"
	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/internal/settings"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient/pushtest"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// start runs the service with env and returns its base URL and a function
// that stops it and returns run's error.
func start(t *testing.T, env map[string]string) (string, func() error) {
	t.Helper()
	return startLogged(t, env, nil)
}

// startLogged is start that also copies the log to logs (when not nil)
// once stop returned.
func startLogged(t *testing.T, env map[string]string, logs io.Writer) (string, func() error) {
	t.Helper()
	prog, err := proctest.Run(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, nil, settings.Map(env), stderr)
	}, listening)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("wechat-callback logs:\n%s", prog.Logs)
		}
	})
	stop := func() error {
		err := prog.Stop()
		if logs != nil {
			io.WriteString(logs, prog.Logs.String())
		}
		return err
	}
	return "http://" + prog.Listening[0], stop
}

func sign(parts ...string) string {
	sort.Strings(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

func signedURL(base, token string) string {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	q := url.Values{"signature": {sign(token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}, "openid": {"o1"}}
	return base + "/wechat/callback?" + q.Encode()
}

// post sends a signed plaintext event to the service at base and returns
// the answer.
func post(t *testing.T, base, event, key string) string {
	t.Helper()
	body := fmt.Sprintf("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[%s]]></Event>"+
		"<EventKey><![CDATA[%s]]></EventKey><Ticket><![CDATA[T]]></Ticket></xml>", time.Now().Unix(), event, key)
	resp, err := http.Post(signedURL(base, "tok3n"), "text/xml", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("answer %d %s", resp.StatusCode, reply)
	}
	return string(reply)
}

func TestRun(t *testing.T) {
	push := pushtest.Start(t)
	push.RequireToken("internal-secret")
	push.SetResult("scene1", pushv1.Result_RESULT_DELIVERED)
	rs := redistest.Start(t)
	base, stop := start(t, map[string]string{
		"CALLBACK_HTTP_ADDR": "127.0.0.1:0",
		"WECHAT_TOKEN":       "tok3n",
		"PUSH_GRPC_TARGET":   push.Addr(),
		"GRPC_AUTH_TOKEN":    "internal-secret",
		"REDIS_URL":          rs.URL(),
		"REPLY_LOGIN_OK":     "Welcome back!",
	})

	body := fmt.Sprintf("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>"+
		"<EventKey><![CDATA[qrscene_scene1]]></EventKey><Ticket><![CDATA[T]]></Ticket></xml>", time.Now().Unix())
	resp, err := http.Post(signedURL(base, "tok3n"), "text/xml", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(reply), "Welcome back!") {
		t.Fatalf("answer %d %s", resp.StatusCode, reply)
	}
	if calls := push.Calls(); len(calls) != 1 || calls[0].GetScene() != "scene1" {
		t.Fatalf("Notify calls %v", calls)
	}

	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v after cancel", err)
	}
}

func TestRunBadConfig(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "WECHAT_TOKEN"},
		{map[string]string{"WECHAT_TOKEN": "tok3n", "CALLBACK_BUDGET": "6s"}, "CALLBACK_BUDGET"},
		{map[string]string{"WECHAT_TOKEN": "tok3n", "CALLBACK_HTTP_ADDR": "256.0.0.1:99999"}, "CALLBACK_HTTP_ADDR"},
	} {
		var out strings.Builder
		err := run(context.Background(), nil, settings.Map(tt.env), &out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%v) = %v, want an error naming %s", tt.env, err, tt.want)
		}
	}
	if err := run(context.Background(), []string{"extra"}, settings.Map(nil), io.Discard); err == nil {
		t.Error("run accepted an argument")
	}
}

// TestRedisPrefix: with REDIS_PREFIX set, every key the callback writes (the
// duplicate and replay memory, the shared WeChat access token) starts with
// it, so that one Redis can serve several deployments.
func TestRedisPrefix(t *testing.T) {
	push := pushtest.Start(t)
	push.SetResult("scene1", pushv1.Result_RESULT_DELIVERED)
	api := wechattest.New(t, "wx0123456789abcdef", "app-secret")
	api.AddUser(wechat.UserInfo{Subscribe: 1, OpenID: "o1", Nickname: "Ann"})
	rs := redistest.Start(t)
	base, stop := start(t, map[string]string{
		"CALLBACK_HTTP_ADDR": "127.0.0.1:0",
		"WECHAT_TOKEN":       "tok3n",
		"WECHAT_APPID":       "wx0123456789abcdef",
		"WECHAT_SECRET":      "app-secret",
		"WECHAT_API_BASE":    api.URL(),
		"FETCH_USER_INFO":    "true",
		"USER_INFO_TIMEOUT":  "2s",
		"CALLBACK_BUDGET":    "4s",
		"PUSH_GRPC_TARGET":   push.Addr(),
		"REDIS_URL":          rs.URL(),
		"REDIS_PREFIX":       "x:",
	})
	post(t, base, "SCAN", "scene1")
	if calls := push.Calls(); len(calls) != 1 || calls[0].GetUser().GetNickname() != "Ann" {
		t.Fatalf("Notify calls %v (want one, with the user's info)", calls)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	opt, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var dedup, token bool
	for _, k := range keys {
		if !strings.HasPrefix(k, "x:") {
			t.Errorf("key %q does not start with REDIS_PREFIX", k)
		}
		dedup = dedup || strings.HasPrefix(k, "x:callback:")
		token = token || strings.HasPrefix(k, "x:wechat:token:")
	}
	if !dedup || !token {
		t.Errorf("keys %q: want duplicate memory and the access token under x:", keys)
	}
}

// TestEmptyReply: a REPLY_* set to the empty string answers "success" with
// no text; main passes the environment as it is.
func TestEmptyReply(t *testing.T) {
	push := pushtest.Start(t)
	base, _ := start(t, map[string]string{
		"CALLBACK_HTTP_ADDR": "127.0.0.1:0",
		"WECHAT_TOKEN":       "tok3n",
		"PUSH_GRPC_TARGET":   push.Addr(),
		"REPLY_WELCOME":      "",
	})
	if got := post(t, base, "subscribe", ""); got != "success" {
		t.Fatalf("plain follow answered %q, want success", got)
	}
}

// TestCheckConfig: -check-config validates, prints the settings that are not
// secret and returns without serving; a bad setting is one line naming it.
func TestCheckConfig(t *testing.T) {
	vars := map[string]string{
		"WECHAT_TOKEN":       "tokSECRET1",
		"GRPC_AUTH_TOKEN":    "grpcSECRET2",
		"PUSH_GRPC_TARGET":   "127.0.0.1:1",
		"CALLBACK_HTTP_ADDR": "127.0.0.1:1",
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"-check-config"}, settings.Map(vars), &out); err != nil {
		t.Fatalf("-check-config: %v", err)
	}
	if !strings.Contains(out.String(), "config ok") || !strings.Contains(out.String(), "push_target=127.0.0.1:1") {
		t.Errorf("output does not list the settings: %s", out.String())
	}
	if strings.Contains(out.String(), "listening") {
		t.Errorf("-check-config served: %s", out.String())
	}
	for _, secret := range []string{"tokSECRET1", "grpcSECRET2"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("output shows a secret: %s", out.String())
		}
	}

	vars["CALLBACK_DEDUP_TTL"] = "ten minutes"
	err := run(context.Background(), []string{"-check-config"}, settings.Map(vars), io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "config: CALLBACK_DEDUP_TTL: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("bad CALLBACK_DEDUP_TTL: err = %v", err)
	}
}

// TestRunMiniProgramOnly: with only a Mini Program (no WECHAT_TOKEN) the
// service starts, serves /miniprogram/* with Redis, and has no
// /wechat/callback; the log holds neither secret.
func TestRunMiniProgramOnly(t *testing.T) {
	push := pushtest.Start(t)
	const scene = "AbCdEfGhIjKlMnOpQrStUv_-"
	push.AddTwoStep(scene, time.Now().Add(time.Minute), &pushv1.Requester{Browser: "Firefox 128"})
	api := wechattest.New(t, "wxmini0123456789", "mini-app-secret")
	rs := redistest.Start(t)
	var logs strings.Builder
	base, stop := startLogged(t, map[string]string{
		"CALLBACK_HTTP_ADDR": "127.0.0.1:0",
		"MINIPROGRAM_APPID":  "wxmini0123456789",
		"MINIPROGRAM_SECRET": "mini-app-secret",
		"SITE_NAME":          "Example",
		"WECHAT_API_BASE":    api.URL(),
		"PUSH_GRPC_TARGET":   push.Addr(),
		"REDIS_URL":          rs.URL(),
	}, &logs)

	code, _ := api.IssueJSCode("oAnn")
	resp, err := http.Post(base+"/miniprogram/scan", "application/json",
		strings.NewReader(`{"scene":"`+scene+`","code":"`+code+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"site":"Example"`) || !strings.Contains(string(body), "Firefox 128") {
		t.Fatalf("scan: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Post(signedURL(base, "tok3n"), "text/xml", strings.NewReader("<xml></xml>"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/wechat/callback without WECHAT_TOKEN: %d, want 404", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "mini-app-secret") || strings.Contains(logs.String(), code) {
		t.Errorf("log holds the secret or the code:\n%s", logs.String())
	}
}

// TestRunWithoutMiniProgram: without MINIPROGRAM_APPID, /miniprogram/* is
// not served.
func TestRunWithoutMiniProgram(t *testing.T) {
	push := pushtest.Start(t)
	base, _ := start(t, map[string]string{
		"CALLBACK_HTTP_ADDR": "127.0.0.1:0",
		"WECHAT_TOKEN":       "tok3n",
		"PUSH_GRPC_TARGET":   push.Addr(),
	})
	resp, err := http.Post(base+"/miniprogram/scan", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/miniprogram/scan: %d, want 404", resp.StatusCode)
	}
}
