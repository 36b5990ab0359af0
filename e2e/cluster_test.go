package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/scanlogin/scanlogin/internal/browsertest"
	"github.com/scanlogin/scanlogin/internal/proctest"
	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/internal/testkey"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// pushServer is a push-server process on ports of its own, one of the
// instances of a cluster, with WeChat faked in the test's process.
type pushServer struct {
	t          *testing.T
	prog       *proctest.Program
	killed     bool
	wechat     *wechattest.Server
	http, grpc string
	client     pushv1.PushServiceClient
}

// startPushServer runs push-server against the fake WeChat, with env
// added to its settings.
func startPushServer(t *testing.T, fake *wechattest.Server, env ...string) *pushServer {
	t.Helper()
	vars := append([]string{"PUSH_HTTP_ADDR=" + host + ":0", "PUSH_GRPC_ADDR=" + host + ":0", "PUSH_API_ADDR=" + host + ":0",
		"WECHAT_APPID=" + devAppID, "WECHAT_SECRET=" + devSecret,
		"WECHAT_API_BASE=" + fake.URL(), "WECHAT_MP_BASE=" + fake.URL(), "LOG_LEVEL=info"}, env...)
	p, err := startProgram(t, "push-server", vars)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(p.Listening[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ps := &pushServer{t: t, prog: p, wechat: fake, http: p.Listening[0], grpc: p.Listening[1],
		client: pushv1.NewPushServiceClient(cc)}
	t.Cleanup(func() {
		cc.Close()
		if err := p.Stop(); err != nil && !ps.killed {
			t.Errorf("push-server on SIGTERM: %v", err)
		}
		if t.Failed() {
			t.Logf("push-server %s logs:\n%s", ps.http, p.Logs)
		}
	})
	return ps
}

// kill ends the process with SIGKILL, as a crash would.
func (ps *pushServer) kill() {
	ps.killed = true
	ps.prog.Kill()
}

func (ps *pushServer) dial(query string) (*browsertest.Conn, *http.Response, error) {
	return browsertest.Dial(ps.t, ps.http, query, nil)
}

func (ps *pushServer) mustDial(query string) *browsertest.Conn {
	ps.t.Helper()
	return browsertest.MustDial(ps.t, ps.http, query)
}

// notify reports the scan of qr's code by openid, as wechat-callback does.
func (ps *pushServer) notify(qr browsertest.Message, ev pushv1.Event, openid, eventID string) *pushv1.NotifyResponse {
	ps.t.Helper()
	ticket, ok := ps.wechat.TicketForScene(qr.Scene)
	if !ok {
		ps.t.Fatalf("WeChat never created a QR code for scene %q", qr.Scene)
	}
	resp, err := ps.client.Notify(context.Background(), &pushv1.NotifyRequest{Scene: qr.Scene, Ticket: ticket,
		Event: ev, User: &pushv1.User{Openid: openid}, EventId: eventID})
	if err != nil {
		ps.t.Fatalf("Notify: %v", err)
	}
	return resp
}

// waitReady waits until /readyz answers want.
func (ps *pushServer) waitReady(want int) {
	ps.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + ps.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			ps.t.Fatalf("/readyz never answered %d", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startCluster starts n instances sharing one Redis, one WeChat account and
// one token key.
func startCluster(t *testing.T, n int) ([]*pushServer, *redistest.Server, *wechattest.Server) {
	t.Helper()
	rs := redistest.Start(t)
	fake := wechattest.New(t, devAppID, devSecret)
	keyFile, _ := testkey.Write(t)
	var ins []*pushServer
	for range n {
		ins = append(ins, startPushServer(t, fake, "REDIS_URL="+rs.URL(), "TOKEN_KEY_FILE="+keyFile))
	}
	return ins, rs, fake
}

// resign returns token with its subject replaced by sub, signed again
// with key: a token the instances' own key vouches for.
func resign(t *testing.T, token, sub string, key ed25519.PrivateKey) string {
	t.Helper()
	enc := base64.RawURLEncoding
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS", token)
	}
	raw, err := enc.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = sub
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := parts[0] + "." + enc.EncodeToString(payload)
	return signed + "." + enc.EncodeToString(ed25519.Sign(key, []byte(signed)))
}

func TestClusterLoginAcrossInstances(t *testing.T) {
	ins, _, fake := startCluster(t, 2)
	a, b := ins[0], ins[1]
	br := a.mustDial("")
	qr := br.Expect("qrcode")

	// The event enters the instance that does not hold the browser.
	res := b.notify(qr, pushv1.Event_EVENT_SCAN, "oAlice", "ev-1")
	if res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("Notify on the other instance = %v", res)
	}
	lg := br.Expect("login")
	br.ExpectClose(websocket.CloseNormalClosure)
	if lg.User["openid"] != "oAlice" {
		t.Fatalf("login = %+v", lg)
	}
	if fake.TokenFetches() != 1 {
		t.Errorf("instances fetched the access token %d times, want 1 shared", fake.TokenFetches())
	}
}

func TestClusterResumeOnOtherInstance(t *testing.T) {
	ins, _, _ := startCluster(t, 2)
	a, b := ins[0], ins[1]
	br := a.mustDial("")
	qr := br.Expect("qrcode")
	br.WS.Close()
	browsertest.WaitConns(t, a.http, 0)

	if res := a.notify(qr, pushv1.Event_EVENT_SUBSCRIBE, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify while away = %v", res)
	}
	br2 := b.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	if lg := br2.Expect("login"); lg.User["openid"] != "oBob" {
		t.Fatalf("login = %+v", lg)
	}
}

func TestClusterResumeDisplacesTabOnOtherInstance(t *testing.T) {
	ins, _, _ := startCluster(t, 2)
	a, b := ins[0], ins[1]
	tab1 := a.mustDial("")
	qr := tab1.Expect("qrcode")
	tab2 := b.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	tab2.Expect("qrcode")
	if e := tab1.Expect("error"); e.Code != "session_taken" {
		t.Fatalf("displaced tab got %+v, want session_taken", e)
	}
	tab1.ExpectClose(4002)
	if res := a.notify(qr, pushv1.Event_EVENT_SCAN, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("Notify = %v", res)
	}
	tab2.Expect("login")
}

func TestClusterDuplicatesRacedAcrossInstances(t *testing.T) {
	ins, _, fake := startCluster(t, 2)
	br := ins[0].mustDial("")
	qr := br.Expect("qrcode")
	ticket, _ := fake.TicketForScene(qr.Scene)

	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for i := range 100 {
		wg.Go(func() {
			res, err := ins[i%2].client.Notify(context.Background(), &pushv1.NotifyRequest{
				Scene: qr.Scene, Ticket: ticket, Event: pushv1.Event_EVENT_SCAN,
				User: &pushv1.User{Openid: fmt.Sprint("o", i%7)}, EventId: fmt.Sprint("ev-", i%5),
			})
			if err != nil {
				t.Error(err)
				return
			}
			if !res.Duplicate && (res.Result == pushv1.Result_RESULT_DELIVERED || res.Result == pushv1.Result_RESULT_STORED) {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("%d Notify calls accepted, want exactly 1", accepted)
	}
	br.Expect("login")
	br.ExpectClose(websocket.CloseNormalClosure)
}

func TestClusterPushToUserEverywhere(t *testing.T) {
	ins, _, _ := startCluster(t, 2)
	br := ins[0].mustDial("")
	qr := br.Expect("qrcode")
	ins[0].notify(qr, pushv1.Event_EVENT_SCAN, "oCarol", "ev-1")
	tok := url.QueryEscape(br.Expect("login").Token)
	tabs := []*browsertest.Conn{ins[0].mustDial("token=" + tok), ins[1].mustDial("token=" + tok)}

	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := ins[1].client.Push(context.Background(), &pushv1.PushRequest{
			Target: &pushv1.PushRequest_Openid{Openid: "oCarol"}, Event: "hi", Data: []byte(`1`)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Delivered == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Push reached %d connections, want 2", resp.Delivered)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tab := range tabs {
		if m := tab.Expect("message"); m.Event != "hi" {
			t.Errorf("tab got %+v", m)
		}
	}
}

// A push to an openid with a newline, entering one instance, must not reach
// the tab of the openid before the newline on another: the instance
// envelope once ended its target at the first newline.
func TestClusterPushToForgedOpenIDReachesNoOne(t *testing.T) {
	rs := redistest.Start(t)
	fake := wechattest.New(t, devAppID, devSecret)
	keyFile, key := testkey.Write(t)
	a := startPushServer(t, fake, "REDIS_URL="+rs.URL(), "TOKEN_KEY_FILE="+keyFile)
	b := startPushServer(t, fake, "REDIS_URL="+rs.URL(), "TOKEN_KEY_FILE="+keyFile)
	ctx := context.Background()

	// The victim's authenticated tab is on instance b.
	br := b.mustDial("")
	b.notify(br.Expect("qrcode"), pushv1.Event_EVENT_SCAN, "oVictim", "ev-1")
	tok := br.Expect("login").Token
	victim := b.mustDial("token=" + url.QueryEscape(tok))

	// A tab for the forged openid cannot be opened, even with a token
	// signed by the instances' own key.
	forged := resign(t, tok, "oVictim\nX", key)
	if _, resp, err := b.dial("token=" + url.QueryEscape(forged)); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("tab for openid %q: %v %v, want 401", "oVictim\nX", resp, err)
	}

	push := func(openid, event string) (*pushv1.PushResponse, error) {
		return a.client.Push(ctx, &pushv1.PushRequest{
			Target: &pushv1.PushRequest_Openid{Openid: openid}, Event: event, Data: []byte(`{"n":1}`)})
	}
	// Wait until instance a routes the victim's pushes to b.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := push("oVictim", "probe")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Delivered == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the victim's tab never became reachable from instance a")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for victim.Expect("message").Event != "probe" {
	}

	_, err := push("oVictim\nX", "attack")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "openid") {
		t.Errorf("Push to %q: %v, want InvalidArgument naming the openid", "oVictim\nX", err)
	}
	if _, err := push("oVictim", "after"); err != nil {
		t.Fatal(err)
	}
	if m := victim.Expect("message"); m.Event != "after" {
		t.Fatalf("the victim's tab got %+v before the next push", m)
	}
	// The victim's own token, signed again the same way, is accepted: the
	// forged one was refused for its openid, not for its signature.
	if _, resp, err := a.dial("token=" + url.QueryEscape(resign(t, tok, "oVictim", key))); err != nil {
		t.Fatalf("the victim's re-signed token: %v %v", resp, err)
	}
}

func TestClusterSurvivesRedisRestart(t *testing.T) {
	ins, rs, _ := startCluster(t, 2)
	a, b := ins[0], ins[1]
	open := a.mustDial("")
	openQR := open.Expect("qrcode")

	rs.Kill()
	a.waitReady(http.StatusServiceUnavailable)
	br := b.mustDial("")
	if e := br.Expect("error"); e.Code != "upstream_unavailable" {
		t.Fatalf("new connection during the outage: %+v", e)
	}
	open.Send(`{"type":"ping"}`)
	open.Expect("pong") // open connections stay open

	rs.Restart()
	a.waitReady(http.StatusOK)
	b.waitReady(http.StatusOK)
	// The restarted Redis (no persistence) forgot the old session: the tab
	// is told its code expired, and a new code works end to end across
	// instances.
	open.Expect("expired")
	open.Send(`{"type":"refresh"}`)
	qr := open.Expect("qrcode")
	if qr.Session == openQR.Session {
		t.Fatalf("refresh kept the lost session")
	}
	// Right after the restart, instance a may still be resubscribing: the
	// login is then stored and handed over by a's resync. Either way it arrives.
	res := b.notify(qr, pushv1.Event_EVENT_SCAN, "oDan", "ev-9")
	if res.Result != pushv1.Result_RESULT_DELIVERED && res.Result != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify after the restart = %v", res)
	}
	if lg := open.Expect("login"); lg.User["openid"] != "oDan" {
		t.Fatalf("login = %+v", lg)
	}
	logs := a.prog.Logs.String()
	if n := strings.Count(logs, "redis unreachable"); n != 1 {
		t.Errorf("%d 'redis unreachable' lines, want one per state change:\n%s", n, logs)
	}
	if !strings.Contains(logs, "redis reachable again") {
		t.Error("no recovery log line")
	}
}

// An instance killed with SIGKILL leaves no presence behind: the scan is
// stored on the surviving instance and handed to the browser's resume
// there.
func TestClusterSIGKILLThenResumeElsewhere(t *testing.T) {
	ins, rs, _ := startCluster(t, 2)
	a, b := ins[0], ins[1]
	br := a.mustDial("")
	qr := br.Expect("qrcode")

	a.kill()
	if _, err := br.Next(); err == nil {
		t.Fatal("the killed instance's socket still answers")
	}

	// The scan reaches the surviving instance while the browser is away.
	if res := b.notify(qr, pushv1.Event_EVENT_SCAN, "oEve", "ev-1"); res.Result != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify after the kill = %v", res)
	}
	// Publishing to the dead instance found no subscriber: its presence is gone.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	if n, err := rdb.HLen(context.Background(), "scanlogin:s:{"+qr.Session+"}:c").Result(); err != nil || n != 0 {
		t.Fatalf("presence of the session after the kill: %d entries, %v; want none", n, err)
	}
	br2 := b.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	if lg := br2.Expect("login"); lg.User["openid"] != "oEve" {
		t.Fatalf("login = %+v", lg)
	}
}

