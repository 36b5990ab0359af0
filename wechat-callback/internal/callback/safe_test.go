package callback

import (
	"net/url"
	"strings"
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
)

func TestSafeModeRoundTrip(t *testing.T) {
	e := newEnv(t, safeMode)
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	q, body := e.encrypted(e.query(), event(testOpenID, time.Now().Unix(), "subscribe", "qrscene_s1", "T1"))
	r := e.post(q, body)
	if r.status != 200 || !strings.HasPrefix(r.ctype, "application/xml") {
		t.Fatalf("answer %+v", r)
	}
	reply := openReply(t, r.body)
	if reply.Content != config.DefaultReplyLoginOK || reply.ToUserName != testOpenID || reply.FromUserName != testGH {
		t.Fatalf("reply %+v", reply)
	}
	calls := e.push.Calls()
	if len(calls) != 1 || calls[0].GetScene() != "s1" || calls[0].GetEvent() != pushv1.Event_EVENT_SUBSCRIBE || calls[0].GetTicket() != "T1" {
		t.Fatalf("Notify calls %v", calls)
	}

	// The duplicate is answered the same, encrypted afresh.
	q2, body2 := e.encrypted(e.query(), event(testOpenID, time.Now().Unix(), "subscribe", "qrscene_s1", "T1"))
	if reply := openReply(t, e.post(q2, body2).body); reply.Content != config.DefaultReplyLoginOK {
		t.Fatalf("duplicate reply %+v", reply)
	}
	// Nothing to say: plain "success".
	q3, body3 := e.encrypted(e.query(), event(testOpenID, time.Now().Unix(), "unsubscribe", "", ""))
	if r := e.post(q3, body3); r.body != "success" {
		t.Fatalf("unsubscribe: %+v", r)
	}
	if n := len(e.push.Calls()); n != 1 {
		t.Fatalf("%d Notify calls, want 1", n)
	}
}

// TestCompatibleMode sends plain fields next to <Encrypt>; only the signed,
// encrypted copy counts.
func TestCompatibleMode(t *testing.T) {
	e := newEnv(t, safeMode)
	e.push.SetResult("real", pushv1.Result_RESULT_DELIVERED)
	now := time.Now().Unix()
	q, envelope := e.encrypted(e.query(), event(testOpenID, now, "SCAN", "real", "T"))
	plain := event("oAttacker", now, "SCAN", "forged", "T")
	body := strings.Replace(plain, "</xml>", strings.TrimPrefix(strings.TrimPrefix(envelope, "<xml>"), "<ToUserName><![CDATA["+testGH+"]]></ToUserName>"), 1)
	r := e.post(q, body)
	if r.status != 200 || openReply(t, r.body).ToUserName != testOpenID {
		t.Fatalf("answer %+v", r)
	}
	calls := e.push.Calls()
	if len(calls) != 1 || calls[0].GetScene() != "real" || calls[0].GetUser().GetOpenid() != testOpenID {
		t.Fatalf("Notify calls %v", calls)
	}
}

// TestPlaintextWithKey: with an AES key, plaintext requests are accepted
// (an account moving to safe mode sends them until the switch) unless
// CALLBACK_REQUIRE_ENCRYPTION is set.
func TestPlaintextWithKey(t *testing.T) {
	e := newEnv(t, safeMode)
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	r := e.post(e.query(), event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T"))
	if r.status != 200 || parseText(t, r.body).Content != config.DefaultReplyLoginOK {
		t.Fatalf("answer %+v", r)
	}
}

func TestSafeModeRejections(t *testing.T) {
	e := newEnv(t, safeMode, withEnv("WECHAT_ORIGINAL_ID", testGH, "CALLBACK_REQUIRE_ENCRYPTION", "true"))
	now := time.Now().Unix()
	msg := event(testOpenID, now, "SCAN", "s1", "T")
	tests := []struct {
		name   string
		build  func() (url.Values, string)
		status int
		reason string
	}{
		{"plaintext request", func() (url.Values, string) { return e.query(), msg }, 403, reasonMode},
		{"no msg_signature", func() (url.Values, string) {
			q, b := e.encrypted(e.query(), msg)
			q.Del("msg_signature")
			return q, b
		}, 403, reasonMsgSignature},
		{"msg_signature of another body", func() (url.Values, string) {
			q, _ := e.encrypted(e.query(), msg)
			_, b := e.encrypted(e.query(), event(testOpenID, now, "SCAN", "s2", "T"))
			return q, b
		}, 403, reasonMsgSignature},
		{"bad query signature", func() (url.Values, string) {
			q, b := e.encrypted(e.query(), msg)
			q.Set("signature", sign("x", "y", "z"))
			return q, b
		}, 403, reasonSignature},
		{"other AppID", func() (url.Values, string) {
			enc := encrypt(t, testAESKey, "wxOTHERAPP", []byte("0123456789abcdef"), []byte(msg))
			q := e.query()
			q.Set("encrypt_type", "aes")
			q.Set("msg_signature", sign(testToken, q.Get("timestamp"), q.Get("nonce"), enc))
			return q, "<xml><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
		}, 400, reasonDecrypt},
		{"other key", func() (url.Values, string) {
			enc := encrypt(t, "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkj", testAppID, []byte("0123456789abcdef"), []byte(msg))
			q := e.query()
			q.Set("encrypt_type", "aes")
			q.Set("msg_signature", sign(testToken, q.Get("timestamp"), q.Get("nonce"), enc))
			return q, "<xml><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
		}, 400, reasonDecrypt},
		{"signed garbage", func() (url.Values, string) {
			enc := "bm90IGEgY2lwaGVydGV4dA=="
			q := e.query()
			q.Set("encrypt_type", "aes")
			q.Set("msg_signature", sign(testToken, q.Get("timestamp"), q.Get("nonce"), enc))
			return q, "<xml><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
		}, 400, reasonDecrypt},
		{"no Encrypt", func() (url.Values, string) {
			q, _ := e.encrypted(e.query(), msg)
			return q, msg
		}, 400, reasonMalformed},
		{"decrypts to non-XML", func() (url.Values, string) { return e.encrypted(e.query(), "not xml") }, 400, reasonDecrypt},
		{"wrong ToUserName inside", func() (url.Values, string) {
			return e.encrypted(e.query(), strings.Replace(msg, testGH, "gh_other", 1))
		}, 400, reasonDecrypt},
		{"unknown encrypt_type", func() (url.Values, string) {
			q, b := e.encrypted(e.query(), msg)
			q.Set("encrypt_type", "des")
			return q, b
		}, 400, reasonMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.logs.String()
			q, b := tt.build()
			r := e.post(q, b)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d", r.status, tt.status)
			}
			if line := strings.TrimPrefix(e.logs.String(), before); !strings.Contains(line, "reason="+tt.reason) {
				t.Fatalf("log %q, want reason=%s", line, tt.reason)
			}
		})
	}
	if n := len(e.push.Calls()); n != 0 {
		t.Fatalf("%d Notify calls for rejected requests", n)
	}
}

