// Package miniprogram is wechat-callback's Mini Program backend API, which
// the Mini Program page calls after it opened a login code:
//
//	POST /miniprogram/scan     {scene, code}             → {confirm, expires_in, site, requester}
//	POST /miniprogram/confirm  {scene, confirm, approve} → {result}
//
// scan exchanges the wx.login code at jscode2session (the session key stays
// here) and tells the push server that the scene was scanned by that
// openid (EVENT_SCANNED); the push server answers with a one-time confirm
// secret bound to the scene and the openid. The API remembers, under a hash
// of scene and secret, which user the secret belongs to, so that confirm
// (EVENT_CONFIRMED or EVENT_CANCELLED) names the same user without a second
// login code. Every refusal is {"error": code, "message": text} with the
// status of the contract, and changes nothing.
package miniprogram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/confirm"
	"google.golang.org/grpc/status"
)

// MaxBodyBytes bounds a request body; a real one is under 200 bytes.
const MaxBodyBytes = 4 << 10

const (
	// wechatTimeout bounds the jscode2session exchange.
	wechatTimeout = 3 * time.Second
	// notifyBudget bounds Notify, retries included.
	notifyBudget = 3 * time.Second
	// sceneWindow is how long the scans of one scene are counted against
	// MINIPROGRAM_SCANS_PER_SCENE.
	sceneWindow = 10 * time.Minute
	// maxSecretLen bounds a confirm secret.
	maxSecretLen = 128
	// quotaRetryAfter is what 429 says after WeChat's per-user minute quota.
	quotaRetryAfter = time.Minute
)

// Error codes of the API.
const (
	errBadRequest  = confirm.CodeBadRequest
	errInvalidCode = "invalid_code"
	errForbidden   = confirm.CodeForbidden
	errNotFound    = confirm.CodeNotFound
	errAlreadyUsed = confirm.CodeAlreadyUsed
	errExpired     = confirm.CodeExpired
	errRateLimited = confirm.CodeRateLimited
	errUnavailable = confirm.CodeUnavailable
	errMethod      = "method_not_allowed"
)

// Store keeps the API's bindings and counters (see confirm.Store).
type Store = confirm.Store

// NewMemory returns a Store in this process (see confirm.NewMemory).
func NewMemory(now func() time.Time) *confirm.Memory { return confirm.NewMemory(now) }

// NewRedis returns a Store on rdb whose keys start with prefix (the
// REDIS_PREFIX setting) and "callback:mp:".
func NewRedis(rdb redis.UniversalClient, prefix string) *confirm.Redis {
	return confirm.NewRedis(rdb, prefix+"callback:mp:")
}

// messages are what the phone may show for each error code.
var messages = map[string]string{
	errBadRequest:  "The request is not valid.",
	errInvalidCode: "WeChat did not accept the login code. Please try again.",
	errForbidden:   "This confirmation does not belong to this login request.",
	errNotFound:    "This login request does not exist. Please refresh the login page and scan the new code.",
	errAlreadyUsed: "This login request has already been used.",
	errExpired:     "This login code has expired. Please refresh the login page and scan the new code.",
	errRateLimited: "Too many attempts. Please wait a moment and try again.",
	errUnavailable: "Login is temporarily unavailable. Please try again in a moment.",
	errMethod:      "Use POST.",
}

// WeChat errcodes of jscode2session that mean our own settings are wrong:
// invalid grant_type, AppID, URL or secret, missing AppID or secret.
var misconfigured = map[int]bool{40002: true, 40013: true, 40066: true, 40125: true, 41002: true, 41004: true}

// Sessions exchanges login codes; *wechat.Client does, with the Mini
// Program's AppID and secret.
type Sessions interface {
	Code2Session(ctx context.Context, jsCode string) (wechat.Session, error)
}

// Notifier is the push server as the API sees it.
type Notifier interface {
	Notify(ctx context.Context, req *pushv1.NotifyRequest) (*pushv1.NotifyResponse, error)
}

