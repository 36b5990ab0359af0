package callback

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
)

func TestURLVerification(t *testing.T) {
	e := newEnv(t)
	q := e.query()
	q.Set("echostr", "echo 12345")
	if r := e.do(http.MethodGet, q, ""); r.status != 200 || r.body != "echo 12345" || !strings.HasPrefix(r.ctype, "text/plain") {
		t.Fatalf("good signature: %+v", r)
	}

	bad := e.query()
	bad.Set("echostr", "x")
	bad.Set("signature", strings.Repeat("0", 40))
	if r := e.do(http.MethodGet, bad, ""); r.status != 403 || strings.Contains(r.body, "x") {
		t.Fatalf("bad signature: %+v", r)
	}

	// The console's check does not depend on our clock.
	old := e.query()
	ts := "1000000000"
	old.Set("timestamp", ts)
	old.Set("signature", sign(testToken, ts, old.Get("nonce")))
	old.Set("echostr", "x")
	if r := e.do(http.MethodGet, old, ""); r.status != 200 || r.body != "x" {
		t.Fatalf("old timestamp: %+v", r)
	}

	if r := e.do(http.MethodGet, e.query(), ""); r.status != 400 {
		t.Fatalf("no echostr: %+v", r)
	}
	if r := e.do(http.MethodPut, e.query(), ""); r.status != 405 {
		t.Fatalf("PUT: %+v", r)
	}
	if got := e.counter("wechat_callback_signature_failures_total"); got != 1 {
		t.Errorf("signature failures = %v, want 1", got)
	}
}

func TestLoginEvents(t *testing.T) {
	e := newEnv(t)
	e.push.SetResult("login_3f2a9c", pushv1.Result_RESULT_DELIVERED)
	e.push.SetResult("scan_scene", pushv1.Result_RESULT_STORED)
	now := time.Now().Unix()

	tests := []struct {
		name      string
		body      string
		wantEvent pushv1.Event
		wantScene string
	}{
		{"subscribe with scene", event(testOpenID, now, "subscribe", "qrscene_login_3f2a9c", "TICKET1=="), pushv1.Event_EVENT_SUBSCRIBE, "login_3f2a9c"},
		{"SCAN", event(testOpenID, now, "SCAN", "scan_scene", "TICKET2=="), pushv1.Event_EVENT_SCAN, "scan_scene"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(e.query(), tt.body)
			if r.status != 200 || !strings.HasPrefix(r.ctype, "application/xml") {
				t.Fatalf("answer %+v", r)
			}
			reply := parseText(t, r.body)
			if reply.Content != config.DefaultReplyLoginOK || reply.ToUserName != testOpenID || reply.FromUserName != testGH || reply.MsgType != "text" || reply.CreateTime == 0 {
				t.Fatalf("reply %+v", reply)
			}
			calls := e.push.Calls()
			if len(calls) != i+1 {
				t.Fatalf("%d Notify calls, want %d", len(calls), i+1)
			}
			c := calls[i]
			if c.GetScene() != tt.wantScene || c.GetEvent() != tt.wantEvent || c.GetUser().GetOpenid() != testOpenID || c.GetTicket() == "" {
				t.Fatalf("Notify(%v)", c)
			}
			if !strings.HasPrefix(c.GetEventId(), testOpenID+"|") || !strings.HasSuffix(c.GetEventId(), "|"+parseEventKey(tt.body)) {
				t.Fatalf("event_id %q", c.GetEventId())
			}
		})
	}
	if got := e.counter("wechat_callback_events_total", "type", "subscribe", "result", "delivered"); got != 1 {
		t.Errorf("events{subscribe,delivered} = %v", got)
	}
	if got := e.counter("wechat_callback_notify_duration_seconds", "result", "stored"); got != 1 {
		t.Errorf("notify{stored} = %v", got)
	}
	if strings.Contains(e.logs.String(), testOpenID) || strings.Contains(e.logs.String(), testToken) {
		t.Errorf("logs reveal the openid or token:\n%s", e.logs)
	}
}

