package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/wsconn"
	"github.com/scanlogin/scanlogin/wechat"
)

// resumeFailed answers a resume that cannot have its session; a new
// session follows.
var resumeFailed = browser.ErrorFrame(browser.CodeResumeFailed, "session not found or expired; here is a new one")

// Bounds of the /ws query parameters.
const (
	maxIDParam    = 64
	maxTokenParam = 4096
)

// serveWS upgrades GET /ws, sets the browser connection up, and hands it to
// the connection manager; this goroutine then returns.
//
//	/ws                          a new login session and its code, in the first flow
//	/ws?flow=oa|miniprogram      the same in that flow
//	/ws?session=ID&resume=SECRET reattach to a live session
//	/ws?token=JWT                an authenticated connection for Push to its user
func (s *Server) serveWS(c *gin.Context) {
	r := c.Request
	ip := c.ClientIP()
	reject := func(status int, reason, msg string) {
		s.metrics.ConnsRejected.WithLabelValues(reason).Inc()
		s.log.Info("ws refused", "reason", reason, "ip", ip)
		c.String(status, msg+"\n")
	}
	if s.draining.Load() {
		reject(http.StatusServiceUnavailable, "draining", "server is shutting down")
		return
	}
	if !s.originAllowed(r) {
		reject(http.StatusForbidden, "origin", "origin not allowed")
		return
	}
	q := r.URL.Query()
	sid, resume, raw := q.Get("session"), q.Get("resume"), q.Get("token")
	if msg := badQuery(sid, resume, raw); msg != "" {
		reject(http.StatusBadRequest, "bad_query", msg)
		return
	}
	flow, reason, msg := s.flow(q)
	if reason != "" {
		reject(http.StatusBadRequest, reason, msg)
		return
	}
	var openid string
	var until time.Time // when the token stops being accepted
	if raw != "" {
		claims, err := s.tokens.Verify(raw, time.Now())
		// A subject that is no openid was never minted by a Notify that
		// checks them: refused like a forged token.
		if err != nil || !wechat.ValidOpenID(claims.Subject) {
			reject(http.StatusUnauthorized, "bad_token", "invalid or expired token")
			return
		}
		openid, until = claims.Subject, claims.ValidUntil()
	}
	if !s.conns.Acquire(ip) {
		c.Header("Retry-After", "10")
		reject(http.StatusTooManyRequests, "conns_per_ip", "too many connections from this address")
		return
	}
	b := &browserConn{s: s, ip: ip, openid: openid, flow: flow, from: login.Describe(r.UserAgent(), ip)}
	s.wg.Add(1) // done in b.closed
	s.metrics.Connections.Inc()
	ws, err := s.mgr.Upgrade(c.Writer, r, b, b.closed)
	if err != nil {
		s.wg.Done()
		s.metrics.Connections.Dec()
		s.conns.Release(ip)
		s.metrics.ConnsRejected.WithLabelValues("handshake").Inc()
		s.log.Debug("ws handshake failed", "err", err)
		return
	}
	b.ws = ws
	switch {
	case openid != "":
		s.reg.AttachUser(openid, b)
		// The connection lasts as long as its token: then Alarm closes it
		// with 4001 and the browser reconnects with a fresh token.
		ws.SetAlarm(until)
	case sid != "":
		b.resume(sid, resume)
	default:
		b.start(true)
	}
	// From here the connection runs without this goroutine.
	ws.Start()
}

// badQuery says what is wrong with the /ws query parameters, or "".
func badQuery(sid, resume, token string) string {
	switch {
	case len(token) > maxTokenParam:
		return "token too long"
	case (sid == "") != (resume == ""):
		return "session and resume go together"
	case sid != "" && !login.ValidSessionID(sid):
		return "session is not a session id"
	case len(resume) > maxIDParam:
		return "resume too long"
	}
	return ""
}

// flow returns the login flow asked for with ?flow=, or the first one
// offered; reason and msg say why the request is refused.
func (s *Server) flow(q url.Values) (f login.Flow, reason, msg string) {
	if !q.Has("flow") {
		return s.opt.Flows[0], "", ""
	}
	switch f = login.Flow(q.Get("flow")); f {
	case login.FlowOA, login.FlowMiniProgram:
	default:
		return "", "unknown_flow", "unknown flow"
	}
	if !slices.Contains(s.opt.Flows, f) {
		return "", "flow_not_enabled", "flow not enabled"
	}
	return f, "", ""
}

