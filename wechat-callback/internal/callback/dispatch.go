package callback

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/oaconfirm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// leaseMargin is added to the budget for the claim of an event being
// processed: if this instance dies, a retry can claim the event after it.
const leaseMargin = time.Second

// finishTimeout bounds storing the answer, which may run past the budget.
const finishTimeout = 500 * time.Millisecond

// Results of processing, as counted in wechat_callback_events_total.
const (
	resultIgnored     = "ignored"     // nothing to do; answered "success"
	resultWelcome     = "welcome"     // plain follow; answered the welcome text
	resultNoScene     = "no_scene"    // a SCAN without EventKey, or a scene of the wrong shape
	resultUnavailable = "unavailable" // Notify failed
	resultInvalid     = "invalid"     // Notify refused the request
)

// eventID is the duplicate key of a message: FromUserName|CreateTime|Event|
// EventKey for events, FromUserName|CreateTime|MsgType|MsgId otherwise.
func eventID(m *wechat.Message) string {
	ct := strconv.FormatInt(m.CreateTime, 10)
	if m.MsgType == wechat.MsgTypeEvent {
		return m.FromUserName + "|" + ct + "|" + m.Event + "|" + m.EventKey
	}
	return m.FromUserName + "|" + ct + "|" + m.MsgType + "|" + strconv.FormatInt(m.MsgID, 10)
}

// eventType names a message for metrics and logs, from a fixed set. Names
// are matched exactly as WeChat spells them ("subscribe", "SCAN"): anything
// else, "scan" included, did not come from WeChat and is "other".
func eventType(m *wechat.Message) string {
	if m.MsgType != wechat.MsgTypeEvent {
		return "message"
	}
	switch m.Event {
	case wechat.EventSubscribe:
		return "subscribe"
	case wechat.EventScan:
		return "scan"
	case wechat.EventUnsubscribe:
		return "unsubscribe"
	}
	return "other"
}

// dedupe processes req's message once per duplicate key. The first copy
// claims the key, processes the message and stores its answer; later copies,
// also concurrent ones, wait for that answer within ctx and return it (""
// when the first copy does not finish in time). dup reports a later copy.
//
// Nothing is processed unless checkReplay found req's (timestamp, nonce)
// pair new: when the replay memory could not tell, the answer is
// REPLY_UNAVAILABLE. The duplicate check is best effort (a store failure
// lets the copy through), as Notify is idempotent per event id.
func (h *handler) dedupe(ctx context.Context, req *request) (text string, dup bool) {
	if !req.replay.fresh {
		h.metrics.rejected.WithLabelValues(reasonReplayUnavailable).Inc()
		h.log.Warn("callback not processed", "reason", reasonReplayUnavailable, "err", req.replay.err)
		return h.cfg.Replies.Unavailable, false
	}
	msg := req.msg
	key := "event:" + digest(eventID(msg))
	claimed, err := h.store.Claim(ctx, key, h.cfg.Budget+leaseMargin)
	if err != nil {
		h.log.Error("duplicate check skipped", "err", err)
		claimed = true
	}
	if claimed {
		text = h.process(ctx, msg)
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
		if err := h.store.Finish(fctx, key, text, h.cfg.DedupTTL); err != nil {
			h.log.Error("store answer", "err", err)
		}
		return text, false
	}
	h.metrics.duplicates.Inc()
	for wait := 2 * time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		a, ok, err := h.store.Answer(ctx, key)
		if err == nil && ok {
			return a, true
		}
		select {
		case <-ctx.Done():
			return "", true
		case <-time.After(wait):
		}
	}
}

// process acts on one verified, first-seen message and returns the text to
// answer the user with ("" for "success").
func (h *handler) process(ctx context.Context, msg *wechat.Message) string {
	typ := eventType(msg)
	var text, result string
	switch typ {
	case "subscribe":
		scene, ok := strings.CutPrefix(msg.EventKey, wechat.EventKeyScenePrefix)
		if !ok || scene == "" {
			text, result = h.cfg.Replies.Welcome, resultWelcome
			break
		}
		if h.oa != nil {
			text, result = h.scanned(ctx, msg, scene)
			break
		}
		text, result = h.login(ctx, msg, pushv1.Event_EVENT_SUBSCRIBE, scene)
	case "scan":
		if h.oa != nil {
			text, result = h.scanned(ctx, msg, msg.EventKey)
			break
		}
		text, result = h.login(ctx, msg, pushv1.Event_EVENT_SCAN, msg.EventKey)
	default:
		result = resultIgnored
	}
	h.metrics.events.WithLabelValues(typ, result).Inc()
	level := slogLevel(result)
	h.log.Log(ctx, level, "event processed", "type", typ, "result", result, "user", digest(msg.FromUserName)[:12])
	return text
}

