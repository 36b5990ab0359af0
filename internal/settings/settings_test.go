package settings

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestGettersApplyDefaults(t *testing.T) {
	e := NewEnv(Map(map[string]string{"BLANK": "  ", "SET": " x "}))
	if e.String("SET", "d") != "x" || e.String("BLANK", "d") != "d" || e.String("UNSET", "d") != "d" {
		t.Error("String does not trim or default")
	}
	if e.Secret("SET") != " x " || e.Secret("UNSET") != "" {
		t.Error("Secret is not read as set")
	}
	if e.Duration("UNSET", time.Minute, 0, time.Hour) != time.Minute || e.Int("BLANK", 7, 0, 9) != 7 ||
		!e.Bool("UNSET", true) || e.LogLevel("UNSET") != slog.LevelInfo ||
		e.Rate("UNSET", "20/m") != (Rate{N: 20, Per: time.Minute}) ||
		e.HostPort("UNSET", "") != "" || e.URL("UNSET", "") != "" ||
		fmt.Sprint(e.List("UNSET", " a, ,b ,")) != "[a b]" {
		t.Error("a default is not applied")
	}
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestText: a text set to "" or "-" means no text, unlike every other
// setting, for which blank means the default.
func TestText(t *testing.T) {
	e := NewEnv(Map(map[string]string{"EMPTY": "", "DASH": "-", "SET": " Hi "}))
	for name, want := range map[string]string{"EMPTY": "", "DASH": "", "SET": " Hi ", "UNSET": "def"} {
		if got := e.Text(name, "def"); got != want {
			t.Errorf("Text(%s) = %q, want %q", name, got, want)
		}
	}
}

func TestGettersParse(t *testing.T) {
	e := NewEnv(Map(map[string]string{
		"D": "90s", "I": "0", "B": "true", "L": "debug", "R": "5/s", "H": ":8080", "U": "https://a.example",
	}))
	if e.Duration("D", 0, time.Second, time.Hour) != 90*time.Second || e.Int("I", 1, 0, math.MaxInt) != 0 ||
		!e.Bool("B", false) || e.LogLevel("L") != slog.LevelDebug || e.Rate("R", "0") != (Rate{N: 5, Per: time.Second}) ||
		e.HostPort("H", "") != ":8080" || e.URL("U", "") != "https://a.example" {
		t.Error("a value is misread")
	}
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestBadValuesNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		val  string
		read func(e *Env)
	}{
		{"90", func(e *Env) { e.Duration("X", 0, time.Second, time.Hour) }},
		{"2h", func(e *Env) { e.Duration("X", 0, time.Second, time.Hour) }},
		{"0s", func(e *Env) { e.Duration("X", 0, time.Second, time.Hour) }},
		{"-1", func(e *Env) { e.Int("X", 0, 0, math.MaxInt) }},
		{"11", func(e *Env) { e.Int("X", 0, 0, 10) }},
		{"x", func(e *Env) { e.Int("X", 0, 0, 10) }},
		{"yes please", func(e *Env) { e.Bool("X", false) }},
		{"loud", func(e *Env) { e.LogLevel("X") }},
		{"10", func(e *Env) { e.Rate("X", "0") }},
		{"10/d", func(e *Env) { e.Rate("X", "0") }},
		{"0/m", func(e *Env) { e.Rate("X", "0") }},
		{"-1/m", func(e *Env) { e.Rate("X", "0") }},
		{"8080", func(e *Env) { e.HostPort("X", "") }},
		{"ftp://a", func(e *Env) { e.URL("X", "") }},
		{"/x", func(e *Env) { e.URL("X", "") }},
		{" ", func(e *Env) { e.Required("X") }},
	} {
		e := NewEnv(Map(map[string]string{"X": tc.val}))
		tc.read(e)
		if err := e.Err(); err == nil || !strings.HasPrefix(err.Error(), "config: X: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: Err = %v", tc.val, err)
		}
	}
}

