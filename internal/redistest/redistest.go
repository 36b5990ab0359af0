// Package redistest runs a throwaway redis-server for tests.
//
// Each [Start] launches its own redis-server on a free loopback port with a
// temporary working directory and no persistence, and stops it when the test
// ends; [StartCluster] launches several as one Redis Cluster. Tests can [Server.Kill] and [Server.Restart] it to exercise outages.
// When redis-server is not on PATH the test is skipped, or fails when the
// environment variable CI is "true", so that CI never silently skips.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long Start and Restart wait for PONG.
const startTimeout = 10 * time.Second

// Server is a running (or killed) redis-server owned by one test.
type Server struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	bus   int      // cluster bus port (--cluster-port); 0 outside a cluster
	extra []string // more redis-server arguments

	mu     sync.Mutex    // guards cmd and exited
	cmd    *exec.Cmd     // nil while killed
	exited chan struct{} // closed when cmd has exited and been waited for
}

// Start launches redis-server on a free port of 127.0.0.1 and returns once it
// answers PING. The server is killed when the test and its subtests finish.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

// start launches one redis-server; extra, called before each attempt with
// s.port picked, gives more arguments.
func start(t testing.TB, extra func(s *Server) ([]string, error)) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redistest: redis-server not found on PATH (CI=true): %v", err)
		}
		t.Skipf("redistest: SKIPPING, redis-server not found on PATH: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Kill)
	var lastErr error
	for range 5 { // a free port can be taken between picking and binding it
		s.port, err = freePort()
		if err == nil && extra != nil {
			s.extra, err = extra(s)
		}
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if lastErr = s.launch(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// StartCluster launches n (at least 3) redis-servers as one Redis Cluster,
// masters only, the 16384 slots split evenly, and returns once every node
// reports cluster_state:ok.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	if n < 3 {
		t.Fatalf("redistest: a cluster needs 3 nodes, not %d", n)
	}
	nodes := make([]*Server, n)
	for i := range nodes {
		nodes[i] = start(t, func(s *Server) ([]string, error) {
			var err error
			s.bus, err = freePort() // the default, port+10000, may be out of range
			return []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(s.bus)}, err
		})
	}
	const slots = 16384
	for i, s := range nodes {
		// A distinct config epoch per node, as redis-cli gives a new
		// cluster: with all of them at 0, the nodes first settle the
		// collision, and a slow machine could see one node's slots
		// unclaimed past the deadline.
		if _, err := command(s.Addr(), fmt.Sprintf("CLUSTER SET-CONFIG-EPOCH %d", i+1)); err != nil {
			t.Fatalf("redistest: set config epoch: %v", err)
		}
		lo, hi := i*slots/n, (i+1)*slots/n-1
		if _, err := command(s.Addr(), fmt.Sprintf("CLUSTER ADDSLOTSRANGE %d %d", lo, hi)); err != nil {
			t.Fatalf("redistest: assign slots: %v", err)
		}
		if i > 0 {
			if _, err := command(nodes[0].Addr(), fmt.Sprintf("CLUSTER MEET 127.0.0.1 %d %d", s.port, s.bus)); err != nil {
				t.Fatalf("redistest: join the cluster: %v", err)
			}
		}
	}
	deadline := time.Now().Add(startTimeout)
	for _, s := range nodes {
		for {
			info, err := command(s.Addr(), "CLUSTER INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster not ok within %v: %q %v", startTimeout, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// Addr returns the server's "host:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns a redis:// URL for database 0, as go-redis ParseURL accepts it.
func (s *Server) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Kill stops the server at once (SIGKILL), dropping every connection and all
// data. It is safe to call on a killed server.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// Restart kills the server if it runs and starts a fresh, empty one on the
// same port, returning once it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) { // the old socket may linger briefly
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr(), err)
}

// launch starts redis-server on s.port and waits for PONG.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	log := new(bytes.Buffer)
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--daemonize", "no",
	)
	cmd.Args = append(cmd.Args, s.extra...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited early (%v): %s", waitErr, log.String())
		default:
		}
		if ping(s.Addr()) == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("no PONG from %s within %v: %s", s.Addr(), startTimeout, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command sends one inline command and returns its reply: a status, an
// integer or a bulk string; an error reply is an error.
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("%s: %s", cmd, line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("%s: reply %q", cmd, line)
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	}
	return line[1:], nil
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
