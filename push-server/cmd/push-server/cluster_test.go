package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/scanlogin/scanlogin/internal/redistest"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/push-server/internal/token"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// startCluster starts n instances sharing one Redis and one WeChat account.
func startCluster(t *testing.T, n int) ([]*instance, *redistest.Server, *wechattest.Server) {
	t.Helper()
	rs := redistest.Start(t)
	fake := wechattest.New(t, appID, secret)
	key := writeKey(t)
	var ins []*instance
	for range n {
		ins = append(ins, startWith(t, fake, map[string]string{"REDIS_URL": rs.URL(), "LOG_LEVEL": "info", "TOKEN_KEY_FILE": key}))
	}
	return ins, rs, fake
}

func TestClusterLoginAcrossInstances(t *testing.T) {
	ins, _, fake := startCluster(t, 2)
	a, b := ins[0], ins[1]
	br := a.mustDial("")
	qr := br.expect("qrcode")

	// The event enters the instance that does not hold the browser.
	res := b.notify(qr, pushv1.Event_EVENT_SCAN, "oAlice", "ev-1")
	if res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("Notify on the other instance = %v", res)
	}
	lg := br.expect("login")
	br.expectClose(websocket.CloseNormalClosure)
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
	qr := br.expect("qrcode")
	br.ws.Close()
	a.waitConns(0)

	if res := a.notify(qr, pushv1.Event_EVENT_SUBSCRIBE, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify while away = %v", res)
	}
	br2 := b.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	if lg := br2.expect("login"); lg.User["openid"] != "oBob" {
		t.Fatalf("login = %+v", lg)
	}
}

func TestClusterResumeDisplacesTabOnOtherInstance(t *testing.T) {
	ins, _, _ := startCluster(t, 2)
	a, b := ins[0], ins[1]
	tab1 := a.mustDial("")
	qr := tab1.expect("qrcode")
	tab2 := b.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	tab2.expect("qrcode")
	if e := tab1.expect("error"); e.Code != "session_taken" {
		t.Fatalf("displaced tab got %+v, want session_taken", e)
	}
	tab1.expectClose(4002)
	if res := a.notify(qr, pushv1.Event_EVENT_SCAN, "oBob", "ev-1"); res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("Notify = %v", res)
	}
	tab2.expect("login")
}

func TestClusterDuplicatesRacedAcrossInstances(t *testing.T) {
	ins, _, _ := startCluster(t, 2)
	br := ins[0].mustDial("")
	qr := br.expect("qrcode")
	ticket := ins[0].ticket(qr)

	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := ins[i%2]
			res, err := in.client.Notify(context.Background(), &pushv1.NotifyRequest{
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
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("%d Notify calls accepted, want exactly 1", accepted)
	}
	br.expect("login")
	br.expectClose(websocket.CloseNormalClosure)
}

func TestClusterPushToUserEverywhere(t *testing.T) {
	ins, _, _ := startCluster(t, 2)
	br := ins[0].mustDial("")
	qr := br.expect("qrcode")
	ins[0].notify(qr, pushv1.Event_EVENT_SCAN, "oCarol", "ev-1")
	tok := url.QueryEscape(br.expect("login").Token)
	tabs := []*browser{ins[0].mustDial("token=" + tok), ins[1].mustDial("token=" + tok)}

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
		if m := tab.expect("message"); m.Event != "hi" {
			t.Errorf("tab got %+v", m)
		}
	}
}

