package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// chromiumPath finds Chromium, or skips the test (fails it under CI=true).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	const msg = "Chromium not found (looked for /usr/bin/chromium and chromium, chromium-browser, google-chrome on PATH); install it, e.g. apt-get install chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING the browser test: " + msg)
	return ""
}

// browser is a headless Chromium with a fresh profile.
type browser struct {
	t   *testing.T
	ctx context.Context // of the first tab; Run on it has started the browser

	mu   sync.Mutex
	tabs map[string]context.Context
	logs []string // console messages and exceptions, all tabs
}

// setup starts the three programs and a browser. A test without Chromium
// is skipped (or failed under CI=true) before anything starts. If the test
// fails, every tab is saved while the programs still run.
func setup(t *testing.T, extra map[string][]string) (*browser, *stack) {
	t.Helper()
	path := chromiumPath(t)
	s := startStack(t, extra)
	return newBrowser(t, path), s
}

// newBrowser starts Chromium.
func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{t: t, tabs: map[string]context.Context{}}
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listener("page")))
	// Start the browser with a context that lives as long as the test.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	b.ctx = ctx
	b.tabs["page"] = ctx
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Runs before the browser is closed (cleanups run last-in first-out).
	t.Cleanup(func() {
		if t.Failed() {
			b.saveArtifacts()
		}
	})
	return b
}

func (b *browser) listener(tab string) func(ev any) {
	return func(ev any) {
		var line string
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range e.Args {
				v := strings.Trim(string(a.Value), `"`)
				if v == "" {
					v = a.Description
				}
				args = append(args, v)
			}
			line = fmt.Sprintf("[%s] console.%s: %s", tab, e.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			desc := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				desc = d.Exception.Description
			}
			line = fmt.Sprintf("[%s] exception at %s:%d: %s", tab, d.URL, d.LineNumber+1, desc)
		default:
			return
		}
		b.mu.Lock()
		b.logs = append(b.logs, line)
		b.mu.Unlock()
	}
}

// tab opens another tab (sessionStorage and all separate from the page's).
func (b *browser) tab(name string) context.Context {
	b.t.Helper()
	// Closed with the browser, after the screenshots of a failed test.
	ctx, _ := chromedp.NewContext(b.ctx, chromedp.WithListener(b.listener(name)))
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open tab %s: %v", name, err)
	}
	b.mu.Lock()
	b.tabs[name] = ctx
	b.mu.Unlock()
	return ctx
}

// saveArtifacts writes a screenshot and the HTML of every tab, and the
// console log, into the artifacts directory.
func (b *browser) saveArtifacts() {
	dir := artifactsDir(b.t)
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, ctx := range b.tabs {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)); err == nil { // quality 100 gives PNG
			f := filepath.Join(dir, name+".png")
			if err := os.WriteFile(f, png, 0o644); err == nil {
				b.t.Logf("screenshot of %s: %s", name, f)
			}
		} else {
			b.t.Logf("screenshot of %s: %v", name, err)
		}
		if html, err := chromedp.Run(sctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); err == nil {
			_ = os.WriteFile(filepath.Join(dir, name+".html"), []byte(html), 0o644)
		}
		cancel()
	}
	if len(b.logs) > 0 {
		_ = os.WriteFile(filepath.Join(dir, "console.log"), []byte(strings.Join(b.logs, "\n")+"\n"), 0o644)
		b.t.Logf("browser console:\n%s", strings.Join(b.logs, "\n"))
	}
}

