package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/internal/browsertest"
	"github.com/scanlogin/scanlogin/internal/redistest"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// miniFake is the fake WeChat with a record of the Mini Program codes it
// made. Its account serves both flows: MINIPROGRAM_APPID is appID.
type miniFake struct {
	*wechattest.Server
	mu  sync.Mutex
	ids []string // of the codes made, in order
}

func newMiniFake(t *testing.T, opts ...wechattest.Option) *miniFake {
	f := &miniFake{}
	opts = append(opts, wechattest.WithMiniURL(func(id string) string {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ids = append(f.ids, id)
		return "https://mp.weixin.qq.com/a/" + id
	}))
	f.Server = wechattest.New(t, appID, secret, opts...)
	return f
}

// codes returns the Mini Program codes WeChat made, oldest first.
func (f *miniFake) codes() []wechattest.WxaCode {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []wechattest.WxaCode
	for _, id := range f.ids {
		c, _ := f.WxaCodeByID(id)
		out = append(out, c)
	}
	return out
}

// startOn starts an instance on the fake f.
func startOn(t *testing.T, f *miniFake, env map[string]string) *instance {
	t.Helper()
	return start(t, with(env, "WECHAT_API_BASE", f.URL(), "WECHAT_MP_BASE", f.URL()))
}

// qrMsg is a qrcode message with its flow.
type qrMsg struct {
	browsertest.Message
	Flow string `json:"flow"`
}

// expectQR reads the next message, which must be a qrcode message.
func expectQR(t *testing.T, c *browsertest.Conn) qrMsg {
	t.Helper()
	_ = c.WS.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.WS.ReadMessage()
	var m qrMsg
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil || m.Type != "qrcode" {
		t.Fatalf("got %s (%v), want a qrcode message", data, err)
	}
	return m
}

// miniOnly is the environment of a deployment with a Mini Program and no
// official account; its page is not published, as in development.
var miniOnly = map[string]string{
	"WECHAT_APPID":       "",
	"WECHAT_SECRET":      "",
	"MINIPROGRAM_APPID":  appID,
	"MINIPROGRAM_SECRET": secret,
	"MINIPROGRAM_ENV":    "develop",
}

// bothFlows enables both flows on one account.
var bothFlows = map[string]string{"MINIPROGRAM_APPID": appID, "MINIPROGRAM_SECRET": secret, "MINIPROGRAM_ENV": "trial"}

func with(base map[string]string, more ...string) map[string]string {
	env := map[string]string{}
	for k, v := range base {
		env[k] = v
	}
	for i := 0; i+1 < len(more); i += 2 {
		env[more[i]] = more[i+1]
	}
	return env
}

// wxaScene is a Mini Program scene as the contract has it.
var wxaScene = regexp.MustCompile(`^[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{22,32}$`)

// checkMiniCode checks a miniprogram qrcode frame against the code WeChat
// made, fetches its image from in and returns the bytes.
func checkMiniCode(t *testing.T, in *instance, f *miniFake, qr qrMsg) []byte {
	t.Helper()
	if qr.Flow != "miniprogram" || !wxaScene.MatchString(qr.Scene) || qr.ScanURL != "" ||
		!strings.HasPrefix(qr.QRCodeURL, "/wxacode/") {
		t.Fatalf("miniprogram qrcode frame: %+v", qr)
	}
	var made *wechattest.WxaCode
	for _, c := range f.codes() {
		if c.Scene == qr.Scene {
			made = &c
		}
	}
	if made == nil || made.Page != "pages/login/login" {
		t.Fatalf("WeChat made no code with scene %q and page pages/login/login: %+v", qr.Scene, f.codes())
	}
	return fetchImage(t, in, qr.QRCodeURL)
}

