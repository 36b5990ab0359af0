// Package proctest runs a program under test until it serves: a built
// binary in a process of its own ([Exec]), or a program's run function in
// the test's process ([Run]). Either way the program's log lines go to a
// [testlog.Buffer], the first line that matches a "listening" pattern says
// it is ready (and names its bound addresses), and [Program.Stop] ends it
// as an operator would: SIGTERM, or cancelling run's context.
package proctest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/testlog"
)

// How long a program may take to log its listening line, and to exit once
// told to stop.
const (
	StartTimeout = 20 * time.Second
	StopTimeout  = 15 * time.Second
)

// Program is a program started by Exec or Run.
type Program struct {
	// Logs holds the program's output, line by line.
	Logs *testlog.Buffer
	// Listening holds the submatches of the listening line, such as the
	// addresses the program bound.
	Listening []string
	// Cmd is the process of a program started by Exec; nil for Run.
	Cmd *exec.Cmd

	terminate func() // asks the program to stop
	kill      func() // makes it stop; nil for Run
	done      chan struct{}
	err       error // how the program ended, once done is closed

	stopOnce sync.Once
	stopErr  error
}

// RunFunc is a program's run function: it serves until ctx ends and
// writes its log to stderr.
type RunFunc func(ctx context.Context, stderr io.Writer) error

// Exec starts cmd with its stdout and stderr going to Logs, and waits for
// a line that matches listening. The process is stopped when the test
// ends. On an error the program is stopped and the error holds its logs.
func Exec(t testing.TB, cmd *exec.Cmd, listening *regexp.Regexp) (*Program, error) {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &Program{
		Cmd:       cmd,
		terminate: func() { _ = cmd.Process.Signal(syscall.SIGTERM) },
		kill:      func() { _ = cmd.Process.Kill() },
	}
	return p.follow(t, pr, listening, func() error {
		err := cmd.Wait()
		fmt.Fprintf(pw, "---- exited: %v ----\n", cmd.ProcessState)
		pw.Close()
		return err
	})
}

// Run calls run in a goroutine with a context that Stop cancels, and
// waits for a line of its log that matches listening. It is stopped when
// the test ends. On an error the program is stopped and the error holds
// its logs.
func Run(t testing.TB, run RunFunc, listening *regexp.Regexp) (*Program, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	p := &Program{terminate: cancel}
	return p.follow(t, pr, listening, func() error {
		err := run(ctx, pw)
		cancel()
		pw.Close()
		return err
	})
}

// follow copies the program's output into Logs, waits for the listening
// line, and arranges the stop at the end of the test. wait runs the
// program to its end and closes the writer of out.
func (p *Program) follow(t testing.TB, out io.Reader, listening *regexp.Regexp, wait func() error) (*Program, error) {
	p.Logs = &testlog.Buffer{}
	p.done = make(chan struct{})
	exited := make(chan error, 1)
	go func() { exited <- wait() }()
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			fmt.Fprintf(p.Logs, "%s\n", sc.Text())
			if m := listening.FindStringSubmatch(sc.Text()); m != nil && !sent {
				ready <- m[1:]
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, out) // a line too long for the scanner
		p.err = <-exited
		close(p.done)
	}()
	t.Cleanup(func() { _ = p.Stop() })

	select {
	case m := <-ready:
		p.Listening = m
		return p, nil
	case <-p.done:
		return p, fmt.Errorf("exited before listening: %v\n%s", p.err, p.Logs)
	case <-time.After(StartTimeout):
		err := p.Stop()
		return p, fmt.Errorf("no listening line after %s (stop: %v)\n%s", StartTimeout, err, p.Logs)
	}
}

// Done is closed when the program has ended and its last line is in Logs.
func (p *Program) Done() <-chan struct{} { return p.done }

// Err is how the program ended: its exit status or run's error. Call it
// once Done is closed.
func (p *Program) Err() error { return p.err }

// Stop asks the program to stop (SIGTERM, or cancelling run's context)
// and waits for it. It returns how the program ended, or an error if it
// did not end within StopTimeout; a process is then killed. Later calls
// return the same.
func (p *Program) Stop() error {
	p.stopOnce.Do(func() {
		p.terminate()
		select {
		case <-p.done:
			p.stopErr = p.err
		case <-time.After(StopTimeout):
			if p.kill == nil {
				buf := make([]byte, 1<<20)
				p.stopErr = fmt.Errorf("run did not return within %s of the cancel; goroutines:\n%s",
					StopTimeout, buf[:runtime.Stack(buf, true)])
				return
			}
			p.kill()
			<-p.done
			p.stopErr = fmt.Errorf("did not stop within %s of SIGTERM: killed", StopTimeout)
		}
	})
	return p.stopErr
}

// Kill ends a process started by Exec with SIGKILL, as a crash would,
// and waits for it.
func (p *Program) Kill() {
	if p.kill == nil {
		panic("proctest: Kill of a program started by Run")
	}
	p.kill()
	<-p.done
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago, for programs that must be told their ports in advance.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
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
