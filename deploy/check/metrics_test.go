package check

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"sigs.k8s.io/yaml"

	"github.com/scanlogin/scanlogin/internal/proctest"
	"github.com/scanlogin/scanlogin/internal/redistest"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

// Development settings, as in scripts/run-all.sh.
const (
	devAppID   = "wx5ca11091d0e5f00d"
	devSecret  = "dev-secret-not-for-production"
	devToken   = "scanlogindev"
	devAESKey  = "ScanLoginDevEncodingAESKey0123456789abcdefg"
	devOrigID  = "gh_5ca11091d0e5"
	grpcSecret = "metrics-test-grpc-token"
)

// exported is what the running services expose: metric name → label names.
type exported map[string]map[string]bool

// TestDashboardAndRulesUseExportedMetrics runs the simulator, two push
// servers (one whose WeChat API is unreachable), the callback and Redis,
// makes every metric appear (a login, a Push, a WeChat failure, a foreign
// Origin, bad and
// stale signatures, Redis going away), scrapes /metrics, and checks that
// every metric and label the dashboard and the alert rules select exists.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the services")
	}
	redis := redistest.Start(t)
	bin := buildPrograms(t, "push-server", "wechat-callback", "wechat-sim")
	p := proctest.FreePorts(t, 7)
	sim, cb, pushA, rpcA, pushB, rpcB, dead := p[0], p[1], p[2], p[3], p[4], p[5], p[6]
	common := []string{"WECHAT_APPID=" + devAppID, "WECHAT_SECRET=" + devSecret, "GRPC_AUTH_TOKEN=" + grpcSecret, "LOG_LEVEL=debug"}
	simURL := "http://" + addr(sim)
	start(t, bin, "wechat-sim", append(slices.Clone(common), "WECHAT_TOKEN="+devToken, "WECHAT_AES_KEY="+devAESKey,
		"SIM_HTTP_ADDR="+addr(sim), "SIM_CALLBACK_URL=http://"+addr(cb)+"/wechat/callback", "SIM_ORIGINAL_ID="+devOrigID), sim)
	pushEnv := func(http, rpc int, api string) []string {
		return append(slices.Clone(common), "PUSH_HTTP_ADDR="+addr(http), "PUSH_GRPC_ADDR="+addr(rpc), "PUSH_API_ADDR=127.0.0.1:0",
			"WECHAT_API_BASE="+api, "WECHAT_MP_BASE="+simURL, "REDIS_URL="+redis.URL(), "LIMIT_QR_PER_IP=0")
	}
	start(t, bin, "push-server", pushEnv(pushA, rpcA, simURL), pushA)
	start(t, bin, "push-server", pushEnv(pushB, rpcB, "http://"+addr(dead)), pushB)
	start(t, bin, "wechat-callback", append(slices.Clone(common), "WECHAT_TOKEN="+devToken, "WECHAT_AES_KEY="+devAESKey,
		"CALLBACK_HTTP_ADDR="+addr(cb), "WECHAT_API_BASE="+simURL, "WECHAT_ORIGINAL_ID="+devOrigID,
		"CALLBACK_REQUIRE_ENCRYPTION=true", "PUSH_GRPC_TARGET="+addr(rpcA), "REDIS_URL="+redis.URL()), cb)

	// A login, then a Push to its session.
	ws, qr := openWS(t, pushA)
	scan(t, qr["scan_url"])
	readUntil(t, ws, "login")
	ws.Close()
	conn, err := grpc.NewClient(addr(rpcA), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+grpcSecret)
	if _, err := pushv1.NewPushServiceClient(conn).Push(ctx, &pushv1.PushRequest{
		Target: &pushv1.PushRequest_SessionId{SessionId: qr["session"]}, Event: "test", Data: []byte(`{}`)}); err != nil {
		t.Fatalf("Push: %v", err)
	}
	// A QR code WeChat cannot create: scanlogin_wechat_errors_total.
	wsB, _, err := websocket.DefaultDialer.Dial("ws://"+addr(pushB)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, wsB, "error")
	wsB.Close()
	// An upgrade from a foreign page: scanlogin_ws_rejected_total.
	if _, _, err := websocket.DefaultDialer.Dial("ws://"+addr(pushA)+"/ws", http.Header{"Origin": {"https://elsewhere.example"}}); err == nil {
		t.Fatal("a foreign Origin was accepted")
	}
	// A bad signature, and a good one on a stale timestamp.
	postCallback(t, cb, "1700000000", "bad")
	postCallback(t, cb, "1000000000", "")
	// Redis goes away while a browser waits; its scan finds no replay memory.
	ws2, qr2 := openWS(t, pushA)
	defer ws2.Close()
	redis.Kill()
	scan(t, qr2["scan_url"])

	have := exported{}
	scrape(t, have, pushA)
	scrape(t, have, pushB)
	scrape(t, have, cb)
	have["up"] = map[string]bool{"job": true, "instance": true}

	uses := map[string][]selector{}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(readFile(t, "deploy/grafana/scanlogin.json"), &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			uses["panel "+p.Title] = append(uses["panel "+p.Title], selectors(tg.Expr)...)
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/prometheus/alerts.yaml"), &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			uses["alert "+r.Alert] = append(uses["alert "+r.Alert], selectors(r.Expr)...)
		}
	}
	if len(uses) < 10 {
		t.Fatalf("only %d panels and rules found", len(uses))
	}
	for where, sels := range uses {
		if len(sels) == 0 {
			t.Errorf("%s selects no metric", where)
		}
		for _, s := range sels {
			labels, ok := have[s.name]
			if !ok {
				t.Errorf("%s: %s is not exported", where, s.name)
				continue
			}
			for _, l := range s.labels {
				if !labels[l] && l != "job" && l != "instance" {
					t.Errorf("%s: %s has no label %s", where, s.name, l)
				}
			}
		}
	}
}

