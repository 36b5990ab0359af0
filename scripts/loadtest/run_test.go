package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/scanlogin/scanlogin/wechat"
)

// TestMain lets the test binary act as a worker, as the real binary does
// when a run spawns it.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		if err := dispatch(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws" }

// run parses args as "loadtest run" would and runs the load.
func run(t *testing.T, args ...string) *Result {
	t.Helper()
	o, err := parseRunFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var log strings.Builder
	r, err := runLoad(ctx, o, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	var sum strings.Builder
	printSummary(&sum, r)
	t.Log("\n" + sum.String())
	return r
}

func TestPushAgainstBaseline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		perProc string
		procs   int
		batch   []string // flags of a batch run
		calls   int
	}{
		{"one process", "1000", 1, nil, 200},
		{"three workers", "20", 3, nil, 200},
		{"batches of 10", "1000", 1, []string{"-mode", "batch", "-batch", "10"}, 20},
		{"batches of 30 from three workers", "20", 3, []string{"-mode", "batch", "-batch", "30"}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, closeAll := newBaseline()
			srv := httptest.NewServer(h)
			defer srv.Close()
			defer closeAll()
			r := run(t, append([]string{"-target", "baseline", "-ws", wsURL(srv), "-n", "50", "-per-process", tc.perProc,
				"-src-ips", "4", "-settle", "0", "-rate", "400", "-duration", "500ms", "-grace", "2s",
				"-server-pid", fmt.Sprint(os.Getpid())}, tc.batch...)...)
			if r.Connect.Connected != 50 || r.Connect.Failed != 0 {
				t.Fatalf("connected %d, failed %d: %v", r.Connect.Connected, r.Connect.Failed, r.Connect.Errors)
			}
			if r.Settings.Processes != tc.procs {
				t.Errorf("processes %d, want %d", r.Settings.Processes, tc.procs)
			}
			l := r.Load
			if l.Calls != tc.calls {
				t.Errorf("calls %d, want %d", l.Calls, tc.calls)
			}
			if l.Sent != 200 || l.OK != 200 || l.Received != 200 || l.Lost != 0 || l.Errors != 0 {
				t.Errorf("sent %d ok %d received %d lost %d errors %d %v", l.Sent, l.OK, l.Received, l.Lost, l.Errors, l.ErrorKinds)
			}
			if l.Latency.Count != 200 || l.Latency.P50 <= 0 || l.Latency.P99 < l.Latency.P50 || l.Latency.Max < l.Latency.P999 {
				t.Errorf("latency %+v", l.Latency)
			}
			if !r.Server.Measured || r.Server.RSSIdle <= 0 || r.Tool.CPULoadS < 0 {
				t.Errorf("server %+v tool %+v", r.Server, r.Tool)
			}
			if r.Conns.Dropped != 0 {
				t.Errorf("dropped %d: %v", r.Conns.Dropped, r.Conns.DropReasons)
			}
		})
	}
}

// fakeScanlogin plays push-server and wechat-callback together: /ws sends a
// qrcode frame; /wechat/callback verifies a safe-mode POST exactly as the
// real callback must, then sends that session's browser a login frame and
// closes it with 1000.
type fakeScanlogin struct {
	t       *testing.T
	crypter *wechat.Crypter
	token   string

	mu       sync.Mutex // also serializes writes to the connections
	next     int
	conns    map[string]*websocket.Conn // by scene, until login
	sessions map[string]*websocket.Conn // by session id
	ticket   map[string]string          // by scene
	seen     map[string]bool            // nonces
}

func newFakeScanlogin(t *testing.T) *fakeScanlogin {
	return &fakeScanlogin{t: t, conns: map[string]*websocket.Conn{}, sessions: map[string]*websocket.Conn{},
		ticket: map[string]string{}, seen: map[string]bool{}}
}

func (f *fakeScanlogin) ws(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.next++
	scene, ticket := fmt.Sprintf("sc%06d", f.next), fmt.Sprintf("gQ+t/%d==", f.next)
	f.conns[scene], f.ticket[scene], f.sessions["s"+scene] = c, ticket, c
	f.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{
		"type": "qrcode", "session": "s" + scene, "resume": "r", "scene": scene,
		"qrcode_url": "http://127.0.0.1/cgi-bin/showqrcode?ticket=" + url.QueryEscape(ticket),
	})
	f.mu.Lock()
	c.WriteMessage(websocket.TextMessage, msg)
	f.mu.Unlock()
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
}

