package check

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

const chartDir = "deploy/helm/scanlogin"

// objects are a rendering's objects, decoded strictly by kind.
type objects struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	ingresses   []*networkingv1.Ingress
	monitors    []*monitoringv1.ServiceMonitor
}

// render renders the chart with the values file (none: the defaults) and
// decodes every object into its API type, refusing unknown fields.
func render(t *testing.T, valuesFile string) objects {
	t.Helper()
	ch, err := loader.Load(filepath.Join(repo, chartDir))
	if err != nil {
		t.Fatal(err)
	}
	vals := chartutil.Values{}
	if valuesFile != "" {
		if vals, err = chartutil.ReadValuesFile(filepath.Join(repo, chartDir, valuesFile)); err != nil {
			t.Fatal(err)
		}
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.31.0", Major: "1", Minor: "31"}
	if !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		t.Fatalf("the chart's kubeVersion %q excludes %s", ch.Metadata.KubeVersion, caps.KubeVersion)
	}
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "scanlogin", Namespace: "login", IsInstall: true}, caps)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Engine{Strict: true}.Render(ch, top)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	o := objects{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(files[name], -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			where := fmt.Sprintf("%s #%d", name, i)
			var head struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var into any
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				into, o.deployments[component(doc)] = d, d
			case "v1 Service":
				into = &corev1.Service{}
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				into, o.pdbs = p, append(o.pdbs, p)
			case "autoscaling/v2 HorizontalPodAutoscaler":
				h := &autoscalingv2.HorizontalPodAutoscaler{}
				into, o.hpas = h, append(o.hpas, h)
			case "networking.k8s.io/v1 Ingress":
				in := &networkingv1.Ingress{}
				into, o.ingresses = in, append(o.ingresses, in)
			case "monitoring.coreos.com/v1 ServiceMonitor":
				m := &monitoringv1.ServiceMonitor{}
				into, o.monitors = m, append(o.monitors, m)
			default:
				t.Fatalf("%s: unexpected %s %s", where, head.APIVersion, head.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s: %v\n%s", where, err, doc)
			}
			if s, ok := into.(*corev1.Service); ok {
				o.services[s.Name] = s
			}
		}
	}
	return o
}

// component is the app.kubernetes.io/component label of a document.
func component(doc string) string {
	m := regexp.MustCompile(`app.kubernetes.io/component: (\S+)`).FindStringSubmatch(doc)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestChartDefaults(t *testing.T) {
	o := render(t, "")
	checkChart(t, o)
	if len(o.hpas) != 0 || len(o.ingresses) != 0 || len(o.monitors) != 0 {
		t.Errorf("defaults render optional objects: %d HPAs, %d Ingresses, %d ServiceMonitors", len(o.hpas), len(o.ingresses), len(o.monitors))
	}
}

func TestChartProduction(t *testing.T) {
	o := render(t, "values-production.yaml")
	checkChart(t, o)
	if len(o.hpas) != 2 || len(o.ingresses) != 2 || len(o.monitors) != 1 {
		t.Fatalf("production: %d HPAs, %d Ingresses, %d ServiceMonitors; want 2, 2, 1", len(o.hpas), len(o.ingresses), len(o.monitors))
	}
	for _, d := range o.deployments {
		if d.Spec.Replicas != nil {
			t.Errorf("%s: replicas set while an HPA scales it", d.Name)
		}
	}
	// Only the public paths leave the cluster, with the WebSocket timeouts.
	for _, in := range o.ingresses {
		for _, r := range in.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				// Exact paths, and one prefix: the Mini Program code images.
				prefixOK := *p.PathType == networkingv1.PathTypePrefix && p.Path == "/wxacode/"
				if slices.Contains([]string{"/metrics", "/readyz", "/healthz"}, p.Path) || (*p.PathType != networkingv1.PathTypeExact && !prefixOK) {
					t.Errorf("%s: path %s (%s) exposed", in.Name, p.Path, *p.PathType)
				}
				if p.Path == "/ws" && in.Annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] != "75" {
					t.Errorf("%s: /ws without a 75 s read timeout", in.Name)
				}
			}
		}
	}
	m := o.monitors[0]
	if len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != "http" || m.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v", m.Spec.Endpoints)
	}
}

// checkChart checks what both renderings must hold.
func checkChart(t *testing.T, o objects) {
	t.Helper()
	settings := readmeSettings(t)
	for _, comp := range []string{"push-server", "wechat-callback"} {
		d := o.deployments[comp]
		if d == nil {
			t.Fatalf("no Deployment for %s", comp)
		}
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: pod may run as root", comp)
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: container security context %+v", comp, sc)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: liveness probe is not GET /healthz", comp)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: readiness probe is not GET /readyz", comp)
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() > 1 {
			t.Errorf("%s: rolling update may stop more than one pod at once", comp)
		}
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			if !settings[comp][e.Name] {
				t.Errorf("%s: %s is not in the README's settings", comp, e.Name)
			}
			if _, dup := env[e.Name]; dup {
				t.Errorf("%s: %s set twice", comp, e.Name)
			}
			env[e.Name] = e
		}
		secrets := []string{"WECHAT_APPID", "WECHAT_SECRET", "GRPC_AUTH_TOKEN"}
		if comp == "wechat-callback" {
			secrets = append(secrets, "WECHAT_TOKEN", "WECHAT_AES_KEY")
		}
		for _, name := range secrets {
			if e, ok := env[name]; !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s: %s not from a Secret", comp, name)
			}
		}
		// GOMEMLIMIT between 70 and 90 % of the memory limit.
		limit := c.Resources.Limits.Memory()
		gml, err := resource.ParseQuantity(strings.TrimSuffix(env["GOMEMLIMIT"].Value, "B"))
		if err != nil || limit.IsZero() {
			t.Errorf("%s: GOMEMLIMIT %q, memory limit %v: %v", comp, env["GOMEMLIMIT"].Value, limit, err)
		} else if r := float64(gml.Value()) / float64(limit.Value()); r < 0.7 || r > 0.9 {
			t.Errorf("%s: GOMEMLIMIT is %.0f%% of the memory limit", comp, r*100)
		}
		if comp == "push-server" {
			shutdown, err := time.ParseDuration(env["PUSH_SHUTDOWN_TIMEOUT"].Value)
			if err != nil {
				t.Fatalf("PUSH_SHUTDOWN_TIMEOUT: %v", err)
			}
			grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
			pre := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			if grace <= shutdown+pre {
				t.Errorf("terminationGracePeriodSeconds %v, not above preStop %v + PUSH_SHUTDOWN_TIMEOUT %v", grace, pre, shutdown)
			}
			if len(pod.Volumes) != 1 || pod.Volumes[0].Secret == nil || env["TOKEN_KEY_FILE"].Value == "" {
				t.Error("push-server: the token key is not mounted from a Secret")
			}
		}
	}
	// Services stay inside the cluster.
	if len(o.services) != 3 {
		t.Errorf("%d Services, want 3", len(o.services))
	}
	for _, s := range o.services {
		if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("Service %s is %s", s.Name, s.Spec.Type)
		}
	}
	if len(o.pdbs) != 2 {
		t.Errorf("%d PodDisruptionBudgets, want 2", len(o.pdbs))
	}
}
