package deliver

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
)

const (
	token      = "pamtest"
	aesKey     = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	appID      = "wxb11529c136998cb6"
	originalID = "gh_0123456789ab"
	openID     = "oUser_openid_0001"
)

// sign is WeChat's signature computed here without package wechat, so
// that the test checks the sender against an independent implementation.
func sign(parts ...string) string {
	s := append([]string(nil), parts...)
	sort.Strings(s)
	sum := sha1.Sum([]byte(strings.Join(s, "")))
	return hex.EncodeToString(sum[:])
}

// received is one request the fake callback got.
type received struct {
	query url.Values
	url   string
	body  string
	ctype string
}

// callback is a fake account server: it records requests and answers with
// answer(n) for the n-th request (0-based).
type callback struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int, r received, w http.ResponseWriter)
}

func newCallback(t *testing.T, answer func(n int, r received, w http.ResponseWriter)) *callback {
	t.Helper()
	c := &callback{answer: answer}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec := received{query: r.URL.Query(), url: r.URL.String(), body: string(b), ctype: r.Header.Get("Content-Type")}
		c.mu.Lock()
		n := len(c.got)
		c.got = append(c.got, rec)
		c.mu.Unlock()
		c.answer(n, rec, w)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *callback) requests() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.got...)
}

func newSender(t *testing.T, url, key string, retryAfter time.Duration, retries int) *Sender {
	t.Helper()
	s, err := New(Config{URL: url + "/wechat/callback", Token: token, AESKey: key, AppID: appID, OriginalID: originalID,
		RetryAfter: retryAfter, Retries: retries})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var subscribe = Event{OpenID: openID, Event: wechat.EventSubscribe, EventKey: "qrscene_login_3f2a9c", Ticket: "gQF+abc/def=="}

// event is the XML of an event, parsed without package wechat.
type event struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   string
	FromUserName string
	CreateTime   int64
	MsgType      string
	Event        string
	EventKey     string
	Ticket       string
	Encrypt      string
}

func parse(t *testing.T, s string) event {
	t.Helper()
	var e event
	if err := xml.Unmarshal([]byte(s), &e); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return e
}

func textReply(content string) []byte {
	return wechat.TextReply(openID, originalID, time.Now().Unix(), content)
}

func TestPlaintext(t *testing.T) {
	cb := newCallback(t, func(_ int, _ received, w http.ResponseWriter) { w.Write(textReply("login ok")) })
	res, err := newSender(t, cb.URL, "", time.Second, 3).Send(context.Background(), subscribe)
	if err != nil {
		t.Fatal(err)
	}
	reqs := cb.requests()
	if len(reqs) != 1 || len(res.Attempts) != 1 || res.Attempts[0].Status != 200 {
		t.Fatalf("%d requests, attempts %+v", len(reqs), res.Attempts)
	}
	r := reqs[0]
	q := r.query
	if q.Get("signature") != sign(token, q.Get("timestamp"), q.Get("nonce")) {
		t.Fatalf("signature %q does not verify", q.Get("signature"))
	}
	if q.Get("openid") != openID || q.Has("encrypt_type") || q.Has("msg_signature") {
		t.Fatalf("query %v", q)
	}
	if _, err := strconv.ParseInt(q.Get("nonce"), 10, 64); err != nil {
		t.Fatalf("nonce %q is not decimal", q.Get("nonce"))
	}
	ts, _ := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	if d := time.Since(time.Unix(ts, 0)); d < -time.Second || d > 5*time.Second {
		t.Fatalf("timestamp %d is not now", ts)
	}
	e := parse(t, r.body)
	want := event{XMLName: e.XMLName, ToUserName: originalID, FromUserName: openID, CreateTime: ts, MsgType: "event",
		Event: "subscribe", EventKey: "qrscene_login_3f2a9c", Ticket: "gQF+abc/def=="}
	if e != want {
		t.Fatalf("event %+v, want %+v", e, want)
	}
	if !strings.Contains(r.body, "<Event><![CDATA[subscribe]]></Event>") || !strings.Contains(r.body, "<CreateTime>"+q.Get("timestamp")+"</CreateTime>") {
		t.Fatalf("body not in WeChat's shape: %s", r.body)
	}
	if res.Reply.Kind != ReplyText || res.Reply.Text != "login ok" || res.Reply.Encrypted {
		t.Fatalf("reply %+v", res.Reply)
	}
}

