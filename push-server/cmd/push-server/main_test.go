package main

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/scanlogin/scanlogin/internal/settings"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scanlogin/scanlogin/internal/browsertest"
	"github.com/scanlogin/scanlogin/internal/proctest"
	"github.com/scanlogin/scanlogin/internal/testlog"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

const (
	appID  = "wx0123456789abcdef"
	secret = "s3cret-app-secret"
)

// instance is a push-server started through run, with a fake WeChat.
type instance struct {
	t      *testing.T
	wechat *wechattest.Server
	http   string // host:port
	grpc   string
	client pushv1.PushServiceClient
	conn   *grpc.ClientConn
	prog   *proctest.Program
	logs   *testlog.Buffer
}

var listening = regexp.MustCompile(`msg=listening http=(\S+) grpc=(\S+)`)

func start(t *testing.T, env map[string]string) *instance {
	t.Helper()
	vars := map[string]string{
		"PUSH_HTTP_ADDR": "127.0.0.1:0",
		"PUSH_GRPC_ADDR": "127.0.0.1:0",
		"PUSH_API_ADDR":  "127.0.0.1:0",
		"WECHAT_APPID":   appID,
		"WECHAT_SECRET":  secret,
		"LOG_LEVEL":      "debug",
	}
	fake := wechattest.New(t, appID, secret)
	vars["WECHAT_API_BASE"], vars["WECHAT_MP_BASE"] = fake.URL(), fake.URL()
	for k, v := range env {
		vars[k] = v
	}
	prog, err := proctest.Run(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, nil, settings.Map(vars), stderr)
	}, listening)
	if err != nil {
		t.Fatalf("push-server: %v", err)
	}
	in := &instance{t: t, wechat: fake, http: prog.Listening[0], grpc: prog.Listening[1], prog: prog, logs: prog.Logs}
	cc, err := grpc.NewClient(in.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	in.conn, in.client = cc, pushv1.NewPushServiceClient(cc)
	t.Cleanup(func() {
		cc.Close()
		if err := in.stop(); err != nil {
			t.Errorf("push-server: %v", err)
		}
		if t.Failed() {
			t.Logf("push-server logs:\n%s", in.logs)
		}
	})
	return in
}

// stop cancels run's context and returns run's error.
func (in *instance) stop() error { return in.prog.Stop() }

func (in *instance) dial(query string, header http.Header) (*browsertest.Conn, *http.Response, error) {
	return browsertest.Dial(in.t, in.http, query, header)
}

func (in *instance) mustDial(query string) *browsertest.Conn {
	in.t.Helper()
	return browsertest.MustDial(in.t, in.http, query)
}

func (in *instance) ticket(m browsertest.Message) string {
	in.t.Helper()
	tk, ok := in.wechat.TicketForScene(m.Scene)
	if !ok {
		in.t.Fatalf("WeChat never created a QR code for scene %q", m.Scene)
	}
	return tk
}

func (in *instance) notify(m browsertest.Message, ev pushv1.Event, openid, eventID string) *pushv1.NotifyResponse {
	in.t.Helper()
	resp, err := in.client.Notify(context.Background(), &pushv1.NotifyRequest{
		Scene: m.Scene, Ticket: in.ticket(m), Event: ev,
		User: &pushv1.User{Openid: openid, Unionid: "u-" + openid}, EventId: eventID,
	})
	if err != nil {
		in.t.Fatalf("Notify: %v", err)
	}
	return resp
}

// waitConns waits until the server holds n connections.
func (in *instance) waitConns(n int) {
	in.t.Helper()
	browsertest.WaitConns(in.t, in.http, n)
}

