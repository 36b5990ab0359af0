package login

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/mileusna/useragent"
)

// Flow is how a login code reaches WeChat: which kind of code the browser
// shows, and which side of WeChat reports the scan.
type Flow string

// The login flows.
const (
	FlowOA          Flow = "oa"          // an official account's temporary QR code
	FlowMiniProgram Flow = "miniprogram" // a Mini Program code (wxacode)
)

// Valid reports whether f is one of the flows above.
func (f Flow) Valid() bool { return f == FlowOA || f == FlowMiniProgram }

// Requester is what the phone shows about the browser that asked for the
// code, recorded when its session starts.
type Requester struct {
	Browser string    `json:"browser,omitempty"` // name and major version, e.g. "Chrome 120"; empty when unknown
	OS      string    `json:"os,omitempty"`      // name and version, e.g. "Windows 10"; empty when unknown
	IP      string    `json:"ip,omitempty"`      // client IP, as the caller determined it
	At      time.Time `json:"at"`                // session start
}

// Request asks for a new session.
type Request struct {
	Flow Flow
	From Requester // the browser, from Describe; the session's start sets At
}

// maxUserAgent bounds what is parsed of a User-Agent header; every browser's
// fits well within it.
const maxUserAgent = 512

// maxLabel bounds a browser or OS label; longer ones are cut.
const maxLabel = 48

// Describe is the Requester of a browser with this User-Agent header and
// client IP (per TRUSTED_PROXIES), At left zero. Names come from a
// User-Agent parser; only a short, plain label of each is kept, since the
// phone shows it (and it may end up in a text message). A connection
// describes its browser once and keeps the labels, not the header.
func Describe(userAgent, ip string) Requester {
	var r Requester
	if a, err := netip.ParseAddr(ip); err == nil {
		r.IP = a.Unmap().WithZone("").String()
	}
	if userAgent == "" || len(userAgent) > maxUserAgent {
		return r
	}
	ua := useragent.Parse(userAgent)
	if ua.Name != "" {
		r.Browser = label(ua.Name, ua.VersionNo.Major, -1)
	}
	if ua.OS != "" {
		r.OS = osLabel(ua)
	}
	return r
}

// windowsNames are the marketing names of Windows NT versions. Windows 11
// still says "Windows NT 10.0".
var windowsNames = map[[2]int]string{
	{10, 0}: "10", {6, 3}: "8.1", {6, 2}: "8", {6, 1}: "7", {6, 0}: "Vista", {5, 1}: "XP", {5, 2}: "XP",
}

// osLabel is the OS name with its version: the major number, and the minor
// one when it is not zero ("iOS 17.2", "Android 14"); Windows by its name.
func osLabel(ua useragent.UserAgent) string {
	v := ua.OSVersionNo
	if ua.OS == useragent.Windows {
		if name, ok := windowsNames[[2]int{v.Major, v.Minor}]; ok {
			return clean(ua.OS + " " + name)
		}
	}
	minor := -1
	if v.Minor != 0 {
		minor = v.Minor
	}
	return label(ua.OS, v.Major, minor)
}

// label renders "name major[.minor]", leaving out a zero major and a
// negative minor.
func label(name string, major, minor int) string {
	if major <= 0 {
		return clean(name)
	}
	s := name + " " + strconv.Itoa(major)
	if minor >= 0 {
		s += "." + strconv.Itoa(minor)
	}
	return clean(s)
}

// clean keeps letters, digits, spaces and . _ - + ( ) / of s, at most
// maxLabel bytes: a User-Agent is the browser's to write.
func clean(s string) string {
	b := make([]byte, 0, min(len(s), maxLabel))
	for i := 0; i < len(s) && len(b) < maxLabel; i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == ' ', c == '.', c == '_', c == '-', c == '+', c == '(', c == ')', c == '/':
			b = append(b, c)
		}
	}
	return string(b)
}