// Deps are what New needs.
type Deps struct {
	Logger   *slog.Logger
	Config   config.MiniProgram
	Sessions Sessions
	Notifier Notifier
	// Store keeps secret→user and the scene counters: Redis to share
	// them between instances, else a Memory.
	Store Store
	// Registerer gets the metrics.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type api struct {
	log       *slog.Logger
	cfg       config.MiniProgram
	sessions  Sessions
	notifier  Notifier
	store     Store
	scanIP    *confirm.IPLimit
	confirmIP *confirm.IPLimit
	metrics   *metrics
	now       func() time.Time
}

// New returns the handler of /miniprogram/scan and /miniprogram/confirm.
// The client address, for the per-IP limits, is the connection's peer, or
// with TRUSTED_PROXIES the last X-Forwarded-For entry not added by a
// trusted proxy.
func New(d Deps) (http.Handler, error) {
	if d.Logger == nil || d.Sessions == nil || d.Notifier == nil || d.Store == nil || d.Registerer == nil {
		return nil, errors.New("miniprogram: Logger, Sessions, Notifier, Store and Registerer are required")
	}
	a := &api{
		log:       d.Logger,
		cfg:       d.Config,
		sessions:  d.Sessions,
		notifier:  d.Notifier,
		store:     d.Store,
		scanIP:    confirm.NewIPLimit(d.Config.ScansPerIP),
		confirmIP: confirm.NewIPLimit(d.Config.ConfirmsPerIP),
		metrics:   newMetrics(d.Registerer),
		now:       d.Now,
	}
	if a.now == nil {
		a.now = time.Now
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	if err := r.SetTrustedProxies(d.Config.TrustedProxies); err != nil {
		return nil, fmt.Errorf("miniprogram: TRUSTED_PROXIES: %w", err)
	}
	// Only X-Forwarded-For names the client (gin would also believe
	// X-Real-IP), and only from a trusted proxy.
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	r.ForwardedByClientIP = len(d.Config.TrustedProxies) > 0
	r.POST("/miniprogram/scan", a.scan)
	r.POST("/miniprogram/confirm", a.confirm)
	r.NoRoute(func(c *gin.Context) {
		writeError(c, &refusal{status: http.StatusNotFound, code: errNotFound, reason: "no such path"})
	})
	r.NoMethod(func(c *gin.Context) {
		writeError(c, &refusal{status: http.StatusMethodNotAllowed, code: errMethod, reason: "method"})
	})
	return r, nil
}

// refusal is an error answer: status and code for the phone, reason (free of
// personal data) for the log.
type refusal struct {
	status     int
	code       string
	reason     string
	detail     string        // added to the message, e.g. which field is wrong
	retryAfter time.Duration // 429 only
}

func (r *refusal) Error() string { return r.code + ": " + r.reason }

func badRequest(detail string) *refusal {
	return &refusal{status: http.StatusBadRequest, code: errBadRequest, reason: detail, detail: detail}
}

func unavailable(reason string) *refusal {
	return &refusal{status: http.StatusServiceUnavailable, code: errUnavailable, reason: reason}
}

// scanRequest is the body of /miniprogram/scan. Unknown fields are
// ignored, so that a newer page works with this API.
type scanRequest struct {
	Scene *string `json:"scene"`
	Code  *string `json:"code"`
}

type scanAnswer struct {
	Confirm   string    `json:"confirm"`
	ExpiresIn int64     `json:"expires_in"`
	Site      string    `json:"site"`
	Requester requester `json:"requester"`
}

type requester struct {
	Browser string `json:"browser"`
	OS      string `json:"os"`
	IP      string `json:"ip"`
	At      int64  `json:"at"`
}

func (a *api) scan(c *gin.Context) {
	var scene string
	ans, ref := a.doScan(c, &scene)
	a.finish(c, "scan", scene, ans, ref)
}

func (a *api) doScan(c *gin.Context, sceneOut *string) (any, *refusal) {
	if ok, wait := a.scanIP.Allow(c.ClientIP(), a.now()); !ok {
		return nil, &refusal{status: http.StatusTooManyRequests, code: errRateLimited, reason: "scans per IP", retryAfter: wait}
	}
	var req scanRequest
	if ref := decode(c, &req); ref != nil {
		return nil, ref
	}
	if req.Code == nil || !wechat.ValidJSCode(*req.Code) {
		return nil, badRequest("code must be 1 to 128 printable characters")
	}
	scene, ref := checkScene(req.Scene)
	if ref != nil {
		return nil, ref
	}
	*sceneOut = scene
	ctx := c.Request.Context()
	if n := a.cfg.ScansPerScene; n > 0 {
		count, left, err := a.store.Incr(ctx, "scans:"+digest(scene), sceneWindow)
		if err != nil {
			a.metrics.storeFailures.Inc()
			return nil, unavailable("store: " + err.Error())
		}
		if count > int64(n) {
			return nil, &refusal{status: http.StatusTooManyRequests, code: errRateLimited, reason: "scans per scene", retryAfter: left}
		}
	}

	sess, ref := a.exchange(ctx, *req.Code)
	if ref != nil {
		return nil, ref
	}
	user := &pushv1.User{Openid: sess.OpenID, Unionid: sess.UnionID}
	resp, ref := a.notify(ctx, &pushv1.NotifyRequest{
		Scene:   scene,
		Event:   pushv1.Event_EVENT_SCANNED,
		User:    user,
		EventId: "mp-scan:" + digest(scene, sess.OpenID, *req.Code),
	})
	if ref != nil {
		return nil, ref
	}
	switch resp.GetResult() {
	case pushv1.Result_RESULT_DELIVERED, pushv1.Result_RESULT_STORED:
	case pushv1.Result_RESULT_ALREADY_USED, pushv1.Result_RESULT_FORBIDDEN:
		return nil, &refusal{status: http.StatusConflict, code: errAlreadyUsed, reason: "notify: " + resp.GetResult().String()}
	default:
		return nil, refuseResult(resp.GetResult())
	}
	conf := resp.GetConfirmation()
	if conf.GetSecret() == "" {
		return nil, unavailable("notify: accepted without a confirmation")
	}
	now := a.now()
	expires := time.UnixMilli(conf.GetExpiresAtMs())
	ttl := confirm.BindingTTL(expires, now)
	if err := a.store.Put(ctx, bindingKey(scene, conf.GetSecret()), user.Openid+" "+user.Unionid, ttl); err != nil {
		a.metrics.storeFailures.Inc()
		return nil, unavailable("store: " + err.Error())
	}
	a.log.Info("miniprogram scan accepted", "scene", short(scene), "user", short(user.Openid))
	r := conf.GetRequester()
	return scanAnswer{
		Confirm:   conf.GetSecret(),
		ExpiresIn: max(int64(expires.Sub(now)/time.Second), 0),
		Site:      a.cfg.SiteName,
		Requester: requester{Browser: r.GetBrowser(), OS: r.GetOs(), IP: r.GetIp(), At: r.GetAtMs()},
	}, nil
}

// exchange trades the login code for the user at WeChat.
func (a *api) exchange(ctx context.Context, code string) (wechat.Session, *refusal) {
	ctx, cancel := context.WithTimeout(ctx, wechatTimeout)
	defer cancel()
	sess, err := a.sessions.Code2Session(ctx, code)
	if err == nil {
		a.metrics.wechat.WithLabelValues("ok").Inc()
		return sess, nil
	}
	var apiErr *wechat.APIError
	var ref *refusal
	result := "unavailable"
	switch {
	case errors.As(err, &apiErr) && apiErr.Code == wechat.ErrCodeMinuteQuota:
		result = "rate_limited"
		ref = &refusal{status: http.StatusTooManyRequests, code: errRateLimited, retryAfter: quotaRetryAfter}
	case errors.As(err, &apiErr) && misconfigured[apiErr.Code]:
		result = "misconfigured"
		ref = unavailable("")
		a.log.Error("jscode2session refused our credentials: check MINIPROGRAM_APPID and MINIPROGRAM_SECRET", "errcode", apiErr.Code)
	case errors.As(err, &apiErr) && apiErr.Code != wechat.ErrCodeBusy:
		// 40029 unknown or expired, 40163 used, 40226 high-risk user, ...
		result = "invalid_code"
		ref = &refusal{status: http.StatusUnauthorized, code: errInvalidCode}
	case errors.Is(err, wechat.ErrInvalidJSCode):
		result = "invalid_code"
		ref = badRequest("code must be 1 to 128 printable characters")
	default:
		ref = unavailable("")
	}
	a.metrics.wechat.WithLabelValues(result).Inc()
	if apiErr != nil {
		ref.reason = "jscode2session errcode " + strconv.Itoa(apiErr.Code)
	} else if ref.reason == "" {
		ref.reason = "jscode2session: " + err.Error() // the client keeps the code and secret out
	}
	return wechat.Session{}, ref
}

// confirmRequest is the body of /miniprogram/confirm; unknown fields are
// ignored.
type confirmRequest struct {
	Scene   *string `json:"scene"`
	Confirm *string `json:"confirm"`
	Approve *bool   `json:"approve"`
}

type confirmAnswer struct {
	Result string `json:"result"`
}

func (a *api) confirm(c *gin.Context) {
	var scene string
	ans, ref := a.doConfirm(c, &scene)
	a.finish(c, "confirm", scene, ans, ref)
}

func (a *api) doConfirm(c *gin.Context, sceneOut *string) (any, *refusal) {
	if ok, wait := a.confirmIP.Allow(c.ClientIP(), a.now()); !ok {
		return nil, &refusal{status: http.StatusTooManyRequests, code: errRateLimited, reason: "confirms per IP", retryAfter: wait}
	}
	var req confirmRequest
	if ref := decode(c, &req); ref != nil {
		return nil, ref
	}
	if req.Confirm == nil || !validSecret(*req.Confirm) {
		return nil, badRequest("confirm must be 1 to 128 printable characters")
	}
	if req.Approve == nil {
		return nil, badRequest("approve must be true or false")
	}
	scene, ref := checkScene(req.Scene)
	if ref != nil {
		return nil, ref
	}
	*sceneOut = scene
	ctx := c.Request.Context()
	v, ok, err := a.store.Get(ctx, bindingKey(scene, *req.Confirm))
	if err != nil {
		a.metrics.storeFailures.Inc()
		return nil, unavailable("store: " + err.Error())
	}
	if !ok {
		// Not a secret this service handed out for this scene (or
		// one forgotten well after its session ended).
		return nil, &refusal{status: http.StatusForbidden, code: errForbidden, reason: "unknown confirm secret"}
	}
	openid, unionid, _ := strings.Cut(v, " ")
	ev, result := pushv1.Event_EVENT_CONFIRMED, "confirmed"
	if !*req.Approve {
		ev, result = pushv1.Event_EVENT_CANCELLED, "cancelled"
	}
	// A fresh event id per request: a replayed confirmation is a second
	// event, which the push server refuses (already used), while the
	// client's own retries of this call share the id.
	resp, ref := a.notify(ctx, &pushv1.NotifyRequest{
		Scene:   scene,
		Event:   ev,
		User:    &pushv1.User{Openid: openid, Unionid: unionid},
		EventId: "mp-confirm:" + randomHex(16),
		Confirm: *req.Confirm,
	})
	if ref != nil {
		return nil, ref
	}
	switch resp.GetResult() {
	case pushv1.Result_RESULT_DELIVERED, pushv1.Result_RESULT_STORED:
	case pushv1.Result_RESULT_FORBIDDEN:
		return nil, &refusal{status: http.StatusForbidden, code: errForbidden, reason: "notify: RESULT_FORBIDDEN"}
	default:
		return nil, refuseResult(resp.GetResult())
	}
	a.log.Info("miniprogram confirmation accepted", "scene", short(scene), "user", short(openid), "result", result)
	return confirmAnswer{Result: result}, nil
}

// notify calls the push server within notifyBudget. gRPC errors become
// refusals: a request the push server calls invalid or unknown is
// not_found (no session of ours has it); anything else is unavailable.
func (a *api) notify(ctx context.Context, req *pushv1.NotifyRequest) (*pushv1.NotifyResponse, *refusal) {
	ctx, cancel := context.WithTimeout(ctx, notifyBudget)
	defer cancel()
	start := time.Now()
	resp, err := a.notifier.Notify(ctx, req)
	result := "error"
	if err == nil {
		result = strings.ToLower(strings.TrimPrefix(resp.GetResult().String(), "RESULT_"))
	}
	a.metrics.notify.WithLabelValues(req.GetEvent().String(), result).Observe(time.Since(start).Seconds())
	if err == nil {
		return resp, nil
	}
	st, code := confirm.RefuseError(err)
	return nil, &refusal{status: st, code: code, reason: "notify: " + grpcCode(err)}
}

// refuseResult maps the push server's refusals shared by both endpoints
// (and by the official-account confirm page).
func refuseResult(r pushv1.Result) *refusal {
	st, code := confirm.Refuse(r)
	return &refusal{status: st, code: code, reason: "notify: " + r.String()}
}

// grpcCode names the gRPC code of err for the log.
func grpcCode(err error) string { return status.Code(err).String() }

// decode reads the JSON object of the body into v: at most MaxBodyBytes
// (413), one JSON value and nothing after it (400).
func decode(c *gin.Context, v any) *refusal {
	body := http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return &refusal{status: http.StatusRequestEntityTooLarge, code: errBadRequest, reason: "body too large",
			detail: fmt.Sprintf("the body must be at most %d bytes", MaxBodyBytes)}
	case err != nil:
		return badRequest("the body must be one JSON object")
	}
	return nil
}