// fetchImage gets a code's image from in and checks the answer's headers.
func fetchImage(t *testing.T, in *instance, path string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + in.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	img, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" ||
		!bytes.HasPrefix(img, []byte{0xff, 0xd8, 0xff}) || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("GET %s: %s %v, %d bytes starting %q", path, resp.Status, resp.Header, len(img), img[:min(len(img), 4)])
	}
	cc := resp.Header.Get("Cache-Control")
	age, err := strconv.Atoi(strings.TrimPrefix(cc, "private, max-age="))
	if err != nil || age <= 0 || age > 130 {
		t.Errorf("Cache-Control %q, want private for the session's time left", cc)
	}
	return img
}

func imageStatus(t *testing.T, in *instance, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + in.http + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// loginByMiniProgram scans the code as a Mini Program user through in's
// Notify and confirms.
func loginByMiniProgram(t *testing.T, in *instance, qr qrMsg, openid string) {
	t.Helper()
	ctx := context.Background()
	user := &pushv1.User{Openid: openid}
	res, err := in.client.Notify(ctx, &pushv1.NotifyRequest{
		Scene: qr.Scene, Event: pushv1.Event_EVENT_SCANNED, User: user, EventId: "scan-" + openid})
	if err != nil || res.Result != pushv1.Result_RESULT_DELIVERED || res.Confirmation.GetSecret() == "" ||
		res.Confirmation.GetFlow() != "miniprogram" {
		t.Fatalf("scan: %v %v", res, err)
	}
	res, err = in.client.Notify(ctx, &pushv1.NotifyRequest{
		Scene: qr.Scene, Event: pushv1.Event_EVENT_CONFIRMED, User: user, EventId: "confirm-" + openid,
		Confirm: res.Confirmation.GetSecret()})
	if err != nil || res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("confirm: %v %v", res, err)
	}
}

func TestMiniProgramOnlyDeployment(t *testing.T) {
	f := newMiniFake(t)
	in := startOn(t, f, with(miniOnly, "LOGIN_TTL", "120s"))

	b := in.mustDial("")
	qr := expectQR(t, b)
	checkMiniCode(t, in, f, qr)
	if n := f.Calls(wechattest.PathQRCreate); n != 0 {
		t.Errorf("%d official-account QR codes made", n)
	}

	// No official account: its flow is refused before the upgrade.
	for query, want := range map[string]string{"flow=oa": "flow not enabled", "flow=wechat": "unknown flow", "flow=": "unknown flow"} {
		_, resp, err := in.dial(query, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("/ws?%s: %v %v, want 400", query, resp, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(body)) != want {
			t.Errorf("/ws?%s: %q, want %q", query, body, want)
		}
	}

	// Unknown and malformed keys are not found.
	for _, p := range []string{"/wxacode/AAAAAAAAAAAAAAAAAAAAAA", "/wxacode/..%2F..%2Fetc", "/wxacode/" + strings.Repeat("A", 200)} {
		if st := imageStatus(t, in, p); st != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, st)
		}
	}

	loginByMiniProgram(t, in, qr, "oMiniAlice")
	b.Expect("scanned")
	lg := b.Expect("login")
	b.ExpectClose(websocket.CloseNormalClosure)
	if lg.User["openid"] != "oMiniAlice" {
		t.Errorf("login user = %v", lg.User)
	}
}

