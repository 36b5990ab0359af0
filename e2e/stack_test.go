package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/proctest"
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

// buildFlags are the flags of go build; under the race detector the
// programs are built with it too (race_test.go).
var buildFlags []string

// build compiles the three programs into dir, in parallel.
func build(dir string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(programs))
	for name, module := range programs {
		wg.Go(func() {
			args := append([]string{"build", "-o", filepath.Join(dir, exeName(name))}, buildFlags...)
			cmd := exec.Command("go", append(args, "./cmd/"+name)...)
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
	// The simulated Mini Program shares the account's AppID and secret.
	devMiniAppID  = devAppID
	devMiniSecret = devSecret
	devSiteName   = "scanlogin dev"
)

// listening matches the line each program logs once it accepts
// connections, with the addresses it bound.
var listening = map[string]*regexp.Regexp{
	"wechat-sim":      regexp.MustCompile(`msg=listening http=(\S+) url=(\S+)`),
	"wechat-callback": regexp.MustCompile(`msg=listening addr=(\S+)`),
	"push-server":     regexp.MustCompile(`msg=listening http=(\S+) grpc=(\S+)`),
}

// startProgram runs the binary of a program with the settings env (and
// what a process needs) until it logs its listening line. It is stopped
// when the test ends, if not before. On an error, the program (if it ran)
// is returned with its logs.
func startProgram(t *testing.T, name string, env []string) (*proctest.Program, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, exeName(name)))
	// The programs read only the variables we give them.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p, err := proctest.Exec(t, cmd, listening[name])
	if err != nil {
		return p, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// stack is the three programs running together.
type stack struct {
	t                                  *testing.T
	simPort, cbPort, pushPort, rpcPort int
	env                                map[string][]string // per program

	mu     sync.Mutex
	procs  map[string]*proctest.Program
	before map[string]string // output of the runs before a restart
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
		for _, p := range s.procs {
			_ = p.Stop()
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			s.saveLogs()
			t.Fatal(err)
		}
		t.Logf("retrying on other ports: %v", err)
	}
}

func tryStack(t *testing.T, extra map[string][]string) (*stack, error) {
	p := proctest.FreePorts(t, 4)
	s := &stack{t: t, simPort: p[0], cbPort: p[1], pushPort: p[2], rpcPort: p[3], procs: map[string]*proctest.Program{}, before: map[string]string{}}
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
	miniDir, err := filepath.Abs("../miniprogram")
	if err != nil {
		return s, err
	}
	// Both flows: oa first (the default), and the Mini Program's.
	mini := []string{"MINIPROGRAM_APPID=" + devMiniAppID, "MINIPROGRAM_SECRET=" + devMiniSecret, "SITE_NAME=" + devSiteName}
	s.env = map[string][]string{
		"wechat-sim": append(slicesClone(common),
			"SIM_HTTP_ADDR="+addr(s.simPort),
			"SIM_CALLBACK_URL=http://"+addr(s.cbPort)+"/wechat/callback",
			"SIM_ORIGINAL_ID="+devOriginalID,
			"SIM_TOKEN_TTL=60s",
			"SIM_MINIPROGRAM_DIR="+miniDir,
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
			// Used with OA_CONFIRM=true (oaConfirm), as in run-all.
			"CALLBACK_PUBLIC_URL="+s.CallbackURL(),
			"WECHAT_OPEN_BASE="+sim,
		),
	}
	s.env["push-server"] = append(s.env["push-server"], mini...)
	s.env["wechat-callback"] = append(s.env["wechat-callback"], mini...)
	for name, vars := range extra {
		s.env[name] = append(s.env[name], vars...)
	}
	for _, name := range []string{"wechat-sim", "push-server", "wechat-callback"} {
		if err := s.start(name); err != nil {
			return s, err
		}
	}
	// Cleanups run last-in first-out: the logs are saved once every
	// program has stopped.
	t.Cleanup(func() {
		if t.Failed() {
			s.saveLogs()
		}
	})
	t.Cleanup(s.stopAll)
	return s, nil
}

// oaConfirm is the extra setting of startStack for official-account scans
// confirmed inside WeChat: the reply's link opens the callback's confirm
// page through the simulator's web authorization.
var oaConfirm = map[string][]string{"wechat-callback": {"OA_CONFIRM=true"}}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func addr(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SimURL is the simulator's base URL.
func (s *stack) SimURL() string { return "http://" + addr(s.simPort) }

// CallbackURL is wechat-callback's base URL.
func (s *stack) CallbackURL() string { return "http://" + addr(s.cbPort) }

// PageURL is the login page.
func (s *stack) PageURL() string { return "http://" + addr(s.pushPort) + "/" }

// PushURL is push-server's base URL.
func (s *stack) PushURL() string { return "http://" + addr(s.pushPort) }

// start runs the program and waits for its listening line.
func (s *stack) start(name string) error {
	p, err := startProgram(s.t, name, s.env[name])
	if p != nil {
		s.mu.Lock()
		s.procs[name] = p
		s.mu.Unlock()
	}
	return err
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

// stop ends the program with SIGTERM, as an operator would, and waits;
// the program must exit cleanly (with status 0).
func (s *stack) stop(name string) {
	s.t.Helper()
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.Stop(); err != nil {
		s.t.Errorf("%s on SIGTERM: %v", name, err)
	}
}

// restart stops the program and starts it again with the same settings,
// on the same ports.
func (s *stack) restart(name string) {
	s.t.Helper()
	s.stop(name)
	s.mu.Lock()
	s.before[name] += s.procs[name].Logs.String() + "---- restarted ----\n"
	s.mu.Unlock()
	if err := s.start(name); err != nil {
		s.t.Fatalf("restart: %v", err)
	}
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
		if err := os.WriteFile(f, []byte(s.before[name]+p.Logs.String()), 0o644); err != nil {
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