func (f *fakeScanlogin) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ts, nonce := q.Get("timestamp"), q.Get("nonce")
	if !wechat.VerifySignature(q.Get("signature"), f.token, ts, nonce) || q.Get("encrypt_type") != "aes" {
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	body, _ := io.ReadAll(r.Body)
	env, err := wechat.ParseMessage(body)
	if err != nil || !f.crypter.VerifyMsgSignature(q.Get("msg_signature"), ts, nonce, env.Encrypt) {
		http.Error(w, "bad msg_signature", http.StatusForbidden)
		return
	}
	inner, err := f.crypter.Decrypt(env.Encrypt)
	if err != nil {
		http.Error(w, "decrypt", http.StatusBadRequest)
		return
	}
	m, err := wechat.ParseMessage(inner)
	if err != nil || m.MsgType != wechat.MsgTypeEvent || q.Get("openid") != m.FromUserName || len(m.FromUserName) != 28 {
		http.Error(w, "bad message", http.StatusBadRequest)
		return
	}
	scene := m.EventKey
	if m.Event == wechat.EventSubscribe {
		scene = strings.TrimPrefix(scene, wechat.EventKeyScenePrefix)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen[ts+nonce] {
		http.Error(w, "replay", http.StatusForbidden)
		return
	}
	f.seen[ts+nonce] = true
	c, ok := f.conns[scene]
	if !ok || f.ticket[scene] != m.Ticket {
		io.WriteString(w, "success") // unknown scene: a polite answer, and no login
		return
	}
	delete(f.conns, scene)
	c.WriteMessage(websocket.TextMessage, []byte(`{"type":"login","token":"x.y.z","user":{"openid":"`+m.FromUserName+`"}}`))
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "logged in"), time.Now().Add(time.Second))
	io.WriteString(w, "success")
}

func TestScanInSafeMode(t *testing.T) {
	const token, aesKey, appID = "benchtoken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx0123456789abcdef"
	cr, err := wechat.NewCrypter(token, aesKey, appID)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeScanlogin(t)
	f.crypter, f.token = cr, token
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", f.ws)
	mux.HandleFunc("POST /wechat/callback", f.callback)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	r := run(t, "-mode", "scan", "-ws", wsURL(srv), "-n", "60", "-settle", "0", "-rate", "200", "-duration", "200ms",
		"-callback", srv.URL+"/wechat/callback", "-wechat-token", token, "-aes-key", aesKey, "-appid", appID, "-event", "mixed")
	l := r.Load
	if l.Sent != 40 || l.OK != 40 || l.Received != 40 || l.Lost != 0 {
		t.Fatalf("sent %d ok %d received %d lost %d errors %v", l.Sent, l.OK, l.Received, l.Lost, l.ErrorKinds)
	}
	if l.Latency.Count != 40 || l.Latency.P50 <= 0 {
		t.Errorf("latency %+v", l.Latency)
	}
	if r.Conns.Frames["login"] != 40 || r.Conns.Dropped != 0 {
		t.Errorf("frames %v, dropped %d %v", r.Conns.Frames, r.Conns.Dropped, r.Conns.DropReasons)
	}
}

func TestFlagsRefuse(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"remote ws", []string{"-ws", "ws://example.com/ws"}, "not a loopback"},
		{"remote grpc", []string{"-grpc", "10.1.2.3:9090"}, "not a loopback"},
		{"remote callback", []string{"-mode", "scan", "-wechat-token", "t", "-n", "100000", "-callback", "http://192.168.1.1/cb"}, "not a loopback"},
		{"scan needs a session per scan", []string{"-mode", "scan", "-wechat-token", "t", "-n", "10000", "-rate", "2000", "-duration", "20s"}, "logs in only once"},
		{"too many per process", []string{"-per-process", "25000"}, "-per-process"},
		{"unbounded duration", []string{"-duration", "2h"}, "-duration"},
		{"scan against baseline", []string{"-mode", "scan", "-target", "baseline", "-wechat-token", "t"}, "needs -target scanlogin"},
		{"window grpc-go would ignore", []string{"-grpc-window", "1000"}, "-grpc-window"},
		{"batch over PushBatch's bound", []string{"-mode", "batch", "-batch", "1001"}, "-batch"},
		{"empty batch", []string{"-mode", "batch", "-batch", "0"}, "-batch"},
		{"baseline over gRPC", []string{"-target", "baseline", "-via", "grpc"}, "only takes pushes over HTTP"},
		{"unknown way", []string{"-via", "smtp"}, "-via"},
		{"remote JSON API", []string{"-via", "http", "-api-url", "http://10.0.0.1:9091"}, "not a loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRunFlags(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := parseRunFlags([]string{"-ws", "ws://[::1]:1/ws,ws://localhost:2/ws", "-grpc", "127.0.0.9:1"}, io.Discard); err != nil {
		t.Errorf("loopback refused: %v", err)
	}
}