// A push to an openid with a newline, entering one instance, must not reach
// the tab of the openid before the newline on another: the instance
// envelope once ended its target at the first newline.
func TestClusterPushToForgedOpenIDReachesNoOne(t *testing.T) {
	rs := redistest.Start(t)
	fake := wechattest.New(t, appID, secret)
	keyFile := writeKey(t)
	env := map[string]string{"REDIS_URL": rs.URL(), "LOG_LEVEL": "info", "TOKEN_KEY_FILE": keyFile}
	a, b := startWith(t, fake, env), startWith(t, fake, env)
	ctx := context.Background()

	// The victim's authenticated tab is on instance b.
	br := b.mustDial("")
	b.notify(br.expect("qrcode"), pushv1.Event_EVENT_SCAN, "oVictim", "ev-1")
	victim := b.mustDial("token=" + url.QueryEscape(br.expect("login").Token))

	// A tab for the forged openid cannot be opened, even with a token
	// signed by the instances' own key.
	key, err := token.LoadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.New(key, "scanlogin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := iss.Mint("oVictim\nX", "", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, resp, err := b.dial("token="+url.QueryEscape(forged), nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
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
	for victim.expect("message").Event != "probe" {
	}

	_, err = push("oVictim\nX", "attack")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "openid") {
		t.Errorf("Push to %q: %v, want InvalidArgument naming the openid", "oVictim\nX", err)
	}
	if _, err := push("oVictim", "after"); err != nil {
		t.Fatal(err)
	}
	if m := victim.expect("message"); m.Event != "after" {
		t.Fatalf("the victim's tab got %+v before the next push", m)
	}
}

func TestClusterSurvivesRedisRestart(t *testing.T) {
	ins, rs, _ := startCluster(t, 2)
	a, b := ins[0], ins[1]
	open := a.mustDial("")
	openQR := open.expect("qrcode")

	rs.Kill()
	waitReady(t, a, http.StatusServiceUnavailable)
	br := b.mustDial("")
	if e := br.expect("error"); e.Code != "upstream_unavailable" {
		t.Fatalf("new connection during the outage: %+v", e)
	}
	open.send(`{"type":"ping"}`)
	open.expect("pong") // open connections stay open

	rs.Restart()
	waitReady(t, a, http.StatusOK)
	waitReady(t, b, http.StatusOK)
	// The restarted Redis (no persistence) forgot the old session: the tab
	// is told its code expired, and a new code works end to end across
	// instances.
	open.expect("expired")
	open.send(`{"type":"refresh"}`)
	qr := open.expect("qrcode")
	if qr.Session == openQR.Session {
		t.Fatalf("refresh kept the lost session")
	}
	// Right after the restart, instance a may still be resubscribing: the
	// login is then stored and handed over by a's resync. Either way it arrives.
	res := b.notify(qr, pushv1.Event_EVENT_SCAN, "oDan", "ev-9")
	if res.Result != pushv1.Result_RESULT_DELIVERED && res.Result != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify after the restart = %v", res)
	}
	if lg := open.expect("login"); lg.User["openid"] != "oDan" {
		t.Fatalf("login = %+v", lg)
	}
	logs := a.logs.String()
	if n := strings.Count(logs, "redis unreachable"); n != 1 {
		t.Errorf("%d 'redis unreachable' lines, want one per state change:\n%s", n, logs)
	}
	if !strings.Contains(logs, "redis reachable again") {
		t.Error("no recovery log line")
	}
}

