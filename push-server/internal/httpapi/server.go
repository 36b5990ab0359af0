// Package httpapi is the push server's HTTP face: the browser WebSocket at
// /ws, the images of Mini Program codes, health and readiness, metrics, and
// the JWK set of the login tokens.
// It wires login sessions (package login) to browser connections (package
// wsconn) through the registry.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
	"github.com/scanlogin/scanlogin/push-server/internal/codeimage"
	"github.com/scanlogin/scanlogin/push-server/internal/hub"
	"github.com/scanlogin/scanlogin/push-server/internal/limit"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/metrics"
	"github.com/scanlogin/scanlogin/push-server/internal/token"
	"github.com/scanlogin/scanlogin/push-server/internal/wsconn"
	"github.com/scanlogin/scanlogin/wechat"
)

// Verifier checks login tokens presented on /ws?token=.
type Verifier interface {
	Verify(raw string, now time.Time) (*token.Claims, error)
	JWKS() []byte
}

// Registry tracks this instance's connections and what they are attached
// to: the hub alone on a single instance, or the hub plus shared presence
// (package cluster) when instances share Redis.
type Registry interface {
	Remove(c hub.Conn, sid, openid string)
	AttachSession(sid string, c hub.Conn)
	DetachSession(sid string, c hub.Conn)
	AttachUser(openid string, c hub.Conn)
}

// Options are the HTTP server's settings.
type Options struct {
	AllowedOrigins []string      // exact "scheme://host[:port]"; empty: same host only
	TrustedProxies []string      // whose X-Forwarded-For names the client
	MaxRefresh     int           // QR refreshes per connection
	Conn           wsconn.Config // per-connection timings and limits
	// OpTimeout bounds one WeChat or store operation made for a connection.
	OpTimeout time.Duration
	// Flows are the login flows offered on /ws?flow=; the first is given
	// without flow. Empty: the oa flow only.
	Flows []login.Flow
	// Page, when set, serves the login page at "/".
	Page http.Handler
}

// Deps are what the HTTP API works with.
type Deps struct {
	Logins   *login.Service
	Registry Registry
	Tokens   Verifier
	Metrics  *metrics.Metrics
	QRLimit  limit.Limiter // QR codes per client address
	Conns    *limit.Conns  // open connections per client address
	// Ready reports whether the instance can serve, for /readyz.
	Ready func(context.Context) error
	// Images holds the images of Mini Program codes, served at
	// CodeImagePath; nil: none.
	Images Images
}

// Images has the images of Mini Program codes (codeimage.Store).
type Images interface {
	Get(ctx context.Context, key string) (img []byte, left time.Duration, err error)
}

// CodeImagePath is where the image of a Mini Program code is served:
// CodeImagePath+key, the qrcode_url of its session.
const CodeImagePath = "/wxacode/"

// Server is the HTTP API. Create it with NewServer, serve its connections
// with Run.
type Server struct {
	log     *slog.Logger
	opt     Options
	logins  *login.Service
	reg     Registry
	tokens  Verifier
	metrics *metrics.Metrics
	qrLimit limit.Limiter
	conns   *limit.Conns
	ready   func(context.Context) error
	images  Images

	mgr *wsconn.Manager
	// base bounds the work done for connections (WeChat and store calls);
	// it ends when the connections have been closed (CloseAll) or Run
	// returns.
	base     context.Context
	cancel   context.CancelFunc
	draining atomic.Bool
	wg       sync.WaitGroup // running connections
	engine   *gin.Engine
}

// NewServer builds the HTTP API. It starts nothing: Run serves the
// WebSocket connections.
func NewServer(log *slog.Logger, opt Options, d Deps) (*Server, error) {
	if opt.OpTimeout <= 0 {
		opt.OpTimeout = 10 * time.Second
	}
	mgr, err := wsconn.NewManager(opt.Conn, log)
	if err != nil {
		return nil, fmt.Errorf("websocket manager: %w", err)
	}
	s := &Server{
		log: log, opt: opt, logins: d.Logins, reg: d.Registry, tokens: d.Tokens, metrics: d.Metrics,
		qrLimit: d.QRLimit, conns: d.Conns, ready: d.Ready, images: d.Images, mgr: mgr,
	}
	if len(s.opt.Flows) == 0 {
		s.opt.Flows = []login.Flow{login.FlowOA}
	}
	s.base, s.cancel = context.WithCancel(context.Background())

	e := gin.New()
	e.Use(gin.Recovery())
	if err := e.SetTrustedProxies(opt.TrustedProxies); err != nil {
		return nil, err
	}
	// Only the header the README documents names the client: gin would
	// also believe X-Real-IP when X-Forwarded-For is absent.
	e.RemoteIPHeaders = []string{"X-Forwarded-For"}
	if len(opt.TrustedProxies) == 0 {
		e.ForwardedByClientIP = false
	}
	e.GET("/ws", s.serveWS)
	e.GET(CodeImagePath+":key", s.serveCodeImage)
	e.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", gin.WrapH(d.Metrics.Handler()))
	e.GET("/.well-known/jwks.json", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=300")
		c.Data(http.StatusOK, "application/json", d.Tokens.JWKS())
	})
	if opt.Page != nil {
		e.NoRoute(gin.WrapH(opt.Page))
	}
	s.engine = e
	return s, nil
}

// Run serves the WebSocket connections (reads, pings, silence, alarms)
// until ctx ends. End it only after CloseAll, so that closing connections
// can still finish their close handshake.
func (s *Server) Run(ctx context.Context) error {
	defer s.cancel()
	s.mgr.Run(ctx)
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// Drain makes /readyz fail and new WebSockets be refused, the first step of
// a graceful shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// CloseAll closes every WebSocket with 1001 so browsers resume elsewhere,
// and waits for them to finish, or for ctx to end.
func (s *Server) CloseAll(ctx context.Context) {
	s.draining.Store(true)
	s.mgr.CloseAll(browser.CloseGoingAway, "server shutting down")
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.cancel()
}

// serveCodeImage answers the image of a Mini Program code, on any
// instance, while its session lives. The content type comes from the
// image's magic bytes; the browser may keep it for the time left.
func (s *Server) serveCodeImage(c *gin.Context) {
	notFound := func() {
		c.Header("Cache-Control", "no-store")
		c.String(http.StatusNotFound, "no such code, or it has expired\n")
	}
	key := c.Param("key")
	if s.images == nil || !codeimage.ValidKey(key) {
		notFound()
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.opt.OpTimeout)
	defer cancel()
	img, left, err := s.images.Get(ctx, key)
	if errors.Is(err, codeimage.ErrNotFound) {
		notFound()
		return
	}
	typ := wechat.ImageType(img)
	if err != nil || typ == "" {
		s.log.Debug("code image", "err", err)
		c.Header("Cache-Control", "no-store")
		c.String(http.StatusServiceUnavailable, "code image unavailable; try again shortly\n")
		return
	}
	c.Header("Cache-Control", fmt.Sprintf("private, max-age=%d", int64(left/time.Second)))
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, typ, img)
}

func (s *Server) readyz(c *gin.Context) {
	if s.draining.Load() {
		c.String(http.StatusServiceUnavailable, "draining\n")
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		c.String(http.StatusServiceUnavailable, "not ready: %v\n", err)
		return
	}
	c.String(http.StatusOK, "ready\n")
}

// originAllowed implements the Origin policy of /ws: browsers always send
// Origin, so a request without one is not a cross-site browser request.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(s.opt.AllowedOrigins) > 0 {
		return slices.Contains(s.opt.AllowedOrigins, strings.ToLower(origin))
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}
