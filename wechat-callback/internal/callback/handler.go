package callback

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/confirm"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/dedup"
)

// Content types of our answers to WeChat.
const (
	contentText = "text/plain; charset=utf-8"
	contentXML  = "application/xml; charset=utf-8"
)

// Reasons for rejecting a request, as logged and counted.
const (
	reasonSignature    = "bad_signature"
	reasonMsgSignature = "bad_msg_signature"
	reasonTimestamp    = "stale_timestamp"
	reasonReplay       = "replayed_nonce"
	reasonTooLarge     = "too_large"
	reasonMalformed    = "malformed"
	reasonToUser       = "wrong_to_user"
	reasonMode         = "wrong_mode"
	// reasonDecrypt is every failure of an encrypted request after its
	// msg_signature verified: base64, length, padding, length prefix,
	// AppID, inner XML, and the checks on the message inside. They share
	// one answer and one log line, for anything more is a padding oracle.
	reasonDecrypt = "decrypt_failed"
	// reasonThrottled refuses the encrypted requests of an address that
	// failed to decrypt too often (CALLBACK_DECRYPT_FAILURES_PER_IP).
	reasonThrottled = "too_many_failures"

	// Not refused with an error status: answered REPLY_UNAVAILABLE with 200,
	// and not processed.
	reasonReplayUnavailable = "replay_check_unavailable"
)

// handler serves /wechat/callback. Its fields are set once by NewServer.
type handler struct {
	log      *slog.Logger
	cfg      *config.Config
	crypter  *wechat.Crypter // nil: plaintext mode
	notifier Notifier
	store    dedup.Store
	users    UserInfoFetcher // nil: FETCH_USER_INFO off
	oa       OAConfirm       // nil: OA_CONFIRM off
	metrics  *Metrics
	// failures limits decrypt failures per sender: each failure takes one,
	// and a sender with none left has its encrypted requests refused before
	// they are decrypted. WeChat's own requests decrypt, so only someone
	// probing with the Token runs dry. nil: no limit.
	failures *confirm.IPLimit
	now      func() time.Time
}

// rejection is a request we refuse without processing it.
type rejection struct {
	status     int
	reason     string
	detail     string
	retryAfter time.Duration // sent as Retry-After when set
}

// Error implements error.
func (r *rejection) Error() string { return r.reason + ": " + r.detail }

func reject(status int, reason, format string, args ...any) *rejection {
	return &rejection{status: status, reason: reason, detail: fmt.Sprintf(format, args...)}
}

// refuse answers a rejected request with its status and logs one line. The
// answer is the status and its text only: two rejections with the same
// status are answered byte for byte alike.
func (h *handler) refuse(c *gin.Context, r *rejection) {
	switch r.reason {
	case reasonSignature:
		h.metrics.sigFailures.WithLabelValues("signature").Inc()
	case reasonMsgSignature:
		h.metrics.sigFailures.WithLabelValues("msg_signature").Inc()
	case reasonTimestamp, reasonReplay:
		h.metrics.replays.WithLabelValues(r.reason).Inc()
	}
	h.metrics.rejected.WithLabelValues(r.reason).Inc()
	h.log.Warn("callback rejected", "reason", r.reason, "detail", r.detail,
		"method", c.Request.Method, "status", r.status, "remote", c.ClientIP())
	c.Header("X-Content-Type-Options", "nosniff")
	if r.retryAfter > 0 {
		c.Header("Retry-After", strconv.FormatInt(int64((r.retryAfter+time.Second-1)/time.Second), 10))
	}
	c.Data(r.status, contentText, []byte(http.StatusText(r.status)+"\n"))
}

// verifyURL answers WeChat's URL verification: echostr, when the signature
// checks out. The timestamp window is not applied: echoing is harmless, and
// the console's check must not depend on our clock.
func (h *handler) verifyURL(c *gin.Context) {
	q := c.Request.URL.Query()
	if !wechat.VerifySignature(q.Get("signature"), h.cfg.Token, q.Get("timestamp"), q.Get("nonce")) {
		h.refuse(c, reject(http.StatusForbidden, reasonSignature, "signature does not match"))
		return
	}
	echo := q.Get("echostr")
	if echo == "" {
		h.refuse(c, reject(http.StatusBadRequest, reasonMalformed, "no echostr"))
		return
	}
	h.log.Info("URL verification answered")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, contentText, []byte(echo))
}

