package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repo is the repository root, relative to this package.
const repo = "../.."

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// skipOrFail skips when a tool is missing, except under CI=true, where the
// tool must be there.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// readmeSettings returns the environment variables the README's Settings
// section names, per program: the backquoted upper-case names of each
// subsection.
func readmeSettings(t *testing.T) map[string]map[string]bool {
	t.Helper()
	readme := string(readFile(t, "README.md"))
	start := strings.Index(readme, "\n## Settings")
	if start < 0 {
		t.Fatal("README has no Settings section")
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	out := map[string]map[string]bool{}
	var cur string
	for _, line := range strings.Split(section, "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			cur = strings.Fields(h)[0]
			out[cur] = map[string]bool{}
			continue
		}
		if cur == "" {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(line, -1) {
			out[cur][m[1]] = true
		}
	}
	for _, p := range []string{"push-server", "wechat-callback", "wechat-sim"} {
		if len(out[p]) == 0 {
			t.Fatalf("README Settings: no variables found for %s", p)
		}
	}
	return out
}
