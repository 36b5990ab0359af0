package proctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

func TestRunReadyThenStopped(t *testing.T) {
	p, err := Run(t, func(ctx context.Context, stderr io.Writer) error {
		fmt.Fprintln(stderr, "msg=starting")
		fmt.Fprintln(stderr, "msg=listening addr=127.0.0.1:1234")
		<-ctx.Done()
		fmt.Fprintln(stderr, "msg=stopped")
		return nil
	}, listening)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Listening) != 1 || p.Listening[0] != "127.0.0.1:1234" {
		t.Fatalf("Listening = %q", p.Listening)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if logs := p.Logs.String(); !strings.HasSuffix(logs, "msg=stopped\n") {
		t.Fatalf("logs = %q", logs)
	}
}

func TestRunEndedBeforeListening(t *testing.T) {
	_, err := Run(t, func(_ context.Context, stderr io.Writer) error {
		fmt.Fprintln(stderr, "msg=bad config")
		return errors.New("PORT: invalid")
	}, listening)
	if err == nil || !strings.Contains(err.Error(), "PORT: invalid") || !strings.Contains(err.Error(), "bad config") {
		t.Fatalf("err = %v, want run's error and its logs", err)
	}
}

// sh is a program that says it listens, then exits 0 on SIGTERM.
const sh = `trap 'echo msg=stopped; exit 0' TERM; echo msg=listening addr=here; while :; do sleep 0.05; done`

func TestExecStopsWithSIGTERM(t *testing.T) {
	p, err := Exec(t, exec.Command("sh", "-c", sh), listening)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v\n%s", err, p.Logs)
	}
	if !strings.Contains(p.Logs.String(), "msg=stopped") {
		t.Fatalf("no line of the SIGTERM handler:\n%s", p.Logs)
	}
}

func TestExecKill(t *testing.T) {
	p, err := Exec(t, exec.Command("sh", "-c", sh), listening)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := p.Stop(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop after Kill: %v", err)
	}
	if strings.Contains(p.Logs.String(), "msg=stopped") {
		t.Fatalf("a killed process ran its SIGTERM handler:\n%s", p.Logs)
	}
}

func TestExecExitedBeforeListening(t *testing.T) {
	_, err := Exec(t, exec.Command("sh", "-c", "echo address already in use; exit 3"), listening)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v, want the exit status and the logs", err)
	}
}