// checkScene returns the scene of a request: 400 unless it is 22 to 32 of
// the characters WeChat allows in a Mini Program code's scene; 404 (without
// asking anyone) for such a scene that the push server never makes, as
// its scenes are only letters, digits, '_' and '-'.
func checkScene(s *string) (string, *refusal) {
	if s == nil || !wxaScene(*s) {
		return "", badRequest("scene must be 22 to 32 characters of a Mini Program code's scene")
	}
	if !wechat.ValidScene(*s) {
		return "", &refusal{status: http.StatusNotFound, code: errNotFound, reason: "scene not of our shape"}
	}
	return *s, nil
}

// wxaScene reports whether s is 22 to 32 characters that WeChat allows in
// the scene of getwxacodeunlimit: letters, digits and !#$&'()*+,/:;=?@-._~
func wxaScene(s string) bool {
	if len(s) < 22 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			strings.IndexByte("!#$&'()*+,/:;=?@-._~", b) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validSecret reports whether s could be a confirm secret: 1 to
// maxSecretLen printable ASCII characters. Whether it is right is the push
// server's call.
func validSecret(s string) bool {
	if len(s) == 0 || len(s) > maxSecretLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// bindingKey is where the user of a confirm secret is kept: a hash, so that
// the store never holds a secret that works.
func bindingKey(scene, secret string) string { return "confirm:" + digest(scene, secret) }

var (
	digest    = confirm.Digest
	short     = confirm.Short
	randomHex = confirm.RandomHex
)

// finish writes the answer or the refusal, counts it and logs a refusal.
func (a *api) finish(c *gin.Context, endpoint, scene string, ans any, ref *refusal) {
	if ref == nil {
		outcome := "ok"
		if ca, ok := ans.(confirmAnswer); ok {
			outcome = ca.Result
		}
		a.metrics.requests.WithLabelValues(endpoint, outcome).Inc()
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, ans)
		return
	}
	a.metrics.requests.WithLabelValues(endpoint, ref.code).Inc()
	level := slog.LevelInfo
	if ref.status >= 500 {
		level = slog.LevelWarn
	}
	a.log.Log(c.Request.Context(), level, "miniprogram request refused", "endpoint", endpoint,
		"status", ref.status, "error", ref.code, "reason", ref.reason, "ip", c.ClientIP(), "scene", short(scene))
	writeError(c, ref)
}

func writeError(c *gin.Context, ref *refusal) {
	msg := messages[ref.code]
	if ref.detail != "" {
		msg = strings.TrimSuffix(msg, ".") + ": " + ref.detail + "."
	}
	if ref.status == http.StatusTooManyRequests {
		secs := int64(math.Ceil(ref.retryAfter.Seconds()))
		c.Header("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(ref.status, gin.H{"error": ref.code, "message": msg})
}