// run runs actions on a tab with a deadline.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression on a tab.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds.
func waitFor(t *testing.T, ctx context.Context, what, cond string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool]("!!("+cond+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({state: document.querySelector("#state")?.dataset.state, detail: document.querySelector("#detail")?.textContent, conn: document.querySelector("#conn")?.textContent, history: window.__scanlogin?.history})`))
			t.Fatalf("timed out after %v waiting for %s (%s); page: %s; err: %v", timeout, what, cond, state, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// page is the login page in a tab.
type page struct {
	t   *testing.T
	ctx context.Context
}

func openPage(t *testing.T, b *browser, url string) *page {
	t.Helper()
	run(t, b.ctx, "open the login page", chromedp.Navigate(url))
	return &page{t: t, ctx: b.ctx}
}

func (p *page) state() string {
	return eval[string](p.t, p.ctx, `document.querySelector("#state").dataset.state`)
}

// waitQR waits for a QR code that differs from not, fully loaded, and
// returns its image URL.
func (p *page) waitQR(not string, timeout time.Duration) string {
	p.t.Helper()
	notJS, _ := json.Marshal(not)
	waitFor(p.t, p.ctx, "a loaded QR code",
		`document.querySelector("#state").dataset.state === "waiting" &&
		 (() => { const i = document.querySelector("#qr img");
		          return i && i.getAttribute("src") && i.getAttribute("src") !== `+string(notJS)+` && i.complete && i.naturalWidth > 0 })()`,
		timeout)
	return eval[string](p.t, p.ctx, `document.querySelector("#qr img").getAttribute("src")`)
}

// session returns the session id that the page keeps for resuming.
func (p *page) session() string {
	return eval[string](p.t, p.ctx, `JSON.parse(sessionStorage.getItem("scanlogin") || "{}").session || ""`)
}

// decodeQR downloads an official-account QR image (a PNG) and returns
// its content.
func decodeQR(t *testing.T, url string) string {
	t.Helper()
	text, format := readQR(t, url)
	if format != "png" {
		t.Errorf("QR image is %s, want png", format)
	}
	return text
}

// readQR downloads a QR image and returns its content and format.
func readQR(t *testing.T, url string) (text, format string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("get QR image: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get QR image %s: status %d, %v", url, resp.StatusCode, err)
	}
	img, format, err := image.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("QR image (%s): %v", resp.Header.Get("Content-Type"), err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decode QR image: %v", err)
	}
	return res.GetText(), format
}

// scanInBrowser opens the scan URL in a tab of the phone, scans as a new
// follower by clicking the page's buttons, and returns the user's OpenID
// and the reply the phone shows.
func scanInBrowser(t *testing.T, phone context.Context, scanURL string) (openid, reply string) {
	t.Helper()
	run(t, phone, "open the phone page", chromedp.Navigate(scanURL))
	run(t, phone, "scan as a new follower",
		chromedp.WaitVisible(chromedp.CSS("#scan")),
		chromedp.Click(chromedp.CSS("#who-new")),
		chromedp.Click(chromedp.CSS("#scan")),
		chromedp.WaitVisible(chromedp.CSS("#reply")),
	)
	if ev := eval[string](t, phone, `document.querySelector("#chat").dataset.event`); ev != "subscribe" {
		t.Fatalf("phone sent %q, want subscribe", ev)
	}
	openid = eval[string](t, phone, `document.querySelector("#chat").dataset.openid`)
	reply = eval[string](t, phone, `document.querySelector("#reply").textContent`)
	if kind := eval[string](t, phone, `document.querySelector("#reply").dataset.kind`); kind != "text" {
		t.Fatalf("the phone shows a %s reply: %q", kind, reply)
	}
	return openid, reply
}

// waitLoggedIn waits for the page to show the user and checks the claims.
func (p *page) waitLoggedIn(openid string) {
	p.t.Helper()
	waitFor(p.t, p.ctx, "the logged-in state", `document.querySelector("#state").dataset.state === "loggedin"`, 15*time.Second)
	if got := eval[string](p.t, p.ctx, `document.querySelector("#user").dataset.openid`); got != openid {
		p.t.Fatalf("page shows user %q, want %q", got, openid)
	}
	claims := eval[map[string]string](p.t, p.ctx,
		`Object.fromEntries([...document.querySelectorAll("#claims td")].map(td => [td.dataset.key, td.textContent]))`)
	if claims["sub"] != openid || claims["iss"] != "scanlogin" || claims["sid"] == "" || claims["exp"] == "" {
		p.t.Fatalf("claims shown: %v", claims)
	}
	if p.session() != "" {
		p.t.Fatal("the page still keeps a session after logging in")
	}
}

// TestBrowserLogin is the whole path: the page shows a QR code whose image
// decodes to the simulator's scan URL; a second tab opens it and scans as a
// new follower; the first tab shows the user logged in.
func TestBrowserLogin(t *testing.T) {
	b, s := setup(t, nil)
	p := openPage(t, b, s.PageURL())
	src := p.waitQR("", 15*time.Second)
	if !strings.HasPrefix(src, s.SimURL()+"/cgi-bin/showqrcode?ticket=") {
		t.Fatalf("QR image URL %q is not the simulator's showqrcode", src)
	}
	scanURL := decodeQR(t, src)
	if !strings.HasPrefix(scanURL, s.SimURL()+"/scan/") {
		t.Fatalf("QR code holds %q, not a scan URL of the simulator", scanURL)
	}
	if link := eval[string](t, p.ctx, `document.querySelector("#sim-link").getAttribute("href")`); link != scanURL {
		t.Fatalf("the page links the phone page %q, the QR code holds %q", link, scanURL)
	}
	if left := eval[string](t, p.ctx, `document.querySelector("#countdown").dataset.left`); left == "" || left == "0" {
		t.Fatalf("countdown %q", left)
	}

	openid, reply := scanInBrowser(t, b.tab("phone"), scanURL)
	if !strings.Contains(strings.ToLower(reply), "login successful") {
		t.Fatalf("the user sees %q in WeChat", reply)
	}
	p.waitLoggedIn(openid)
}

// TestBrowserExpiry: with a 3 s LOGIN_TTL the page shows the code expired,
// then gets a new one by itself.
func TestBrowserExpiry(t *testing.T) {
	b, s := setup(t, map[string][]string{"push-server": {"LOGIN_TTL=3s"}})
	p := openPage(t, b, s.PageURL())
	first := p.waitQR("", 15*time.Second)
	waitFor(t, p.ctx, "the expired state", `document.querySelector("#state").dataset.state === "expired"`, 10*time.Second)
	if d := eval[string](t, p.ctx, `document.querySelector("#countdown").textContent`); d != "" {
		t.Fatalf("countdown still shown when expired: %q", d)
	}
	second := p.waitQR(first, 10*time.Second)
	if second == first {
		t.Fatal("same QR code after the refresh")
	}
	// The old code is gone at the simulator, the new one is a scan URL.
	if resp, err := http.Get(first); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("expired QR image: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	if u := decodeQR(t, second); !strings.HasPrefix(u, s.SimURL()+"/scan/") {
		t.Fatalf("new QR code holds %q", u)
	}
}

// TestBrowserReconnect drops the page's socket, and restarts push-server,
// while the page shows its code; each time the page recovers and the login
// still goes through.
func TestBrowserReconnect(t *testing.T) {
	b, s := setup(t, nil)
	phone := b.tab("phone")

	t.Run("socket drop resumes the same session", func(t *testing.T) {
		p := openPage(t, b, s.PageURL())
		src := p.waitQR("", 15*time.Second)
		sess := p.session()
		opens := eval[int](t, p.ctx, `Number(document.querySelector("#conn").dataset.opens)`)
		eval[bool](t, p.ctx, `window.__scanlogin.dropSocket(), true`)
		waitFor(t, p.ctx, "a new connection", fmt.Sprintf(`Number(document.querySelector("#conn").dataset.opens) > %d && document.querySelector("#conn").dataset.conn === "open"`, opens), 10*time.Second)
		if got := eval[bool](t, p.ctx, `document.querySelector("#conn").dataset.resumed === "true"`); !got {
			t.Fatal("the page did not resume its session")
		}
		if got := p.waitQR("", 5*time.Second); got != src {
			t.Fatalf("QR code changed on resume: %q, was %q", got, src)
		}
		if got := p.session(); got != sess {
			t.Fatalf("session %q after resume, was %q", got, sess)
		}
		openid, _ := scanInBrowser(t, phone, decodeQR(t, src))
		p.waitLoggedIn(openid)
	})

	// A second tab resumes the page's session (a duplicated tab copies
	// sessionStorage): the first is told, stops, and does not take it back.
	t.Run("displaced tab stops", func(t *testing.T) {
		p := openPage(t, b, s.PageURL())
		src := p.waitQR("", 15*time.Second)
		pair := eval[string](t, p.ctx, `sessionStorage.getItem("scanlogin")`)
		other := &page{t: t, ctx: b.tab("other")}
		run(t, other.ctx, "open the page in another tab", chromedp.Navigate(s.PageURL()))
		other.waitQR("", 15*time.Second)
		pairJS, _ := json.Marshal(pair)
		eval[bool](t, other.ctx, `sessionStorage.setItem("scanlogin", `+string(pairJS)+`), window.__scanlogin.dropSocket(), true`)
		waitFor(t, p.ctx, "the displaced state",
			`document.querySelector("#state").dataset.state === "error" && document.querySelector("#conn").dataset.conn === "closed"`, 15*time.Second)
		waitFor(t, other.ctx, "the resumed code", `document.querySelector("#conn").dataset.resumed === "true"`, 15*time.Second)
		if got := other.waitQR("", 5*time.Second); got != src {
			t.Fatalf("the other tab shows %q, want the resumed code %q", got, src)
		}
		time.Sleep(2 * time.Second) // would the first tab reconnect and take it back?
		if got := eval[string](t, p.ctx, `document.querySelector("#conn").dataset.conn`); got != "closed" {
			t.Fatalf("the displaced tab's connection is %q, want closed", got)
		}
		openid, _ := scanInBrowser(t, phone, decodeQR(t, src))
		other.waitLoggedIn(openid)
		if got := p.state(); got != "error" {
			t.Fatalf("the displaced tab is in state %q", got)
		}
	})

	t.Run("server restart gives a new session", func(t *testing.T) {
		p := openPage(t, b, s.PageURL())
		src := p.waitQR("", 15*time.Second)
		sess := p.session()
		s.restart("push-server")
		// The old session died with the server: resume fails and the page
		// gets a new code on the new connection.
		src2 := p.waitQR(src, 30*time.Second)
		if got := eval[string](t, p.ctx, `document.querySelector("#conn").dataset.resumed`); got != "false" {
			t.Fatalf("data-resumed %q: the page should have tried to resume and been refused", got)
		}
		if got := p.session(); got == sess || got == "" {
			t.Fatalf("session %q after the restart, was %q", got, sess)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		s.waitReady(ctx)
		openid, _ := scanInBrowser(t, phone, decodeQR(t, src2))
		p.waitLoggedIn(openid)
	})
}

// waitFlowQR waits for a loaded code of flow that differs from not, and
// returns its image URL.
func (p *page) waitFlowQR(flow, not string, timeout time.Duration) string {
	p.t.Helper()
	waitFor(p.t, p.ctx, "the "+flow+" flow", `document.querySelector("#scanlogin").dataset.flow === "`+flow+`"`, timeout)
	return p.waitQR(not, timeout)
}

// miniCode checks the page's Mini Program code: an image on push-server
// (WeChat's bytes, a JPEG from the simulator) whose QR content is the
// simulator's page for that code, also reached by the page's dev link.
// It returns that page's URL.
func miniCode(t *testing.T, p *page, s *stack, src string) string {
	t.Helper()
	if !strings.HasPrefix(src, s.PushURL()+"/") || strings.HasPrefix(src, s.SimURL()) {
		t.Fatalf("Mini Program code image %q is not served by push-server", src)
	}
	mpURL, format := readQR(t, src)
	if format != "jpeg" && format != "png" {
		t.Fatalf("Mini Program code is %s", format)
	}
	if !strings.HasPrefix(mpURL, s.SimURL()+"/mp/") {
		t.Fatalf("Mini Program code holds %q, not the simulator's Mini Program page", mpURL)
	}
	link := eval[string](t, p.ctx, `document.querySelector("#sim-link").getAttribute("href")`)
	scene := eval[string](t, p.ctx, `window.__scanlogin.state.scene`)
	if link != s.SimURL()+"/mp?scene="+scene {
		t.Fatalf("dev link %q for scene %q", link, scene)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := s.SimURL() + resp.Header.Get("Location"); got != mpURL {
		t.Fatalf("the dev link leads to %q, the code holds %q", got, mpURL)
	}
	return mpURL
}

// openMini opens a Mini Program code on the phone as the user picked by
// the radio button who, and waits for the shipped page to ask for a
// confirmation. It returns the user's Mini Program OpenID.
func openMini(t *testing.T, phone context.Context, mpURL, who string) string {
	t.Helper()
	run(t, phone, "open the Mini Program code", chromedp.Navigate(mpURL))
	run(t, phone, "pick the user and open the page",
		chromedp.WaitVisible(chromedp.CSS("#mp-open")),
		chromedp.Click(chromedp.CSS(who)),
		chromedp.Click(chromedp.CSS("#mp-open")),
	)
	waitFor(t, phone, "the confirmation on the phone", `document.querySelector("#mp-root")?.dataset.state === "confirm"`, 15*time.Second)
	title := eval[string](t, phone, `document.querySelector("#mp-title").textContent`)
	if !strings.Contains(title, devSiteName) {
		t.Fatalf("the phone asks %q, without the site name %q", title, devSiteName)
	}
	// The requester is the page's browser: headless Chromium on this machine.
	if b := eval[string](t, phone, `document.querySelector("#mp-browser").textContent`); !strings.Contains(b, "Chrom") {
		t.Fatalf("the phone shows browser %q", b)
	}
	if ip := eval[string](t, phone, `document.querySelector("#mp-ip").textContent`); ip != host {
		t.Fatalf("the phone shows IP %q", ip)
	}
	openid := eval[string](t, phone, `document.querySelector("#mp-root").dataset.miniOpenid`)
	if openid == "" {
		t.Fatal("no Mini Program OpenID from wx.login")
	}
	return openid
}

// tap taps a button of the Mini Program page and waits for the state.
func tap(t *testing.T, phone context.Context, button, state string) {
	t.Helper()
	run(t, phone, "tap "+button, chromedp.Click(chromedp.CSS(button)))
	waitFor(t, phone, "the phone's "+state+" state", `document.querySelector("#mp-root").dataset.state === "`+state+`"`, 15*time.Second)
}

// TestBrowserMiniProgram is the Mini Program flow end to end: the page
// offers both flows; switched to Mini Program it shows a code whose image
// push-server serves; the phone opens it and runs the shipped page (its
// wx.login, /miniprogram/scan): the page shows "scanned"; Confirm logs the
// browser in with the Mini Program OpenID.
func TestBrowserMiniProgram(t *testing.T) {
	b, s := setup(t, nil)
	p := openPage(t, b, s.PageURL())
	oa := p.waitFlowQR("oa", "", 15*time.Second) // LOGIN_FLOWS' first
	waitFor(t, p.ctx, "the flow switch", `document.querySelector("#flow-miniprogram") && document.querySelector("#flow-oa").checked`, 5*time.Second)
	run(t, p.ctx, "switch to the Mini Program", chromedp.Click(chromedp.CSS("#flow-miniprogram")))
	src := p.waitFlowQR("miniprogram", oa, 15*time.Second)
	if !eval[bool](t, p.ctx, `document.querySelector("#flow-miniprogram").checked`) {
		t.Fatal("the switch does not show the Mini Program")
	}
	// A reload resumes the same session, in the same flow.
	sess := p.session()
	run(t, p.ctx, "reload the page", chromedp.Reload())
	if got := p.waitFlowQR("miniprogram", "", 15*time.Second); got != src || p.session() != sess {
		t.Fatalf("after a reload: code %q session %q, was %q %q", got, p.session(), src, sess)
	}
	mpURL := miniCode(t, p, s, src)

	phone := b.tab("phone")
	openid := openMini(t, phone, mpURL, "#who-new")
	waitFor(t, p.ctx, "the scanned state", `document.querySelector("#state").dataset.state === "scanned"`, 15*time.Second)
	if d := eval[string](t, p.ctx, `document.querySelector("#detail").textContent`); !strings.Contains(d, "Confirm") {
		t.Fatalf("scanned: the page says %q", d)
	}
	tap(t, phone, "#mp-confirm", "confirmed")
	p.waitLoggedIn(openid)
	if got := eval[string](t, p.ctx, `document.querySelector("#user-fields td[data-key=openid]").textContent`); got != openid {
		t.Fatalf("user.openid %q, want the Mini Program OpenID %q", got, openid)
	}
}

// TestBrowserMiniProgramCancel: Cancel on the phone shows "cancelled" on
// the page, whose button gets a new code in the same flow, which works.
func TestBrowserMiniProgramCancel(t *testing.T) {
	b, s := setup(t, nil)
	p := openPage(t, b, s.PageURL())
	oa := p.waitFlowQR("oa", "", 15*time.Second)
	run(t, p.ctx, "switch to the Mini Program", chromedp.Click(chromedp.CSS("#flow-miniprogram")))
	src := p.waitFlowQR("miniprogram", oa, 15*time.Second)
	phone := b.tab("phone")
	openMini(t, phone, miniCode(t, p, s, src), "#who-follower-0")
	waitFor(t, p.ctx, "the scanned state", `document.querySelector("#state").dataset.state === "scanned"`, 15*time.Second)
	tap(t, phone, "#mp-cancel", "cancelled")

	waitFor(t, p.ctx, "the cancelled state", `document.querySelector("#state").dataset.state === "cancelled"`, 15*time.Second)
	if btn := eval[string](t, p.ctx, `(b => b.hidden ? "" : b.textContent)(document.querySelector("#refresh"))`); btn != "Get a new code" {
		t.Fatalf("cancelled: button %q", btn)
	}
	if got := eval[string](t, p.ctx, `document.querySelector("#conn").dataset.conn`); got != "open" {
		t.Fatalf("the connection is %q after cancelled, want open", got)
	}
	run(t, p.ctx, "ask for a new code", chromedp.Click(chromedp.CSS("#refresh")))
	src2 := p.waitFlowQR("miniprogram", src, 15*time.Second)
	mp2 := miniCode(t, p, s, src2)
	openid := openMini(t, phone, mp2, "#who-new")
	tap(t, phone, "#mp-confirm", "confirmed")
	p.waitLoggedIn(openid)
}

// Official-account scans confirmed inside WeChat (OA_CONFIRM=true): the
// reply's link opens the callback's confirm page through the simulator's
// web authorization, as the phone's user.

// scanForConfirm shows a code on the page and scans it on the phone as a
// new follower; the reply names the site and the requester and carries
// the confirm link, and the page shows "scanned". It returns the scanner's
// OpenID and the link.
func scanForConfirm(t *testing.T, p *page, s *stack, phone context.Context) (openid, link string) {
	t.Helper()
	src := p.waitFlowQR("oa", "", 15*time.Second)
	openid, reply := scanInBrowser(t, phone, decodeQR(t, src))
	// The requester is the page's browser: headless Chromium on this machine.
	for _, want := range []string{devSiteName, "Chrom", host} {
		if !strings.Contains(reply, want) {
			t.Fatalf("the reply %q does not name %q", reply, want)
		}
	}
	link = eval[string](t, phone, `document.querySelector("#reply a.link")?.dataset.url || ""`)
	if !strings.HasPrefix(link, s.CallbackURL()+"/oa/confirm?") {
		t.Fatalf("the reply %q links %q, not the callback's /oa/confirm", reply, link)
	}
	waitFor(t, p.ctx, "the scanned state", `document.querySelector("#state").dataset.state === "scanned"`, 15*time.Second)
	return openid, link
}

// navigated runs steps on the phone that leave its page, and waits until
// the next page has loaded. It returns that page's HTTP status.
func navigated(t *testing.T, phone context.Context, what string, steps ...chromedp.Action[chromedp.Void]) int {
	t.Helper()
	eval[bool](t, phone, `window.__left = false, true`)
	run(t, phone, what, steps...)
	waitFor(t, phone, "the page after: "+what, `window.__left === undefined && document.readyState === "complete"`, 15*time.Second)
	return eval[int](t, phone, `performance.getEntriesByType("navigation")[0]?.responseStatus || 0`)
}

// confirmButtons is how many Confirm/Cancel buttons of the contract's form
// the phone shows.
const confirmButtons = `[...document.querySelectorAll('button[name=decision]')].filter(b => b.form && b.form.method === "post" && (b.value === "confirm" || b.value === "cancel")).length`

// onConfirmPage checks that the phone shows the callback's confirm page,
// with the request's site, browser and IP.
func onConfirmPage(t *testing.T, s *stack, phone context.Context, status int) {
	t.Helper()
	where := eval[string](t, phone, `location.origin + location.pathname`)
	if where != s.CallbackURL()+"/oa/confirm" || status != http.StatusOK {
		t.Fatalf("the link led to %s (HTTP %d), want the callback's confirm page with 200", where, status)
	}
	if n := eval[int](t, phone, confirmButtons); n != 2 {
		t.Fatalf("the confirm page has %d Confirm/Cancel buttons in a POST form", n)
	}
	text := eval[string](t, phone, `document.body.innerText`)
	for _, want := range []string{devSiteName, "Chrom", host} {
		if !strings.Contains(text, want) {
			t.Fatalf("the confirm page does not show %q:\n%s", want, text)
		}
	}
}

// TestBrowserOAConfirm: the scan shows "scanned"; the link in the reply,
// tapped on the phone, goes through the simulated WeChat authorization to
// the confirm page with the requester's browser; Confirm logs the page in
// with the official-account OpenID, Cancel shows it cancelled.
func TestBrowserOAConfirm(t *testing.T) {
	b, s := setup(t, oaConfirm)
	phone := b.tab("phone")

	t.Run("confirm", func(t *testing.T) {
		p := openPage(t, b, s.PageURL())
		openid, _ := scanForConfirm(t, p, s, phone)
		status := navigated(t, phone, "tap the link", chromedp.Click(chromedp.CSS("#reply a.link")))
		onConfirmPage(t, s, phone, status)
		if got := p.state(); got != "scanned" {
			t.Fatalf("the page is %q before the user confirmed", got)
		}
		status = navigated(t, phone, "tap Confirm", chromedp.Click(chromedp.CSS(`button[name=decision][value=confirm]`)))
		p.waitLoggedIn(openid)
		if status != http.StatusOK || eval[int](t, phone, confirmButtons) != 0 {
			t.Fatalf("after Confirm the phone shows HTTP %d with the form still there", status)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		p := openPage(t, b, s.PageURL())
		scanForConfirm(t, p, s, phone)
		onConfirmPage(t, s, phone, navigated(t, phone, "tap the link", chromedp.Click(chromedp.CSS("#reply a.link"))))
		status := navigated(t, phone, "tap Cancel", chromedp.Click(chromedp.CSS(`button[name=decision][value=cancel]`)))
		waitFor(t, p.ctx, "the cancelled state", `document.querySelector("#state").dataset.state === "cancelled"`, 15*time.Second)
		if status != http.StatusOK || eval[int](t, phone, confirmButtons) != 0 {
			t.Fatalf("after Cancel the phone shows HTTP %d with the form still there", status)
		}
		if got := eval[string](t, p.ctx, `document.querySelector("#conn").dataset.conn`); got != "open" {
			t.Fatalf("the connection is %q after cancelled, want open", got)
		}
	})
}

// TestBrowserOAConfirmOtherUser: the scanner's link, forwarded to another
// user who opens it, gets the refusal page (403) and the page stays
// waiting; the scanner's own tap then still works, and logs in the scanner.
func TestBrowserOAConfirmOtherUser(t *testing.T) {
	b, s := setup(t, oaConfirm)
	phone := b.tab("phone")
	p := openPage(t, b, s.PageURL())
	openid, link := scanForConfirm(t, p, s, phone)
	tap := eval[string](t, phone, `document.querySelector("#reply a.link").href`)

	other := eval[string](t, phone, `document.querySelector("#open-as-user").value`)
	if other == "" || other == "new" || other == openid {
		t.Fatalf("the forward form offers %q first, want the follower Alice", other)
	}
	status := navigated(t, phone, "open the link as Alice", chromedp.Click(chromedp.CSS("#open-as-go")))
	if where := eval[string](t, phone, `location.origin + location.pathname`); where != s.CallbackURL()+"/oa/confirm" || status != http.StatusForbidden {
		t.Fatalf("another user opening %s: %s answered %d, want 403", link, where, status)
	}
	if n := eval[int](t, phone, confirmButtons); n != 0 {
		t.Fatal("the refusal page offers Confirm/Cancel")
	}
	if text := eval[string](t, phone, `document.body.innerText`); strings.TrimSpace(text) == "" {
		t.Fatal("the refusal page says nothing")
	}
	if got := p.state(); got != "scanned" {
		t.Fatalf("the page is %q after another user opened the link, want still scanned", got)
	}

	// Nothing changed: the scanner's tap leads to the confirm page.
	onConfirmPage(t, s, phone, navigated(t, phone, "tap the link as the scanner", chromedp.Navigate(tap)))
	navigated(t, phone, "tap Confirm", chromedp.Click(chromedp.CSS(`button[name=decision][value=confirm]`)))
	p.waitLoggedIn(openid)
}