func TestBothFlows(t *testing.T) {
	f := newMiniFake(t)
	in := startOn(t, f, bothFlows)

	// Without flow: the first of LOGIN_FLOWS, oa by default.
	oa := expectQR(t, in.mustDial(""))
	if oa.Flow != "oa" || !strings.Contains(oa.QRCodeURL, "/cgi-bin/showqrcode?ticket=") || len(f.codes()) != 0 {
		t.Fatalf("default flow: %+v", oa)
	}
	b := in.mustDial("flow=miniprogram")
	qr := expectQR(t, b)
	img := checkMiniCode(t, in, f, qr)

	// refresh keeps the flow: a new code, a new image.
	b.Send(`{"type":"refresh"}`)
	qr2 := expectQR(t, b)
	if qr2.Scene == qr.Scene || qr2.QRCodeURL == qr.QRCodeURL {
		t.Fatalf("refresh reused the code: %+v", qr2)
	}
	checkMiniCode(t, in, f, qr2)
	if len(f.codes()) != 2 || f.Calls(wechattest.PathQRCreate) != 1 {
		t.Errorf("codes made: %d mini, %d oa; want 2 and 1", len(f.codes()), f.Calls(wechattest.PathQRCreate))
	}
	// The old code's image stays until its time is up: a page may still
	// show it; its session is over either way.
	if got := fetchImage(t, in, qr.QRCodeURL); !bytes.Equal(got, img) {
		t.Error("the first image changed")
	}

	// Resume keeps the session's flow, whatever the query says.
	b.WS.Close()
	in.waitConns(1)
	b2 := in.mustDial(url.Values{"session": {qr2.Session}, "resume": {qr2.Resume}, "flow": {"oa"}}.Encode())
	if back := expectQR(t, b2); back.Flow != "miniprogram" || back.Scene != qr2.Scene {
		t.Fatalf("resumed: %+v", back)
	}
	b2.Send(`{"type":"refresh"}`)
	if qr3 := expectQR(t, b2); qr3.Flow != "miniprogram" {
		t.Fatalf("refresh after resume: %+v", qr3)
	}

	// LOGIN_FLOWS orders the default.
	in2 := startOn(t, f, with(bothFlows, "LOGIN_FLOWS", "miniprogram,oa"))
	if qr := expectQR(t, in2.mustDial("")); qr.Flow != "miniprogram" {
		t.Fatalf("LOGIN_FLOWS=miniprogram,oa default: %+v", qr)
	}
	if qr := expectQR(t, in2.mustDial("flow=oa")); qr.Flow != "oa" {
		t.Fatalf("flow=oa: %+v", qr)
	}
}

// TestMiniProgramCodeSettings: check_path is asked only for release codes,
// whose page must be published; WeChat's refusal reaches the browser as a
// clear error, not as an image.
func TestMiniProgramCodeSettings(t *testing.T) {
	f := newMiniFake(t, wechattest.WithWxaPages("pages/index/index"))
	release := startOn(t, f, with(miniOnly, "MINIPROGRAM_ENV", "release"))
	b := release.mustDial("")
	if e := b.Expect("error"); e.Code != "miniprogram_misconfigured" {
		t.Fatalf("release code of an unpublished page: %+v", e)
	}
	b.ExpectClose(websocket.CloseTryAgainLater)
	if !strings.Contains(release.logs.String(), "errcode=41030") {
		t.Error("no log line names errcode 41030")
	}

	published := startOn(t, f, with(miniOnly, "MINIPROGRAM_ENV", "release", "MINIPROGRAM_PAGE", "pages/index/index"))
	if qr := expectQR(t, published.mustDial("")); qr.Flow != "miniprogram" {
		t.Fatalf("release code of a published page: %+v", qr)
	}
}