// checkSignature verifies the query signature and the timestamp window.
func (h *handler) checkSignature(sig, timestamp, nonce string) *rejection {
	if !wechat.VerifySignature(sig, h.cfg.Token, timestamp, nonce) {
		return reject(http.StatusForbidden, reasonSignature, "signature does not match")
	}
	if w := h.cfg.TimestampWindow; w > 0 {
		ts, err := strconv.ParseInt(timestamp, 10, 64)
		if err != nil {
			return reject(http.StatusForbidden, reasonTimestamp, "timestamp is not a number")
		}
		skew := h.now().Sub(time.Unix(ts, 0))
		if skew > w || skew < -w {
			return reject(http.StatusForbidden, reasonTimestamp, "timestamp %v away from now, window %v", skew.Round(time.Second), w)
		}
	}
	return nil
}

// request is a verified callback request.
type request struct {
	msg       *wechat.Message // the (decrypted) message
	encrypted bool            // compatible or safe mode: answer encrypted
	replay    replayCheck     // checkReplay's verdict, for dedupe
}

// receive handles an event or message POSTed by WeChat.
func (h *handler) receive(c *gin.Context) {
	start := h.now()
	// Finish what we start even if WeChat hangs up: the answer is stored
	// for its retry. The budget keeps us inside WeChat's 5 seconds.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), h.cfg.Budget)
	defer cancel()

	req, rej := h.verify(ctx, c)
	if rej != nil {
		h.refuse(c, rej)
		return
	}
	text, dup := h.dedupe(ctx, req)
	h.answer(c, req, text)
	if dup {
		h.log.Info("duplicate answered", "type", eventType(req.msg), "dur", time.Since(start))
	}
}

// verify runs every check on a POST and returns the message it carries.
func (h *handler) verify(ctx context.Context, c *gin.Context) (*request, *rejection) {
	if c.Request.ContentLength > MaxBodyBytes { // cheap, before anything else
		return nil, reject(http.StatusRequestEntityTooLarge, reasonTooLarge, "Content-Length over %d bytes", MaxBodyBytes)
	}
	q := c.Request.URL.Query()
	timestamp, nonce := q.Get("timestamp"), q.Get("nonce")
	if r := h.checkSignature(q.Get("signature"), timestamp, nonce); r != nil {
		return nil, r
	}

	var encrypted bool
	switch et := q.Get("encrypt_type"); et {
	case "", "raw":
		if h.cfg.RequireEncryption {
			return nil, reject(http.StatusForbidden, reasonMode, "plaintext request while CALLBACK_REQUIRE_ENCRYPTION is set")
		}
	case "aes":
		if h.crypter == nil {
			return nil, reject(http.StatusBadRequest, reasonMode, "encrypted request but WECHAT_AES_KEY is not set")
		}
		encrypted = true
	default:
		return nil, reject(http.StatusBadRequest, reasonMode, "unknown encrypt_type")
	}

	body, err := readBody(c)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, reject(http.StatusRequestEntityTooLarge, reasonTooLarge, "body over %d bytes", MaxBodyBytes)
		}
		return nil, reject(http.StatusBadRequest, reasonMalformed, "read body: %v", err)
	}
	msg, err := wechat.ParseMessage(body)
	if err != nil {
		return nil, reject(http.StatusBadRequest, reasonMalformed, "%v", err)
	}
	if encrypted {
		if msg.Encrypt == "" {
			return nil, reject(http.StatusBadRequest, reasonMalformed, "encrypted request without <Encrypt>")
		}
		if !h.crypter.VerifyMsgSignature(q.Get("msg_signature"), timestamp, nonce, msg.Encrypt) {
			return nil, reject(http.StatusForbidden, reasonMsgSignature, "msg_signature does not match")
		}
		if blocked, wait := h.failures.Blocked(c.ClientIP(), h.now()); blocked {
			r := reject(http.StatusTooManyRequests, reasonThrottled, "too many decrypt failures from this address")
			r.retryAfter = wait
			return nil, r
		}
	}

	// In plaintext mode the signature does not cover the body: a captured
	// query string must not carry a second, different body.
	replay, r := h.checkReplay(ctx, timestamp, nonce, body)
	if r != nil {
		return nil, r
	}

	if encrypted {
		if msg = h.open(msg.Encrypt); msg == nil {
			h.failures.Allow(c.ClientIP(), h.now())
			return nil, reject(http.StatusBadRequest, reasonDecrypt, "encrypted message refused")
		}
	} else if r := h.checkMessage(msg); r != nil {
		return nil, r
	}
	return &request{msg: msg, encrypted: encrypted, replay: replay}, nil
}

