package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scanlogin/scanlogin/internal/browsertest"
	"github.com/scanlogin/scanlogin/internal/proctest"
	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/internal/testkey"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

// The soak test is off unless soakEnv holds how long its load runs
// (SCANLOGIN_SOAK=10m, as make soak sets it), so make test skips it. When
// soakReportEnv names a file, the summary is also written there, as
// Markdown.
const (
	soakEnv       = "SCANLOGIN_SOAK"
	soakReportEnv = "SCANLOGIN_SOAK_REPORT"
)

// soakBrowsers is how many people use the site at once, each at one
// browser, one login after another.
const soakBrowsers = 200

// wechat-callback's replies in the soak, told apart by the phone.
const (
	soakReplyOK          = "soak-login-ok"
	soakReplyExpired     = "soak-expired"
	soakReplyNotFound    = "soak-not-found"
	soakReplyUnavailable = "soak-unavailable"
)

// soakPushEvent is the event of every push.
const soakPushEvent = "soak.push"

// Leak bounds, between the idle sample after the warm-up and the idle
// sample after the load: goroutines and open files may grow by a little,
// RSS by half plus some, since Go gives memory back to the system slowly.
const (
	leakGoroutines = 50
	leakFiles      = 20
	leakRSSFactor  = 1.5
	leakRSSSlack   = 20 << 20
)