// login reports a scan of a login QR code to the push server and returns
// the text for the user and the result for metrics. A scene that no QR code
// of ours can carry is answered like an unknown one, without Notify.
func (h *handler) login(ctx context.Context, msg *wechat.Message, ev pushv1.Event, scene string) (text, result string) {
	r := h.cfg.Replies
	if !wechat.ValidScene(scene) {
		return r.NotFound, resultNoScene
	}
	req := &pushv1.NotifyRequest{
		Scene:   scene,
		Ticket:  msg.Ticket,
		Event:   ev,
		User:    h.user(ctx, msg.FromUserName),
		EventId: eventID(msg),
	}
	start := time.Now()
	resp, err := h.notifier.Notify(ctx, req)
	if err != nil {
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition:
			text, result = r.NotFound, resultInvalid
		default:
			text, result = r.Unavailable, resultUnavailable
		}
		h.log.Warn("notify failed", "code", status.Code(err).String(), "err", err)
	} else {
		result = strings.ToLower(strings.TrimPrefix(resp.GetResult().String(), "RESULT_"))
		switch resp.GetResult() {
		case pushv1.Result_RESULT_DELIVERED, pushv1.Result_RESULT_STORED:
			text = r.LoginOK
		case pushv1.Result_RESULT_EXPIRED:
			text = r.Expired
		default: // not found, ticket mismatch, already used, unknown
			text = r.NotFound
		}
	}
	h.metrics.notify.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return text, result
}

// scanned reports a scan with OA_CONFIRM: the session moves to scanned,
// bound to the scanner, and the reply links to the confirm page. The reply
// is stored by dedupe, so that WeChat's retries get the same link.
func (h *handler) scanned(ctx context.Context, msg *wechat.Message, scene string) (text, result string) {
	r := h.cfg.Replies
	if !wechat.ValidScene(scene) {
		return r.NotFound, resultNoScene
	}
	user := h.user(ctx, msg.FromUserName)
	start := time.Now()
	resp, err := h.notifier.Notify(ctx, &pushv1.NotifyRequest{
		Scene:   scene,
		Ticket:  msg.Ticket,
		Event:   pushv1.Event_EVENT_SCANNED,
		User:    user,
		EventId: eventID(msg),
	})
	if err != nil {
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition:
			text, result = r.NotFound, resultInvalid
		default:
			text, result = r.Unavailable, resultUnavailable
		}
		h.log.Warn("notify failed", "code", status.Code(err).String(), "err", err)
		h.metrics.notify.WithLabelValues(result).Observe(time.Since(start).Seconds())
		return text, result
	}
	result = strings.ToLower(strings.TrimPrefix(resp.GetResult().String(), "RESULT_"))
	h.metrics.notify.WithLabelValues(result).Observe(time.Since(start).Seconds())
	switch resp.GetResult() {
	case pushv1.Result_RESULT_DELIVERED, pushv1.Result_RESULT_STORED:
	case pushv1.Result_RESULT_EXPIRED:
		return r.Expired, result
	default: // not found, ticket mismatch, already used (another scanner), forbidden
		return r.NotFound, result
	}
	conf := resp.GetConfirmation()
	if conf.GetSecret() == "" {
		// A duplicate whose first answer this instance lost: the secret
		// went with it. Scanning again gives a new one.
		h.log.Warn("scan accepted without a confirm secret", "duplicate", resp.GetDuplicate())
		return r.Unavailable, resultUnavailable
	}
	link, err := h.oa.Link(ctx, oaconfirm.Scan{
		Scene: scene, Ticket: msg.Ticket, OpenID: user.GetOpenid(), UnionID: user.GetUnionid(), Confirmation: conf,
	})
	if err != nil {
		h.log.Error("confirm link not made", "err", err)
		return r.Unavailable, resultUnavailable
	}
	site := h.cfg.OAConfirm.SiteName
	if site == "" {
		site = "the website"
	}
	req := conf.GetRequester()
	text = strings.NewReplacer(
		"{site}", oaconfirm.Shown(site),
		"{browser}", oaconfirm.Shown(req.GetBrowser()),
		"{os}", oaconfirm.Shown(req.GetOs()),
		"{ip}", oaconfirm.Shown(req.GetIp()),
		"{link}", link,
	).Replace(r.Confirm)
	return text, result
}

// user returns the user for Notify: the openid, and with FETCH_USER_INFO
// what user/info says, if it answers within USER_INFO_TIMEOUT (and the
// budget). A slow or failed look-up is skipped, never waited for.
func (h *handler) user(ctx context.Context, openid string) *pushv1.User {
	u := &pushv1.User{Openid: openid}
	if h.users == nil {
		return u
	}
	timeout := h.cfg.UserInfoTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)/4)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type answer struct {
		info *wechat.UserInfo
		err  error
	}
	ch := make(chan answer, 1)
	go func() { // the client may not honour ctx everywhere; never wait past it
		info, err := h.users.UserInfo(ctx, openid)
		ch <- answer{info, err}
	}()
	select {
	case a := <-ch:
		if a.err != nil || a.info == nil {
			h.metrics.userInfo.WithLabelValues("error").Inc()
			h.log.Warn("user info skipped", "err", fmt.Sprint(a.err))
			return u
		}
		h.metrics.userInfo.WithLabelValues("ok").Inc()
		u.Unionid, u.Nickname, u.AvatarUrl = a.info.UnionID, a.info.Nickname, a.info.HeadImgURL
		if u.Unionid != "" && !wechat.ValidUnionID(u.Unionid) {
			h.log.Warn("user info: unionid dropped, not a UnionID")
			u.Unionid = ""
		}
	case <-ctx.Done():
		h.metrics.userInfo.WithLabelValues("slow").Inc()
		h.log.Warn("user info skipped: too slow", "timeout", timeout)
	}
	return u
}

// slogLevel logs failures as warnings, logins as info, the rest as debug.
func slogLevel(result string) slog.Level {
	switch result {
	case resultUnavailable, resultInvalid:
		return slog.LevelWarn
	case resultIgnored, resultWelcome:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// newNonce returns a random decimal nonce for an encrypted reply.
func newNonce() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:])), 10)
}