func TestEnvKeepsTheFirstProblem(t *testing.T) {
	e := NewEnv(Map(nil))
	e.Check("OK", nil)
	if e.Err() != nil {
		t.Fatal("nil error recorded")
	}
	e.Required("FIRST")
	e.Required("SECOND")
	if e.Err() == nil || e.Err().Error() != "config: FIRST: required" {
		t.Fatalf("Err = %v", e.Err())
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"20/m", Rate{N: 20, Per: time.Minute}, true},
		{"5/s", Rate{N: 5, Per: time.Second}, true},
		{"100/h", Rate{N: 100, Per: time.Hour}, true},
		{"0", Rate{}, true},
		{"20", Rate{}, false},
		{"0/m", Rate{}, false},
		{"-1/m", Rate{}, false},
		{"5/d", Rate{}, false},
		{"x/m", Rate{}, false},
	} {
		got, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

func TestStart(t *testing.T) {
	type conf struct{ Level slog.Level }
	load := func(lookup func(string) (string, bool)) (conf, error) {
		e := NewEnv(lookup)
		c := conf{Level: e.LogLevel("LOG_LEVEL")}
		return c, e.Err()
	}
	level := func(c conf) slog.Level { return c.Level }
	start := func(args []string, env map[string]string) (string, conf, *slog.Logger, bool, error) {
		var out strings.Builder
		c, log, done, err := Start("prog", args, Map(env), &out, load, level)
		return out.String(), c, log, done, err
	}

	out, c, log, done, err := start(nil, map[string]string{"LOG_LEVEL": "warn"})
	if err != nil || done || c.Level != slog.LevelWarn || log == nil {
		t.Fatalf("no arguments: %v %v %v %v", c, log, done, err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if out != "" {
		t.Errorf("Start wrote %q", out)
	}

	out, _, _, done, err = start([]string{"-check-config"}, nil)
	if err != nil || !done || !strings.Contains(out, "msg=\"config ok\"") {
		t.Errorf("-check-config: done %v, err %v, logged %q", done, err, out)
	}
	if _, _, _, done, err := start([]string{"-check-config"}, map[string]string{"LOG_LEVEL": "loud"}); err == nil || done {
		t.Errorf("-check-config with a bad setting: done %v, err %v", done, err)
	}
	for _, args := range [][]string{{"extra"}, {"-verbose"}} {
		if _, _, log, done, err := start(args, nil); err == nil || done || log != nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// mainHelper, set in a re-run of this test binary, makes TestMain's child
// call Main: "fail" returns an error at once, "wait" waits for its context.
const mainHelper = "SETTINGS_MAIN_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(mainHelper) {
	case "fail":
		Main("prog", func(context.Context, []string, func(string) (string, bool), io.Writer) error {
			return errors.New("boom")
		})
		os.Exit(0) // not reached
	case "wait":
		Main("prog", func(ctx context.Context, _ []string, _ func(string) (string, bool), stderr io.Writer) error {
			fmt.Fprintln(stderr, "running")
			<-ctx.Done()
			fmt.Fprintln(stderr, "stopped")
			return nil
		})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Main ends a failed run with status 1 and one line; SIGINT and SIGTERM
// cancel run's context, and a run that then returns nil exits 0.
func TestMainExit(t *testing.T) {
	child := func(mode string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), mainHelper+"="+mode)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		return cmd, &stderr
	}
	cmd, stderr := child("fail")
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 || stderr.String() != "prog: boom\n" {
		t.Errorf("failed run: exit %d (%v), stderr %q; want 1 and \"prog: boom\"", code, err, stderr.String())
	}
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		cmd, stderr := child("wait")
		r, w := io.Pipe()
		cmd.Stderr = io.MultiWriter(stderr, w)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(r).ReadString('\n')
		if line != "running\n" {
			t.Fatalf("%v: child said %q", sig, line)
		}
		go io.Copy(io.Discard, r)
		_ = cmd.Process.Signal(sig)
		err := cmd.Wait()
		w.Close()
		if err != nil || !strings.HasSuffix(stderr.String(), "stopped\n") {
			t.Errorf("%v: %v, stderr %q; want exit 0 after a graceful stop", sig, err, stderr.String())
		}
	}
}
