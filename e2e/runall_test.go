package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/proctest"
)

// banner is the line run-all prints once all three programs answer.
var banner = regexp.MustCompile(`Ctrl-C stops all three`)

// TestRunAllStopsCleanlyOnCtrlC runs scripts/run-all.sh from make on a
// terminal, as `make run-all` does, and presses Ctrl-C once it is up:
// every program logs that it stopped and make exits 0, with no error
// line. The terminal is a pseudo-terminal of script(1), from util-linux;
// the makefile runs only the script, not the build.
func TestRunAllStopsCleanlyOnCtrlC(t *testing.T) {
	scriptPath, makePath := lookPath(t, "script", "bsdutils"), lookPath(t, "make", "make")
	runAll, err := filepath.Abs(filepath.Join("..", "scripts", "run-all.sh"))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	makefile := filepath.Join(bin, "Makefile")
	if err := os.WriteFile(makefile, []byte("run-all:\n\t"+runAll+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// run-all wants the binaries under their own names.
	for name := range programs {
		if err := os.Symlink(filepath.Join(binDir, exeName(name)), filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}

	var prog *proctest.Program
	var keys io.WriteCloser // what is typed on the terminal
	for attempt := 1; ; attempt++ {
		p := proctest.FreePorts(t, 4)
		cmd := exec.Command(scriptPath, "--quiet", "--return", "--command",
			makePath+" --no-print-directory -f "+makefile+" run-all", "/dev/null")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "BIN=" + bin,
			fmt.Sprint("SIM_PORT=", p[0]), fmt.Sprint("CALLBACK_PORT=", p[1]),
			fmt.Sprint("PUSH_PORT=", p[2]), fmt.Sprint("PUSH_GRPC_PORT=", p[3])}
		keys, err = cmd.StdinPipe() // closed when script exits
		if err != nil {
			t.Fatal(err)
		}
		prog, err = proctest.Exec(t, cmd, banner)
		if err == nil {
			break
		}
		// Another process may take a port between picking and binding it.
		if attempt == 3 || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("run-all: %v", err)
		}
		t.Logf("retrying on other ports: %v", err)
	}

	if _, err := keys.Write([]byte{0x03}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	select {
	case <-prog.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("run-all still runs 30 s after Ctrl-C (stop: %v):\n%s", prog.Stop(), prog.Logs)
	}
	logs := terminalText(prog.Logs.String())
	if err := prog.Err(); err != nil || strings.Contains(logs, "make: ***") {
		t.Errorf("make run-all ended with %v after Ctrl-C, want exit status 0 and no error line", err)
	}
	for name := range programs {
		stopped := regexp.MustCompile(`(?m)^` + name + ` +\| .*msg=stopped`)
		if !stopped.MatchString(logs) {
			t.Errorf("%s did not log that it stopped", name)
		}
	}
	if !strings.Contains(logs, "run-all: stopped") {
		t.Error("run-all did not say it stopped")
	}
	if t.Failed() {
		t.Logf("run-all's terminal:\n%s", logs)
	}
}

// terminalText drops what a terminal adds to plain lines: colour
// sequences, carriage returns and the echo of Ctrl-C.
func terminalText(s string) string {
	s = regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(s, "")
	return strings.NewReplacer("\r", "", "^C", "").Replace(s)
}

// lookPath finds a program on PATH, or skips the test (fails it under
// CI=true).
func lookPath(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found on PATH; install it, e.g. apt-get install %s", name, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING: " + msg)
	return ""
}
