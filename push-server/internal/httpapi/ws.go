package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/wsconn"
	"github.com/scanlogin/scanlogin/wechat"
)

// Bounds of the /ws query parameters.
const (
	maxIDParam    = 64
	maxTokenParam = 4096
)

// serveWS upgrades GET /ws, sets the connection up, and hands it to the
// session manager; this goroutine then returns.
//
//	/ws                          a new login session and its QR code
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
	cl := &client{s: s, ip: ip, openid: openid}
	s.wg.Add(1) // done in cl.closed
	s.metrics.Connections.Inc()
	conn, err := s.mgr.Upgrade(c.Writer, r, cl, cl.closed)
	if err != nil {
		s.wg.Done()
		s.metrics.Connections.Dec()
		s.conns.Release(ip)
		s.metrics.ConnsRejected.WithLabelValues("handshake").Inc()
		s.log.Debug("ws handshake failed", "err", err)
		return
	}
	cl.conn = conn
	switch {
	case openid != "":
		s.reg.AttachUser(openid, cl)
		// The connection lasts as long as its token: then Alarm closes it
		// with 4001 and the browser reconnects with a fresh token.
		conn.SetAlarm(until)
	case sid != "":
		cl.resume(sid, resume)
	default:
		cl.start(true)
	}
	// From here the connection runs without this goroutine.
	conn.Start()
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

// client is the per-connection glue between a WebSocket and its login
// session. Receive runs on the connection's reader; the expiry alarm and
// hub deliveries run on other goroutines, hence mu.
type client struct {
	s      *Server
	ip     string
	openid string // set for authenticated connections; immutable
	conn   *wsconn.Conn

	mu        sync.Mutex
	gone      bool   // the connection has ended; guarded by mu
	sid       string // current login session; guarded by mu
	refreshes int    // reader goroutine only
}

// Send implements hub.Conn. A login message ends the connection with 1000,
// a session_taken error (another connection resumed the session) with 4002.
func (cl *client) Send(msg []byte) bool {
	switch {
	case login.IsLogin(msg):
		return cl.sendAndClose(msg, wsconn.CloseNormal, "logged in")
	case login.IsSessionTaken(msg):
		return cl.sendAndClose(msg, wsconn.CloseSessionTaken, "session taken")
	}
	return cl.conn.Send(msg)
}

func (cl *client) sendAndClose(msg []byte, code int, reason string) bool {
	cl.conn.SetAlarm(time.Time{})
	cl.s.metrics.ConnCloseCodes.WithLabelValues(strconv.Itoa(code)).Inc()
	return cl.conn.SendAndClose(msg, code, reason)
}

// Receive implements wsconn.Handler; the connection answers, and counts,
// unknown types.
func (cl *client) Receive(_ *wsconn.Conn, typ string) bool {
	if typ == "refresh" {
		cl.refresh()
		return true
	}
	return false
}

func (cl *client) op() (context.Context, context.CancelFunc) {
	return context.WithTimeout(cl.s.base, cl.s.opt.OpTimeout)
}

// start gives the connection a new session and QR code. On a fresh
// connection a failure closes it (the browser retries with backoff); on a
// refresh the connection stays.
func (cl *client) start(fresh bool) {
	fail := func(code, msg string) {
		frame := login.ErrorFrame(code, msg)
		if fresh {
			cl.s.metrics.ConnCloseCodes.WithLabelValues(strconv.Itoa(wsconn.CloseTryAgainLater)).Inc()
			cl.conn.SendAndClose(frame, wsconn.CloseTryAgainLater, code)
			return
		}
		cl.Send(frame)
	}
	ctx, cancel := cl.op()
	defer cancel()
	if ok, err := cl.s.qrLimit.Allow(ctx, cl.ip); err != nil || !ok {
		if err != nil {
			cl.s.metrics.QRCreated.WithLabelValues("error").Inc()
			cl.s.log.Debug("qr limit unavailable", "err", err)
			fail(login.CodeUpstreamUnavailable, "try again shortly")
			return
		}
		cl.s.metrics.QRCreated.WithLabelValues("rate_limited").Inc()
		fail(login.CodeRateLimited, "too many QR codes from this address; try again later")
		return
	}
	cl.mu.Lock()
	old := cl.sid
	cl.mu.Unlock()
	st, err := cl.s.logins.Refresh(ctx, old)
	if err != nil {
		cl.s.metrics.QRCreated.WithLabelValues("error").Inc()
		if errors.Is(err, login.ErrUnavailable) {
			cl.s.log.Debug("start login session", "err", err) // the store's monitor logs the outage once
		} else {
			cl.s.log.Warn("start login session", "err", err)
		}
		fail(login.CodeUpstreamUnavailable, "could not get a QR code; try again shortly")
		return
	}
	cl.s.metrics.QRCreated.WithLabelValues("ok").Inc()
	cl.attach(st.Session)
	cl.Send(st.Frame)
}