// open decrypts an Encrypt value and checks the message inside; nil means
// it failed. Every failure looks the same to the caller and takes about the
// same time up to the AppID (wechat.Crypter.Decrypt checks padding, length
// prefix and AppID together); only a message for our AppID, which takes the
// key to make, is parsed further.
func (h *handler) open(encrypt string) *wechat.Message {
	inner, err := h.crypter.Decrypt(encrypt)
	if err != nil {
		return nil
	}
	msg, err := wechat.ParseMessage(inner)
	if err != nil || h.checkMessage(msg) != nil {
		return nil
	}
	return msg
}

// checkMessage checks the fields of a message that every later step relies
// on: sender, type and, when configured, recipient.
func (h *handler) checkMessage(msg *wechat.Message) *rejection {
	if msg.FromUserName == "" || msg.MsgType == "" {
		return reject(http.StatusBadRequest, reasonMalformed, "no FromUserName or MsgType")
	}
	if !wechat.ValidOpenID(msg.FromUserName) {
		return reject(http.StatusBadRequest, reasonMalformed, "FromUserName is not an OpenID")
	}
	if id := h.cfg.OriginalID; id != "" && subtle.ConstantTimeCompare([]byte(msg.ToUserName), []byte(id)) != 1 {
		return reject(http.StatusForbidden, reasonToUser, "ToUserName is not WECHAT_ORIGINAL_ID")
	}
	return nil
}

// replayCheck is checkReplay's verdict on a request it did not refuse. The
// zero value fails closed: the request is not processed.
type replayCheck struct {
	fresh bool  // the (timestamp, nonce) pair is new: process the request
	err   error // why the replay memory could not tell, when not fresh
}

// checkReplay remembers the (timestamp, nonce) pair with a digest of the
// body and rejects the request if the pair came before with another body.
// When the replay memory cannot tell, the request goes on through the other
// checks and dedupe answers it REPLY_UNAVAILABLE without processing it.
func (h *handler) checkReplay(ctx context.Context, timestamp, nonce string, body []byte) (replayCheck, *rejection) {
	sum := sha256.Sum256(body)
	ok, err := h.store.Remember(ctx, "nonce:"+digest(timestamp+"|"+nonce), hex.EncodeToString(sum[:]), h.nonceTTL())
	if err != nil {
		return replayCheck{err: err}, nil
	}
	if !ok {
		return replayCheck{}, reject(http.StatusForbidden, reasonReplay, "timestamp and nonce seen before with another body")
	}
	return replayCheck{fresh: true}, nil
}

// nonceTTL is how long a (timestamp, nonce) pair is remembered: as long as
// its timestamp can pass the window check (it may arrive up to a window
// early and stay valid a window after), and at least the duplicate TTL.
func (h *handler) nonceTTL() time.Duration {
	return max(2*h.cfg.TimestampWindow+time.Minute, h.cfg.DedupTTL)
}

// readBody reads at most MaxBodyBytes of the request body.
func readBody(c *gin.Context) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return b, nil
}

// answer writes the reply: "success" for no text, else a text message,
// encrypted when the request was.
func (h *handler) answer(c *gin.Context, req *request, text string) {
	if text == "" {
		c.Data(http.StatusOK, contentText, []byte("success"))
		return
	}
	now := h.now().Unix()
	reply := wechat.TextReply(req.msg.FromUserName, req.msg.ToUserName, now, text)
	if req.encrypted {
		env, err := h.crypter.EncryptReply(reply, strconv.FormatInt(now, 10), newNonce())
		if err != nil {
			h.log.Error("encrypt reply", "err", err)
			c.Data(http.StatusOK, contentText, []byte("success"))
			return
		}
		reply = env
	}
	c.Data(http.StatusOK, contentXML, reply)
}

// digest returns a short hex SHA-256 of s, to keep keys bounded and openids
// out of Redis and logs.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}