func TestSafeMode(t *testing.T) {
	cr, err := wechat.NewCrypter(token, aesKey, appID)
	if err != nil {
		t.Fatal(err)
	}
	cb := newCallback(t, func(_ int, r received, w http.ResponseWriter) {
		env, err := cr.EncryptReply(textReply("欢迎 login ok"), r.query.Get("timestamp"), r.query.Get("nonce"))
		if err != nil {
			t.Error(err)
		}
		w.Write(env)
	})
	s := newSender(t, cb.URL, aesKey, time.Second, 3)
	if !s.SafeMode() {
		t.Fatal("not in safe mode")
	}
	scan := Event{OpenID: openID, Event: wechat.EventScan, EventKey: "login_3f2a9c", Ticket: "gQF+t=="}
	res, err := s.Send(context.Background(), scan)
	if err != nil {
		t.Fatal(err)
	}
	r := cb.requests()[0]
	q := r.query
	if q.Get("encrypt_type") != "aes" {
		t.Fatalf("encrypt_type %q", q.Get("encrypt_type"))
	}
	if q.Get("signature") != sign(token, q.Get("timestamp"), q.Get("nonce")) {
		t.Fatal("signature does not verify")
	}
	outer := parse(t, r.body)
	if outer.ToUserName != originalID || outer.Encrypt == "" || outer.FromUserName != "" || outer.Event != "" {
		t.Fatalf("safe-mode body carries plain fields: %s", r.body)
	}
	if q.Get("msg_signature") != sign(token, q.Get("timestamp"), q.Get("nonce"), outer.Encrypt) {
		t.Fatal("msg_signature does not verify")
	}
	plain, err := cr.Decrypt(outer.Encrypt)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	e := parse(t, string(plain))
	if e.Event != "SCAN" || e.EventKey != "login_3f2a9c" || e.FromUserName != openID || e.Ticket != "gQF+t==" {
		t.Fatalf("decrypted event %+v", e)
	}
	if res.Reply.Kind != ReplyText || res.Reply.Text != "欢迎 login ok" || !res.Reply.Encrypted {
		t.Fatalf("reply %+v", res.Reply)
	}
}

func TestReplies(t *testing.T) {
	cr, _ := wechat.NewCrypter(token, aesKey, appID)
	other, _ := wechat.NewCrypter("othertoken", aesKey, appID)
	for _, tc := range []struct {
		name   string
		key    string
		status int
		body   func(r received) []byte
		kind   string
		text   string
	}{
		{"success", "", 200, func(received) []byte { return []byte("success") }, ReplyNone, ""},
		{"empty", "", 200, func(received) []byte { return nil }, ReplyNone, ""},
		{"safe success", aesKey, 200, func(received) []byte { return []byte("success") }, ReplyNone, ""},
		{"server error", "", 500, func(received) []byte { return []byte("oops") }, ReplyFailure, ServiceNotice},
		{"json", "", 200, func(received) []byte { return []byte(`{"ok":true}`) }, ReplyFailure, ServiceNotice},
		{"wrong user", "", 200, func(received) []byte {
			return wechat.TextReply("oSomeoneElse", originalID, 1, "hi")
		}, ReplyFailure, ServiceNotice},
		{"plain reply in safe mode", aesKey, 200, func(received) []byte { return textReply("hi") }, ReplyFailure, ServiceNotice},
		{"bad MsgSignature", aesKey, 200, func(r received) []byte {
			b, _ := other.EncryptReply(textReply("hi"), "1700000000", "n")
			return b
		}, ReplyFailure, ServiceNotice},
		{"encrypted", aesKey, 200, func(r received) []byte {
			b, _ := cr.EncryptReply(textReply("line1\nline2"), "1700000000", "n")
			return b
		}, ReplyText, "line1\nline2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb := newCallback(t, func(_ int, r received, w http.ResponseWriter) {
				w.WriteHeader(tc.status)
				w.Write(tc.body(r))
			})
			res, err := newSender(t, cb.URL, tc.key, time.Second, 3).Send(context.Background(), subscribe)
			if err != nil {
				t.Fatal(err)
			}
			if res.Reply.Kind != tc.kind || res.Reply.Text != tc.text {
				t.Fatalf("reply %+v, want %s %q", res.Reply, tc.kind, tc.text)
			}
			if tc.kind == ReplyFailure && res.Reply.Problem == "" {
				t.Fatal("failure without a problem")
			}
			if len(res.Attempts) != 1 {
				t.Fatalf("%d attempts: an answer, even a bad one, is not retried", len(res.Attempts))
			}
		})
	}
}