func waitReady(t *testing.T, in *instance, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + in.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeKey writes a fresh Ed25519 key, shared by the instances of a test.
func writeKey(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(token.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token-key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// built holds the binaries the process tests build, once per test run.
var built struct {
	sync.Mutex
	paths map[string]string
}

// buildOnce builds the package pkg of the module in dir (relative to this
// package) with the race detector, once per test run, and returns the binary.
func buildOnce(t *testing.T, dir, pkg, name string) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if p, ok := built.paths[name]; ok {
		return p
	}
	tmp, err := os.MkdirTemp("", name+"-bin")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(tmp, name)
	cmd := exec.Command("go", "build", "-race", "-o", path, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	if built.paths == nil {
		built.paths = map[string]string{}
	}
	built.paths[name] = path
	return path
}

// buildBinary builds push-server for the process tests.
func buildBinary(t *testing.T) string { return buildOnce(t, ".", ".", "push-server") }

// process is a push-server running as its own process.
type process struct {
	cmd        *exec.Cmd
	http, grpc string
	client     pushv1.PushServiceClient
}

func startProcess(t *testing.T, env []string) *process {
	t.Helper()
	cmd := exec.Command(buildBinary(t))
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := &process{cmd: cmd}
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil && !sent {
				p.http, p.grpc = m[1], m[2]
				found <- true
				sent = true
			}
		}
		if !sent {
			found <- false
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatal("push-server process exited before listening")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("push-server process did not start")
	}
	cc, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	p.client = pushv1.NewPushServiceClient(cc)
	return p
}

func TestClusterSIGKILLThenResumeElsewhere(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	rs := redistest.Start(t)
	fake := wechattest.New(t, appID, secret)
	env := []string{"PUSH_HTTP_ADDR=127.0.0.1:0", "PUSH_GRPC_ADDR=127.0.0.1:0", "PUSH_API_ADDR=127.0.0.1:0", "WECHAT_APPID=" + appID,
		"WECHAT_SECRET=" + secret, "WECHAT_API_BASE=" + fake.URL(), "WECHAT_MP_BASE=" + fake.URL(),
		"REDIS_URL=" + rs.URL(), "TOKEN_KEY_FILE=" + writeKey(t), "LOG_LEVEL=info"}
	a, b := startProcess(t, env), startProcess(t, env)

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+a.http+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	br := &browser{t: t, ws: ws}
	qr := br.expect("qrcode")
	ticket, _ := fake.TicketForScene(qr.Scene)

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()
	if _, err := br.next(); err == nil {
		t.Fatal("the killed instance's socket still answers")
	}

	// The scan reaches the surviving instance while the browser is away.
	res, err := b.client.Notify(context.Background(), &pushv1.NotifyRequest{Scene: qr.Scene, Ticket: ticket,
		Event: pushv1.Event_EVENT_SCAN, User: &pushv1.User{Openid: "oEve"}, EventId: "ev-1"})
	if err != nil || res.Result != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify after the kill = %v %v", res, err)
	}
	// Publishing to the dead instance found no subscriber: its presence is gone.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	if n, err := rdb.HLen(context.Background(), "scanlogin:s:{"+qr.Session+"}:c").Result(); err != nil || n != 0 {
		t.Fatalf("presence of the session after the kill: %d entries, %v; want none", n, err)
	}
	ws2, _, err := websocket.DefaultDialer.Dial("ws://"+b.http+"/ws?"+url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	br2 := &browser{t: t, ws: ws2}
	if lg := br2.expect("login"); lg.User["openid"] != "oEve" {
		t.Fatalf("login = %+v", lg)
	}
}

// Against a 3-node Redis Cluster: Pushes entering the instance that does not
// hold the browsers reach every one of them, with their sessions' keys on
// all three nodes. PUBLISH counts only the subscribers of the node it ran
// on there, which once made an instance look dead and dropped it from the
// sessions' presence.
func TestClusterModeRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	nodes := redistest.StartCluster(t, 3)
	redisURL := "redis://" + nodes[0].Addr() + "?addr=" + nodes[1].Addr() + "&addr=" + nodes[2].Addr()
	fake := wechattest.New(t, appID, secret)
	key := writeKey(t)
	a := startWith(t, fake, map[string]string{"REDIS_URL": redisURL, "LOG_LEVEL": "info", "TOKEN_KEY_FILE": key})
	b := startWith(t, fake, map[string]string{"REDIS_URL": redisURL, "LOG_LEVEL": "info", "TOKEN_KEY_FILE": key})

	var tabs []*browser
	var sessions []string
	for range 12 {
		br := a.mustDial("")
		tabs = append(tabs, br)
		sessions = append(sessions, br.expect("qrcode").Session)
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
			if m := tabs[i].expect("message"); m.Event != "hi" {
				t.Fatalf("round %d, session %d: got %+v", round, i, m)
			}
		}
	}
}
