package callback

import (
	"strings"
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// TestFromUserNameMustBeOpenID: a sender that is not an OpenID (here one
// with a newline, which could split a frame or a log line further on) is
// refused before anything is processed.
func TestFromUserNameMustBeOpenID(t *testing.T) {
	e := newEnv(t)
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	now := time.Now().Unix()
	for i, from := range []string{"oVictim\nX", "o victim", `o"x`, strings.Repeat("o", 65)} {
		before := e.logs.String()
		r := e.post(e.query(), event(from, now+int64(i), "SCAN", "s1", "T"))
		if r.status != 400 || r.body != "Bad Request\n" {
			t.Errorf("FromUserName %q: %+v, want 400", from, r)
		}
		if logged := strings.TrimPrefix(e.logs.String(), before); !strings.Contains(logged, "reason="+reasonMalformed) {
			t.Errorf("FromUserName %q: logged %q", from, logged)
		}
	}
	if n := len(e.push.Calls()); n != 0 {
		t.Fatalf("%d Notify calls for refused senders", n)
	}
	if got := e.counter("wechat_callback_events_total"); got != 0 {
		t.Fatalf("%v events processed", got)
	}
}

// TestEventNamesExact: WeChat spells its events "subscribe" and "SCAN";
// other spellings did not come from WeChat and start no login.
func TestEventNamesExact(t *testing.T) {
	e := newEnv(t)
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	now := time.Now().Unix()
	for i, tt := range []struct{ msgType, ev, key string }{
		{"event", "scan", "s1"},
		{"event", "Scan", "s1"},
		{"event", "Subscribe", "qrscene_s1"},
		{"event", "SUBSCRIBE", "qrscene_s1"},
		{"event", "SCAN ", "s1"},
		{"Event", "SCAN", "s1"},
		{"EVENT", "subscribe", "qrscene_s1"},
	} {
		body := strings.Replace(event(testOpenID, now+int64(i), tt.ev, tt.key, "T"), "<MsgType><![CDATA[event]]>", "<MsgType><![CDATA["+tt.msgType+"]]>", 1)
		if r := e.post(e.query(), body); r.status != 200 || r.body != "success" {
			t.Errorf("MsgType %q Event %q: %+v, want success", tt.msgType, tt.ev, r)
		}
	}
	if n := len(e.push.Calls()); n != 0 {
		t.Fatalf("%d Notify calls, want 0", n)
	}
	if got := e.counter("wechat_callback_events_total", "type", "scan") + e.counter("wechat_callback_events_total", "type", "subscribe"); got != 0 {
		t.Errorf("%v events counted as scan or subscribe", got)
	}

	// The exact spellings still log in.
	for i, tt := range []struct{ ev, key string }{{"SCAN", "s1"}, {"subscribe", "qrscene_s1"}} {
		r := e.post(e.query(), event(testOpenID, now+100+int64(i), tt.ev, tt.key, "T"))
		if r.status != 200 || parseText(t, r.body).Content != config.DefaultReplyLoginOK {
			t.Errorf("%s: %+v", tt.ev, r)
		}
	}
	if n := len(e.push.Calls()); n != 2 {
		t.Fatalf("%d Notify calls, want 2", n)
	}
}

// TestSceneMustBeValid: a scene no QR code of ours can carry is answered
// like an unknown scene (the polite reply, never a 5xx) and not sent on.
func TestSceneMustBeValid(t *testing.T) {
	e := newEnv(t, withEnv("REPLY_NOT_FOUND", "Not found!"))
	now := time.Now().Unix()
	for i, tt := range []struct{ ev, key string }{
		{"SCAN", "s1\nX"},
		{"SCAN", "s 1"},
		{"SCAN", "s1/../x"},
		{"SCAN", strings.Repeat("s", 65)},
		{"SCAN", ""},
		{"subscribe", "qrscene_s1\nX"},
		{"subscribe", "qrscene_qrscene_x.y"},
		{"subscribe", "qrscene_" + strings.Repeat("s", 65)},
	} {
		r := e.post(e.query(), event(testOpenID, now+int64(i), tt.ev, tt.key, "T"))
		if r.status != 200 || parseText(t, r.body).Content != "Not found!" {
			t.Errorf("%s %q: %+v, want the not-found reply", tt.ev, tt.key, r)
		}
	}
	if n := len(e.push.Calls()); n != 0 {
		t.Fatalf("%d Notify calls, want 0", n)
	}
	if got := e.counter("wechat_callback_events_total", "result", resultNoScene); got != 8 {
		t.Errorf("events{no_scene} = %v, want 8", got)
	}
}

// TestUnionIDMustBeValid: a unionid from user/info that is not a UnionID is
// dropped (with a log line); the login goes on with the openid.
func TestUnionIDMustBeValid(t *testing.T) {
	api := wechattest.New(t, testAppID, "s3cret")
	api.AddUser(wechat.UserInfo{Subscribe: 1, OpenID: testOpenID, UnionID: "uVictim\nX", Nickname: "Ann"})
	client, err := wechat.NewClient(api.Config())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withUsers(client), withEnv("USER_INFO_TIMEOUT", "300ms"))
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	if r := e.post(e.query(), event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T")); r.status != 200 {
		t.Fatalf("answer %+v", r)
	}
	calls := e.push.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d Notify calls", len(calls))
	}
	if u := calls[0].GetUser(); u.GetOpenid() != testOpenID || u.GetUnionid() != "" || u.GetNickname() != "Ann" {
		t.Fatalf("user %v", u)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "unionid dropped") || strings.Contains(logs, "uVictim") {
		t.Errorf("logs %q: want the drop noted, without the value", logs)
	}
}
