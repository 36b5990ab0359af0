package web

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAssets(t *testing.T) {
	h := Handler(Options{})
	for _, tc := range []struct {
		path, ctype string
		contains    []string
	}{
		{"/", "text/html; charset=utf-8", []string{`<script type="module" src="/scanlogin.js">`, `href="/style.css"`, `data-scanlogin`}},
		{"/index.html", "text/html; charset=utf-8", []string{"data-scanlogin"}},
		{"/scanlogin.js", "text/javascript; charset=utf-8", []string{"ScanLogin", "function connect", "resume", "export { connect, listen, mount, decodeClaims }"}},
		{"/style.css", "text/css; charset=utf-8", []string{".scanlogin"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp := get(t, h, "GET", tc.path, nil)
			b := body(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.ctype {
				t.Fatalf("Content-Type %q, want %q", ct, tc.ctype)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatal("no nosniff")
			}
			for _, want := range tc.contains {
				if !strings.Contains(b, want) {
					t.Fatalf("body lacks %q", want)
				}
			}
			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			if r := get(t, h, "GET", tc.path, http.Header{"If-None-Match": {etag}}); r.StatusCode != http.StatusNotModified {
				t.Fatalf("revalidation: status %d", r.StatusCode)
			}
			if r := get(t, h, "HEAD", tc.path, nil); r.StatusCode != 200 || body(t, r) != "" {
				t.Fatalf("HEAD: status %d", r.StatusCode)
			}
		})
	}
	page := get(t, h, "GET", "/", nil)
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("page CSP %q", csp)
	}
	if b := body(t, page); strings.Contains(b, "simulator") {
		t.Fatal("the simulator is mentioned outside dev mode")
	}
}

func TestNotFound(t *testing.T) {
	h := Handler(Options{})
	for _, p := range []string{"/nope", "/static/scanlogin.js", "/index.htm", "/scanlogin.js/", "/../go.mod"} {
		if resp := get(t, h, "GET", p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	if resp := get(t, h, "POST", "/", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d", resp.StatusCode)
	}
}

func TestSimulatorLink(t *testing.T) {
	const sim = `http://127.0.0.1:8090/?a="b"`
	b := body(t, get(t, Handler(Options{SimulatorURL: sim}), "GET", "/", nil))
	for _, want := range []string{`data-simulator="http://127.0.0.1:8090/?a=&#34;b&#34;"`, `href="http://127.0.0.1:8090/?a=%22b%22"`, `id="simulator"`, `id="dev-banner"`} {
		if !strings.Contains(b, want) {
			t.Fatalf("dev page lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, `a="b"`) {
		t.Fatal("the URL is not escaped")
	}
}

// TestFlows: the page tells the widget the enabled flows, which then offers
// a switch; without flows it asks for none.
func TestFlows(t *testing.T) {
	b := body(t, get(t, Handler(Options{Flows: []string{"miniprogram", "oa"}}), "GET", "/", nil))
	if !strings.Contains(b, `data-flows="miniprogram,oa"`) {
		t.Fatalf("page lacks the flows:\n%s", b)
	}
	if b := body(t, get(t, Handler(Options{}), "GET", "/", nil)); strings.Contains(b, "data-flows") {
		t.Fatal("data-flows without flows")
	}
	js := body(t, get(t, Handler(Options{}), "GET", "/scanlogin.js", nil))
	for _, want := range []string{`data-flows`, `setFlow`, `"flow=" + encodeURIComponent(flow)`, `case "cancelled":`} {
		if !strings.Contains(js, want) {
			t.Fatalf("scanlogin.js lacks %q", want)
		}
	}
}

// The client served is the npm package's own file: the page at / uses what
// the package ships.
func TestClientIsThePackage(t *testing.T) {
	pkg, err := os.ReadFile("../../../scanlogin-js/scanlogin.js")
	if err != nil {
		t.Fatal(err)
	}
	served := body(t, get(t, Handler(Options{}), "GET", "/scanlogin.js", nil))
	if !bytes.Equal(pkg, []byte(served)) {
		t.Fatal("/scanlogin.js is not scanlogin-js/scanlogin.js")
	}
}

// Another site may load the client as a module script from the login
// server: CORS on the script, and on nothing else.
func TestClientCORS(t *testing.T) {
	h := Handler(Options{})
	origin := http.Header{"Origin": {"https://shop.example"}}
	if got := get(t, h, "GET", "/scanlogin.js", origin).Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Fatalf("/scanlogin.js: Access-Control-Allow-Origin %q, want *", got)
	}
	for _, p := range []string{"/", "/style.css"} {
		if got := get(t, h, "GET", p, origin).Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("%s: Access-Control-Allow-Origin %q", p, got)
		}
	}
}