// browserConn is a browser connection: its WebSocket and the login session
// or user it is attached to. It is the hub's Conn and the WebSocket's
// Handler. Receive runs on the WebSocket's reader; the expiry alarm and hub
// deliveries run on other goroutines, hence mu.
type browserConn struct {
	s      *Server
	ip     string
	openid string       // set for authenticated connections; immutable
	ws     *wsconn.Conn // set once, before anything can call the methods below
	// from describes the browser to the phone, recorded with each session
	// it starts; immutable.
	from login.Requester
	// flow is that of the sessions this connection starts: the query's,
	// then the resumed session's. Set before ws.Start, then used on the
	// reader goroutine only.
	flow login.Flow

	mu        sync.Mutex
	gone      bool   // the connection has ended; guarded by mu
	sid       string // current login session; guarded by mu
	refreshes int    // reader goroutine only
}

// Send implements hub.Conn. A frame whose kind ends the connection (a login
// with 1000, a session_taken error with 4002) is sent with its close.
func (b *browserConn) Send(f browser.Frame) bool {
	if code, reason := f.Kind.CloseAfter(); code != 0 {
		return b.sendAndClose(f, code, reason)
	}
	return b.ws.Send(f.JSON)
}

func (b *browserConn) sendAndClose(f browser.Frame, code int, reason string) bool {
	b.ws.SetAlarm(time.Time{})
	b.s.metrics.ConnCloseCodes.WithLabelValues(strconv.Itoa(code)).Inc()
	return b.ws.SendAndClose(f.JSON, code, reason)
}

// Receive implements wsconn.Handler; the WebSocket answers pings itself,
// and answers and counts unknown types.
func (b *browserConn) Receive(_ *wsconn.Conn, typ string) bool {
	if typ == browser.RequestRefresh {
		b.refresh()
		return true
	}
	return false
}

func (b *browserConn) op() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.s.base, b.s.opt.OpTimeout)
}

// start gives the connection a new session and QR code. On a fresh
// connection a failure closes it (the browser retries with backoff); on a
// refresh the connection stays.
func (b *browserConn) start(fresh bool) {
	fail := func(code, msg string) {
		frame := browser.ErrorFrame(code, msg)
		if fresh {
			b.sendAndClose(frame, browser.CloseTryAgainLater, code)
			return
		}
		b.Send(frame)
	}
	ctx, cancel := b.op()
	defer cancel()
	if ok, err := b.s.qrLimit.Allow(ctx, b.ip); err != nil || !ok {
		if err != nil {
			b.s.metrics.QRCreated.WithLabelValues("error").Inc()
			b.s.log.Debug("qr limit unavailable", "err", err)
			fail(browser.CodeUpstreamUnavailable, "try again shortly")
			return
		}
		b.s.metrics.QRCreated.WithLabelValues("rate_limited").Inc()
		fail(browser.CodeRateLimited, "too many QR codes from this address; try again later")
		return
	}
	b.mu.Lock()
	old := b.sid
	b.mu.Unlock()
	req := login.Request{Flow: b.flow, From: b.from}
	st, err := b.s.logins.Refresh(ctx, old, req)
	if err != nil {
		b.s.metrics.QRCreated.WithLabelValues("error").Inc()
		var ae *wechat.APIError
		switch {
		case errors.Is(err, login.ErrUnavailable):
			b.s.log.Debug("start login session", "err", err) // the store's monitor logs the outage once
		case errors.As(err, &ae):
			b.s.log.Warn("start login session: wechat refused", "flow", req.Flow, "errcode", ae.Code, "err", err)
		default:
			b.s.log.Warn("start login session", "flow", req.Flow, "err", err)
		}
		fail(startError(req.Flow, ae))
		return
	}
	b.s.metrics.QRCreated.WithLabelValues("ok").Inc()
	b.attach(st.Session)
	b.Send(st.Frame)
}

