package check

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAlertRules runs promtool (Debian's prometheus package) over the rules:
// `check rules`, then the unit tests of alerts_test.yaml.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		skipOrFail(t, "promtool is not installed (Debian: apt-get install prometheus)")
	}
	dir := filepath.Join(repo, "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
