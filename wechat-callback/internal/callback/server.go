// Package callback is wechat-callback's HTTP side: it verifies the requests
// WeChat sends to /wechat/callback (signature, msg_signature, timestamp
// window, replayed nonces, AppID, ToUserName), decrypts them in compatible
// and safe mode, drops duplicate events, turns login QR code scans into
// PushService.Notify calls and answers the user with a short text. It also
// serves /healthz, /readyz and /metrics.
package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/confirm"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/dedup"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/oaconfirm"
)

// MaxBodyBytes bounds a callback body. WeChat's events are well under 2 KiB
// even in compatible mode, which carries each message twice.
const MaxBodyBytes = 32 << 10

// readyTimeout bounds the /readyz probe of the push server.
const readyTimeout = time.Second

// Notifier is the push server as the callback sees it.
type Notifier interface {
	Notify(ctx context.Context, req *pushv1.NotifyRequest) (*pushv1.NotifyResponse, error)
}

// UserInfoFetcher looks up a user's details (wechat.Client does, with
// FETCH_USER_INFO).
type UserInfoFetcher interface {
	UserInfo(ctx context.Context, openid string) (*wechat.UserInfo, error)
}

// Deps are what NewServer needs.
type Deps struct {
	Logger   *slog.Logger
	Config   *config.Config
	Notifier Notifier
	Store    dedup.Store
	// Users is nil unless FETCH_USER_INFO is set.
	Users UserInfoFetcher
	// Ready reports whether the push server can be reached, for /readyz.
	Ready func(context.Context) error
	// Registry gets the metrics and is served on /metrics.
	Registry *prometheus.Registry
	// Metrics may be nil: NewServer then creates them on Registry.
	Metrics *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MiniProgram serves /miniprogram/*; nil: those paths answer 404.
	MiniProgram http.Handler
	// OAConfirm, with OA_CONFIRM, makes scans two-step: it makes the
	// confirm links of the replies and serves /oa/confirm. nil: scans
	// log in at once.
	OAConfirm OAConfirm
}

// OAConfirm is the official-account confirm page as the callback sees it
// (oaconfirm.Service).
type OAConfirm interface {
	http.Handler
	// Link binds an accepted two-step scan and returns its confirm link.
	Link(ctx context.Context, sc oaconfirm.Scan) (string, error)
}

// NewServer returns the HTTP handler of wechat-callback: /wechat/callback
// (unless WECHAT_TOKEN is empty, in a deployment with only a Mini Program),
// /miniprogram/* (with Deps.MiniProgram), /oa/confirm (with
// Deps.OAConfirm), /healthz, /readyz and /metrics.
func NewServer(d Deps) (http.Handler, error) {
	if d.Logger == nil || d.Config == nil || d.Notifier == nil || d.Store == nil || d.Registry == nil {
		return nil, errors.New("callback: Logger, Config, Notifier, Store and Registry are required")
	}
	h := &handler{
		log:      d.Logger,
		cfg:      d.Config,
		notifier: d.Notifier,
		store:    d.Store,
		users:    d.Users,
		oa:       d.OAConfirm,
		metrics:  d.Metrics,
		failures: confirm.NewIPLimit(d.Config.DecryptFailures),
		now:      d.Now,
	}
	if h.metrics == nil {
		h.metrics = NewMetrics(d.Registry)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if d.Config.AESKey != "" {
		c, err := wechat.NewCrypter(d.Config.Token, d.Config.AESKey, d.Config.AppID)
		if err != nil {
			return nil, fmt.Errorf("callback: WECHAT_AES_KEY: %w", err)
		}
		h.crypter = c
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// Behind a trusted proxy its X-Forwarded-For names the sender, so the
	// limit on decrypt failures counts each sender, not the proxy.
	if err := r.SetTrustedProxies(d.Config.TrustedProxies); err != nil {
		return nil, fmt.Errorf("callback: TRUSTED_PROXIES: %w", err)
	}
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	r.ForwardedByClientIP = len(d.Config.TrustedProxies) > 0
	r.Use(h.recoverer)

	if d.Config.Token != "" {
		cb := r.Group("/wechat/callback", h.countRequests)
		cb.GET("", h.verifyURL)
		cb.POST("", h.receive)
	}
	if d.MiniProgram != nil {
		r.Any("/miniprogram/*path", gin.WrapH(d.MiniProgram))
	}
	if d.OAConfirm != nil {
		r.Any(oaconfirm.Path, gin.WrapH(d.OAConfirm))
	}

	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	r.GET("/readyz", func(c *gin.Context) {
		if d.Ready != nil {
			ctx, cancel := context.WithTimeout(c.Request.Context(), readyTimeout)
			defer cancel()
			if err := d.Ready(ctx); err != nil {
				h.log.Warn("not ready", "err", err)
				c.String(http.StatusServiceUnavailable, "push server unreachable\n")
				return
			}
		}
		c.String(http.StatusOK, "ok\n")
	})
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{})))
	return r, nil
}

// recoverer turns a panic into a 500 and one log line. It is a last line of
// defence: no input is expected to panic.
func (h *handler) recoverer(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("panic while handling request", "path", c.FullPath(), "panic", fmt.Sprint(v))
			c.AbortWithStatus(http.StatusInternalServerError)
		}
	}()
	c.Next()
}

// countRequests counts callback requests by method and status, and times
// them.
func (h *handler) countRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	h.metrics.duration.Observe(time.Since(start).Seconds())
	h.metrics.requests.WithLabelValues(c.Request.Method, fmt.Sprint(c.Writer.Status())).Inc()
}