// startError is the error code and message a browser gets when its
// session could not start; ae is WeChat's refusal, if that was the cause.
func startError(flow login.Flow, ae *wechat.APIError) (code, msg string) {
	if flow == login.FlowMiniProgram && ae != nil {
		switch ae.Code {
		case 41030, 40129, 40169:
			return browser.CodeMiniProgramMisconfigured,
				"WeChat refused to make a Mini Program code for this site's settings; tell the site's operator"
		case 45009:
			return browser.CodeRateLimited, "too many codes are being made right now; try again in a minute"
		}
	}
	return browser.CodeUpstreamUnavailable, "could not get a QR code; try again shortly"
}

// closed is called once when the connection has ended.
func (b *browserConn) closed(err error) {
	b.mu.Lock()
	b.gone = true
	sid := b.sid
	b.mu.Unlock()
	b.s.reg.Remove(b, sid, b.openid)
	b.s.conns.Release(b.ip)
	b.s.metrics.Connections.Dec()
	if err != nil {
		b.s.log.Debug("ws ended", "err", err)
	}
	b.s.wg.Done()
}

// attach makes sess the connection's session and sets its expiry alarm.
func (b *browserConn) attach(sess *login.Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return
	}
	if b.sid != "" {
		b.s.reg.DetachSession(b.sid, b)
	}
	b.sid = sess.ID
	b.s.reg.AttachSession(sess.ID, b)
	b.ws.SetAlarm(sess.ExpiresAt)
}

// Alarm implements wsconn.Handler. On an authenticated connection the
// token has expired: the connection closes with 4001. Otherwise the
// session's time is up: it tells the browser, if the session did expire
// (it may have been confirmed).
func (b *browserConn) Alarm(*wsconn.Conn) {
	if b.openid != "" {
		b.s.metrics.ConnCloseCodes.WithLabelValues(strconv.Itoa(browser.CloseTokenExpired)).Inc()
		b.ws.Close(browser.CloseTokenExpired, "token expired")
		return
	}
	b.mu.Lock()
	id := b.sid
	b.mu.Unlock()
	if id == "" {
		return
	}
	ctx, cancel := b.op()
	defer cancel()
	expired, err := b.s.logins.Expired(ctx, id)
	if err != nil {
		b.s.log.Debug("expiry check", "err", err)
	}
	if expired {
		b.Send(browser.Expired)
	}
}

func (b *browserConn) refresh() {
	if b.refreshes >= b.s.opt.MaxRefresh {
		b.Send(browser.ErrorFrame(browser.CodeRefreshLimit, "too many refreshes on this connection; reload the page"))
		return
	}
	if b.openid != "" {
		b.Send(browser.ErrorFrame(browser.CodeBadRequest, "this connection has no login session"))
		return
	}
	b.refreshes++
	b.start(false)
}

// resume reattaches the connection to session id and sends what it
// missed; a bad pair gets an error and a new session.
func (b *browserConn) resume(id, secret string) {
	ctx, cancel := b.op()
	defer cancel()
	sess, err := b.s.logins.Resume(ctx, id, secret)
	if err != nil {
		if !errors.Is(err, login.ErrNotFound) {
			b.s.log.Debug("resume", "err", err)
		}
		b.Send(resumeFailed)
		b.start(true)
		return
	}
	if f := sessionFlow(sess); f != "" {
		b.flow = f // refresh keeps the resumed session's flow
	}
	// Attach first, then catch up: whatever arrives in between is either
	// routed here or found by Catchup.
	b.attach(sess)
	now, missed, err := b.s.logins.Catchup(ctx, id)
	if err != nil {
		b.s.log.Debug("catch up", "err", err)
	}
	if now == nil {
		now = sess
	}
	if now.State != login.StateConfirmed {
		b.Send(b.s.logins.QRCodeFrame(now, secret))
	}
	var final browser.Frame // the login, sent last: the connection closes after it
	for _, f := range missed {
		if f.Kind == browser.KindLogin {
			final = f
			continue
		}
		b.Send(f)
	}
	switch {
	case final.Kind == browser.KindLogin:
		b.Send(final)
	case now.State == login.StateConfirmed:
		// The login went to another resume, or reached this connection
		// live (which is then closing, and Send fails): not ours to have.
		if b.Send(resumeFailed) {
			b.start(true)
		}
	}
}

// sessionFlow is the flow of sess.
func sessionFlow(sess *login.Session) login.Flow { return sess.Flow }
