package check

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

const dockerfile = "deploy/docker/Dockerfile"

// stage is one FROM of the Dockerfile and its instructions.
type stage struct {
	base, name string
	lines      []*parser.Node
}

func parseStages(t *testing.T) []stage {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(readFile(t, dockerfile)))
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	for _, n := range res.AST.Children {
		if strings.EqualFold(n.Value, "from") {
			var args []string
			for a := n.Next; a != nil; a = a.Next {
				args = append(args, a.Value)
			}
			s := stage{base: args[0]}
			if len(args) == 3 && strings.EqualFold(args[1], "as") {
				s.name = args[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, n)
		}
	}
	return stages
}

func args(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

// imageTargets are the final stages and the ports of each program's default
// settings (README, Settings).
var imageTargets = map[string][]string{
	"push-server":     {"8080", "9090"},
	"wechat-callback": {"8081"},
	"wechat-sim":      {"8090"},
}

func TestDockerfileStatic(t *testing.T) {
	stages := parseStages(t)
	build := stages[0]
	src := strings.Join(func() []string {
		var s []string
		for _, n := range build.lines {
			s = append(s, n.Original)
		}
		return s
	}(), "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "GOTOOLCHAIN=local"} {
		if !strings.Contains(src, want) {
			t.Errorf("build stage: no %s", want)
		}
	}
	for target, ports := range imageTargets {
		i := slices.IndexFunc(stages, func(s stage) bool { return s.name == target })
		if i < 0 {
			t.Errorf("no stage %q", target)
			continue
		}
		s := stages[i]
		if s.base != "scratch" && !strings.HasPrefix(s.base, "gcr.io/distroless/static") {
			t.Errorf("%s: FROM %s, want scratch or distroless static", target, s.base)
		}
		var user string
		var exposed []string
		for _, n := range s.lines {
			switch strings.ToLower(n.Value) {
			case "run", "healthcheck", "shell":
				t.Errorf("%s: %s in the final stage, which has no shell", target, strings.ToUpper(n.Value))
			case "user":
				user = args(n)[0]
			case "expose":
				exposed = append(exposed, args(n)...)
			case "entrypoint":
				if !n.Attributes["json"] {
					t.Errorf("%s: ENTRYPOINT in shell form needs a shell", target)
				}
			case "copy":
				if f := n.Flags; !slices.ContainsFunc(f, func(s string) bool { return strings.HasPrefix(s, "--from=") }) {
					t.Errorf("%s: COPY from the context into the final stage: %s", target, n.Original)
				}
			}
		}
		if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
			t.Errorf("%s: USER %q, want a non-root numeric user", target, user)
		}
		slices.Sort(exposed)
		if !slices.Equal(exposed, ports) {
			t.Errorf("%s: EXPOSE %v, want %v", target, exposed, ports)
		}
	}
}

// TestImageRuns builds the push-server image with podman and runs it. The
// base image of the build stage cannot be pulled everywhere, so the build
// stage is replaced by one holding binaries built here the same way
// (static, -trimpath); the final stages are the Dockerfile's own lines.
func TestImageRuns(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		skipOrFail(t, "podman is not installed (Debian: apt-get install podman runc)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// Not t.TempDir: podman may still be removing a container's files
	// when the test ends, and its storage is cleaned up below, by podman.
	dir, err := os.MkdirTemp("", "scanlogin-image-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "context", "out")
	for prog := range imageTargets {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(out, prog), "./cmd/"+prog)
		cmd.Dir = filepath.Join(repo, prog)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOWORK=")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", prog, err, b)
		}
	}
	certs, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		skipOrFail(t, "no CA bundle to copy into the test image: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "context", "ca-certificates.crt"), certs, 0o644); err != nil {
		t.Fatal(err)
	}
	// The Dockerfile from the first final stage on, after a local build stage.
	src := string(readFile(t, dockerfile))
	i := strings.Index(src, "\nFROM scratch AS ")
	if i < 0 {
		t.Fatal("no FROM scratch stage")
	}
	containerfile := "FROM scratch AS build\nCOPY out/ /out/\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n" + src[i:]
	if err := os.WriteFile(filepath.Join(dir, "context", "Containerfile"), []byte(containerfile), 0o644); err != nil {
		t.Fatal(err)
	}

	// A storage of its own, removed with the test.
	base := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}
	if _, err := exec.LookPath("runc"); err == nil {
		base = append(base, "--runtime", "runc")
	}
	pod := func(a ...string) (string, error) {
		cmd := exec.CommandContext(ctx, podman, append(slices.Clone(base), a...)...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() {
		// podman removes what it made (some of it is not ours to unlink),
		// then the directory goes; a leftover is logged, not a failure.
		for _, a := range [][]string{{"rm", "-a", "-f", "-t", "0"}, {"system", "reset", "--force"}} {
			_ = exec.Command(podman, append(slices.Clone(base), a...)...).Run() // ctx has ended
		}
		for range 20 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("test storage left in %s: %v", dir, err)
	})
	image := "localhost/scanlogin-test/push-server:test"
	if b, err := pod("build", "--target", "push-server", "-t", image, filepath.Join(dir, "context")); err != nil {
		t.Fatalf("podman build: %v\n%s", err, b)
	}
	user, err := pod("image", "inspect", "--format", "{{.Config.User}}", image)
	if err != nil || strings.TrimSpace(user) != "65532:65532" {
		t.Errorf("image user %q (%v), want 65532:65532", user, err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := ln2.Addr().String()
	ln.Close()
	ln2.Close()
	name := fmt.Sprintf("scanlogin-test-%d", os.Getpid())
	// Explicit limits: the runtime's defaults may exceed what the host allows.
	if b, err := pod("run", "-d", "--name", name, "--network", "host",
		"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
		"-e", "PUSH_HTTP_ADDR="+httpAddr, "-e", "PUSH_GRPC_ADDR="+grpcAddr,
		"-e", "WECHAT_APPID=wx5ca11091d0e5f00d", "-e", "WECHAT_SECRET=test-secret",
		"-e", "WECHAT_API_BASE=http://127.0.0.1:1", image); err != nil {
		t.Fatalf("podman run: %v\n%s", err, b)
	}
	defer func() {
		if t.Failed() {
			logs, _ := pod("logs", name)
			t.Logf("container logs:\n%s", logs)
		}
		pod("rm", "-f", "-t", "2", name)
	}()
	var last error
	for range 100 {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET /healthz of the container: %v", last)
}