// TestVectorB replays test vector B byte for byte: the request a
// real WeChat would send for that subscribe event.
func TestVectorB(t *testing.T) {
	e := newEnv(t, withEnv("WECHAT_TOKEN", vecToken, "WECHAT_AES_KEY", vecAESKey, "WECHAT_APPID", vecAppID,
		"WECHAT_ORIGINAL_ID", "gh_0123456789ab"), withClock(time.Unix(1700000010, 0)))
	e.push.SetResult("login_3f2a9c", pushv1.Result_RESULT_STORED)
	q := url.Values{
		"signature": {vecBSig}, "timestamp": {"1700000000"}, "nonce": {"1234567890"},
		"openid": {"oUser_openid_0001"}, "encrypt_type": {"aes"}, "msg_signature": {vecBMsgSig},
	}
	body := "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><Encrypt><![CDATA[" + vecBEncrypt + "]]></Encrypt></xml>"
	r := e.post(q, body)
	if r.status != 200 {
		t.Fatalf("answer %+v", r)
	}
	var env encryptedReply
	if err := xmlUnmarshal(r.body, &env); err != nil || env.MsgSignature != sign(vecToken, env.TimeStamp, env.Nonce, env.Encrypt) {
		t.Fatalf("reply envelope %q: %v", r.body, err)
	}
	plain, appID, err := decrypt(t, vecAESKey, env.Encrypt)
	if err != nil || appID != vecAppID {
		t.Fatalf("decrypt reply: %v", err)
	}
	if reply := parseText(t, string(plain)); reply.Content != config.DefaultReplyLoginOK || reply.ToUserName != "oUser_openid_0001" {
		t.Fatalf("reply %+v", reply)
	}
	calls := e.push.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d Notify calls", len(calls))
	}
	c := calls[0]
	if c.GetScene() != "login_3f2a9c" || c.GetTicket() != "gQFAKE_TICKET==" || c.GetEvent() != pushv1.Event_EVENT_SUBSCRIBE ||
		c.GetUser().GetOpenid() != "oUser_openid_0001" || c.GetEventId() != "oUser_openid_0001|1700000000|subscribe|qrscene_login_3f2a9c" {
		t.Fatalf("Notify(%v)", c)
	}
}

// TestVectorsThroughHandler sends vectors A and B and vector D's plain
// signature through the handler with its clock set to their timestamps.
func TestVectorsThroughHandler(t *testing.T) {
	t.Run("A text message", func(t *testing.T) {
		e := newEnv(t, withEnv("WECHAT_TOKEN", vecToken, "WECHAT_AES_KEY", vecAESKey, "WECHAT_APPID", vecAppID),
			withClock(time.Unix(1458300676, 0)))
		q := url.Values{"timestamp": {"1458300676"}, "nonce": {"260774613"}, "encrypt_type": {"aes"},
			"msg_signature": {"4f3ad57b6989f09f4eb392acce4f9e93942ed890"}}
		q.Set("signature", sign(vecToken, "1458300676", "260774613"))
		r := e.post(q, "<xml><Encrypt><![CDATA["+vecAEncrypt+"]]></Encrypt></xml>")
		if r.status != 200 || r.body != "success" {
			t.Fatalf("answer %+v", r)
		}
	})
	t.Run("D URL verification", func(t *testing.T) {
		e := newEnv(t, withEnv("WECHAT_TOKEN", "AAAAA"), withClock(time.Unix(1714037059, 0)))
		q := url.Values{"signature": {"899cf89e464efb63f54ddac96b0a0a235f53aa78"}, "timestamp": {"1714037059"},
			"nonce": {"486452656"}, "echostr": {"hello"}}
		if r := e.do("GET", q, ""); r.status != 200 || r.body != "hello" {
			t.Fatalf("answer %+v", r)
		}
	})
}
