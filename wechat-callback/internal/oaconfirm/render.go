package oaconfirm

import (
	"bytes"
	"embed"
	"html/template"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/confirm"
)

//go:embed page.html
var files embed.FS

var tmpl = template.Must(template.ParseFS(files, "page.html"))

type msgKey int

// The sentences of the page.
const (
	msgAsk msgKey = iota
	msgConfirmed
	msgCancelled
	msgBadLink
	msgBadState
	msgBadCode
	msgNoCode
	msgNotScanner
	msgBadForm
	msgDecided
	msgExpired
	msgReplaced
	msgNotFound
	msgBadRequest
	msgRateLimited
	msgUnavailable
)

type lang struct {
	tag, title, site, browser, os, ip, confirm, cancel, thisSite string
	msgs                                                         map[msgKey]string
}

var langs = map[string]*lang{
	"en": {
		tag: "en", title: "Log in on your computer?", site: "Website", browser: "Browser", os: "System", ip: "IP address",
		confirm: "Confirm login", cancel: "Cancel", thisSite: "the website",
		msgs: map[msgKey]string{
			msgAsk:         "A computer asks to log in to %s with your WeChat account. Confirm only if you started this login yourself.",
			msgConfirmed:   "You are logged in on your computer. You can close this page.",
			msgCancelled:   "The login was cancelled. Nobody was logged in.",
			msgBadLink:     "This link is not valid. Scan the QR code on the login page again.",
			msgBadState:    "This page was not opened from your confirm link. Open the link in the WeChat message again.",
			msgBadCode:     "WeChat did not confirm who you are. Open the link in the WeChat message again.",
			msgNoCode:      "WeChat did not confirm who you are, so nothing was done.",
			msgNotScanner:  "This login request belongs to another WeChat user. Nothing was done.",
			msgBadForm:     "This form is not valid. Open the link in the WeChat message again.",
			msgDecided:     "This login request has already been answered. Nothing more was done.",
			msgExpired:     "This login request has expired. Refresh the login page and scan the new QR code.",
			msgReplaced:    "A newer confirm link replaced this one. Use the link in the latest WeChat message.",
			msgNotFound:    "This login request does not exist any more. Refresh the login page and scan the new QR code.",
			msgBadRequest:  "The request is not valid. Nothing was done.",
			msgRateLimited: "Too many attempts. Wait a moment and try again.",
			msgUnavailable: "Login is temporarily unavailable. Nothing was done; try again in a moment.",
		},
	},
	"zh": {
		tag: "zh-CN", title: "在电脑上登录？", site: "网站", browser: "浏览器", os: "系统", ip: "IP 地址",
		confirm: "确认登录", cancel: "取消", thisSite: "该网站",
		msgs: map[msgKey]string{
			msgAsk:         "一台电脑请求用你的微信帐号登录 %s。只有在你本人发起登录时才确认。",
			msgConfirmed:   "已在电脑上登录。你可以关闭此页面。",
			msgCancelled:   "已取消登录，没有任何人登录。",
			msgBadLink:     "此链接无效。请在登录页面重新扫描二维码。",
			msgBadState:    "此页面不是从你的确认链接打开的。请重新打开微信消息中的链接。",
			msgBadCode:     "微信未能确认你的身份。请重新打开微信消息中的链接。",
			msgNoCode:      "微信未能确认你的身份，未执行任何操作。",
			msgNotScanner:  "此登录请求属于另一位微信用户，未执行任何操作。",
			msgBadForm:     "此表单无效。请重新打开微信消息中的链接。",
			msgDecided:     "此登录请求已处理过，未再执行任何操作。",
			msgExpired:     "此登录请求已过期。请刷新登录页面并扫描新的二维码。",
			msgReplaced:    "此链接已被新的确认链接取代。请使用最新微信消息中的链接。",
			msgNotFound:    "此登录请求已不存在。请刷新登录页面并扫描新的二维码。",
			msgBadRequest:  "请求无效，未执行任何操作。",
			msgRateLimited: "尝试次数过多，请稍后再试。",
			msgUnavailable: "登录暂时不可用，未执行任何操作，请稍后再试。",
		},
	},
}

// page is what one answer shows.
type page struct {
	Msg     msgKey
	Details bool // show site, browser, OS and IP
	Form    bool // the Confirm / Cancel form
	Refused bool
	S, T, F string // hidden fields of the form
}

// pickLang chooses Chinese or English: the language WeChat's in-app
// browser names in its User-Agent ("Language/zh_CN"), else the first of
// Accept-Language that is one of the two, else English.
func pickLang(ua, accept string) *lang {
	if _, after, ok := strings.Cut(ua, "Language/"); ok {
		if strings.HasPrefix(strings.ToLower(after), "zh") {
			return langs["zh"]
		}
		if strings.HasPrefix(strings.ToLower(after), "en") {
			return langs["en"]
		}
	}
	for _, part := range strings.Split(accept, ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		tag = strings.ToLower(tag)
		switch {
		case strings.HasPrefix(tag, "zh"):
			return langs["zh"]
		case strings.HasPrefix(tag, "en"):
			return langs["en"]
		}
	}
	return langs["en"]
}

// securityHeaders forbids everything but the page's own inline style (by
// nonce) and posting the form back here; no framing, caching or referrer
// (the URL holds the link token and WeChat's code).
func securityHeaders(c *gin.Context, nonce string) {
	csp := "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
	if nonce != "" {
		csp += "; style-src 'nonce-" + nonce + "'"
	}
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// render writes p with status, in the request's language. l is the link's
// binding, for the details; nil on a refusal.
func (s *Service) render(c *gin.Context, status int, p page, l *linkReq) {
	lg := pickLang(c.Request.UserAgent(), c.GetHeader("Accept-Language"))
	site := s.cfg.SiteName
	if site == "" {
		site = lg.thisSite
	}
	msg := lg.msgs[p.Msg]
	if p.Msg == msgAsk {
		msg = strings.Replace(msg, "%s", site, 1)
	}
	data := map[string]any{
		"Lang": lg.tag, "Title": lg.title, "Msg": msg, "Refused": p.Refused,
		"Nonce": confirm.RandomHex(16), "Form": p.Form, "S": p.S, "T": p.T, "F": p.F,
		"ConfirmLabel": lg.confirm, "CancelLabel": lg.cancel,
	}
	if p.Details && l != nil {
		data["Details"] = [][2]string{
			{lg.site, site}, {lg.browser, l.b.Browser}, {lg.os, l.b.OS}, {lg.ip, l.b.IP},
		}
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		s.log.Error("oa confirm: render", "err", err)
		c.Status(500)
		return
	}
	securityHeaders(c, data["Nonce"].(string))
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}