func TestRetryIdenticalRequest(t *testing.T) {
	const after = 200 * time.Millisecond
	release := make(chan struct{})
	cb := newCallback(t, func(n int, _ received, w http.ResponseWriter) {
		if n == 0 {
			<-release // never answer the first one in time
			return
		}
		w.Write([]byte("success"))
	})
	t.Cleanup(func() { close(release) }) // before the server closes
	start := time.Now()
	res, err := newSender(t, cb.URL, aesKey, after, 3).Send(context.Background(), subscribe)
	if err != nil {
		t.Fatal(err)
	}
	reqs := cb.requests()
	if len(reqs) != 2 || len(res.Attempts) != 2 {
		t.Fatalf("%d requests, %d attempts, want 2", len(reqs), len(res.Attempts))
	}
	if reqs[0].url != reqs[1].url || reqs[0].body != reqs[1].body || reqs[0].ctype != reqs[1].ctype {
		t.Fatalf("retry differs:\n%+v\n%+v", reqs[0], reqs[1])
	}
	if res.Attempts[0].Status != 0 || res.Attempts[0].Err != "timed out" || res.Attempts[1].Status != 200 {
		t.Fatalf("attempts %+v", res.Attempts)
	}
	if d := time.Since(start); d < after {
		t.Fatalf("retried after %v, before the %v timeout", d, after)
	}
	if res.Reply.Kind != ReplyNone {
		t.Fatalf("reply %+v", res.Reply)
	}
}

func TestNoAnswer(t *testing.T) {
	const after = 50 * time.Millisecond
	release := make(chan struct{})
	cb := newCallback(t, func(int, received, http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) }) // before the server closes
	res, err := newSender(t, cb.URL, "", after, 3).Send(context.Background(), subscribe)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cb.requests()); n != 4 || len(res.Attempts) != 4 {
		t.Fatalf("%d requests, %d attempts; want 1 + 3 retries", n, len(res.Attempts))
	}
	if res.Reply.Kind != ReplyFailure || res.Reply.Text != ServiceNotice {
		t.Fatalf("reply %+v", res.Reply)
	}

	// A refused connection is retried at the same pace.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	start := time.Now()
	res, err = newSender(t, dead.URL, "", after, 2).Send(context.Background(), subscribe)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Attempts) != 3 || res.Reply.Kind != ReplyFailure {
		t.Fatalf("attempts %+v reply %+v", res.Attempts, res.Reply)
	}
	if d := time.Since(start); d < 2*after {
		t.Fatalf("3 attempts in %v: not %v apart", d, after)
	}

	// Negative Retries: one attempt only.
	res, _ = newSender(t, dead.URL, "", after, -1).Send(context.Background(), subscribe)
	if len(res.Attempts) != 1 {
		t.Fatalf("%d attempts with no retries", len(res.Attempts))
	}
}

func TestNewChecks(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "ftp://x", Token: token},
		{URL: "http://127.0.0.1/cb", Token: ""},
		{URL: "http://127.0.0.1/cb", Token: token, AESKey: "short", AppID: appID},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