func TestMiniProgramWeChatErrors(t *testing.T) {
	for _, tc := range []struct {
		errcode, n int
		want       string // error code; "" for a qrcode
	}{
		{wechattest.ErrInvalidPage, 1, "miniprogram_misconfigured"},
		{wechattest.ErrInvalidScene, 1, "miniprogram_misconfigured"},
		{wechattest.ErrInvalidSceneLength, 1, "miniprogram_misconfigured"},
		{wechattest.ErrDailyQuota, 1, "rate_limited"},
		{wechattest.ErrSystem, 1, "upstream_unavailable"},
		{wechattest.ErrInvalidCredential, 1, ""}, // a fresh token, one retry
		{wechattest.ErrInvalidCredential, 2, "upstream_unavailable"},
	} {
		t.Run(strconv.Itoa(tc.errcode)+"x"+strconv.Itoa(tc.n), func(t *testing.T) {
			f := newMiniFake(t)
			in := startOn(t, f, miniOnly)
			b := in.mustDial("")
			expectQR(t, b)
			f.FailNext(wechattest.PathWxaCode, tc.errcode, tc.n)
			b.Send(`{"type":"refresh"}`)
			if tc.want == "" {
				checkMiniCode(t, in, f, expectQR(t, b))
				return
			}
			got := b.Read()
			if got.Type != "error" || got.Code != tc.want {
				t.Fatalf("after %d: %+v, want error %s", tc.errcode, got, tc.want)
			}
			// The connection stays after a refresh; the next one works.
			b.Send(`{"type":"refresh"}`)
			checkMiniCode(t, in, f, expectQR(t, b))

			// One failed creation (a retry inside it is not another).
			metric := `scanlogin_wechat_errors_total{errcode="` + strconv.Itoa(tc.errcode) + `"} 1`
			if body := in.metrics(); !strings.Contains(body, metric) {
				t.Errorf("metrics lack %s", metric)
			}
			if n := strings.Count(in.logs.String(), "errcode="+strconv.Itoa(tc.errcode)); n != 1 {
				t.Errorf("%d log lines name the errcode, want 1:\n%s", n, in.logs)
			}
			if strings.Contains(in.logs.String(), f.CurrentToken()) || strings.Contains(in.logs.String(), secret) {
				t.Error("a secret or access token was logged")
			}
		})
	}
}

func (in *instance) metrics() string {
	in.t.Helper()
	resp, err := http.Get("http://" + in.http + "/metrics")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestClusterMiniProgramCode: the code is made once, on the instance that
// holds the browser; its image is served by the other instance too, and
// the scan and confirmation entering there log the browser in.
func TestClusterMiniProgramCode(t *testing.T) {
	rs := redistest.Start(t)
	f := newMiniFake(t)
	env := with(miniOnly, "REDIS_URL", rs.URL(), "LOGIN_TTL", "60s", "LOG_LEVEL", "info")
	a, b := startOn(t, f, env), startOn(t, f, env)

	br := a.mustDial("")
	qr := expectQR(t, br)
	img := checkMiniCode(t, a, f, qr)
	if got := fetchImage(t, b, qr.QRCodeURL); !bytes.Equal(got, img) {
		t.Fatal("the other instance serves other bytes")
	}
	if n := f.Calls(wechattest.PathWxaCode); n != 1 {
		t.Errorf("WeChat was asked for %d codes, want 1", n)
	}

	// The image lives in Redis for the session's time and a little more.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { rdb.Close() })
	k := "scanlogin:wxacode:" + strings.TrimPrefix(qr.QRCodeURL, "/wxacode/")
	if ttl := rdb.TTL(context.Background(), k).Val(); ttl <= 50*time.Second || ttl > 70*time.Second {
		t.Errorf("TTL of %s = %s, want LOGIN_TTL plus a margin", k, ttl)
	}
	// One access token, shared through Redis under the Mini Program's AppID.
	if n := f.TokenFetches(); n != 1 {
		t.Errorf("token fetches = %d, want 1", n)
	}
	if rdb.Exists(context.Background(), "scanlogin:wechat:token:"+appID).Val() != 1 {
		t.Error("no shared token under the Mini Program's AppID")
	}

	loginByMiniProgram(t, b, qr, "oMiniBob")
	br.Expect("scanned")
	if lg := br.Expect("login"); lg.User["openid"] != "oMiniBob" {
		t.Errorf("login = %+v", lg)
	}

	// Gone from every instance once Redis forgets it.
	rdb.Del(context.Background(), k)
	for _, in := range []*instance{a, b} {
		if st := imageStatus(t, in, qr.QRCodeURL); st != http.StatusNotFound {
			t.Errorf("deleted image: %d, want 404", st)
		}
	}
}
