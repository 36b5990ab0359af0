package callback

import (
	"fmt"
	"github.com/scanlogin/scanlogin/internal/settings"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scanlogin/scanlogin/internal/testlog"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/dedup"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient/pushtest"
)

const (
	testToken  = "tok3n"
	testAppID  = "wx0123456789abcdef"
	testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	testGH     = "gh_0123456789ab"
	testOpenID = "oUser_openid_0001"
)

// testEnv is a callback server wired to a fake push server over real gRPC.
type testEnv struct {
	t     testing.TB
	cfg   *config.Config
	push  *pushtest.Server
	srv   *httptest.Server
	h     http.Handler
	reg   *prometheus.Registry
	logs  *testlog.Buffer
	nonce atomic.Int64
	now   func() time.Time
}

type envOption func(*testEnv, map[string]string, *Deps)

// withEnv sets environment variables for config.Load.
func withEnv(kv ...string) envOption {
	return func(_ *testEnv, m map[string]string, _ *Deps) {
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
	}
}

// safeMode sets the AES key and AppID of the test account.
var safeMode = withEnv("WECHAT_AES_KEY", testAESKey, "WECHAT_APPID", testAppID)

// withClock fixes the server's clock.
func withClock(now time.Time) envOption {
	return func(e *testEnv, _ map[string]string, d *Deps) {
		e.now = func() time.Time { return now }
		d.Now = e.now
	}
}

func withStore(s dedup.Store) envOption {
	return func(_ *testEnv, _ map[string]string, d *Deps) { d.Store = s }
}

func withUsers(u UserInfoFetcher) envOption {
	return func(_ *testEnv, _ map[string]string, d *Deps) { d.Users = u }
}

// withPush uses an existing fake push server.
func withPush(p *pushtest.Server) envOption {
	return func(e *testEnv, _ map[string]string, _ *Deps) { e.push = p }
}

func newEnv(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	e := &testEnv{t: t, reg: prometheus.NewRegistry(), logs: &testlog.Buffer{}, now: time.Now}
	vars := map[string]string{"WECHAT_TOKEN": testToken, "CALLBACK_BUDGET": "2s", "NOTIFY_TIMEOUT": "500ms"}
	d := Deps{Registry: e.reg, Store: dedup.NewMemory()}
	for _, o := range opts {
		o(e, vars, &d)
	}
	cfg, err := config.Load(settings.Map(vars))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	if e.push == nil {
		e.push = pushtest.Start(t)
	}
	pc, err := pushclient.New(e.push.Addr(), cfg.GRPCAuthToken, cfg.NotifyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d.Config, d.Notifier, d.Ready = cfg, pc, pc.Ready
	h, err := NewServer(d)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// query returns a signed query string with a fresh nonce and timestamp now.
func (e *testEnv) query() url.Values {
	ts := strconv.FormatInt(e.now().Unix(), 10)
	nonce := strconv.FormatInt(1000000+e.nonce.Add(1), 10)
	return url.Values{
		"signature": {sign(testToken, ts, nonce)},
		"timestamp": {ts},
		"nonce":     {nonce},
		"openid":    {testOpenID},
	}
}

// encrypted turns a query and a plain message into a safe-mode request:
// the query gains encrypt_type and msg_signature, the body is the envelope.
func (e *testEnv) encrypted(q url.Values, plain string) (url.Values, string) {
	enc := encrypt(e.t, testAESKey, testAppID, []byte("0123456789abcdef"), []byte(plain))
	q.Set("encrypt_type", "aes")
	q.Set("msg_signature", sign(testToken, q.Get("timestamp"), q.Get("nonce"), enc))
	return q, "<xml><ToUserName><![CDATA[" + testGH + "]]></ToUserName><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
}

// response is an HTTP answer, read whole.
type response struct {
	status int
	ctype  string
	body   string
}

func (e *testEnv) do(method string, q url.Values, body string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+"/wechat/callback?"+q.Encode(), strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

func (e *testEnv) post(q url.Values, body string) response {
	e.t.Helper()
	return e.do(http.MethodPost, q, body)
}

// get fetches a plain path such as /healthz.
func (e *testEnv) get(path string) response {
	e.t.Helper()
	resp, err := e.srv.Client().Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

// counter reads a counter of the registry, summed over label values that
// match labels.
func (e *testEnv) counter(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// event renders an event the way WeChat does (CDATA strings, bare numbers).
func event(from string, createTime int64, ev, eventKey, ticket string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>", testGH, from)
	fmt.Fprintf(&b, "<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[%s]]></Event>", createTime, ev)
	if eventKey != "-" {
		fmt.Fprintf(&b, "<EventKey><![CDATA[%s]]></EventKey>", eventKey)
	}
	if ticket != "" {
		fmt.Fprintf(&b, "<Ticket><![CDATA[%s]]></Ticket>", ticket)
	}
	b.WriteString("</xml>")
	return b.String()
}

// parseText parses a plain text reply.
func parseText(t *testing.T, body string) textReply {
	t.Helper()
	var r textReply
	if err := xmlUnmarshal(body, &r); err != nil {
		t.Fatalf("reply %q: %v", body, err)
	}
	return r
}

// openReply verifies and decrypts an encrypted reply with the test signer.
func openReply(t *testing.T, body string) textReply {
	t.Helper()
	var env encryptedReply
	if err := xmlUnmarshal(body, &env); err != nil {
		t.Fatalf("reply %q: %v", body, err)
	}
	if env.Encrypt == "" || env.TimeStamp == "" || env.Nonce == "" {
		t.Fatalf("incomplete envelope %q", body)
	}
	if want := sign(testToken, env.TimeStamp, env.Nonce, env.Encrypt); env.MsgSignature != want {
		t.Fatalf("reply MsgSignature %s, want %s", env.MsgSignature, want)
	}
	msg, appID, err := decrypt(t, testAESKey, env.Encrypt)
	if err != nil || appID != testAppID {
		t.Fatalf("decrypt reply: %v (appid %q)", err, appID)
	}
	return parseText(t, string(msg))
}
