// Command wechat-callback is the HTTP endpoint WeChat calls when a user
// scans a login QR code. It verifies and decrypts the event, drops
// duplicates and replays, and reports the scan to the push server with
// PushService.Notify. With MINIPROGRAM_APPID it also serves the Mini
// Program backend API (/miniprogram/scan, /miniprogram/confirm).
// Configuration comes from the environment; see wechat-callback/README.md.
//
// Once it listens it logs a line such as
//
//	level=INFO msg=listening addr=127.0.0.1:8081
//
// on stderr, from which a parent process can read the address.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/scanlogin/scanlogin/internal/settings"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/callback"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/confirm"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/dedup"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/miniprogram"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/oaconfirm"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient"
	"github.com/scanlogin/scanlogin/wechat/redistoken"
	"golang.org/x/sync/errgroup"
)

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 10 * time.Second

// redisCooldown is how long Redis is left alone after a failure: callbacks
// are answered "unavailable" without processing (the replay check fails
// closed) and duplicates are looked up in memory only.
const redisCooldown = 2 * time.Second

func main() {
	settings.Main("wechat-callback", run)
}

// run serves WeChat's callbacks until ctx ends (on SIGINT or SIGTERM, from
// settings.Main), then shuts down gracefully. It returns the error of
// anything that failed. With -check-config it only validates the settings.
func run(ctx context.Context, args []string, lookupenv func(string) (string, bool), stderr io.Writer) error {
	cfg, log, done, err := settings.Start("wechat-callback", args, lookupenv, stderr, config.Load,
		func(c *config.Config) slog.Level { return c.LogLevel })
	if done || err != nil {
		return err
	}
	log.Info("starting", "config", cfg)
	redis.SetLogger(redisLogger{log})

	push, err := pushclient.New(cfg.PushTarget, cfg.GRPCAuthToken, cfg.NotifyTimeout)
	if err != nil {
		return fmt.Errorf("PUSH_GRPC_TARGET: %w", err)
	}
	defer push.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := callback.NewMetrics(reg)

	var store dedup.Store = dedup.NewMemory() // a single instance
	var tokens wechat.TokenCache              // nil: the client's own memory
	var mpStore miniprogram.Store = miniprogram.NewMemory(nil)
	var oaStore confirm.Store = confirm.NewMemory(nil)
	if cfg.RedisURL != "" {
		rdb, err := dedup.OpenRedis(cfg.RedisURL, cfg.RedisPrefix)
		if err != nil {
			return err
		}
		defer rdb.Close()
		// The same key the push servers use: one access token per account.
		tokens = redistoken.New(rdb.Client(), cfg.RedisPrefix, cfg.AppID)
		mpStore = miniprogram.NewRedis(rdb.Client(), cfg.RedisPrefix)
		oaStore = confirm.NewRedis(rdb.Client(), cfg.RedisPrefix+"callback:oa:")
		if err := rdb.Ping(ctx); err != nil {
			log.Warn("redis unreachable at start; callbacks are answered unavailable until it answers", "err", err)
		}
		store = &dedup.Fallback{
			Primary:  rdb,
			Local:    dedup.NewMemory(),
			Cooldown: redisCooldown,
			OnError: func(err error) {
				metrics.StoreFailed()
				log.Warn("redis failed", "err", err)
			},
		}
	}

	// newClient is a WeChat API client of one app. The official account's
	// serves both user/info and the confirm page's web authorization.
	newClient := func(appID, secret string, tokens wechat.TokenCache) (*wechat.Client, error) {
		return wechat.NewClient(wechat.Config{
			APIBase:    cfg.APIBase,
			AppID:      appID,
			Secret:     secret,
			HTTPClient: wechat.NewHTTPClient(3 * time.Second),
			Tokens:     tokens,
			Logger:     log,
		})
	}
	var account *wechat.Client // the official account's; nil when nothing calls it
	if cfg.FetchUserInfo || cfg.OAConfirm.Enabled {
		if account, err = newClient(cfg.AppID, cfg.Secret, tokens); err != nil {
			return fmt.Errorf("WECHAT_APPID: %w", err)
		}
	}

	var users callback.UserInfoFetcher
	if cfg.FetchUserInfo {
		users = account
	}

	var mini http.Handler // nil: /miniprogram/* is not served
	if cfg.MiniProgram.Enabled() {
		client, err := newClient(cfg.MiniProgram.AppID, cfg.MiniProgram.Secret, nil)
		if err != nil {
			return fmt.Errorf("MINIPROGRAM_APPID: %w", err)
		}
		mini, err = miniprogram.New(miniprogram.Deps{
			Logger:     log,
			Config:     cfg.MiniProgram,
			Sessions:   client,
			Notifier:   push,
			Store:      mpStore,
			Registerer: reg,
		})
		if err != nil {
			return err
		}
	}

	var oa callback.OAConfirm // nil: scans log in at once
	if cfg.OAConfirm.Enabled {
		oa, err = oaconfirm.New(oaconfirm.Deps{
			Logger:     log,
			Config:     cfg.OAConfirm,
			AppID:      cfg.AppID,
			Exchanger:  account,
			Notifier:   push,
			Store:      oaStore,
			Registerer: reg,
		})
		if err != nil {
			return err
		}
	}

	handler, err := callback.NewServer(callback.Deps{
		Logger:   log,
		Config:   cfg,
		Notifier: push,
		Store:    store,
		Users:    users,
		Ready:    push.Ready,
		Registry: reg,
		Metrics:  metrics,
		// The Mini Program API, when MINIPROGRAM_APPID is set.
		MiniProgram: mini,
		// The official-account confirm page, with OA_CONFIRM.
		OAConfirm: oa,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("CALLBACK_HTTP_ADDR: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "addr", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	})
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

// redisLogger sends go-redis's own messages (mostly dial failures, which
// the duplicate store already reports) to the debug log.
type redisLogger struct{ log *slog.Logger }

// Printf implements go-redis's logger interface.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
