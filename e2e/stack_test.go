package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the three binaries, built once by TestMain.
var binDir string

// programs are the binaries under test and the module directory of each.
var programs = map[string]string{
	"wechat-sim":      "../wechat-sim",
	"wechat-callback": "../wechat-callback",
	"push-server":     "../push-server",
}

// exeName is the file name of a program's binary in binDir. It differs
// from the program's own name so that a developer's `killall push-server`
// or `pkill wechat-sim` elsewhere on the machine leaves the test alone.
func exeName(program string) string {
	return "e2e-" + strings.TrimPrefix(strings.TrimPrefix(program, "wechat-"), "push-")
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "scanlogin-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// build compiles the three programs into dir, in parallel.
func build(dir string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(programs))
	for name, module := range programs {
		wg.Go(func() {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, exeName(name)), "./cmd/"+name)
			cmd.Dir = module
			cmd.Env = os.Environ()
			if os.Getenv("GOTOOLCHAIN") == "" {
				cmd.Env = append(cmd.Env, "GOTOOLCHAIN=local")
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("build %s: %w\n%s", name, err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Development settings, as in scripts/run-all.sh.
const (
	devAppID      = "wx5ca11091d0e5f00d"
	devSecret     = "dev-secret-not-for-production"
	devToken      = "scanlogindev"
	devAESKey     = "ScanLoginDevEncodingAESKey0123456789abcdefg"
	devOriginalID = "gh_5ca11091d0e5"
	host          = "127.0.0.1"
)

// stack is the three programs running together.
type stack struct {
	t                                  *testing.T
	simPort, cbPort, pushPort, rpcPort int
	env                                map[string][]string // per program
	mu                                 sync.Mutex
	procs                              map[string]*proc
}

// proc is one running program.
type proc struct {
	name   string
	cmd    *exec.Cmd
	logs   *logBuffer
	before string        // output of the runs before a restart
	done   chan struct{} // closed when it exited
	err    error         // its exit status, once done
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePorts returns n ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startStack runs the simulator, push-server and wechat-callback with the
// development settings; extra adds or overrides settings per program. The
// ports were free when picked, but another process may take one before a
// program binds it: then the stack starts again on new ports.
func startStack(t *testing.T, extra map[string][]string) *stack {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, err := tryStack(t, extra)
		if err == nil {
			return s
		}
		s.stopAll()
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			s.saveLogs()
			t.Fatal(err)
		}
		t.Logf("retrying on other ports: %v", err)
	}
}

func tryStack(t *testing.T, extra map[string][]string) (*stack, error) {
	p := freePorts(t, 4)
	s := &stack{t: t, simPort: p[0], cbPort: p[1], pushPort: p[2], rpcPort: p[3], procs: map[string]*proc{}}
	grpcToken := randomHex(16)
	common := []string{
		"WECHAT_APPID=" + devAppID,
		"WECHAT_SECRET=" + devSecret,
		"WECHAT_TOKEN=" + devToken,
		"WECHAT_AES_KEY=" + devAESKey,
		"GRPC_AUTH_TOKEN=" + grpcToken,
		"LOG_LEVEL=debug",
	}
	sim := s.SimURL()
	s.env = map[string][]string{
		"wechat-sim": append(slicesClone(common),
			"SIM_HTTP_ADDR="+addr(s.simPort),
			"SIM_CALLBACK_URL=http://"+addr(s.cbPort)+"/wechat/callback",
			"SIM_ORIGINAL_ID="+devOriginalID,
			"SIM_TOKEN_TTL=60s",
		),
		"push-server": append(slicesClone(common),
			"PUSH_HTTP_ADDR="+addr(s.pushPort),
			"PUSH_GRPC_ADDR="+addr(s.rpcPort),
			"PUSH_API_ADDR=127.0.0.1:0",
			"WECHAT_API_BASE="+sim,
			"WECHAT_MP_BASE="+sim,
			"PUSH_SIMULATOR_URL="+sim,
		),
		"wechat-callback": append(slicesClone(common),
			"CALLBACK_HTTP_ADDR="+addr(s.cbPort),
			"WECHAT_API_BASE="+sim,
			"WECHAT_ORIGINAL_ID="+devOriginalID,
			"CALLBACK_REQUIRE_ENCRYPTION=true",
			"FETCH_USER_INFO=true",
			"PUSH_GRPC_TARGET="+addr(s.rpcPort),
		),
	}
	for name, vars := range extra {
		s.env[name] = append(s.env[name], vars...)
	}
	for _, name := range []string{"wechat-sim", "push-server", "wechat-callback"} {
		if err := s.start(name); err != nil {
			return s, err
		}
	}
	t.Cleanup(s.stopAll)
	t.Cleanup(func() {
		if t.Failed() {
			s.saveLogs()
		}
	})
	return s, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func addr(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SimURL is the simulator's base URL.
func (s *stack) SimURL() string { return "http://" + addr(s.simPort) }

// PageURL is the login page.
func (s *stack) PageURL() string { return "http://" + addr(s.pushPort) + "/" }

// port returns the HTTP port of a program.
func (s *stack) port(name string) int {
	return map[string]int{"wechat-sim": s.simPort, "wechat-callback": s.cbPort, "push-server": s.pushPort}[name]
}

// start runs the program and waits until its /healthz answers.
func (s *stack) start(name string) error {
	cmd := exec.Command(filepath.Join(binDir, exeName(name)))
	// The programs read only the variables we give them, plus what a
	// process needs.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, s.env[name]...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &proc{name: name, cmd: cmd, logs: &logBuffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(p.logs, "%s\n", sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(pw, "---- %s exited: %v (%s) ----\n", name, p.err, cmd.ProcessState)
		pw.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start-up: %v\n%s", name, p.err, p.logs)
		default:
		}
		if httpOK("http://" + addr(s.port(name)) + "/healthz") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: /healthz not answering after 15 s\n%s", name, p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpOK(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop ends the program with SIGTERM, as an operator would, and waits.
func (s *stack) stop(name string) {
	s.t.Helper()
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		s.t.Errorf("%s did not stop on SIGTERM within 15 s", name)
	}
}

// restart stops the program and starts it again with the same settings,
// on the same ports.
func (s *stack) restart(name string) {
	s.t.Helper()
	s.mu.Lock()
	old := s.procs[name]
	s.mu.Unlock()
	s.stop(name)
	if err := s.start(name); err != nil {
		s.t.Fatalf("restart: %v", err)
	}
	s.mu.Lock()
	s.procs[name].before = old.before + old.logs.String() + "---- restarted ----\n"
	s.mu.Unlock()
}

func (s *stack) stopAll() {
	for _, name := range []string{"wechat-callback", "push-server", "wechat-sim"} {
		s.stop(name)
	}
}

// saveLogs writes each program's output into the artifacts directory.
func (s *stack) saveLogs() {
	dir := artifactsDir(s.t)
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range s.procs {
		f := filepath.Join(dir, name+".log")
		if err := os.WriteFile(f, []byte(p.before+p.logs.String()), 0o644); err != nil {
			s.t.Logf("save %s: %v", f, err)
			continue
		}
		s.t.Logf("%s logs: %s", name, f)
	}
}

// waitReady waits until wechat-callback's /readyz says push-server is
// reachable again (after a restart of push-server).
func (s *stack) waitReady(ctx context.Context) {
	s.t.Helper()
	for !httpOK("http://" + addr(s.cbPort) + "/readyz") {
		select {
		case <-ctx.Done():
			s.t.Fatal("wechat-callback never became ready")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// artifactsDir is where a failed test leaves screenshots and logs:
// $E2E_ARTIFACTS/<test>, default artifacts/<test> in this directory.
func artifactsDir(t *testing.T) string {
	base := os.Getenv("E2E_ARTIFACTS")
	if base == "" {
		base = "artifacts"
	}
	dir, err := filepath.Abs(filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_")))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Logf("artifacts: %v", err)
		return os.TempDir()
	}
	return dir
}
