package phone

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// UserCookie names the cookie that tells the simulated WeChat who holds the
// phone: its /connect/oauth2/authorize page (the web authorization a reply's
// link goes through) answers with a code for that OpenID. The phone sets it
// when someone scans and when a link of a reply is opened (GET /sim/open).
// The name is the fake WeChat's, so the phone and that page agree.
const UserCookie = wechattest.OAuthUserParam

// setPhoneUser makes openid the user of the phone for the pages that follow.
func setPhoneUser(w http.ResponseWriter, openid string) {
	http.SetCookie(w, &http.Cookie{
		Name:     UserCookie,
		Value:    openid,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// Segment is a piece of a reply's text: plain text, or a link (URL set)
// with the text the chat shows for it.
type Segment struct {
	Text string
	URL  string
}

// WeChat shows a text message's <a href="...">label</a> as a link, and a
// bare URL too.
var (
	anchorRE  = regexp.MustCompile(`(?is)<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)')[^>]*>(.*?)</a>`)
	bareURLRE = regexp.MustCompile(`(?i)https?://[^\s<>"']+`)
)

// Segments splits a reply's text into plain text and links. Only absolute
// http and https URLs become links; anything else stays text.
func Segments(text string) []Segment {
	var out []Segment
	plain := func(s string) {
		for s != "" {
			loc := bareURLRE.FindStringIndex(s)
			if loc == nil {
				out = append(out, Segment{Text: s})
				return
			}
			raw := strings.TrimRight(s[loc[0]:loc[1]], ".,;:!?)")
			end := loc[0] + len(raw)
			if loc[0] > 0 {
				out = append(out, Segment{Text: s[:loc[0]]})
			}
			if u, ok := webLink(raw); ok {
				out = append(out, Segment{Text: raw, URL: u})
			} else {
				out = append(out, Segment{Text: raw})
			}
			s = s[end:]
		}
	}
	for text != "" {
		m := anchorRE.FindStringSubmatchIndex(text)
		if m == nil {
			plain(text)
			break
		}
		plain(text[:m[0]])
		var href string
		if m[2] >= 0 {
			href = text[m[2]:m[3]] // "double-quoted"
		} else {
			href = text[m[4]:m[5]] // 'single-quoted'
		}
		label := html.UnescapeString(text[m[6]:m[7]])
		if u, ok := webLink(html.UnescapeString(strings.TrimSpace(href))); ok {
			if label == "" {
				label = u
			}
			out = append(out, Segment{Text: label, URL: u})
		} else {
			out = append(out, Segment{Text: text[m[0]:m[1]]})
		}
		text = text[m[1]:]
	}
	return out
}

// webLink reports whether s is an absolute http(s) URL with a host, and
// returns it as it will be followed.
func webLink(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	return u.String(), true
}

// Links returns the links of a reply's text.
func Links(text string) []string {
	out := []string{}
	for _, s := range Segments(text) {
		if s.URL != "" {
			out = append(out, s.URL)
		}
	}
	return out
}

// OpenPath is the phone's address that opens link as the user openid: the
// chat's links go through it, so that the link acts for the chat's user
// even if another user scanned in another tab since.
func OpenPath(link, openid string) string {
	return "/sim/open?" + url.Values{"url": {link}, "as": {openid}}.Encode()
}

// shown reports whether link is a link of a reply the phone has shown.
func (p *Phone) shown(link string) bool {
	for _, s := range p.History() {
		if slices.Contains(Links(s.Result.Reply.Text), link) {
			return true
		}
	}
	return false
}

// open is a tap on a reply's link (GET /sim/open?url=&as=): the phone's
// user becomes "as" (the OpenID, or "new" for a user who never saw it) and
// the phone follows the link. Only links of replies the phone has shown are
// followed: the route is no open redirect.
func (p *Phone) open(w http.ResponseWriter, r *http.Request) {
	link, as := r.URL.Query().Get("url"), r.URL.Query().Get("as")
	if as == "new" {
		as = wechattest.NewOpenID()
	}
	if !openIDRE.MatchString(as) {
		p.render(w, http.StatusBadRequest, "problem.html", problemData{Title: "Cannot open the link", Message: "as must be an OpenID (1 to 64 characters from [A-Za-z0-9_-]) or new", Back: "/"})
		return
	}
	if !p.shown(link) {
		p.render(w, http.StatusNotFound, "problem.html", problemData{Title: "Cannot open the link", Message: "not a link of a message the phone has shown", Back: "/"})
		return
	}
	setPhoneUser(w, as)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, link, http.StatusSeeOther)
}
