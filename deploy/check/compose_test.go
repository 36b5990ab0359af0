package check

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestCompose loads deploy/compose.yaml as `docker compose config` does
// (the Compose schema, interpolation, merge keys) and checks the stack the
// README describes.
func TestCompose(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join(repo, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("scanlogin", true) })
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, name := range []string{"redis", "push-server", "wechat-callback", "wechat-sim", "nginx", "prometheus", "grafana"} {
		if _, err := project.GetService(name); err != nil {
			t.Errorf("no service %s", name)
		}
	}
	push, _ := project.GetService("push-server")
	if push.Deploy == nil || push.Deploy.Replicas == nil || *push.Deploy.Replicas != 2 {
		t.Errorf("push-server: want 2 replicas")
	}

	// Every variable set on a scanlogin program is one the README documents.
	settings := readmeSettings(t)
	for _, name := range []string{"push-server", "wechat-callback", "wechat-sim"} {
		svc, _ := project.GetService(name)
		if svc.Build == nil || svc.Build.Target != name || svc.Build.Dockerfile != "deploy/docker/Dockerfile" {
			t.Errorf("%s: build %+v, want target %s of deploy/docker/Dockerfile", name, svc.Build, name)
		}
		for k := range svc.Environment {
			if !settings[name][k] {
				t.Errorf("%s: %s is not in the README's settings of %s", name, k, name)
			}
		}
	}
	cb, _ := project.GetService("wechat-callback")
	if tok := push.Environment["GRPC_AUTH_TOKEN"]; tok == nil || *tok == "" || cb.Environment["GRPC_AUTH_TOKEN"] == nil || *cb.Environment["GRPC_AUTH_TOKEN"] != *tok {
		t.Error("push-server and wechat-callback do not share a GRPC_AUTH_TOKEN")
	}
	// Files the stack mounts exist.
	for _, svc := range project.Services {
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s mounts %s: %v", svc.Name, v.Source, err)
				}
			}
		}
	}
	for _, s := range project.Secrets {
		if _, err := os.Stat(s.File); err != nil {
			t.Errorf("secret %s: %v", s.Name, err)
		}
	}

	// Prometheus scrapes the jobs the dashboard and the rules name.
	prom := string(readFile(t, "deploy/prometheus/prometheus.yml"))
	for _, job := range []string{"push-server", "wechat-callback"} {
		if !strings.Contains(prom, "job_name: "+job+"\n") {
			t.Errorf("prometheus.yml: no job %s", job)
		}
	}
}

// TestNginxConf checks the README's proxy rules in deploy/nginx/nginx.conf.
func TestNginxConf(t *testing.T) {
	conf := string(readFile(t, "deploy/nginx/nginx.conf"))
	code := regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(conf, "")
	if strings.Contains(code, "ip_hash") || strings.Contains(code, "sticky") {
		t.Error("nginx.conf pins browsers to an instance")
	}
	ws := block(t, code, "location /ws")
	for _, want := range []string{"proxy_http_version 1.1", "proxy_set_header Upgrade $http_upgrade", `proxy_set_header Connection "upgrade"`,
		"proxy_read_timeout 75s", "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for"} {
		if !strings.Contains(ws, want) {
			t.Errorf("location /ws: no %q", want)
		}
	}
	if cb := block(t, code, "location = /wechat/callback"); !strings.Contains(cb, "proxy_read_timeout 6s") {
		t.Error("location = /wechat/callback: no 6 s read timeout")
	}
	for _, p := range []string{"/metrics", "/readyz", "/healthz"} {
		if b := block(t, code, "location = "+p); !strings.Contains(b, "return 404") {
			t.Errorf("%s is proxied", p)
		}
	}
}

// block returns the body of the nginx block that starts with head.
func block(t *testing.T, conf, head string) string {
	t.Helper()
	i := strings.Index(conf, head+" ")
	if i < 0 {
		t.Fatalf("nginx.conf: no %q", head)
	}
	rest := conf[i:]
	open := strings.Index(rest, "{")
	end := strings.Index(rest, "}")
	if open < 0 || end < open {
		t.Fatalf("nginx.conf: %q has no block", head)
	}
	return strings.Join(strings.Fields(rest[open+1:end]), " ")
}