// closed is called once when the connection has ended.
func (cl *client) closed(err error) {
	cl.mu.Lock()
	cl.gone = true
	sid := cl.sid
	cl.mu.Unlock()
	cl.s.reg.Remove(cl, sid, cl.openid)
	cl.s.conns.Release(cl.ip)
	cl.s.metrics.Connections.Dec()
	if err != nil {
		cl.s.log.Debug("ws ended", "err", err)
	}
	cl.s.wg.Done()
}

// attach makes sess the connection's session and sets its expiry alarm.
func (cl *client) attach(sess *login.Session) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.gone {
		return
	}
	if cl.sid != "" {
		cl.s.reg.DetachSession(cl.sid, cl)
	}
	cl.sid = sess.ID
	cl.s.reg.AttachSession(sess.ID, cl)
	cl.conn.SetAlarm(sess.ExpiresAt)
}

// Alarm implements wsconn.Handler. On an authenticated connection the
// token has expired: the connection closes with 4001. Otherwise the
// session's time is up: it tells the browser, if the session did expire
// (it may have been confirmed).
func (cl *client) Alarm(*wsconn.Conn) {
	if cl.openid != "" {
		cl.s.metrics.ConnCloseCodes.WithLabelValues(strconv.Itoa(wsconn.CloseTokenExpired)).Inc()
		cl.conn.Close(wsconn.CloseTokenExpired, "token expired")
		return
	}
	cl.mu.Lock()
	id := cl.sid
	cl.mu.Unlock()
	if id == "" {
		return
	}
	ctx, cancel := cl.op()
	defer cancel()
	expired, err := cl.s.logins.Expired(ctx, id)
	if err != nil {
		cl.s.log.Debug("expiry check", "err", err)
	}
	if expired {
		cl.Send(login.MsgExpired)
	}
}

func (cl *client) refresh() {
	if cl.refreshes >= cl.s.opt.MaxRefresh {
		cl.Send(login.ErrorFrame(login.CodeRefreshLimit, "too many refreshes on this connection; reload the page"))
		return
	}
	if cl.openid != "" {
		cl.Send(login.ErrorFrame(login.CodeBadRequest, "this connection has no login session"))
		return
	}
	cl.refreshes++
	cl.start(false)
}

// resume reattaches the connection to session id and sends what it
// missed; a bad pair gets an error and a new session.
func (cl *client) resume(id, secret string) {
	ctx, cancel := cl.op()
	defer cancel()
	sess, err := cl.s.logins.Resume(ctx, id, secret)
	if err != nil {
		if !errors.Is(err, login.ErrNotFound) {
			cl.s.log.Debug("resume", "err", err)
		}
		cl.Send(login.ErrorFrame(login.CodeResumeFailed, "session not found or expired; here is a new one"))
		cl.start(true)
		return
	}
	// Attach first, then catch up: whatever arrives in between is either
	// routed here or found by Catchup.
	cl.attach(sess)
	now, missed, err := cl.s.logins.Catchup(ctx, id)
	if err != nil {
		cl.s.log.Debug("catch up", "err", err)
	}
	if now == nil {
		now = sess
	}
	if now.State != login.StateConfirmed {
		cl.Send(cl.s.logins.QRCodeFrame(now, secret))
	}
	var final []byte
	for _, m := range missed {
		if login.IsLogin(m) {
			final = m
			continue
		}
		cl.Send(m)
	}
	switch {
	case final != nil:
		cl.Send(final)
	case now.State == login.StateConfirmed:
		// The login went to another resume, or reached this connection
		// live (which is then closing, and Send fails): not ours to have.
		if cl.Send(login.ErrorFrame(login.CodeResumeFailed, "session not found or expired; here is a new one")) {
			cl.start(true)
		}
	}
}