// selector is a metric a PromQL expression selects, and the labels it matches on.
type selector struct {
	name   string
	labels []string
}

var (
	metricRe = regexp.MustCompile(`\b(up|(?:scanlogin|wechat_callback|go|process)_[a-z0-9_]+)\b(\{[^}]*\})?`)
	matchRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

func selectors(expr string) []selector {
	var out []selector
	for _, m := range metricRe.FindAllStringSubmatch(expr, -1) {
		s := selector{name: m[1]}
		for _, l := range matchRe.FindAllStringSubmatch(m[2], -1) {
			s.labels = append(s.labels, l[1])
		}
		out = append(out, s)
	}
	return out
}

// scrape adds the metrics at port's /metrics to have; a histogram's series
// are its _bucket, _sum and _count.
func scrape(t *testing.T, have exported, port int) {
	t.Helper()
	resp, err := http.Get("http://" + addr(port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	label := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sample.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if have[m[1]] == nil {
			have[m[1]] = map[string]bool{}
		}
		for _, l := range label.FindAllStringSubmatch(m[2], -1) {
			have[m[1]][l[1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// buildPrograms builds the programs into a temporary directory.
func buildPrograms(t *testing.T, progs ...string) string {
	t.Helper()
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, len(progs))
	for i, prog := range progs {
		wg.Go(func() {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "check-"+prog), "./cmd/"+prog)
			cmd.Dir = filepath.Join(repo, prog)
			cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=")
			if b, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("build %s: %v\n%s", prog, err, b)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// start runs a program until the test ends and waits for its /healthz.
func start(t *testing.T, bin, prog string, env []string, port int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "check-"+prog))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var logs strings.Builder
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(b []byte) { mu.Lock(); logs.Write(b); mu.Unlock() })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("%s output:\n%s", prog, logs.String())
			mu.Unlock()
		}
	})
	for range 300 {
		if resp, err := http.Get("http://" + addr(port) + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer /healthz", prog)
}

type writerFunc func([]byte)

func (f writerFunc) Write(b []byte) (int, error) { f(b); return len(b), nil }

// openWS opens a browser connection and returns its qrcode message.
func openWS(t *testing.T, port int) (*websocket.Conn, map[string]string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr(port)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := readUntil(t, ws, "qrcode")
	qr := map[string]string{}
	for k, v := range msg {
		if s, ok := v.(string); ok {
			qr[k] = s
		}
	}
	return ws, qr
}

// readUntil reads frames until one of the type, and returns it.
func readUntil(t *testing.T, ws *websocket.Conn, typ string) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var msg map[string]any
		if err := ws.ReadJSON(&msg); err != nil {
			t.Fatalf("waiting for %q: %v", typ, err)
		}
		if msg["type"] == typ {
			return msg
		}
	}
}

// scan scans a code on the simulator's phone page as a new follower.
func scan(t *testing.T, scanURL string) {
	t.Helper()
	resp, err := http.Post(scanURL, "application/json", strings.NewReader(`{"who":"new"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// postCallback posts an event to the callback, signed with the Token unless
// sig is given.
func postCallback(t *testing.T, port int, timestamp, sig string) {
	t.Helper()
	nonce := "n" + timestamp
	if sig == "" {
		parts := []string{devToken, timestamp, nonce}
		slices.Sort(parts)
		sum := sha1.Sum([]byte(strings.Join(parts, "")))
		sig = hex.EncodeToString(sum[:])
	}
	u := fmt.Sprintf("http://%s/wechat/callback?signature=%s&timestamp=%s&nonce=%s&openid=o1", addr(port), sig, timestamp, nonce)
	resp, err := http.Post(u, "text/xml", strings.NewReader("<xml><ToUserName><![CDATA["+devOrigID+"]]></ToUserName></xml>"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("callback accepted a request signed %q at %s: %d", sig, timestamp, resp.StatusCode)
	}
}
