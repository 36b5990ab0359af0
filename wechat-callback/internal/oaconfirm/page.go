package oaconfirm

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/confirm"
)

// refusal is a refused request: the status, the sentence shown and the
// reason logged (free of personal data).
type refusal struct {
	status int
	msg    msgKey
	reason string
}

// linkReq is a request's link, its binding and the key of that binding.
type linkReq struct {
	scene, token string
	b            binding
}

// load checks the link of a request (s and t, from the form of a POST or
// the query): an unknown, malformed or foreign link is 403, a decided one
// 409, one whose session ended 410.
func (s *Service) load(c *gin.Context) (*linkReq, *refusal) {
	scene, token := c.Request.FormValue("s"), c.Request.FormValue("t")
	if !wechat.ValidScene(scene) || len(token) != 32 {
		return nil, &refusal{status: http.StatusForbidden, msg: msgBadLink, reason: "malformed link"}
	}
	ctx := c.Request.Context()
	v, ok, err := s.store.Get(ctx, linkKey(token))
	if err != nil {
		return nil, &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "store: " + err.Error()}
	}
	var b binding
	if !ok || json.Unmarshal([]byte(v), &b) != nil || b.Scene != scene {
		return nil, &refusal{status: http.StatusForbidden, msg: msgBadLink, reason: "unknown link"}
	}
	if _, done, err := s.store.Get(ctx, doneKey(token)); err != nil {
		return nil, &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "store: " + err.Error()}
	} else if done {
		return nil, &refusal{status: http.StatusConflict, msg: msgDecided, reason: "already decided"}
	}
	if !s.now().Before(time.UnixMilli(b.Expires)) {
		return nil, &refusal{status: http.StatusGone, msg: msgExpired, reason: "session ended"}
	}
	return &linkReq{scene: scene, token: token, b: b}, nil
}

// open is GET of the link: without code, the redirect to WeChat's web
// authorization; with code and state, the page for the scanner.
func (s *Service) open(c *gin.Context) {
	step := "open"
	if c.Query("code") != "" {
		step = "authorized"
	}
	if ok, _ := s.limit.Allow(c.ClientIP(), s.now()); !ok {
		s.refuse(c, step, &refusal{status: http.StatusTooManyRequests, msg: msgRateLimited, reason: "requests per IP"})
		return
	}
	l, ref := s.load(c)
	if ref != nil {
		s.refuse(c, step, ref)
		return
	}
	if step == "open" {
		if c.Query("state") != "" {
			// WeChat came back without a code: the user refused.
			s.refuse(c, step, &refusal{status: http.StatusForbidden, msg: msgNoCode, reason: "no code"})
			return
		}
		s.redirect(c, l)
		return
	}
	if ref := s.authorize(c, l); ref != nil {
		s.refuse(c, step, ref)
		return
	}
	form := confirm.RandomToken(tokenBytes)
	ttl := confirm.BindingTTL(time.UnixMilli(l.b.Expires), s.now())
	if err := s.store.Put(c.Request.Context(), formKey(form), confirm.Digest(l.token), ttl); err != nil {
		s.refuse(c, step, &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "store: " + err.Error()})
		return
	}
	s.requests.WithLabelValues(step, "page").Inc()
	s.render(c, http.StatusOK, page{Msg: msgAsk, Details: true, Form: true, S: l.scene, T: l.token, F: form}, l)
}

// redirect sends the in-app browser to WeChat's web authorization, with a
// new one-time state bound to the link.
func (s *Service) redirect(c *gin.Context, l *linkReq) {
	state := confirm.RandomHex(stateBytes)
	ttl := min(stateLife, confirm.BindingTTL(time.UnixMilli(l.b.Expires), s.now()))
	if err := s.store.Put(c.Request.Context(), stateKey(state), confirm.Digest(l.token), ttl); err != nil {
		s.refuse(c, "open", &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "store: " + err.Error()})
		return
	}
	u := s.cfg.OpenBase + "/connect/oauth2/authorize?appid=" + url.QueryEscape(s.appID) +
		"&redirect_uri=" + url.QueryEscape(s.link(l.scene, l.token)) +
		"&response_type=code&scope=snsapi_base&state=" + state + "#wechat_redirect"
	s.requests.WithLabelValues("open", "redirect").Inc()
	securityHeaders(c, "")
	c.Redirect(http.StatusFound, u)
}

