package phone

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestSegments(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Segment
	}{
		{"no link", []Segment{{Text: "no link"}}},
		{"go to https://a.example/x?y=1&z=2.", []Segment{{Text: "go to "}, {Text: "https://a.example/x?y=1&z=2", URL: "https://a.example/x?y=1&z=2"}, {Text: "."}}},
		{"\u786e\u8ba4 http://127.0.0.1:8081/oa/confirm?t=abc\nbye", []Segment{{Text: "\u786e\u8ba4 "}, {Text: "http://127.0.0.1:8081/oa/confirm?t=abc", URL: "http://127.0.0.1:8081/oa/confirm?t=abc"}, {Text: "\nbye"}}},
		{`Tap <a href="http://h/oa/confirm?a=1&amp;b=2">Confirm &amp; log in</a>!`, []Segment{{Text: "Tap "}, {Text: "Confirm & log in", URL: "http://h/oa/confirm?a=1&b=2"}, {Text: "!"}}},
		{`<a href='https://h/p'>x</a>`, []Segment{{Text: "x", URL: "https://h/p"}}},
		// Not web links: shown as text, never as links.
		{`<a href="javascript:alert(1)">x</a>`, []Segment{{Text: `<a href="javascript:alert(1)">x</a>`}}},
		{"javascript:alert(1) data:text/html,x ftp://h/x", []Segment{{Text: "javascript:alert(1) data:text/html,x ftp://h/x"}}},
		{`<a href="/relative">x</a>`, []Segment{{Text: `<a href="/relative">x</a>`}}},
		{"http:///nohost", []Segment{{Text: "http:///nohost"}}},
	} {
		if got := Segments(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Segments(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// jarClient is a client with a cookie jar that does not follow redirects.
func jarClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func phoneUser(c *http.Client, base string) string {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == UserCookie {
			return ck.Value
		}
	}
	return ""
}

// TestReplyLink: a reply's link is shown as a link that opens as the user
// who scanned, and sets the phone's user for the web authorization; other
// markup in the reply is shown as text; /sim/open follows only links the
// phone has shown.
func TestReplyLink(t *testing.T) {
	f := newFixture(t)
	alice := f.acct.AddFollower("Alice")
	link := "http://127.0.0.1:1/oa/confirm?t=abc&s=1"
	f.mu.Lock()
	f.reply = `Log in to <b>dev</b>? Chrome on Windows, 203.0.113.7 <script>x()</script> <a href="javascript:alert(1)">bad</a>` +
		"\n<a href=\"" + strings.ReplaceAll(link, "&", "&amp;") + `">Confirm</a>`
	f.mu.Unlock()
	q := f.qr(120)

	c := jarClient(t)
	resp, err := c.PostForm(f.url+"/scan/"+q.ID, url.Values{"who": {"new"}})
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	openid := phoneUser(c, f.url)
	if resp.StatusCode != 200 || openid == "" || !strings.Contains(body, `data-openid="`+openid+`"`) {
		t.Fatalf("scan: status %d, phone user %q\n%s", resp.StatusCode, openid, body)
	}
	wantHref := `<a class="link" href="` + strings.ReplaceAll(OpenPath(link, openid), "&", "&amp;") + `" data-url="` + strings.ReplaceAll(link, "&", "&amp;") + `">Confirm</a>`
	for _, want := range []string{wantHref, "&lt;b&gt;dev&lt;/b&gt;", "&lt;script&gt;", `&lt;a href=&#34;javascript:alert(1)&#34;&gt;bad&lt;/a&gt;`, `id="open-as"`, `value="` + alice.OpenID + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("chat lacks %s\n%s", want, body)
		}
	}
	for _, bad := range []string{"<script>", `href="javascript`, "<b>"} {
		if strings.Contains(body, bad) {
			t.Errorf("chat holds %s", bad)
		}
	}
	// The scanner's own link is not offered to "someone else".
	if strings.Contains(body, `<option value="`+openid+`"`) {
		t.Error("the forward form offers the scanner")
	}
	if _, home := f.get("/"); !strings.Contains(home, wantHref) {
		t.Errorf("home page does not link the reply")
	}
	var res scanJSON
	f.postJSON("/scan/"+q.ID, map[string]string{"who": "new"}, &res)
	if !reflect.DeepEqual(res.Reply.Links, []string{link}) {
		t.Errorf("JSON links %q", res.Reply.Links)
	}

	// Alice opens the link forwarded to her: the phone is hers, then the link.
	open := func(link, as string) (*http.Response, string) {
		resp, err := c.Get(f.url + OpenPath(link, as))
		if err != nil {
			t.Fatal(err)
		}
		return resp, readAll(t, resp)
	}
	resp, _ = open(link, alice.OpenID)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != link || phoneUser(c, f.url) != alice.OpenID {
		t.Fatalf("open as Alice: %d %q, phone user %q", resp.StatusCode, resp.Header.Get("Location"), phoneUser(c, f.url))
	}
	// A new user.
	resp, _ = open(link, "new")
	if u := phoneUser(c, f.url); resp.StatusCode != http.StatusSeeOther || u == "" || u == alice.OpenID || u == openid {
		t.Fatalf("open as a new user: %d, phone user %q", resp.StatusCode, u)
	}
	// Refused, and the phone's user unchanged.
	c.Jar.SetCookies(resp.Request.URL, []*http.Cookie{{Name: UserCookie, Value: openid, Path: "/"}})
	for _, tc := range []struct {
		link, as string
		want     int
	}{
		{"http://127.0.0.1:1/oa/confirm?t=other", openid, http.StatusNotFound}, // never shown
		{"javascript:alert(1)", openid, http.StatusNotFound},
		{"http://evil.example/", openid, http.StatusNotFound},
		{link, "bad openid!", http.StatusBadRequest},
		{link, "", http.StatusBadRequest},
	} {
		if resp, _ := open(tc.link, tc.as); resp.StatusCode != tc.want || resp.Header.Get("Location") != "" || phoneUser(c, f.url) != openid {
			t.Errorf("open %q as %q: %d, Location %q, phone user %q; want %d", tc.link, tc.as, resp.StatusCode, resp.Header.Get("Location"), phoneUser(c, f.url), tc.want)
		}
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