func TestLoginDeliveredOnceWithVerifiableToken(t *testing.T) {
	in := start(t, map[string]string{"LOGIN_TTL": "90s"})
	b := in.mustDial("")
	qr := b.Expect("qrcode")

	if len(qr.Scene) < 22 || len(qr.Scene) > 64 || len(qr.Session) < 22 || len(qr.Resume) < 43 {
		t.Fatalf("weak identifiers: %+v", qr)
	}
	if qr.ExpiresIn != 90 || time.Until(time.UnixMilli(qr.ExpiresAt)) > 91*time.Second {
		t.Errorf("expires_in = %d, expires_at = %d", qr.ExpiresIn, qr.ExpiresAt)
	}
	codes := in.wechat.QRCodes()
	if len(codes) != 1 || codes[0].ActionName != "QR_STR_SCENE" || codes[0].ExpireSeconds != 90 || codes[0].Scene != qr.Scene {
		t.Fatalf("QR codes created: %+v", codes)
	}
	want := in.wechat.URL() + "/cgi-bin/showqrcode?ticket=" + url.QueryEscape(codes[0].Ticket)
	if qr.QRCodeURL != want || qr.ScanURL != codes[0].URL {
		t.Errorf("qrcode_url = %q, want %q; scan_url = %q", qr.QRCodeURL, want, qr.ScanURL)
	}
	if resp, err := http.Get(qr.QRCodeURL); err != nil || resp.StatusCode != 200 {
		t.Errorf("QR image: %v %v", resp, err)
	}

	res := in.notify(qr, pushv1.Event_EVENT_SUBSCRIBE, "oAlice", "ev-1")
	if res.Result != pushv1.Result_RESULT_DELIVERED || res.Duplicate {
		t.Fatalf("Notify = %v", res)
	}
	lg := b.Expect("login")
	b.ExpectClose(websocket.CloseNormalClosure)
	if lg.User["openid"] != "oAlice" || lg.User["unionid"] != "u-oAlice" {
		t.Errorf("login user = %v", lg.User)
	}

	// A retry of the same event is answered as the first; another event loses.
	if res := in.notify(qr, pushv1.Event_EVENT_SUBSCRIBE, "oAlice", "ev-1"); res.Result != pushv1.Result_RESULT_DELIVERED || !res.Duplicate {
		t.Errorf("duplicate Notify = %v", res)
	}
	if res := in.notify(qr, pushv1.Event_EVENT_SCAN, "oMallory", "ev-2"); res.Result != pushv1.Result_RESULT_ALREADY_USED {
		t.Errorf("second confirmation = %v", res)
	}

	// The token verifies against the published JWK set.
	resp, err := http.Get("http://" + in.http + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks: %v %+v", err, set)
	}
	tok, err := jwt.ParseSigned(lg.Token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Headers[0].KeyID != set.Keys[0].KeyID {
		t.Errorf("kid %q not in JWKS (%q)", tok.Headers[0].KeyID, set.Keys[0].KeyID)
	}
	var std jwt.Claims
	var extra struct {
		SID     string `json:"sid"`
		UnionID string `json:"unionid"`
	}
	if err := tok.Claims(set.Keys[0].Key, &std, &extra); err != nil {
		t.Fatalf("token does not verify with the JWKS: %v", err)
	}
	if err := std.Validate(jwt.Expected{Issuer: "scanlogin", Subject: "oAlice", Time: time.Now()}); err != nil {
		t.Errorf("claims: %v", err)
	}
	if extra.SID != qr.Session || extra.UnionID != "u-oAlice" || std.ID == "" || std.IssuedAt == nil {
		t.Errorf("claims sid=%q unionid=%q jti=%q", extra.SID, extra.UnionID, std.ID)
	}
	if exp := std.Expiry.Time().Sub(std.IssuedAt.Time()); exp != 5*time.Minute {
		t.Errorf("token lifetime %s, want TOKEN_TTL 5m", exp)
	}
}

func TestResumeReceivesWhatHappenedWhileAway(t *testing.T) {
	in := start(t, nil)
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	b.WS.Close()
	in.waitConns(0)

	// While away: a push is kept, then the scan is stored.
	push, err := in.client.Push(context.Background(), &pushv1.PushRequest{
		Target: &pushv1.PushRequest_SessionId{SessionId: qr.Session}, Event: "hint", Data: []byte(`{"n":1}`)})
	if err != nil || push.Delivered != 0 || !push.Stored {
		t.Fatalf("Push while away = %v %v", push, err)
	}
	if res := in.notify(qr, pushv1.Event_EVENT_SCAN, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify while away = %v", res)
	}

	b2 := in.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	m := b2.Expect("message")
	if m.Event != "hint" || string(m.Data) != `{"n":1}` {
		t.Errorf("missed push = %+v", m)
	}
	lg := b2.Expect("login")
	if lg.User["openid"] != "oBob" {
		t.Errorf("login user = %v", lg.User)
	}
	b2.ExpectClose(websocket.CloseNormalClosure)

	// Now that the login reached a browser, a retry says delivered.
	if res := in.notify(qr, pushv1.Event_EVENT_SCAN, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_DELIVERED || !res.Duplicate {
		t.Errorf("retry = %v", res)
	}

	// A resume took the login: the session is consumed, and another resume
	// gets no token but an error and a new session.
	b3 := in.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	if e := b3.Expect("error"); e.Code != "resume_failed" {
		t.Fatalf("second resume = %+v, want resume_failed", e)
	}
	if fresh := b3.Expect("qrcode"); fresh.Session == qr.Session {
		t.Fatalf("second resume reattached: %+v", fresh)
	}
}

// A stored login is handed to a resume only within min(60s, TOKEN_TTL/2)
// of the confirmation.
func TestResumeAfterWindowGetsNoToken(t *testing.T) {
	in := start(t, map[string]string{"TOKEN_TTL": "2s"}) // a window of 1s
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	b.WS.Close()
	in.waitConns(0)
	if res := in.notify(qr, pushv1.Event_EVENT_SCAN, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify while away = %v", res)
	}
	time.Sleep(1500 * time.Millisecond) // past the window

	b2 := in.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	if e := b2.Expect("error"); e.Code != "resume_failed" {
		t.Fatalf("resume after the window = %+v, want resume_failed", e)
	}
	if fresh := b2.Expect("qrcode"); fresh.Session == qr.Session {
		t.Fatalf("resume after the window reattached: %+v", fresh)
	}
}

// A second correct resume of a session takes it over: the connection that
// held it gets session_taken and close 4002; the new one gets the login.
func TestResumeDisplacesOtherTab(t *testing.T) {
	in := start(t, nil)
	tab1 := in.mustDial("")
	qr := tab1.Expect("qrcode")
	tab2 := in.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	if again := tab2.Expect("qrcode"); again.Session != qr.Session {
		t.Fatalf("resume = %+v", again)
	}
	if e := tab1.Expect("error"); e.Code != "session_taken" {
		t.Fatalf("displaced tab got %+v, want session_taken", e)
	}
	tab1.ExpectClose(4002)
	in.waitConns(1)
	if res := in.notify(qr, pushv1.Event_EVENT_SCAN, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("Notify = %v", res)
	}
	tab2.Expect("login")
	tab2.ExpectClose(websocket.CloseNormalClosure)
}

// A connection bound with a token is closed with 4001 when the token stops
// being accepted (exp plus the 5 s leeway); the token is then refused.
func TestTokenConnectionClosedAtExpiry(t *testing.T) {
	in := start(t, map[string]string{"TOKEN_TTL": "2s"})
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	in.notify(qr, pushv1.Event_EVENT_SCAN, "oCarol", "ev-1")
	tok := url.QueryEscape(b.Expect("login").Token)

	tab := in.mustDial("token=" + tok)
	_ = tab.WS.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		_, _, err := tab.WS.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 {
			t.Fatalf("token connection ended with %v, want close 4001", err)
		}
		break
	}
	if _, resp, err := in.dial("token="+tok, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token: %v %v, want 401", resp, err)
	}
}

func TestResumeWaitingSessionKeepsQRCode(t *testing.T) {
	in := start(t, nil)
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	b.WS.Close()
	in.waitConns(0)
	b2 := in.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	again := b2.Expect("qrcode")
	if again.Scene != qr.Scene || again.QRCodeURL != qr.QRCodeURL || again.Session != qr.Session {
		t.Fatalf("resume gave another QR code: %+v vs %+v", again, qr)
	}
	if n := len(in.wechat.QRCodes()); n != 1 {
		t.Errorf("resume created a QR code (%d in all)", n)
	}
	if res := in.notify(qr, pushv1.Event_EVENT_SCAN, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("Notify = %v", res)
	}
	b2.Expect("login")

	// A wrong pair gets an error and a new session.
	b3 := in.mustDial(url.Values{"session": {qr.Session}, "resume": {"guess"}}.Encode())
	if e := b3.Expect("error"); e.Code != "resume_failed" {
		t.Errorf("error = %+v", e)
	}
	if fresh := b3.Expect("qrcode"); fresh.Session == qr.Session || fresh.Scene == qr.Scene {
		t.Errorf("bad resume reattached: %+v", fresh)
	}
}

func TestPushToUserConnections(t *testing.T) {
	in := start(t, nil)
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	in.notify(qr, pushv1.Event_EVENT_SCAN, "oCarol", "ev-1")
	tok := b.Expect("login").Token

	tab1 := in.mustDial("token=" + url.QueryEscape(tok))
	tab2 := in.mustDial("token=" + url.QueryEscape(tok))
	other := in.mustDial("")
	other.Expect("qrcode")

	// The push may race the registration of the tabs: retry until both count.
	deadline := time.Now().Add(5 * time.Second)
	var resp *pushv1.PushResponse
	for {
		var err error
		resp, err = in.client.Push(context.Background(), &pushv1.PushRequest{
			Target: &pushv1.PushRequest_Openid{Openid: "oCarol"}, Event: "order.paid", Data: []byte(`[1,2]`)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Delivered == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp.Delivered != 2 {
		t.Fatalf("Push delivered to %d connections, want 2", resp.Delivered)
	}
	for _, tab := range []*browsertest.Conn{tab1, tab2} {
		for {
			m := tab.Expect("message")
			if m.Event == "order.paid" && string(m.Data) == "[1,2]" {
				break
			}
		}
	}
	_, resp2, err := in.dial("token=forged.token.value", nil)
	if err == nil || resp2 == nil || resp2.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged token: %v %v", resp2, err)
	}
}

func TestBadInputGetsClearAnswers(t *testing.T) {
	in := start(t, nil)
	bystander := in.mustDial("")
	bystander.Expect("qrcode")

	t.Run("oversized frame closes 1009", func(t *testing.T) {
		b := in.mustDial("")
		b.Expect("qrcode")
		// The server may stop reading before the whole frame is sent.
		_ = b.WS.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 64<<10)+`"}`))
		b.ExpectClose(websocket.CloseMessageTooBig)
	})
	t.Run("binary frame closes 1003", func(t *testing.T) {
		b := in.mustDial("")
		b.Expect("qrcode")
		if err := b.WS.WriteMessage(websocket.BinaryMessage, []byte{1, 2}); err != nil {
			t.Fatal(err)
		}
		b.ExpectClose(websocket.CloseUnsupportedData)
	})
	t.Run("bad frames get errors, then 1008", func(t *testing.T) {
		b := in.mustDial("")
		b.Expect("qrcode")
		b.Send(`{"type":"ping"}`)
		b.Expect("pong")
		b.Send(`{"type":"dance"}`) // an unknown type is a bad frame too
		if e := b.Expect("error"); e.Code != "bad_request" || e.Message != "unknown message type" {
			t.Errorf("unknown type: %+v", e)
		}
		for i := range 3 {
			b.Send(`not json`)
			if e := b.Expect("error"); e.Code != "bad_request" {
				t.Errorf("bad frame %d: %+v", i, e)
			}
		}
		b.Send(`{`)
		b.ExpectClose(websocket.ClosePolicyViolation)
	})
	t.Run("a flood of frames closes with 1008", func(t *testing.T) {
		for _, send := range map[string]func(*browsertest.Conn) error{
			"JSON pings": func(b *browsertest.Conn) error {
				return b.WS.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
			},
			"WebSocket pings": func(b *browsertest.Conn) error {
				return b.WS.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
			},
		} {
			b := in.mustDial("")
			b.Expect("qrcode")
			for range 1000 {
				if send(b) != nil {
					break
				}
			}
			b.ExpectClose(websocket.ClosePolicyViolation)
		}
		if !strings.Contains(in.logs.String(), "frame budget") {
			t.Error("no log line for a connection over its frame budget")
		}
	})
	t.Run("bad query", func(t *testing.T) {
		id := strings.Repeat("A", 22) // the shape of a session id
		for _, tc := range []struct {
			query string
			code  int
			msg   string
		}{
			{"session=" + id, http.StatusBadRequest, "session and resume go together"},
			{"resume=r", http.StatusBadRequest, "session and resume go together"},
			{"token=" + strings.Repeat("t", 100<<10), http.StatusBadRequest, "token too long"},
			{"token=" + strings.Repeat("t", 100<<10) + "&session=" + id, http.StatusBadRequest, "token too long"},
			{"session=nope&resume=r", http.StatusBadRequest, "session is not a session id"},
			{"session=" + url.QueryEscape(id[:21]+"\n") + "&resume=r", http.StatusBadRequest, "session is not a session id"},
			{"session=" + id + "&resume=" + strings.Repeat("r", 65), http.StatusBadRequest, "resume too long"},
			{"token=forged.token.value", http.StatusUnauthorized, "invalid or expired token"},
		} {
			_, resp, err := in.dial(tc.query, nil)
			if err == nil || resp == nil {
				t.Errorf("%.60s: upgraded (%v)", tc.query, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || strings.TrimSpace(string(body)) != tc.msg {
				t.Errorf("%.60s: %d %q, want %d %q", tc.query, resp.StatusCode, body, tc.code, tc.msg)
			}
		}
		// A well-formed pair that matches nothing is the contract's bad pair:
		// an error, then a new session.
		b := in.mustDial("session=" + id + "&resume=r")
		if e := b.Expect("error"); e.Code != "resume_failed" {
			t.Errorf("unknown pair: %+v", e)
		}
		b.Expect("qrcode")
	})
	t.Run("cross-site origin", func(t *testing.T) {
		_, resp, err := in.dial("", http.Header{"Origin": {"https://evil.example"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: %v %v", resp, err)
		}
		b, _, err := in.dial("", http.Header{"Origin": {"http://" + in.http}})
		if err != nil {
			t.Fatalf("same-host origin refused: %v", err)
		}
		b.Expect("qrcode")
	})
	t.Run("gRPC arguments", func(t *testing.T) {
		ctx := context.Background()
		_, err := in.client.Notify(ctx, &pushv1.NotifyRequest{Scene: "x"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("empty Notify: %v", err)
		}
		_, err = in.client.Push(ctx, &pushv1.PushRequest{Target: &pushv1.PushRequest_SessionId{SessionId: strings.Repeat("A", 22)}, Event: "e"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("Push to unknown session: %v", err)
		}
		for _, tc := range []struct {
			req  *pushv1.PushRequest
			want string
		}{
			{&pushv1.PushRequest{Target: &pushv1.PushRequest_SessionId{SessionId: "nope"}, Event: "e"}, "session_id"},
			{&pushv1.PushRequest{Target: &pushv1.PushRequest_Openid{Openid: "o\nX"}, Event: "e"}, "openid"},
			{&pushv1.PushRequest{Target: &pushv1.PushRequest_Openid{Openid: "o"}, Event: "a b"}, "event"},
		} {
			_, err := in.client.Push(ctx, tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("Push %v: %v, want InvalidArgument naming %s", tc.req, err, tc.want)
			}
		}
		for _, tc := range []struct {
			scene, openid, unionid, want string
		}{
			{"s\n", "o", "", "scene"},
			{"s", "o\nX", "", "user.openid"},
			{"s", "o", "u\nX", "user.unionid"},
		} {
			_, err := in.client.Notify(ctx, &pushv1.NotifyRequest{Scene: tc.scene, Ticket: "t", Event: pushv1.Event_EVENT_SCAN,
				User: &pushv1.User{Openid: tc.openid, Unionid: tc.unionid}, EventId: "e"})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("Notify %q %q %q: %v, want InvalidArgument naming %s", tc.scene, tc.openid, tc.unionid, err, tc.want)
			}
		}
		_, err = in.client.Push(ctx, &pushv1.PushRequest{Target: &pushv1.PushRequest_Openid{Openid: "o"}, Event: "e", Data: []byte("{oops")})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Push with bad JSON: %v", err)
		}
		res, err := in.client.Notify(ctx, &pushv1.NotifyRequest{Scene: "unknown", Ticket: "t", Event: pushv1.Event_EVENT_SCAN,
			User: &pushv1.User{Openid: "o"}, EventId: "e"})
		if err != nil || res.Result != pushv1.Result_RESULT_NOT_FOUND {
			t.Errorf("Notify unknown scene: %v %v", res, err)
		}
	})
	t.Run("ticket mismatch leaves the session", func(t *testing.T) {
		b := in.mustDial("")
		qr := b.Expect("qrcode")
		res, err := in.client.Notify(context.Background(), &pushv1.NotifyRequest{Scene: qr.Scene, Ticket: "forged",
			Event: pushv1.Event_EVENT_SCAN, User: &pushv1.User{Openid: "oEve"}, EventId: "e1"})
		if err != nil || res.Result != pushv1.Result_RESULT_TICKET_MISMATCH {
			t.Fatalf("forged ticket: %v %v", res, err)
		}
		if res := in.notify(qr, pushv1.Event_EVENT_SCAN, "oDan", "e1"); res.Result != pushv1.Result_RESULT_DELIVERED {
			t.Fatalf("real scan after a forged one = %v", res)
		}
		if lg := b.Expect("login"); lg.User["openid"] != "oDan" {
			t.Fatalf("login went to %v", lg.User)
		}
	})

	// Through all of it, the bystander was served.
	if res := in.notify(bystanderQR(t, bystander, in), pushv1.Event_EVENT_SCAN, "oBy", "by-1"); res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("bystander Notify = %v", res)
	}
	bystander.Expect("login")
}

func TestConnectionsPerIP(t *testing.T) {
	in := start(t, map[string]string{"LIMIT_CONNS_PER_IP": "2"})
	for range 2 {
		in.mustDial("").Expect("qrcode")
	}
	_, resp, err := in.dial("", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("3rd connection from one IP: %v %v", resp, err)
	}
}

// TestClientIPOnlyFromXForwardedFor: behind a trusted proxy the client is
// named by X-Forwarded-For alone; an X-Real-IP header (which gin would
// believe by default) cannot spread one client over many per-IP limits.
func TestClientIPOnlyFromXForwardedFor(t *testing.T) {
	in := start(t, map[string]string{"LIMIT_CONNS_PER_IP": "1", "TRUSTED_PROXIES": "127.0.0.1"})
	b, _, err := in.dial("", http.Header{"X-Real-Ip": {"198.51.100.1"}})
	if err != nil {
		t.Fatal(err)
	}
	b.Expect("qrcode")
	_, resp, err := in.dial("", http.Header{"X-Real-Ip": {"198.51.100.2"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a second X-Real-IP from the proxy's address was counted as another client: %v %v", resp, err)
	}
	// X-Forwarded-For from the trusted proxy does name another client.
	b2, _, err := in.dial("", http.Header{"X-Forwarded-For": {"198.51.100.3"}})
	if err != nil {
		t.Fatalf("X-Forwarded-For from a trusted proxy: %v", err)
	}
	b2.Expect("qrcode")
}

// bystanderQR asks the bystander's connection for a fresh code.
func bystanderQR(t *testing.T, b *browsertest.Conn, in *instance) browsertest.Message {
	t.Helper()
	b.Send(`{"type":"refresh"}`)
	return b.Expect("qrcode")
}

func TestQRRateLimitPerIP(t *testing.T) {
	in := start(t, map[string]string{"LIMIT_QR_PER_IP": "2/h"})
	b := in.mustDial("")
	b.Expect("qrcode")
	b.Send(`{"type":"refresh"}`)
	b.Expect("qrcode")
	b.Send(`{"type":"refresh"}`)
	if e := b.Expect("error"); e.Code != "rate_limited" {
		t.Fatalf("3rd code: %+v", e)
	}
	b2 := in.mustDial("")
	if e := b2.Expect("error"); e.Code != "rate_limited" {
		t.Fatalf("new connection over the limit: %+v", e)
	}
	b2.ExpectClose(websocket.CloseTryAgainLater)
	if n := len(in.wechat.QRCodes()); n != 2 {
		t.Errorf("WeChat was asked for %d codes, want 2", n)
	}
}

func TestExpiryAndRefresh(t *testing.T) {
	in := start(t, map[string]string{"LOGIN_TTL": "1s", "PUSH_MAX_REFRESH": "1"})
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	b.Expect("expired")
	if res := in.notify(qr, pushv1.Event_EVENT_SCAN, "oLate", "e1"); res.Result != pushv1.Result_RESULT_EXPIRED {
		t.Errorf("late scan = %v", res)
	}
	b.Send(`{"type":"refresh"}`)
	qr2 := b.Expect("qrcode")
	if qr2.Scene == qr.Scene || qr2.Session == qr.Session {
		t.Fatal("refresh reused the old session")
	}
	b.Send(`{"type":"refresh"}`)
	for {
		f := b.Read()
		if f.Type == "expired" {
			continue
		}
		if f.Type != "error" || f.Code != "refresh_limit" {
			t.Fatalf("over the refresh limit: %+v", f)
		}
		break
	}
}

func TestWeChatFailureIsUpstreamUnavailable(t *testing.T) {
	in := start(t, nil)
	in.wechat.FailNext("/cgi-bin/qrcode/create", 45009, 1)
	b := in.mustDial("")
	if e := b.Expect("error"); e.Code != "upstream_unavailable" {
		t.Fatalf("error = %+v", e)
	}
	b.ExpectClose(websocket.CloseTryAgainLater)
	b2 := in.mustDial("")
	b2.Expect("qrcode")
	in.waitConns(1)

	resp, err := http.Get("http://" + in.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`scanlogin_wechat_errors_total{errcode="45009"} 1`,
		`scanlogin_qrcodes_total{result="error"} 1`,
		`scanlogin_qrcodes_total{result="ok"} 1`,
		`scanlogin_ws_connections 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(in.logs.String(), secret) || strings.Contains(in.logs.String(), in.wechat.CurrentToken()) {
		t.Error("a secret or access token was logged")
	}
}

func TestGRPCAuth(t *testing.T) {
	in := start(t, map[string]string{"GRPC_AUTH_TOKEN": "internal-token"})
	req := &pushv1.PushRequest{Target: &pushv1.PushRequest_Openid{Openid: "o"}, Event: "e"}
	for name, md := range map[string]metadata.MD{
		"none":  nil,
		"wrong": metadata.Pairs("authorization", "Bearer internal-tokem"),
		"bare":  metadata.Pairs("authorization", "internal-token"),
	} {
		ctx := metadata.NewOutgoingContext(context.Background(), md)
		if _, err := in.client.Push(ctx, req); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want Unauthenticated", name, err)
		}
	}
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer internal-token"))
	if _, err := in.client.Push(ctx, req); err != nil {
		t.Errorf("right token: %v", err)
	}
	hc, err := healthpb.NewHealthClient(in.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without token: %v %v", hc, err)
	}
	if strings.Contains(in.logs.String(), "internal-token") {
		t.Error("GRPC_AUTH_TOKEN was logged")
	}
}

func TestGracefulShutdownClosesWith1001(t *testing.T) {
	in := start(t, nil)
	b := in.mustDial("")
	b.Expect("qrcode")
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + in.http + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	stopped := make(chan error, 1)
	go func() { stopped <- in.stop() }()
	b.ExpectClose(websocket.CloseGoingAway)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown hung")
	}
}

func TestBadConfigNamesTheSetting(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WECHAT_SECRET": "x"}, "WECHAT_APPID: required"},
		{map[string]string{"WECHAT_APPID": "a", "WECHAT_SECRET": "x", "LOGIN_TTL": "soon"}, "LOGIN_TTL"},
		{map[string]string{"WECHAT_APPID": "a", "WECHAT_SECRET": "x", "LIMIT_QR_PER_IP": "5/d"}, "LIMIT_QR_PER_IP"},
		{map[string]string{"WECHAT_APPID": "a", "WECHAT_SECRET": "x", "ALLOWED_ORIGINS": "example.com"}, "ALLOWED_ORIGINS"},
		{map[string]string{"WECHAT_APPID": "a", "WECHAT_SECRET": "x", "TOKEN_KEY_FILE": "/nonexistent/key.pem"}, "TOKEN_KEY_FILE"},
	} {
		err := run(context.Background(), nil, settings.Map(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v: err = %v, want it to name %s", tc.env, err, tc.want)
		}
	}
}
