package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
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
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient/pushtest"
)

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// start runs the service with env and returns its base URL and a function
// that stops it and returns run's error.
func start(t *testing.T, env map[string]string) (string, func() error) {
	t.Helper()
	prog, err := proctest.Run(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, nil, func(k string) string { return env[k] }, stderr)
	}, listening)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("wechat-callback logs:\n%s", prog.Logs)
		}
	})
	return "http://" + prog.Listening[0], prog.Stop
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
		err := run(context.Background(), nil, func(k string) string { return tt.env[k] }, &out)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("run(%v) = %v, want an error naming %s", tt.env, err, tt.want)
		}
	}
	if err := run(context.Background(), []string{"extra"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("run accepted an argument")
	}
}