func parseEventKey(body string) string {
	_, rest, _ := strings.Cut(body, "<EventKey><![CDATA[")
	key, _, _ := strings.Cut(rest, "]]>")
	return key
}

func TestResultsAndReplies(t *testing.T) {
	e := newEnv(t, withEnv("REPLY_EXPIRED", "Code expired!", "REPLY_NOT_FOUND", "Not found!"))
	e.push.SetResult("expired", pushv1.Result_RESULT_EXPIRED)
	e.push.SetResult("mismatch", pushv1.Result_RESULT_TICKET_MISMATCH)
	e.push.SetResult("used", pushv1.Result_RESULT_ALREADY_USED)
	now := time.Now().Unix()
	for i, tt := range []struct{ scene, want string }{
		{"expired", "Code expired!"},
		{"mismatch", "Not found!"},
		{"used", "Not found!"},
		{"unknown", "Not found!"},
		{strings.Repeat("x", 65), "Not found!"}, // longer than any scene: not sent
	} {
		r := e.post(e.query(), event(testOpenID, now+int64(i), "SCAN", tt.scene, "T"))
		if r.status != 200 {
			t.Fatalf("%s: %+v", tt.scene, r)
		}
		if got := parseText(t, r.body).Content; got != tt.want {
			t.Errorf("%s: reply %q, want %q", tt.scene, got, tt.want)
		}
	}
	if n := len(e.push.Calls()); n != 4 {
		t.Errorf("%d Notify calls, want 4", n)
	}
}

func TestNoLoginEvents(t *testing.T) {
	e := newEnv(t)
	now := time.Now().Unix()
	for i, tt := range []struct {
		name, body, want string
	}{
		{"plain subscribe", event(testOpenID, now, "subscribe", "-", ""), config.DefaultReplyWelcome},
		{"subscribe empty key", event(testOpenID, now+1, "subscribe", "", ""), config.DefaultReplyWelcome},
		{"subscribe qrscene_ only", event(testOpenID, now+2, "subscribe", "qrscene_", "T"), config.DefaultReplyWelcome},
		{"unsubscribe", event(testOpenID, now+3, "unsubscribe", "", ""), ""},
		{"menu click", event(testOpenID, now+4, "CLICK", "MENU_1", ""), ""},
		{"text", "<xml><ToUserName>gh_x</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>42</MsgId></xml>", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(e.query(), tt.body)
			if r.status != 200 {
				t.Fatalf("step %d: %+v", i, r)
			}
			if tt.want == "" {
				if r.body != "success" || !strings.HasPrefix(r.ctype, "text/plain") {
					t.Fatalf("answer %+v, want success", r)
				}
				return
			}
			if got := parseText(t, r.body).Content; got != tt.want {
				t.Fatalf("reply %q, want %q", got, tt.want)
			}
		})
	}
	if n := len(e.push.Calls()); n != 0 {
		t.Fatalf("%d Notify calls, want 0", n)
	}

	quiet := newEnv(t, withEnv("REPLY_WELCOME", "-"))
	if r := quiet.post(quiet.query(), event(testOpenID, now, "subscribe", "", "")); r.body != "success" {
		t.Fatalf("empty REPLY_WELCOME: %+v", r)
	}
}

