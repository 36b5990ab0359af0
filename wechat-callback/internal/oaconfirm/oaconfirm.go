// Package oaconfirm is the confirm page of official-account scans
// (OA_CONFIRM): a scan only binds the scanner, and the scanner confirms or
// cancels on a page inside WeChat that shows who asks.
//
//	scan event    → Notify(SCANNED) → confirm secret → [Service.Link]:
//	                 <CALLBACK_PUBLIC_URL>/oa/confirm?s=<scene>&t=<link token>
//	GET  link     → 302 to WeChat's /connect/oauth2/authorize (snsapi_base)
//	                 with a one-time state bound to the link
//	GET  link&code&state → the code's openid (/sns/oauth2/access_token) must
//	                 be the scanner's → the page, with a one-time form value
//	POST link     → Notify(CONFIRMED or CANCELLED) with the secret
//
// The store holds, under a hash of the link token, the scan's binding
// (scene, ticket, scanner, confirm secret, requester, end of the session);
// the confirm secret never leaves the service. State and form values are
// kept under their hashes too. Every refusal is a page with one sentence
// and its status (403 not the scanner / bad state / bad code / bad link,
// 409 already decided, 410 expired, 503 unavailable), one log line without
// personal data, and no change anywhere.
package oaconfirm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/confirm"
)

// Path is where the confirm page is served.
const Path = "/oa/confirm"

const (
	// tokenBytes and stateBytes size the link token, the form value and
	// the OAuth state (hex: WeChat passes back only letters and digits).
	tokenBytes = 24
	stateBytes = 16
	// stateLife bounds one OAuth round trip.
	stateLife = 10 * time.Minute
	// maxForm bounds a POST body.
	maxForm = 4 << 10
	// wechatTimeout bounds the code exchange; notifyBudget Notify.
	wechatTimeout = 3 * time.Second
	notifyBudget  = 3 * time.Second
	// maxShown bounds a requester field shown to the user.
	maxShown = 64
)

// Exchanger trades a web-authorization code for the user; *wechat.Client
// does, with the official account's AppID and secret.
type Exchanger interface {
	OAuthAccessToken(ctx context.Context, code string) (wechat.OAuthUser, error)
}

// Notifier is the push server as the page sees it.
type Notifier interface {
	Notify(ctx context.Context, req *pushv1.NotifyRequest) (*pushv1.NotifyResponse, error)
}

// Deps are what New needs.
type Deps struct {
	Logger     *slog.Logger
	Config     config.OAConfirm
	AppID      string // WECHAT_APPID, for the authorize URL
	Exchanger  Exchanger
	Notifier   Notifier
	Store      confirm.Store
	Registerer prometheus.Registerer
	Now        func() time.Time // nil: time.Now
}

// Service makes confirm links ([Service.Link]) and serves the page
// (ServeHTTP).
type Service struct {
	log      *slog.Logger
	cfg      config.OAConfirm
	appID    string
	exchange Exchanger
	notifier Notifier
	store    confirm.Store
	limit    *confirm.IPLimit
	requests *prometheus.CounterVec // step, outcome
	now      func() time.Time
	router   http.Handler
}

// New returns the Service.
func New(d Deps) (*Service, error) {
	if d.Logger == nil || d.Exchanger == nil || d.Notifier == nil || d.Store == nil || d.Registerer == nil || d.AppID == "" || d.Config.PublicURL == "" {
		return nil, errors.New("oaconfirm: Logger, Exchanger, Notifier, Store, Registerer, AppID and Config.PublicURL are required")
	}
	s := &Service{
		log: d.Logger, cfg: d.Config, appID: d.AppID, exchange: d.Exchanger, notifier: d.Notifier,
		store: d.Store, limit: confirm.NewIPLimit(d.Config.PerIP), now: d.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_oa_confirm_requests_total",
			Help: "Requests to the official-account confirm page by step (open, authorized, decide) and outcome (redirect, page, confirmed, cancelled, or the refusal).",
		}, []string{"step", "outcome"}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	d.Registerer.MustRegister(s.requests)
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	if err := r.SetTrustedProxies(d.Config.TrustedProxies); err != nil {
		return nil, fmt.Errorf("oaconfirm: TRUSTED_PROXIES: %w", err)
	}
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	r.ForwardedByClientIP = len(d.Config.TrustedProxies) > 0
	r.GET(Path, s.open)
	r.POST(Path, s.decide)
	r.NoRoute(func(c *gin.Context) {
		s.refuse(c, "open", &refusal{status: http.StatusNotFound, msg: msgNotFound, reason: "no such path"})
	})
	s.router = r
	return s, nil
}

// ServeHTTP serves GET and POST of /oa/confirm.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Scan is an accepted two-step scan of an official-account QR code.
type Scan struct {
	Scene, Ticket   string
	OpenID, UnionID string
	// Confirmation is what the push server answered: the secret, the end
	// of the session and the requester.
	Confirmation *pushv1.Confirmation
}

// binding is what the store keeps under a hash of the link token.
type binding struct {
	Scene   string `json:"scene"`
	Ticket  string `json:"ticket"`
	OpenID  string `json:"openid"`
	UnionID string `json:"unionid,omitempty"`
	Secret  string `json:"secret"`
	Expires int64  `json:"exp"` // unix ms: the end of the session
	Browser string `json:"browser"`
	OS      string `json:"os"`
	IP      string `json:"ip"`
}

// Link binds a scan to a new link token and returns the confirm link for
// the reply. The link dies with the session (and once decided).
func (s *Service) Link(ctx context.Context, sc Scan) (string, error) {
	conf := sc.Confirmation
	if conf.GetSecret() == "" {
		return "", errors.New("oaconfirm: scan without a confirm secret")
	}
	r := conf.GetRequester()
	b := binding{
		Scene: sc.Scene, Ticket: sc.Ticket, OpenID: sc.OpenID, UnionID: sc.UnionID,
		Secret: conf.GetSecret(), Expires: conf.GetExpiresAtMs(),
		Browser: Shown(r.GetBrowser()), OS: Shown(r.GetOs()), IP: Shown(r.GetIp()),
	}
	v, err := json.Marshal(b)
	if err != nil {
		return "", fmt.Errorf("oaconfirm: %w", err)
	}
	token := confirm.RandomToken(tokenBytes)
	if err := s.store.Put(ctx, linkKey(token), string(v), confirm.BindingTTL(time.UnixMilli(b.Expires), s.now())); err != nil {
		return "", fmt.Errorf("oaconfirm: store: %w", err)
	}
	return s.link(sc.Scene, token), nil
}

// link is the confirm link of scene and token. Its query is built by hand,
// in a fixed order, so that it is also the redirect_uri WeChat sends back.
func (s *Service) link(scene, token string) string {
	return s.cfg.PublicURL + Path + "?s=" + url.QueryEscape(scene) + "&t=" + url.QueryEscape(token)
}

// Shown makes a requester field fit to show: at most 64 bytes, no control
// characters and no angle brackets (WeChat reads <a> in text replies).
func Shown(v string) string {
	out := make([]rune, 0, len(v))
	n := 0
	for _, r := range v {
		if r < ' ' || r == 0x7f || r == '<' || r == '>' || r == '\uFFFD' {
			continue
		}
		if n += len(string(r)); n > maxShown {
			break
		}
		out = append(out, r)
	}
	return string(out)
}

func linkKey(token string) string  { return "link:" + confirm.Digest(token) }
func stateKey(state string) string { return "state:" + confirm.Digest(state) }
func formKey(form string) string   { return "form:" + confirm.Digest(form) }
func doneKey(token string) string  { return "done:" + confirm.Digest(token) }
