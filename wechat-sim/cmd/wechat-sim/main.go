// Command wechat-sim is a local WeChat for development and tests: it serves
// the WeChat API paths scanlogin calls, with WeChat's formats and error
// codes, and a phone page that "scans" its QR codes and POSTs the events to
// the callback, signed and (with an AES key) encrypted, as WeChat does.
// Settings come from the environment; see wechat-sim/README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/scanlogin/scanlogin/internal/settings"
	"github.com/scanlogin/scanlogin/wechat-sim/internal/config"
	"github.com/scanlogin/scanlogin/wechat-sim/internal/deliver"
	"github.com/scanlogin/scanlogin/wechat-sim/internal/phone"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

func main() {
	settings.Main("wechat-sim", run)
}

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 5 * time.Second

// run serves the simulator until ctx ends (on SIGINT or SIGTERM, from
// settings.Main). It logs a "listening" line with the bound address and
// the public URL.
func run(ctx context.Context, args []string, lookupenv func(string) (string, bool), stderr io.Writer) error {
	cfg, log, done, err := settings.Start("wechat-sim", args, lookupenv, stderr, config.Load,
		func(c *config.Config) slog.Level { return c.LogLevel })
	if done || err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("SIM_HTTP_ADDR: %w", err)
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = config.DerivePublicURL(ln.Addr().String())
	}
	h, err := newHandler(log, cfg)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("listening", "http", ln.Addr().String(), "url", cfg.PublicURL, "config", cfg)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newHandler wires the account (WeChat's API, from the same fake the tests
// use), the event sender and the pages.
func newHandler(log *slog.Logger, cfg *config.Config) (http.Handler, error) {
	mini, err := loadMini(log, cfg)
	if err != nil {
		return nil, err
	}
	acct := wechattest.NewAccount(cfg.AppID, cfg.Secret,
		wechattest.WithTokenLifetime(cfg.TokenTTL),
		wechattest.WithScanURL(func(id string) string { return cfg.PublicURL + "/scan/" + id }),
		wechattest.WithMiniURL(func(id string) string {
			mini.Codes.Add(id)
			return cfg.PublicURL + "/mp/" + id
		}),
		wechattest.WithWxaPages(cfg.WxaPages...),
		wechattest.WithLogger(log),
	)
	for _, name := range cfg.Followers {
		u := acct.AddFollower(name)
		log.Info("follower", "nickname", name, "openid", u.OpenID)
	}
	retries := cfg.Retries
	if retries == 0 {
		retries = -1 // for deliver, 0 means the default and negative none
	}
	sender, err := deliver.New(deliver.Config{
		URL:        cfg.CallbackURL,
		Token:      cfg.Token,
		AESKey:     cfg.AESKey,
		AppID:      cfg.AppID,
		OriginalID: cfg.OriginalID,
		RetryAfter: cfg.RetryAfter,
		Retries:    retries,
		Logger:     log,
	})
	if err != nil {
		return nil, fmt.Errorf("event sender: %w", err)
	}
	mux := http.NewServeMux()
	acct.Register(mux)
	mountAuthorize(mux, acct)
	phone.New(log, acct, sender, phone.Info{
		AppID: cfg.AppID, OriginalID: cfg.OriginalID, CallbackURL: cfg.CallbackURL,
		SafeMode: sender.SafeMode(), TokenTTL: cfg.TokenTTL, RetryAfter: cfg.RetryAfter, Retries: cfg.Retries,
	}, mini).Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	return logRequests(log, mux), nil
}

// authorizePath is WeChat's web authorization page, which a reply's link
// goes through; the account serves it at the phone's origin, knowing the
// phone's user from the phone's cookie (phone.UserCookie).
const authorizePath = "/connect/oauth2/authorize"

// mountAuthorize routes authorizePath to the account unless its Register
// already did.
func mountAuthorize(mux *http.ServeMux, acct http.Handler) {
	if _, pattern := mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: authorizePath}, Host: "sim"}); pattern == "" {
		mux.Handle(authorizePath, acct)
	}
}

// loadMini reads the shipped Mini Program page's logic for the phone's
// stand-in of that page: from SIM_MINIPROGRAM_DIR (an error if it is not
// there), else from the default folder if it is there (a warning if not:
// the simulator then serves the official-account flow and a bare wx.login).
func loadMini(log *slog.Logger, cfg *config.Config) (phone.Mini, error) {
	mini := phone.Mini{APIBase: cfg.MiniAPIBase, Codes: &phone.MiniCodes{}}
	dir := cfg.MiniProgramDir
	if dir == "" {
		dir = config.DefaultMiniProgramDir
	}
	mini.LogicPath = filepath.Join(dir, filepath.FromSlash(phone.LogicFile))
	logic, err := phone.ReadLogic(dir)
	switch {
	case err == nil:
		mini.Logic = logic
		log.Info("mini program page", "logic", mini.LogicPath, "api_base", mini.APIBase)
	case cfg.MiniProgramDir != "":
		return mini, fmt.Errorf("SIM_MINIPROGRAM_DIR: %w", err)
	default:
		log.Warn("the shipped Mini Program page was not found: Mini Program codes open a bare wx.login; set SIM_MINIPROGRAM_DIR to the repository's miniprogram folder",
			"path", mini.LogicPath)
	}
	return mini, nil
}

// logRequests logs each request at debug level.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		log.Debug("request", "method", r.Method, "path", r.URL.Path, "dur", time.Since(start))
	})
}
