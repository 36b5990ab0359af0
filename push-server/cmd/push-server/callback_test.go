package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// buildCallback builds the wechat-callback binary from its module.
func buildCallback(t *testing.T) string {
	return buildOnce(t, filepath.Join("..", "..", "..", "wechat-callback"), "./cmd/wechat-callback", "wechat-callback")
}

var callbackListening = regexp.MustCompile(`msg=listening addr=(\S+)`)

func startCallback(t *testing.T, env []string) string {
	t.Helper()
	cmd := exec.Command(buildCallback(t))
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := callbackListening.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
		if !sent {
			close(addr)
		}
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("wechat-callback exited before listening")
		}
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("wechat-callback did not start")
		return ""
	}
}

// wechatPOST sends an event the way WeChat does in plaintext mode, signed
// here independently of the services: SHA-1 of the sorted token, timestamp
// and nonce.
func wechatPOST(t *testing.T, callback, token, xml string, ts int64, nonce string) (int, string, time.Duration) {
	t.Helper()
	parts := []string{token, strconv.FormatInt(ts, 10), nonce}
	sort.Strings(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	q := url.Values{"signature": {hex.EncodeToString(sum[:])}, "timestamp": {strconv.FormatInt(ts, 10)},
		"nonce": {nonce}, "openid": {"oFrank"}}
	start := time.Now()
	resp, err := http.Post("http://"+callback+"/wechat/callback?"+q.Encode(), "text/xml", strings.NewReader(xml))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), time.Since(start)
}

func subscribeXML(scene, ticket string, created int64) string {
	return `<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[oFrank]]></FromUserName>` +
		`<CreateTime>` + strconv.FormatInt(created, 10) + `</CreateTime><MsgType><![CDATA[event]]></MsgType>` +
		`<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_` + scene + `]]></EventKey>` +
		`<Ticket><![CDATA[` + ticket + `]]></Ticket></xml>`
}

// A signed subscribe event enters wechat-callback, which calls Notify on the
// push server that does not hold the browser; the browser logs in. Then the
// push servers go away and the callback still answers WeChat in time.
func TestCallbackToBrowserAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	rs := redistest.Start(t)
	fake := wechattest.New(t, appID, secret)
	key := writeKey(t)
	common := []string{"PUSH_HTTP_ADDR=127.0.0.1:0", "PUSH_GRPC_ADDR=127.0.0.1:0", "PUSH_API_ADDR=127.0.0.1:0", "WECHAT_APPID=" + appID,
		"WECHAT_SECRET=" + secret, "WECHAT_API_BASE=" + fake.URL(), "WECHAT_MP_BASE=" + fake.URL(),
		"REDIS_URL=" + rs.URL(), "TOKEN_KEY_FILE=" + key, "LOG_LEVEL=info", "GRPC_AUTH_TOKEN=internal"}
	a, b := startProcess(t, common), startProcess(t, common)
	const token = "callbacktoken"
	callback := startCallback(t, []string{"CALLBACK_HTTP_ADDR=127.0.0.1:0", "WECHAT_TOKEN=" + token,
		"PUSH_GRPC_TARGET=" + b.grpc, "GRPC_AUTH_TOKEN=internal", "LOG_LEVEL=info",
		"REPLY_LOGIN_OK=welcome-back", "REPLY_UNAVAILABLE=try-later"})

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+a.http+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	br := &browser{t: t, ws: ws}
	qr := br.expect("qrcode")
	ticket, _ := fake.TicketForScene(qr.Scene)

	now := time.Now().Unix()
	event := subscribeXML(qr.Scene, ticket, now)
	status, body, took := wechatPOST(t, callback, token, event, now, "1001")
	if status != http.StatusOK || !strings.Contains(body, "welcome-back") || !strings.Contains(body, "<ToUserName><![CDATA[oFrank]]>") {
		t.Fatalf("callback answered %d %q", status, body)
	}
	t.Logf("scan to answer: %s", took)
	lg := br.expect("login")
	if lg.User["openid"] != "oFrank" {
		t.Fatalf("login = %+v", lg)
	}
	br.expectClose(websocket.CloseNormalClosure)

	// WeChat's retry of the same event gets the same answer.
	if status, again, _ := wechatPOST(t, callback, token, event, now, "1002"); status != 200 || !strings.Contains(again, "welcome-back") {
		t.Fatalf("retry answered %d %q", status, again)
	}
	// A forged signature is refused and changes nothing.
	if status, _, _ := wechatPOST(t, callback, "wrong-token", event, now, "1003"); status != http.StatusForbidden {
		t.Fatalf("forged event answered %d", status)
	}

	// With every push server gone, WeChat still gets a polite answer in time.
	for _, p := range []*process{a, b} {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
	status, body, took = wechatPOST(t, callback, token, subscribeXML("someScene", "tk", now+1), now+1, "1004")
	if status != http.StatusOK || !strings.Contains(body, "try-later") || took > 5*time.Second {
		t.Fatalf("with the push servers down: %d %q after %s", status, body, took)
	}
}
