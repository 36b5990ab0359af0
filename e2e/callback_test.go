package e2e

import (
	"crypto/sha1"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/internal/testkey"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

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
	rs := redistest.Start(t)
	fake := wechattest.New(t, devAppID, devSecret)
	keyFile, _ := testkey.Write(t)
	common := []string{"REDIS_URL=" + rs.URL(), "TOKEN_KEY_FILE=" + keyFile, "GRPC_AUTH_TOKEN=internal"}
	a, b := startPushServer(t, fake, common...), startPushServer(t, fake, common...)
	const token = "callbacktoken"
	cb, err := startProgram(t, "wechat-callback", []string{"CALLBACK_HTTP_ADDR=" + host + ":0", "WECHAT_TOKEN=" + token,
		"PUSH_GRPC_TARGET=" + b.grpc, "GRPC_AUTH_TOKEN=internal", "LOG_LEVEL=info",
		"REPLY_LOGIN_OK=welcome-back", "REPLY_UNAVAILABLE=try-later"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cb.Stop(); err != nil {
			t.Errorf("wechat-callback on SIGTERM: %v", err)
		}
		if t.Failed() {
			t.Logf("wechat-callback logs:\n%s", cb.Logs)
		}
	})
	callback := cb.Listening[0]

	br := a.mustDial("")
	qr := br.Expect("qrcode")
	ticket, _ := fake.TicketForScene(qr.Scene)

	now := time.Now().Unix()
	event := subscribeXML(qr.Scene, ticket, now)
	status, body, took := wechatPOST(t, callback, token, event, now, "1001")
	if status != http.StatusOK || !strings.Contains(body, "welcome-back") || !strings.Contains(body, "<ToUserName><![CDATA[oFrank]]>") {
		t.Fatalf("callback answered %d %q", status, body)
	}
	t.Logf("scan to answer: %s", took)
	lg := br.Expect("login")
	if lg.User["openid"] != "oFrank" {
		t.Fatalf("login = %+v", lg)
	}
	br.ExpectClose(websocket.CloseNormalClosure)

	// WeChat's retry of the same event gets the same answer.
	if status, again, _ := wechatPOST(t, callback, token, event, now, "1002"); status != 200 || !strings.Contains(again, "welcome-back") {
		t.Fatalf("retry answered %d %q", status, again)
	}
	// A forged signature is refused and changes nothing.
	if status, _, _ := wechatPOST(t, callback, "wrong-token", event, now, "1003"); status != http.StatusForbidden {
		t.Fatalf("forged event answered %d", status)
	}

	// With every push server gone, WeChat still gets a polite answer in time.
	a.kill()
	b.kill()
	status, body, took = wechatPOST(t, callback, token, subscribeXML("someScene", "tk", now+1), now+1, "1004")
	if status != http.StatusOK || !strings.Contains(body, "try-later") || took > 5*time.Second {
		t.Fatalf("with the push servers down: %d %q after %s", status, body, took)
	}
}