func TestRejections(t *testing.T) {
	e := newEnv(t, withEnv("WECHAT_ORIGINAL_ID", testGH))
	now := time.Now().Unix()
	good := event(testOpenID, now, "SCAN", "s", "T")

	resign := func(q url.Values) url.Values {
		q.Set("signature", sign(testToken, q.Get("timestamp"), q.Get("nonce")))
		return q
	}
	tests := []struct {
		name   string
		query  func() url.Values
		body   string
		status int
		reason string
	}{
		{"no signature", func() url.Values { q := e.query(); q.Del("signature"); return q }, good, 403, reasonSignature},
		{"wrong signature", func() url.Values {
			q := e.query()
			q.Set("signature", sign("other", q.Get("timestamp"), q.Get("nonce")))
			return q
		}, good, 403, reasonSignature},
		{"upper-case signature", func() url.Values { q := e.query(); q.Set("signature", strings.ToUpper(q.Get("signature"))); return q }, good, 403, reasonSignature},
		{"old timestamp", func() url.Values { q := e.query(); q.Set("timestamp", "1700000000"); return resign(q) }, good, 403, reasonTimestamp},
		{"future timestamp", func() url.Values {
			q := e.query()
			q.Set("timestamp", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
			return resign(q)
		}, good, 403, reasonTimestamp},
		{"wrong ToUserName", e.query, strings.Replace(good, testGH, "gh_attacker0000", 1), 403, reasonToUser},
		{"encrypted without key", func() url.Values { q := e.query(); q.Set("encrypt_type", "aes"); return q }, good, 400, reasonMode},
		{"malformed XML", e.query, "<xml><ToUserName>", 400, reasonMalformed},
		{"not XML", e.query, "hello", 400, reasonMalformed},
		{"wrong root", e.query, "<foo><FromUserName>x</FromUserName></foo>", 400, reasonMalformed},
		{"empty body", e.query, "", 400, reasonMalformed},
		{"no FromUserName", e.query, "<xml><ToUserName>" + testGH + "</ToUserName><MsgType>event</MsgType></xml>", 400, reasonMalformed},
		{"too large", e.query, "<xml>" + strings.Repeat(" ", MaxBodyBytes) + "</xml>", 413, reasonTooLarge},
		{"too large, unsigned", func() url.Values { q := e.query(); q.Del("signature"); return q }, strings.Repeat("x", MaxBodyBytes+1), 413, reasonTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.logs.String()
			r := e.post(tt.query(), tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d (%s)", r.status, tt.status, r.body)
			}
			line := strings.TrimPrefix(e.logs.String(), before)
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, "reason="+tt.reason) {
				t.Fatalf("log %q, want one line with reason=%s", line, tt.reason)
			}
		})
	}
	if n := len(e.push.Calls()); n != 0 {
		t.Fatalf("%d Notify calls for rejected requests", n)
	}
	if got := e.counter("wechat_callback_replays_rejected_total", "reason", reasonTimestamp); got != 2 {
		t.Errorf("replays{stale_timestamp} = %v, want 2", got)
	}
}

func TestReplayAndDuplicates(t *testing.T) {
	e := newEnv(t)
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	now := time.Now().Unix()
	first := event(testOpenID, now, "SCAN", "s1", "T")
	q := e.query()

	r1 := e.post(q, first)
	if r1.status != 200 {
		t.Fatalf("first: %+v", r1)
	}
	want := parseText(t, r1.body).Content

	// WeChat's retry: same query, same body. Answered the same, not processed.
	if r := e.post(q, first); r.status != 200 || parseText(t, r.body).Content != want {
		t.Fatalf("retry: %+v", r)
	}
	// A retry with a fresh signature, as WeChat might send it.
	if r := e.post(e.query(), first); r.status != 200 || parseText(t, r.body).Content != want {
		t.Fatalf("re-signed retry: %+v", r)
	}
	// Captured query string, forged body: rejected.
	forged := event("oAttacker", now, "SCAN", "s1", "T")
	if r := e.post(q, forged); r.status != 403 {
		t.Fatalf("replay with another body: %+v", r)
	}
	if n := len(e.push.Calls()); n != 1 {
		t.Fatalf("%d Notify calls, want 1", n)
	}
	// Another event in the same second (other key) is not a duplicate.
	if r := e.post(e.query(), event(testOpenID, now, "subscribe", "qrscene_s1", "T")); r.status != 200 {
		t.Fatalf("other event: %+v", r)
	}
	if n := len(e.push.Calls()); n != 2 {
		t.Fatalf("%d Notify calls, want 2", n)
	}
	if got := e.counter("wechat_callback_duplicates_total"); got != 2 {
		t.Errorf("duplicates = %v, want 2", got)
	}
	if got := e.counter("wechat_callback_replays_rejected_total", "reason", reasonReplay); got != 1 {
		t.Errorf("replays{replayed_nonce} = %v, want 1", got)
	}
}