// authorize checks the state (issued for this link, first use) and that
// the code's user is the scanner.
func (s *Service) authorize(c *gin.Context, l *linkReq) *refusal {
	ctx := c.Request.Context()
	state := c.Query("state")
	if len(state) != 2*stateBytes {
		return &refusal{status: http.StatusForbidden, msg: msgBadState, reason: "malformed state"}
	}
	v, ok, err := s.store.Get(ctx, stateKey(state))
	if err != nil {
		return &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "store: " + err.Error()}
	}
	if !ok || v != confirm.Digest(l.token) {
		return &refusal{status: http.StatusForbidden, msg: msgBadState, reason: "state not issued for this link"}
	}
	n, _, err := s.store.Incr(ctx, "state-used:"+confirm.Digest(state), stateLife)
	if err != nil {
		return &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "store: " + err.Error()}
	}
	if n != 1 {
		return &refusal{status: http.StatusForbidden, msg: msgBadState, reason: "state used before"}
	}
	xctx, cancel := context.WithTimeout(ctx, wechatTimeout)
	defer cancel()
	u, err := s.exchange.OAuthAccessToken(xctx, c.Query("code"))
	var apiErr *wechat.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Code != wechat.ErrCodeBusy:
		// 40029 unknown or expired, 40163 used, or our credentials.
		if apiErr.Code == wechat.ErrCodeInvalidAppID || apiErr.Code == wechat.ErrCodeInvalidSecret {
			s.log.Error("oauth2/access_token refused our credentials: check WECHAT_APPID and WECHAT_SECRET", "errcode", apiErr.Code)
			return &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "oauth2/access_token misconfigured"}
		}
		return &refusal{status: http.StatusForbidden, msg: msgBadCode, reason: "oauth2/access_token errcode " + strconv.Itoa(apiErr.Code)}
	case errors.Is(err, wechat.ErrInvalidOAuthCode):
		return &refusal{status: http.StatusForbidden, msg: msgBadCode, reason: "malformed code"}
	case err != nil:
		return &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "oauth2/access_token: " + err.Error()}
	}
	if u.OpenID != l.b.OpenID {
		return &refusal{status: http.StatusForbidden, msg: msgNotScanner, reason: "not the scanner"}
	}
	return nil
}