// Against a 3-node Redis Cluster: Pushes entering the instance that does not
// hold the browsers reach every one of them, with their sessions' keys on
// all three nodes. PUBLISH counts only the subscribers of the node it ran
// on there, which once made an instance look dead and dropped it from the
// sessions' presence.
func TestClusterModeRedis(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	redisURL := "redis://" + nodes[0].Addr() + "?addr=" + nodes[1].Addr() + "&addr=" + nodes[2].Addr()
	fake := wechattest.New(t, devAppID, devSecret)
	keyFile, _ := testkey.Write(t)
	a := startPushServer(t, fake, "REDIS_URL="+redisURL, "TOKEN_KEY_FILE="+keyFile)
	b := startPushServer(t, fake, "REDIS_URL="+redisURL, "TOKEN_KEY_FILE="+keyFile)

	var tabs []*browsertest.Conn
	var sessions []string
	for range 12 {
		br := a.mustDial("")
		tabs = append(tabs, br)
		sessions = append(sessions, br.Expect("qrcode").Session)
	}
	for round := range 2 {
		for i, id := range sessions {
			resp, err := b.client.Push(context.Background(), &pushv1.PushRequest{
				Target: &pushv1.PushRequest_SessionId{SessionId: id}, Event: "hi", Data: []byte(fmt.Sprint(round))})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Delivered != 1 || resp.Stored {
				t.Fatalf("round %d, session %d: delivered %d, stored %v; want delivered 1", round, i, resp.Delivered, resp.Stored)
			}
			if m := tabs[i].Expect("message"); m.Event != "hi" {
				t.Fatalf("round %d, session %d: got %+v", round, i, m)
			}
		}
	}
}