func TestReportRenders(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, r *Result) string {
		p := dir + "/" + name
		b, _ := json.Marshal(r)
		os.WriteFile(p, b, 0o644)
		return p
	}
	base := &Result{Label: "baseline", Target: targetBaseline, Mode: modePush}
	base.Server.Measured, base.Server.RSSPerConn, base.Server.CPUPerOpMicros = true, 20<<10, 120
	base.Load.Latency = Latency{P50: 0.2, P90: 0.5, P99: 2, P999: 4, Max: 8}
	ours := &Result{Label: "scanlogin", Target: targetScanlogin, Mode: modePush}
	ours.Server.Measured, ours.Server.RSSPerConn, ours.Server.CPUPerOpMicros = true, 10<<10, 60
	ours.Load.Latency = Latency{P50: 0.1, P90: 0.25, P99: 1, P999: 2, Max: 4}
	window := &Result{Label: "scanlogin, fixed window", Target: targetScanlogin, Mode: modePush}
	window.Server.Measured, window.Server.RSSPerConn, window.Server.CPUPerOpMicros = true, 10<<10, 40
	window.Load.Latency = ours.Load.Latency
	cmds := dir + "/commands.sh"
	os.WriteFile(cmds, []byte("loadtest run ...\n"), 0o644)
	var md strings.Builder
	err := renderReport(&md, &ReportSpec{Title: "T", Commands: cmds, Scenarios: []Scenario{
		{Title: "Push", Runs: []string{write("b.json", base), write("s.json", ours), write("w.json", window)}},
		{Title: "Scale-out", Skip: "no Redis yet"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := md.String()
	for _, want := range []string{"| baseline ÷ scanlogin |  | ×2.00 | ×2.00 |", "| CPUs (nproc) |", "Not run: no Redis yet", "loadtest run ...", "×2.00 |  |",
		"| baseline ÷ scanlogin, fixed window |  | ×2.00 |", "×3.00 |  |"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestStandardReportWithBatches renders the standard report from runs
// named as bench.sh names them: the batch table, the per-message
// comparison, the new targets and the history's batch column, with the
// previous file's notes kept.
func TestStandardReportWithBatches(t *testing.T) {
	dir := t.TempDir()
	put := func(name, label, target, via string, batch int, cpu, p99 float64) {
		r := &Result{Label: label, Target: target, Mode: modePush}
		if batch > 1 {
			r.Mode = modeBatch
		}
		r.Settings.Rate, r.Settings.Batch, r.Settings.Via = 2000, batch, via
		r.Server.Measured, r.Server.CPUPerOpMicros, r.Server.SyscallsPerOp = true, cpu, 1.5
		r.Load.Calls, r.Load.Sent, r.Load.OK, r.Load.Received = 40000/batch, 40000, 40000, 40000
		r.Load.Latency = Latency{P50: p99 / 2, P90: p99, P99: p99, P999: p99, Max: p99}
		b, _ := json.Marshal(r)
		if err := os.WriteFile(dir+"/"+name+".json", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put(filePushBaseline, "baseline", targetBaseline, viaHTTP, 1, 90, 0.6)
	put(filePushScanlogin, "scanlogin", targetScanlogin, viaGRPC, 1, 75, 0.7)
	put(filePushJSON, "scanlogin, HTTP/JSON", targetScanlogin, viaHTTP, 1, 100, 0.8)
	put(fileBatchBaseline, "baseline, batch", targetBaseline, viaHTTP, 100, 30, 2)
	put(fileBatchScanlogin, "scanlogin, PushBatch", targetScanlogin, viaGRPC, 100, 15, 0.9)
	put(fileBatchJSON, "scanlogin, batch HTTP/JSON", targetScanlogin, viaHTTP, 100, 24, 1.5)
	prev := "x\n" + notesBegin + "\nmy notes\n" + notesEnd + "\n"
	var md strings.Builder
	if err := renderReport(&md, standardSpec(dir, "", "abc123", prev, true)); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	for _, want := range []string{
		"my notes\n" + notesEnd,
		"## Batch pushes, 100 per call, 10,000 connections",
		"| baseline ÷ scanlogin, PushBatch |  | — | ×2.22 |", // p50: 1 ÷ 0.45
		"| baseline ÷ scanlogin, HTTP/JSON |",
		"| scanlogin, PushBatch | gRPC | 100 | 20 | 0.450 ms | 0.900 ms | 0 | 0 | 15.0 µs | 1.50 | ×2.00 |",
		"| scanlogin, batch HTTP/JSON | HTTP/JSON | 100 | 20 | 0.750 ms | 1.500 ms | 0 | 0 | 24.0 µs | 1.50 | ×1.25 |",
		"| scanlogin | gRPC | 1 | 2000 | 0.350 ms | 0.700 ms | 0 | 0 | 75.0 µs | 1.50 | ×1.20 |",
		"| baseline | HTTP | 1 | 2000 | 0.300 ms | 0.600 ms | 0 | 0 | 90.0 µs | 1.50 | — |",
		"| batch of 100 over gRPC: p99 ≤ 1 ms at 2,000 messages/s, 0 lost | 0.900 ms, 0 lost, 0 errors | yes |",
		"| batch of 100 over HTTP/JSON: p99 ≤ 1 ms at 2,000 messages/s, 0 lost | 1.500 ms, 0 lost, 0 errors | no |",
		"| batch of 100 over gRPC: push-server CPU per message ≤ 20 µs | 15.0 µs | yes |",
		"| batch of 100 over HTTP/JSON: push-server CPU per message ≤ 20 µs | 24.0 µs | no |",
		"| single Push over gRPC: push-server CPU per push ≤ the baseline's per HTTP push, same run | 75.0 µs against 90.0 µs | yes |",
		"| single Push over HTTP/JSON: CPU per push ≤ the baseline's | 100.0 µs against 90.0 µs | no |",
		"| abc123 |",
		" | 15.0 µs, 0.900 ms |\n" + historyEnd,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