// TestSoak runs two push-servers, wechat-callback, the simulator and
// Redis as processes under a steady churn of browsers for the time in
// SCANLOGIN_SOAK: each browser connects, has its code scanned on the
// simulated phone (the simulator posts the signed, encrypted event to
// wechat-callback, which calls Notify), and logs in; some drop before the
// scan and resume on either instance; logged-in tabs get pushes over gRPC
// and the JSON API. On the way one push-server is restarted (its browsers
// get 1001 and resume on the other) and Redis once. Every accepted scan
// must give exactly one login, at the browser that showed the code, and
// each process's RSS, goroutines and open files, idle after the load, must
// be back near what they were idle after the warm-up.
//
// Redis runs without persistence, so a login stored in Redis when it dies
// is gone by design: scans pause (connections, resumes and pushes go on)
// from just before Redis is killed until both instances are ready again.
func TestSoak(t *testing.T) {
	raw := os.Getenv(soakEnv)
	if raw == "" {
		t.Skipf("the soak runs with %s set to a duration, e.g. %s=10m (make soak)", soakEnv, soakEnv)
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 30*time.Second {
		t.Fatalf("%s=%q: want a duration of 30s or more", soakEnv, raw)
	}
	s := startSoak(t)
	l := s.newLoad()

	warm := min(max(d/10, 15*time.Second), 30*time.Second)
	t.Logf("warm-up: %d browsers for %s", soakBrowsers, warm)
	s.run(l, warm, nil)
	start := s.settle()
	t.Logf("idle after the warm-up:\n%s", s.usageTable(start))

	began := time.Now()
	t.Logf("load: %d browsers for %s", soakBrowsers, d)
	peak := s.run(l, d, []soakEvent{
		{at: d / 3, name: "push-server A restarted", do: func() { s.restartPush(0) }},
		{at: 2 * d / 3, name: "Redis restarted", do: func() { s.restartRedis(l) }},
	})
	end := s.settle()

	leaks := s.leaks(start, end)
	report := s.report(warm, d, began, l, start, end, peak, leaks)
	t.Logf("soak summary:\n%s", report)
	if f := os.Getenv(soakReportEnv); f != "" {
		if err := os.WriteFile(f, []byte(report), 0o644); err != nil {
			t.Errorf("write %s: %v", f, err)
		}
	}
	n := &l.n
	if n.lost.Load() != 0 || n.duplicated.Load() != 0 || n.wrong.Load() != 0 {
		t.Errorf("logins: %d lost, %d duplicated, %d at the wrong browser; want 0", n.lost.Load(), n.duplicated.Load(), n.wrong.Load())
	}
	if n.pushLost.Load() != 0 {
		t.Errorf("%d pushes delivered to an open tab never arrived; want 0", n.pushLost.Load())
	}
	if n.accepted.Load() == 0 || n.pushReceived.Load() == 0 {
		t.Errorf("no load went through: %d scans accepted, %d pushes received", n.accepted.Load(), n.pushReceived.Load())
	}
	for _, p := range l.problemList() {
		t.Log(p)
	}
	for _, leak := range leaks {
		t.Error(leak)
	}
}

// soakProc is one program of the soak, started again with the same
// settings, so on the same ports, by a restart.
type soakProc struct {
	t       *testing.T
	label   string // its name in the report
	program string // its binary, a key of programs
	env     []string
	metrics string // its /metrics URL; "" when it has none

	mu        sync.Mutex
	prog      *proctest.Program
	before    string // output of the runs before a restart
	restarted time.Time
}

// start runs the program until it logs its listening line. After a
// restart the old process's ports may stay taken for a moment.
func (p *soakProc) start() {
	p.t.Helper()
	var err error
	for range 40 {
		var prog *proctest.Program
		prog, err = startProgram(p.t, p.program, p.env)
		if err == nil {
			p.mu.Lock()
			p.prog = prog
			p.mu.Unlock()
			return
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.t.Fatalf("start %s: %v", p.label, err)
}

// stop ends the program with SIGTERM; it must exit cleanly.
func (p *soakProc) stop() {
	p.mu.Lock()
	prog := p.prog
	p.mu.Unlock()
	if prog == nil {
		return
	}
	if err := prog.Stop(); err != nil {
		p.t.Errorf("%s on SIGTERM: %v", p.label, err)
	}
}

func (p *soakProc) restart() {
	p.t.Helper()
	p.mu.Lock()
	p.restarted = time.Now()
	p.mu.Unlock()
	p.stop()
	p.mu.Lock()
	p.before += p.prog.Logs.String() + "---- restarted ----\n"
	p.mu.Unlock()
	p.start()
}

func (p *soakProc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prog.Cmd.Process.Pid
}

// soakServer is a push-server instance and its clients.
type soakServer struct {
	proc            *soakProc
	http, grpc, api string // addresses
	client          pushv1.PushServiceClient
}

type soak struct {
	t         *testing.T
	redis     *redistest.Server
	sim, cb   *soakProc
	push      [2]*soakServer
	procs     []*soakProc // in the order of the report
	grpcToken string
	http      *http.Client
}

// startSoak starts Redis, the simulator, two push-servers sharing Redis
// and a token key, and wechat-callback in front of the second: the
// development settings of the stack tests, without the per-address limits
// (every browser here comes from 127.0.0.1).
func startSoak(t *testing.T) *soak {
	t.Helper()
	rs := redistest.Start(t)
	keyFile, _ := testkey.Write(t)
	ports := proctest.FreePorts(t, 8)
	simAddr, cbAddr := addr(ports[0]), addr(ports[1])
	s := &soak{t: t, redis: rs, grpcToken: randomHex(16), http: &http.Client{Timeout: 30 * time.Second}}
	common := []string{
		"WECHAT_APPID=" + devAppID,
		"WECHAT_SECRET=" + devSecret,
		"WECHAT_TOKEN=" + devToken,
		"WECHAT_AES_KEY=" + devAESKey,
		"GRPC_AUTH_TOKEN=" + s.grpcToken,
		"LOG_LEVEL=info",
	}
	sim := "http://" + simAddr
	s.sim = &soakProc{t: t, label: "wechat-sim", program: "wechat-sim", env: append(slicesClone(common),
		"SIM_HTTP_ADDR="+simAddr,
		"SIM_CALLBACK_URL=http://"+cbAddr+"/wechat/callback",
		"SIM_ORIGINAL_ID="+devOriginalID,
		"SIM_TOKEN_TTL=120s",
		"SIM_FOLLOWERS=none",
	)}
	for i, name := range []string{"A", "B"} {
		srv := &soakServer{http: addr(ports[2+3*i]), grpc: addr(ports[3+3*i]), api: addr(ports[4+3*i])}
		srv.proc = &soakProc{t: t, label: "push-server " + name, program: "push-server", metrics: "http://" + srv.http + "/metrics",
			env: append(slicesClone(common),
				"PUSH_HTTP_ADDR="+srv.http,
				"PUSH_GRPC_ADDR="+srv.grpc,
				"PUSH_API_ADDR="+srv.api,
				"WECHAT_API_BASE="+sim,
				"WECHAT_MP_BASE="+sim,
				"REDIS_URL="+rs.URL(),
				"TOKEN_KEY_FILE="+keyFile,
				"LIMIT_CONNS_PER_IP=0",
				"LIMIT_QR_PER_IP=0",
			)}
		s.push[i] = srv
	}
	s.cb = &soakProc{t: t, label: "wechat-callback", program: "wechat-callback", metrics: "http://" + cbAddr + "/metrics",
		env: append(slicesClone(common),
			"CALLBACK_HTTP_ADDR="+cbAddr,
			"WECHAT_API_BASE="+sim,
			"WECHAT_ORIGINAL_ID="+devOriginalID,
			"CALLBACK_REQUIRE_ENCRYPTION=true",
			"FETCH_USER_INFO=true",
			"REDIS_URL="+rs.URL(),
			// Instance A is the one restarted: Notify keeps reaching B.
			"PUSH_GRPC_TARGET="+s.push[1].grpc,
			"REPLY_LOGIN_OK="+soakReplyOK,
			"REPLY_EXPIRED="+soakReplyExpired,
			"REPLY_NOT_FOUND="+soakReplyNotFound,
			"REPLY_UNAVAILABLE="+soakReplyUnavailable,
		)}
	s.procs = []*soakProc{s.push[0].proc, s.push[1].proc, s.cb, s.sim}

	// Cleanups run last-in first-out: the logs are saved once every
	// program has stopped.
	t.Cleanup(func() {
		if t.Failed() {
			s.saveLogs()
		}
	})
	t.Cleanup(func() {
		for _, p := range []*soakProc{s.cb, s.push[0].proc, s.push[1].proc, s.sim} {
			p.stop()
		}
	})
	for _, p := range []*soakProc{s.sim, s.push[0].proc, s.push[1].proc, s.cb} {
		p.start()
	}
	for _, srv := range s.push {
		cc, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		srv.client = pushv1.NewPushServiceClient(cc)
	}
	s.waitReady()
	return s
}

// saveLogs writes each program's output into the artifacts directory.
func (s *soak) saveLogs() {
	dir := artifactsDir(s.t)
	for _, p := range s.procs {
		p.mu.Lock()
		logs := p.before
		if p.prog != nil {
			logs += p.prog.Logs.String()
		}
		p.mu.Unlock()
		f := filepath.Join(dir, strings.ReplaceAll(p.label, " ", "-")+".log")
		if err := os.WriteFile(f, []byte(logs), 0o644); err != nil {
			s.t.Logf("save %s: %v", f, err)
			continue
		}
		s.t.Logf("%s logs: %s", p.label, f)
	}
}

// waitReady waits until both instances and wechat-callback answer /readyz
// with 200.
func (s *soak) waitReady() {
	s.t.Helper()
	urls := []string{"http://" + s.push[0].http + "/readyz", "http://" + s.push[1].http + "/readyz",
		strings.TrimSuffix(s.cb.metrics, "/metrics") + "/readyz"}
	deadline := time.Now().Add(30 * time.Second)
	for _, u := range urls {
		for !httpOK(u) {
			if time.Now().After(deadline) {
				s.t.Fatalf("%s never answered 200", u)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// restartPush restarts instance i with SIGTERM: its browsers are closed
// with 1001 and resume on the other instance.
func (s *soak) restartPush(i int) {
	s.push[i].proc.restart()
	s.waitReady()
}

// restartRedis kills Redis, leaves it down for a moment (new browsers are
// refused, pushes fail), and starts it again, empty. Scans wait meanwhile.
func (s *soak) restartRedis(l *load) {
	l.gate.Lock()
	defer l.gate.Unlock()
	s.redis.Kill()
	time.Sleep(2 * time.Second)
	s.redis.Restart()
	s.waitReady()
}

// soakEvent is something done to the programs during the load.
type soakEvent struct {
	at   time.Duration // after the load's start
	name string
	do   func()
}

// run drives the browsers for d, doing each event at its time on the way,
// and returns the highest figures sampled meanwhile. It returns once every
// browser has finished its login in progress and closed its connections.
func (s *soak) run(l *load, d time.Duration, events []soakEvent) map[string]usage {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	began := time.Now()
	var browsers sync.WaitGroup
	for i := range soakBrowsers {
		browsers.Go(func() { l.browser(ctx, i) })
	}
	peak := map[string]usage{}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for label, u := range s.sample() {
				p := peak[label]
				peak[label] = usage{rss: max(p.rss, u.rss), files: max(p.files, u.files), goroutines: max(p.goroutines, u.goroutines)}
			}
		}
	}()
	for _, ev := range events {
		select {
		case <-ctx.Done():
			continue
		case <-time.After(time.Until(began.Add(ev.at))):
		}
		t0 := time.Now()
		ev.do()
		s.t.Logf("%s at %s (%s)", ev.name, t0.Sub(began).Round(time.Second), time.Since(t0).Round(100*time.Millisecond))
		l.event(fmt.Sprintf("%s at %s", ev.name, t0.Sub(began).Round(time.Second)))
	}
	<-ctx.Done()
	browsers.Wait()
	<-sampled
	return peak
}

// idleWait is how long settle lets the programs sit idle: longer than Go's
// HTTP clients keep an idle connection alive (90 s), so that the
// connections a burst of scans opened between the programs are gone.
const idleWait = 100 * time.Second

// settle waits until the instances hold no connection, then idleWait, and
// until the Go programs' goroutine counts stop moving, then samples every
// process.
func (s *soak) settle() map[string]usage {
	s.t.Helper()
	for _, srv := range s.push {
		deadline := time.Now().Add(30 * time.Second)
		for {
			n, err := metricValue(s.http, "http://"+srv.http+"/metrics", "scanlogin_ws_connections")
			if err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("%s still holds %v connections (%v) after the load", srv.proc.label, n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	s.http.CloseIdleConnections()
	time.Sleep(idleWait)
	prev := s.sample()
	for range 15 {
		time.Sleep(2 * time.Second)
		cur := s.sample()
		same := true
		for label, u := range cur {
			same = same && u.goroutines == prev[label].goroutines
		}
		prev = cur
		if same {
			break
		}
	}
	return prev
}

// usage is what a process holds at one moment.
type usage struct {
	rss        int64 // bytes: VmRSS
	files      int   // open file descriptors
	goroutines int   // -1 for a program without Go's metrics
}

// sample reads each process's usage; a process it cannot read is left
// out, and the leak check then says so.
func (s *soak) sample() map[string]usage {
	out := map[string]usage{}
	for _, p := range s.procs {
		u, err := procUsage(p.pid())
		if err != nil {
			continue
		}
		u.goroutines = -1
		if p.metrics != "" {
			n, err := metricValue(s.http, p.metrics, "go_goroutines")
			if err != nil {
				continue
			}
			u.goroutines = int(n)
		}
		out[p.label] = u
	}
	if pid, err := redisPID(s.redis.Addr()); err == nil {
		if u, err := procUsage(pid); err == nil {
			u.goroutines = -1
			out["redis-server"] = u
		}
	}
	return out
}

// procUsage reads RSS and open files of process pid from /proc.
func procUsage(pid int) (usage, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	var u usage
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return usage{}, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			u.rss = kb << 10
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return usage{}, err
	}
	u.files = len(fds)
	return u, nil
}

// metricValue reads one unlabelled sample from a Prometheus text page.
func metricValue(c *http.Client, url, name string) (float64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}

// redisPID asks Redis for its process id (it runs under redistest, which
// does not tell).
func redisPID(addr string) (int, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

// leaks compares the idle samples of each process with the bounds. The
// simulator's RSS is not bounded: like WeChat, it answers for every QR
// code for an hour after its expiry, so it grows with the codes made.
func (s *soak) leaks(start, end map[string]usage) []string {
	var out []string
	for _, label := range s.labels() {
		a, okA := start[label]
		b, okB := end[label]
		if !okA || !okB {
			out = append(out, fmt.Sprintf("%s: not sampled at the start (%v) or the end (%v)", label, okA, okB))
			continue
		}
		if a.goroutines >= 0 && b.goroutines > a.goroutines+leakGoroutines {
			out = append(out, fmt.Sprintf("%s: %d goroutines idle after the load, %d after the warm-up (bound +%d)", label, b.goroutines, a.goroutines, leakGoroutines))
		}
		if b.files > a.files+leakFiles {
			out = append(out, fmt.Sprintf("%s: %d open files idle after the load, %d after the warm-up (bound +%d)", label, b.files, a.files, leakFiles))
		}
		if label != s.sim.label && float64(b.rss) > leakRSSFactor*float64(a.rss)+leakRSSSlack {
			out = append(out, fmt.Sprintf("%s: RSS %s idle after the load, %s after the warm-up (bound ×%.1f + %s)",
				label, mib(b.rss), mib(a.rss), leakRSSFactor, mib(leakRSSSlack)))
		}
	}
	return out
}

func (s *soak) labels() []string {
	var out []string
	for _, p := range s.procs {
		out = append(out, p.label)
	}
	return append(out, "redis-server")
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (s *soak) usageTable(m map[string]usage) string {
	var b strings.Builder
	b.WriteString("| process | RSS | goroutines | open files |\n| --- | ---: | ---: | ---: |\n")
	for _, label := range s.labels() {
		u, ok := m[label]
		if !ok {
			fmt.Fprintf(&b, "| %s | not sampled | | |\n", label)
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d |\n", label, mib(u.rss), goroutines(u.goroutines), u.files)
	}
	return b.String()
}

func goroutines(n int) string {
	if n < 0 {
		return "—"
	}
	return strconv.Itoa(n)
}

// report is the summary, as Markdown.
func (s *soak) report(warm, d time.Duration, began time.Time, l *load, start, end, peak map[string]usage, leaks []string) string {
	var b strings.Builder
	n := &l.n
	fmt.Fprintf(&b, "%d browsers for %s after a %s warm-up (the counts below include it); %s.\n\n",
		soakBrowsers, d, warm, strings.Join(l.events(), "; "))
	b.WriteString("| process | RSS: idle start → idle end (peak) | goroutines | open files |\n| --- | --- | --- | --- |\n")
	for _, label := range s.labels() {
		a, b2, p := start[label], end[label], peak[label]
		g := "—"
		if a.goroutines >= 0 {
			g = fmt.Sprintf("%d → %d (%d)", a.goroutines, b2.goroutines, p.goroutines)
		}
		note := ""
		for _, proc := range s.procs {
			if proc.label == label && !proc.restarted.IsZero() {
				note = fmt.Sprintf(" (restarted at %s)", proc.restarted.Sub(began).Round(time.Second))
			}
		}
		if label == "redis-server" {
			note = " (restarted, empty)"
		}
		fmt.Fprintf(&b, "| %s%s | %.1f → %.1f MiB (%.1f) | %s | %d → %d (%d) |\n", label, note,
			float64(a.rss)/(1<<20), float64(b2.rss)/(1<<20), float64(p.rss)/(1<<20), g, a.files, b2.files, p.files)
	}
	fmt.Fprintf(&b, "\nBounds, idle end against idle start: goroutines +%d, open files +%d, RSS ×%.1f + %s (not the simulator's: it keeps every QR code for an hour). ",
		leakGoroutines, leakFiles, leakRSSFactor, mib(leakRSSSlack))
	if len(leaks) == 0 {
		b.WriteString("All within them.\n\n")
	} else {
		fmt.Fprintf(&b, "Outside them: %s.\n\n", strings.Join(leaks, "; "))
	}
	rows := [][2]string{
		{"login attempts (connect, scan, wait for the login)", fmt.Sprint(n.cycles.Load())},
		{"QR codes shown", fmt.Sprint(n.qrcodes.Load())},
		{"browsers refused a code on connect (Redis down, instance stopping)", fmt.Sprint(n.connectRefused.Load())},
		{"dropped before the scan, then resumed", fmt.Sprint(n.drops.Load())},
		{"closed with 1001 by a stopping instance, then resumed", fmt.Sprint(n.goingAway.Load())},
		{"resumes (on either instance)", fmt.Sprint(n.resumes.Load())},
		{"scans accepted (the phone saw the login reply)", fmt.Sprint(n.accepted.Load())},
		{"scans answered otherwise", l.otherReplies()},
		{"logins received for accepted scans", fmt.Sprint(n.logins.Load())},
		{"**logins lost** (accepted, never received)", fmt.Sprint(n.lost.Load())},
		{"**logins duplicated**", fmt.Sprint(n.duplicated.Load())},
		{"**logins at the wrong browser**", fmt.Sprint(n.wrong.Load())},
		{"logins received for a scan answered otherwise", fmt.Sprint(n.unconfirmed.Load())},
		{"pushes (gRPC / JSON API)", fmt.Sprintf("%d / %d", n.pushGRPC.Load(), n.pushJSON.Load())},
		{"calls again while a new tab was not yet reachable (delivered 0)", fmt.Sprint(n.pushAgain.Load())},
		{"logged-in tabs closed by the server (1001, 4001), opened again", fmt.Sprint(n.tabsClosed.Load())},
		{"pushes received by the tab", fmt.Sprint(n.pushReceived.Load())},
		{"**pushes lost** (delivered to an open tab, never received)", fmt.Sprint(n.pushLost.Load())},
		{"pushes failed (instance or Redis down) / never reached a tab / tab closed first", fmt.Sprintf("%d / %d / %d", n.pushFailed.Load(), n.pushUndelivered.Load(), n.pushInterrupted.Load())},
	}
	b.WriteString("| | count |\n| --- | ---: |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], r[1])
	}
	return b.String()
}

// counters are what the browsers saw, for the report.
type counters struct {
	cycles, qrcodes, connectRefused              atomic.Int64
	drops, goingAway, resumes                    atomic.Int64
	accepted, logins, lost, duplicated, wrong    atomic.Int64
	unconfirmed                                  atomic.Int64
	pushGRPC, pushJSON, pushReceived, pushLost   atomic.Int64
	pushFailed, pushUndelivered, pushInterrupted atomic.Int64
	pushAgain, tabsClosed                        atomic.Int64
}

// load is the browsers of the soak.
type load struct {
	s      *soak
	n      counters
	dialer websocket.Dialer

	// gate is held shared by each scan until its login arrives, and alone
	// while Redis is restarted.
	gate sync.RWMutex

	mu       sync.Mutex
	replies  map[string]int // scans answered other than soakReplyOK, by reply
	problems []string       // the first few, for the log
	done     []string       // the events, in order
	nProblem int
}

func (s *soak) newLoad() *load {
	return &load{s: s, replies: map[string]int{}, dialer: websocket.Dialer{HandshakeTimeout: 5 * time.Second}}
}

func (l *load) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nProblem++
	if len(l.problems) < 20 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

func (l *load) problemList() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.problems)
	if l.nProblem > len(out) {
		out = append(out, fmt.Sprintf("... %d more", l.nProblem-len(out)))
	}
	return out
}

func (l *load) event(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = append(l.done, s)
}

func (l *load) events() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.done) == 0 {
		return []string{"no restart"}
	}
	return slices.Clone(l.done)
}

func (l *load) otherReplies() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.replies) == 0 {
		return "0"
	}
	var parts []string
	for r, n := range l.replies {
		parts = append(parts, fmt.Sprintf("%s %d", r, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// person is one browser's user: always the same WeChat user, a login
// after another, and a logged-in tab that receives the pushes.
type person struct {
	id     int
	openid string
	rng    *rand.Rand
	token  string // of the latest login
	tab    tab    // the logged-in tab; ws nil when closed
}

// tab is a browser's WebSocket and the instance it is on.
type tab struct {
	ws  *wsConn
	srv int
}

// close closes the connection as a browser closing the tab does.
func (t *tab) close() {
	if t.ws != nil {
		t.ws.close(true)
		t.ws = nil
	}
}

// drop loses the connection without a word, as a network does.
func (t *tab) drop() {
	if t.ws != nil {
		t.ws.close(false)
		t.ws = nil
	}
}

// wsConn is a WebSocket read all the time, as a browser reads it, so that
// pings and close frames are answered at once; the messages wait in a
// queue until the test looks at them.
type wsConn struct {
	ws   *websocket.Conn
	msgs chan browsertest.Message // closed after the last one; then err says why
	err  error
	gone chan struct{} // closed when the connection has ended
	done chan struct{} // closed by close
	once sync.Once
}

// errTimeout is next's error when no message came in time.
var errTimeout = errors.New("no message in time")

func (l *load) dial(addr, query string) (*wsConn, error) {
	u := "ws://" + addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	ws, _, err := l.dialer.Dial(u, nil)
	if err != nil {
		return nil, err
	}
	c := &wsConn{ws: ws, msgs: make(chan browsertest.Message, 16), gone: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *wsConn) read() {
	defer close(c.gone)
	defer close(c.msgs)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		var m browsertest.Message
		if err := json.Unmarshal(data, &m); err != nil {
			c.err = fmt.Errorf("bad message %q: %w", data, err)
			return
		}
		select {
		case c.msgs <- m:
		case <-c.done:
			c.err = net.ErrClosed
			return
		}
	}
}

// ended reports whether the connection has ended.
func (c *wsConn) ended() bool {
	select {
	case <-c.gone:
		return true
	default:
		return false
	}
}

// next returns the next message, or why there is none: errTimeout, or
// how the connection ended (a *websocket.CloseError for a close frame).
func (c *wsConn) next(deadline time.Time) (browsertest.Message, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return browsertest.Message{}, c.err
		}
		return m, nil
	case <-timer.C:
		return browsertest.Message{}, errTimeout
	}
}

// close ends the connection, with a close frame (1001, a tab closed) when
// polite.
func (c *wsConn) close(polite bool) {
	c.once.Do(func() {
		close(c.done)
		if polite {
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "")
			_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		}
		c.ws.Close()
	})
}

// browser logs in again and again, with a pause between logins, until
// ctx ends; the login under way when it ends is finished.
func (l *load) browser(ctx context.Context, id int) {
	p := &person{id: id, openid: fmt.Sprintf("oSoak%03d", id), rng: rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))}
	defer p.tab.close()
	pause := func(upTo time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(p.rng.Int64N(int64(upTo)))):
		}
	}
	pause(3 * time.Second) // not every browser at once
	for i := 0; ctx.Err() == nil; i++ {
		if l.login(p, i) && p.rng.IntN(2) == 0 {
			l.pushTo(p)
		}
		pause(3 * time.Second)
	}
}

// login is one login: connect, have the code scanned on the phone
// (subscribe and SCAN events in turn) after the code has been shown for a
// moment, sometimes drop the connection meanwhile and resume after the
// scan, and wait for the login. It reports whether a login arrived.
func (l *load) login(p *person, i int) bool {
	l.n.cycles.Add(1)
	var b tab
	defer b.close()
	qr, ok := l.open(&b, p.rng.IntN(2))
	if !ok {
		return false
	}
	if p.rng.IntN(10) < 3 {
		b.drop()
		l.n.drops.Add(1)
	}
	// The person reaches for the phone.
	time.Sleep(500*time.Millisecond + time.Duration(p.rng.Int64N(int64(2*time.Second))))

	l.gate.RLock()
	defer l.gate.RUnlock()
	reply := l.scan(qr.ScanURL, p.openid, i%2 == 0)
	accepted := reply == soakReplyOK
	if accepted {
		l.n.accepted.Add(1)
	} else {
		l.mu.Lock()
		l.replies[reply]++
		l.mu.Unlock()
	}
	wait := 3 * time.Second
	if accepted {
		wait = 20 * time.Second
	}
	lg, why := l.awaitLogin(&b, p, qr, time.Now().Add(wait))
	switch {
	case lg.Type == "login" && lg.User["openid"] != p.openid:
		l.n.wrong.Add(1)
		l.problem("browser %d: the login of another user", p.id)
		return false
	case lg.Type == "login" && accepted:
		l.n.logins.Add(1)
	case lg.Type == "login":
		l.n.unconfirmed.Add(1)
	case accepted:
		l.n.lost.Add(1)
		l.problem("browser %d: scan accepted, no login: %s", p.id, why)
		return false
	default:
		return false
	}
	p.token = lg.Token
	return true
}

// open connects a new browser to instance srv, or the other one when srv
// refuses, and reads its QR code.
func (l *load) open(b *tab, srv int) (browsertest.Message, bool) {
	for _, i := range []int{srv, 1 - srv} {
		ws, err := l.dial(l.s.push[i].http, "")
		if err != nil {
			continue
		}
		b.ws, b.srv = ws, i
		m, err := ws.next(time.Now().Add(10 * time.Second))
		if err != nil || m.Type != "qrcode" {
			b.close()
			break
		}
		l.n.qrcodes.Add(1)
		return m, true
	}
	l.n.connectRefused.Add(1)
	return browsertest.Message{}, false
}

// scan has the phone scan the code at scanURL as openid, new to the
// account (subscribe) or a follower (SCAN), and returns the text of
// wechat-callback's reply, or what went wrong.
func (l *load) scan(scanURL, openid string, subscribe bool) string {
	follow := "follower"
	if subscribe {
		follow = "new"
	}
	body, _ := json.Marshal(map[string]string{"openid": openid, "follow": follow})
	req, err := http.NewRequest(http.MethodPost, scanURL, bytes.NewReader(body))
	if err != nil {
		return "bad scan URL"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := l.s.http.Do(req)
	if err != nil {
		return "phone: " + err.Error()
	}
	defer resp.Body.Close()
	var out struct {
		Reply struct {
			Kind    string `json:"kind"`
			Text    string `json:"text"`
			Problem string `json:"problem"`
		} `json:"reply"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("phone: HTTP %d", resp.StatusCode)
	}
	if out.Reply.Kind != "text" {
		return "reply " + out.Reply.Kind
	}
	return out.Reply.Text
}

// awaitLogin reads the browser's connection until the login of qr's
// session, resuming the session (on either instance) whenever the
// connection is gone: dropped by the browser, or closed by an instance
// that stops. After the login the connection must close normally with
// nothing more. It returns the login, or why none came.
func (l *load) awaitLogin(b *tab, p *person, qr browsertest.Message, deadline time.Time) (browsertest.Message, string) {
	for time.Now().Before(deadline) {
		if b.ws == nil && !l.resume(b, p.rng.IntN(2), qr, deadline) {
			return browsertest.Message{}, "no instance took the resume"
		}
		m, err := b.ws.next(deadline)
		if err != nil {
			var ce *websocket.CloseError
			switch {
			case errors.Is(err, errTimeout):
				return browsertest.Message{}, "timed out"
			case errors.As(err, &ce) && (ce.Code == websocket.CloseNormalClosure || ce.Code == 4002):
				return browsertest.Message{}, fmt.Sprintf("closed with %d", ce.Code)
			case errors.As(err, &ce) && ce.Code == websocket.CloseGoingAway:
				l.n.goingAway.Add(1)
			}
			b.drop()
			continue
		}
		switch m.Type {
		case "qrcode", "scanned", "pong":
			continue
		case "login":
			l.afterLogin(b, p)
			return m, ""
		}
		return browsertest.Message{}, strings.TrimSpace(m.Type + " " + m.Code)
	}
	return browsertest.Message{}, "timed out"
}

// afterLogin reads the connection to its close: a second login there is a
// duplicate.
func (l *load) afterLogin(b *tab, p *person) {
	for {
		m, err := b.ws.next(time.Now().Add(10 * time.Second))
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
				l.problem("browser %d: after the login the connection ended with %v, not 1000", p.id, err)
			}
			return
		}
		if m.Type == "login" {
			l.n.duplicated.Add(1)
			l.problem("browser %d: a second login on the connection", p.id)
		}
	}
}

// resume reconnects to qr's session, first on instance srv, until one
// instance takes it or the deadline passes.
func (l *load) resume(b *tab, srv int, qr browsertest.Message, deadline time.Time) bool {
	q := url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode()
	for i := srv; time.Now().Before(deadline); i = 1 - i {
		ws, err := l.dial(l.s.push[i].http, q)
		if err == nil {
			l.n.resumes.Add(1)
			b.ws, b.srv = ws, i
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// pushTo pushes to the person's openid, over gRPC or the JSON API of
// either instance, and waits for the message at the logged-in tab (opened
// with the latest token if it is not open). A Push that reached no tab is
// sent again for a moment: the tab may not be registered yet.
func (l *load) pushTo(p *person) {
	if p.tab.ws != nil && p.tab.ws.ended() {
		// Closed by the server: its instance stopped, or the token expired.
		l.n.tabsClosed.Add(1)
		p.tab.drop()
	}
	if p.tab.ws == nil {
		q := "token=" + url.QueryEscape(p.token)
		first := p.rng.IntN(2)
		for _, i := range []int{first, 1 - first} {
			ws, err := l.dial(l.s.push[i].http, q)
			if err == nil {
				p.tab = tab{ws: ws, srv: i}
				break
			}
		}
		if p.tab.ws == nil {
			l.n.pushFailed.Add(1)
			return
		}
	}
	nonce := strconv.FormatInt(l.n.pushGRPC.Load()+l.n.pushJSON.Load()+1, 10) + "-" + strconv.FormatUint(p.rng.Uint64(), 36)
	viaJSON := p.rng.IntN(2) == 0
	if viaJSON {
		l.n.pushJSON.Add(1)
	} else {
		l.n.pushGRPC.Add(1)
	}
	srv := p.rng.IntN(2)
	deadline := time.Now().Add(5 * time.Second)
	for calls := 0; ; calls++ {
		if calls > 0 {
			l.n.pushAgain.Add(1)
		}
		var delivered int64
		var err error
		if viaJSON {
			delivered, err = l.pushJSON(srv, p.openid, nonce)
		} else {
			delivered, err = l.pushGRPC(srv, p.openid, nonce)
		}
		if err != nil {
			l.n.pushFailed.Add(1)
			return
		}
		if delivered > 0 {
			break
		}
		if time.Now().After(deadline) {
			l.n.pushUndelivered.Add(1)
			l.problem("browser %d at %s: push %s reached no tab for 5 s (the tab on instance %d)", p.id, time.Now().Format("15:04:05"), nonce, p.tab.srv)
			p.tab.close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		m, err := p.tab.ws.next(time.Now().Add(10 * time.Second))
		if err != nil {
			if errors.Is(err, errTimeout) {
				l.n.pushLost.Add(1)
				l.problem("browser %d: push %s delivered, never received", p.id, nonce)
			} else {
				l.n.pushInterrupted.Add(1)
			}
			p.tab.close()
			return
		}
		if m.Type == "message" && m.Event == soakPushEvent && string(m.Data) == strconv.Quote(nonce) {
			l.n.pushReceived.Add(1)
			return
		}
	}
}

func (l *load) pushGRPC(srv int, openid, nonce string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+l.s.grpcToken)
	resp, err := l.s.push[srv].client.Push(ctx, &pushv1.PushRequest{
		Target: &pushv1.PushRequest_Openid{Openid: openid}, Event: soakPushEvent, Data: []byte(strconv.Quote(nonce))})
	if err != nil {
		return 0, err
	}
	return int64(resp.Delivered), nil
}

func (l *load) pushJSON(srv int, openid, nonce string) (int64, error) {
	body, _ := json.Marshal(map[string]string{"openid": openid, "event": soakPushEvent, "data": nonce})
	req, err := http.NewRequest(http.MethodPost, "http://"+l.s.push[srv].api+"/v1/push", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+l.s.grpcToken)
	resp, err := l.s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	var out struct {
		Delivered int64 `json:"delivered"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, err
	}
	return out.Delivered, nil
}