func TestConcurrentDuplicates(t *testing.T) {
	e := newEnv(t)
	e.push.SetResult("s1", pushv1.Result_RESULT_EXPIRED)
	e.push.SetDelay(200 * time.Millisecond) // copies arrive while the first is in Notify
	body := event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T")
	const copies = 8
	answers := make([]response, copies)
	queries := make([]url.Values, copies)
	for i := range copies {
		if i%2 == 0 {
			queries[i] = e.query() // re-signed copies
		} else {
			queries[i] = queries[i-1] // byte-identical copies
		}
	}
	var wg sync.WaitGroup
	for i := range copies {
		wg.Go(func() { answers[i] = e.post(queries[i], body) })
	}
	wg.Wait()
	for i, a := range answers {
		if a.status != 200 || parseText(t, a.body).Content != config.DefaultReplyExpired {
			t.Fatalf("copy %d: %+v", i, a)
		}
	}
	if n := len(e.push.Calls()); n != 1 {
		t.Fatalf("%d Notify calls, want 1", n)
	}
}

func TestPushServerDown(t *testing.T) {
	e := newEnv(t)
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	if r := e.get("/readyz"); r.status != 200 {
		t.Fatalf("readyz while up: %+v", r)
	}
	e.push.Stop()
	start := time.Now()
	r := e.post(e.query(), event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T"))
	if r.status != 200 || parseText(t, r.body).Content != config.DefaultReplyUnavailable {
		t.Fatalf("answer %+v", r)
	}
	if d := time.Since(start); d > e.cfg.Budget {
		t.Fatalf("answered after %v, budget %v", d, e.cfg.Budget)
	}
	if r := e.get("/readyz"); r.status != 503 {
		t.Fatalf("readyz while down: %+v", r)
	}
	if r := e.get("/healthz"); r.status != 200 {
		t.Fatalf("healthz: %+v", r)
	}
	e.push.Restart()
	deadline := time.Now().Add(3 * time.Second)
	for i := 1; ; i++ {
		r := e.post(e.query(), event(testOpenID, time.Now().Unix()+int64(i), "SCAN", "s1", "T"))
		if parseText(t, r.body).Content == config.DefaultReplyLoginOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login after the push server came back: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSlowPushServer(t *testing.T) {
	e := newEnv(t, withEnv("CALLBACK_BUDGET", "700ms", "NOTIFY_TIMEOUT", "300ms"))
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	e.push.SetDelay(5 * time.Second)
	start := time.Now()
	r := e.post(e.query(), event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T"))
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("answered after %v with a 700ms budget", d)
	}
	if r.status != 200 || parseText(t, r.body).Content != config.DefaultReplyUnavailable {
		t.Fatalf("answer %+v", r)
	}
	if n := len(e.push.Calls()); n < 2 {
		t.Errorf("%d Notify calls, want a retry after the per-call timeout", n)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t)
	e.post(e.query(), event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T"))
	r := e.get("/metrics")
	for _, name := range []string{
		"wechat_callback_requests_total", "wechat_callback_events_total",
		"wechat_callback_notify_duration_seconds", "wechat_callback_request_duration_seconds",
	} {
		if !strings.Contains(r.body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if n := e.counter("wechat_callback_request_duration_seconds"); n != 1 {
		t.Errorf("%v requests timed, want the one POST", n)
	}
}