// decide is POST of the form: confirm or cancel with the scan's secret.
func (s *Service) decide(c *gin.Context) {
	const step = "decide"
	if ok, _ := s.limit.Allow(c.ClientIP(), s.now()); !ok {
		s.refuse(c, step, &refusal{status: http.StatusTooManyRequests, msg: msgRateLimited, reason: "requests per IP"})
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxForm)
	if err := c.Request.ParseForm(); err != nil {
		s.refuse(c, step, &refusal{status: http.StatusBadRequest, msg: msgBadRequest, reason: "form: " + err.Error()})
		return
	}
	ctx := c.Request.Context()
	// The one-time form value first: without one issued for this link,
	// nothing about the link is told.
	scene, token, form := c.Request.PostForm.Get("s"), c.Request.PostForm.Get("t"), c.Request.PostForm.Get("f")
	if scene == "" || token == "" {
		scene, token = c.Query("s"), c.Query("t")
	}
	c.Request.Form.Set("s", scene)
	c.Request.Form.Set("t", token)
	if form == "" || len(form) > 64 {
		s.refuse(c, step, &refusal{status: http.StatusForbidden, msg: msgBadForm, reason: "no form value"})
		return
	}
	v, ok, err := s.store.Get(ctx, formKey(form))
	if err != nil {
		s.refuse(c, step, &refusal{status: http.StatusServiceUnavailable, msg: msgUnavailable, reason: "store: " + err.Error()})
		return
	}
	if !ok || v != confirm.Digest(token) {
		s.refuse(c, step, &refusal{status: http.StatusForbidden, msg: msgBadForm, reason: "form value not issued for this link"})
		return
	}
	l, ref := s.load(c)
	if ref != nil {
		s.refuse(c, step, ref)
		return
	}
	ev, result, msg := pushv1.Event_EVENT_CONFIRMED, "confirmed", msgConfirmed
	switch c.Request.PostForm.Get("decision") {
	case "confirm":
	case "cancel":
		ev, result, msg = pushv1.Event_EVENT_CANCELLED, "cancelled", msgCancelled
	default:
		s.refuse(c, step, &refusal{status: http.StatusBadRequest, msg: msgBadRequest, reason: "decision"})
		return
	}
	nctx, cancel := context.WithTimeout(ctx, notifyBudget)
	defer cancel()
	// The event id is the form value's: a replay of this POST is a
	// duplicate, which the push server answers without a second change.
	resp, err := s.notifier.Notify(nctx, &pushv1.NotifyRequest{
		Scene:   l.scene,
		Ticket:  l.b.Ticket,
		Event:   ev,
		User:    &pushv1.User{Openid: l.b.OpenID, Unionid: l.b.UnionID},
		EventId: "oa-confirm:" + confirm.Digest(form),
		Confirm: l.b.Secret,
	})
	if err != nil {
		st, code := confirm.RefuseError(err)
		s.refuse(c, step, &refusal{status: st, msg: msgFor(code), reason: "notify: " + err.Error()})
		return
	}
	switch r := resp.GetResult(); {
	case resp.GetDuplicate():
		s.refuse(c, step, &refusal{status: http.StatusConflict, msg: msgDecided, reason: "notify: duplicate"})
		return
	case r != pushv1.Result_RESULT_DELIVERED && r != pushv1.Result_RESULT_STORED:
		st, code := confirm.Refuse(r)
		m := msgFor(code)
		if r == pushv1.Result_RESULT_FORBIDDEN {
			m = msgReplaced // the scanner scanned again: a newer link holds the secret
		}
		s.refuse(c, step, &refusal{status: st, msg: m, reason: "notify: " + r.String()})
		return
	}
	ttl := confirm.BindingTTL(time.UnixMilli(l.b.Expires), s.now())
	if err := s.store.Put(context.WithoutCancel(ctx), doneKey(l.token), result, ttl); err != nil {
		s.log.Warn("oa confirm: decision not remembered; the push server refuses a second one", "err", err)
	}
	s.requests.WithLabelValues(step, result).Inc()
	s.log.Info("oa confirm decided", "scene", confirm.Short(l.scene), "result", result)
	s.render(c, http.StatusOK, page{Msg: msg}, l)
}

// msgFor is the sentence for a shared refusal code.
func msgFor(code string) msgKey {
	switch code {
	case confirm.CodeNotFound:
		return msgNotFound
	case confirm.CodeExpired:
		return msgExpired
	case confirm.CodeAlreadyUsed:
		return msgDecided
	case confirm.CodeForbidden:
		return msgNotScanner
	}
	return msgUnavailable
}

// refuse answers a refusal page and logs one line.
func (s *Service) refuse(c *gin.Context, step string, r *refusal) {
	s.requests.WithLabelValues(step, strings.ToLower(http.StatusText(r.status))).Inc()
	level := slog.LevelInfo
	if r.status >= 500 {
		level = slog.LevelWarn
	}
	s.log.Log(c.Request.Context(), level, "oa confirm refused", "step", step, "status", r.status,
		"reason", r.reason, "ip", c.ClientIP(), "scene", confirm.Short(c.Request.FormValue("s")))
	s.render(c, r.status, page{Msg: r.msg, Refused: true}, nil)
}
