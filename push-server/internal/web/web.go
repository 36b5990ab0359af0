// Package web serves the login page at "/": an embedded page and a small
// reusable script that speaks the browser WebSocket protocol.
//
//	/, /index.html  the page (HTML)
//	/scanlogin.js   the client, an ES module: connect for the protocol
//	                alone, mount or <div data-scanlogin> for the widget
//	/style.css      the page's and the widget's styles
//
// /scanlogin.js is the npm package's own file (scanlogin-js, embedded by its
// Go package). Everything is embedded in the binary; there is no build step.
// Any other path is 404.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	scanloginjs "github.com/scanlogin/scanlogin/scanlogin-js"
)

//go:embed static
var static embed.FS

// Options configure the page.
type Options struct {
	// SimulatorURL, when set (dev mode), is linked from the page so a
	// developer can open the WeChat simulator's phone page.
	SimulatorURL string
	// Flows are the enabled login flows ("oa", "miniprogram"), the
	// default first, as LOGIN_FLOWS gives them. With two or more the page
	// offers a switch between them; empty: the page asks for no flow and
	// gets the server's default.
	Flows []string
}

// asset is one file as served.
type asset struct {
	body        []byte
	contentType string
	etag        string
	page        bool // the HTML page: gets the page's security headers
	anyOrigin   bool // may be loaded by pages of any origin
}

// contentSecurityPolicy lets the page load only its own script and styles,
// talk only to its own host (the WebSocket), and show the QR image from
// wherever WeChat (or the simulator) serves it.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src * data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the page and its assets.
func Handler(opt Options) http.Handler {
	page, err := renderPage(opt)
	if err != nil {
		// The template is embedded and tested: this is a build defect.
		panic(err)
	}
	assets := map[string]*asset{
		"/":             newAsset(page, "text/html; charset=utf-8", true),
		"/index.html":   newAsset(page, "text/html; charset=utf-8", true),
		"/scanlogin.js": newAsset(scanloginjs.Source, "text/javascript; charset=utf-8", false),
		"/style.css":    newAsset(mustRead("static/style.css"), "text/css; charset=utf-8", false),
	}
	// A module script from another origin loads only with CORS: a site may
	// use the login server's copy of the client with a script tag. It is
	// public and sent without credentials.
	assets["/scanlogin.js"].anyOrigin = true
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		// Always revalidate: a new build must reach the browser at once.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		if a.anyOrigin {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		if a.page {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
			h.Set("X-Frame-Options", "DENY")
			// The QR image request must not tell WeChat where it is shown.
			h.Set("Referrer-Policy", "no-referrer")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}

func newAsset(body []byte, contentType string, page bool) *asset {
	sum := sha256.Sum256(body)
	return &asset{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, page: page}
}

func mustRead(name string) []byte {
	b, err := static.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("web: embedded %s: %v", name, err))
	}
	return b
}

// renderPage fills the page template once.
func renderPage(opt Options) ([]byte, error) {
	t, err := template.New("index.html").Funcs(template.FuncMap{"join": strings.Join}).ParseFS(static, "static/index.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse page: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, opt); err != nil {
		return nil, fmt.Errorf("web: render page: %w", err)
	}
	return b.Bytes(), nil
}
