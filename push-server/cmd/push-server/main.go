// Command push-server holds browser WebSockets for scan-to-login, creates
// their WeChat QR codes, and serves the internal gRPC PushService.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/health"

	"github.com/scanlogin/scanlogin/internal/settings"
	"github.com/scanlogin/scanlogin/push-server/internal/config"
	"github.com/scanlogin/scanlogin/push-server/internal/grpcapi"
	"github.com/scanlogin/scanlogin/push-server/internal/httpapi"
	"github.com/scanlogin/scanlogin/push-server/internal/jsonapi"
	"github.com/scanlogin/scanlogin/push-server/internal/limit"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/metrics"
	"github.com/scanlogin/scanlogin/push-server/internal/token"
	"github.com/scanlogin/scanlogin/push-server/internal/web"
	"github.com/scanlogin/scanlogin/wechat"
)

func main() {
	// Library-wide settings belong to the process, not to run, which tests
	// call: gin's debug mode only prints routes; go-redis logs every failed
	// dial, while the cluster's monitor reports outages once per change.
	gin.SetMode(gin.ReleaseMode)
	redis.SetLogger(quietRedis{})
	settings.Main("push-server", run)
}

// run starts the servers and serves until ctx ends (on SIGINT or SIGTERM,
// from settings.Main), then shuts down gracefully. It logs a "listening"
// line with the bound addresses.
func run(ctx context.Context, args []string, lookupenv func(string) (string, bool), stderr io.Writer) error {
	cfg, log, done, err := settings.Start("push-server", args, lookupenv, stderr, config.Load,
		func(c *config.Config) slog.Level { return c.LogLevel })
	if done || err != nil {
		return err
	}

	tokens, err := newIssuer(log, cfg)
	if err != nil {
		return err
	}
	m := metrics.New()
	b, err := newBackend(log, cfg)
	if err != nil {
		return err
	}
	if b.redisUp != nil {
		m.WatchRedis(b.redisUp)
	}
	issuers, err := newIssuers(log, cfg, b, m)
	if err != nil {
		return err
	}
	var flows []login.Flow
	for _, f := range cfg.Flows {
		flows = append(flows, login.Flow(f))
	}
	logins := login.NewService(log, login.Config{TTL: cfg.LoginTTL, LoginResume: login.ResumeWindow(cfg.TokenTTL)}, b.store,
		issuers, tokens, b.router, m)

	// Listening comes before the HTTP API, whose connection manager holds
	// system resources. Each listener is closed when run returns, also on
	// the error paths before serving (Serve closes it too; twice is harmless).
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("PUSH_HTTP_ADDR: %w", err)
	}
	defer httpLn.Close()
	grpcLn, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("PUSH_GRPC_ADDR: %w", err)
	}
	defer grpcLn.Close()
	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("PUSH_API_ADDR: %w", err)
	}
	defer apiLn.Close()
	var dbgLn net.Listener
	if cfg.DebugAddr != "" {
		if dbgLn, err = net.Listen("tcp", cfg.DebugAddr); err != nil {
			return fmt.Errorf("PUSH_DEBUG_ADDR: %w", err)
		}
		defer dbgLn.Close()
	}

	api, err := httpapi.NewServer(log, httpapi.Options{
		AllowedOrigins: cfg.AllowedOrigins,
		TrustedProxies: cfg.TrustedProxies,
		MaxRefresh:     cfg.MaxRefresh,
		Flows:          flows,
		Page:           web.Handler(web.Options{SimulatorURL: cfg.SimulatorURL, Flows: cfg.Flows}),
	}, httpapi.Deps{
		Logins:   logins,
		Registry: b.registry,
		Tokens:   tokens,
		Metrics:  m,
		QRLimit:  b.qrLimit,
		Conns:    limit.NewConns(cfg.ConnsPerIP),
		Images:   b.images,
		Ready:    b.ready,
	})
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	hs := health.NewServer()
	gs := grpcapi.NewGRPCServer(grpcapi.New(log, logins), hs, cfg.GRPCAuthToken, m.GRPCAuthFailure.Inc)

	hsrv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	asrv := &http.Server{
		Handler:           jsonapi.New(log, logins, jsonapi.Options{AuthToken: cfg.GRPCAuthToken}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "http", httpLn.Addr().String(), "grpc", grpcLn.Addr().String(), "api", apiLn.Addr().String(), "config", cfg)

	g, gctx := errgroup.WithContext(ctx)
	// The connections outlive gctx: the shutdown below closes them with
	// 1001, then ends connsCtx, which stops what serves them.
	connsCtx, stopConns := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConns()
	g.Go(func() error { return api.Run(connsCtx) })
	g.Go(func() error { return b.run(gctx, logins) })
	g.Go(func() error {
		if err := hsrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := gs.Serve(grpcLn); err != nil {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := asrv.Serve(apiLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("json api: %w", err)
		}
		return nil
	})
	if dbgLn != nil {
		dbg := debugServer()
		log.Info("pprof listening", "addr", dbgLn.Addr().String())
		g.Go(func() error {
			if err := dbg.Serve(dbgLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("debug: %w", err)
			}
			return nil
		})
		g.Go(func() error { <-gctx.Done(); return dbg.Close() })
	}
	g.Go(func() error {
		<-gctx.Done()
		defer stopConns()
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		api.Drain()
		hs.Shutdown()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			gs.Stop() // ends GracefulStop too
			<-stopped
		}
		if err := asrv.Shutdown(sctx); err != nil {
			log.Warn("json api shutdown", "err", err)
		}
		if err := hsrv.Shutdown(sctx); err != nil {
			log.Warn("http shutdown", "err", err)
		}
		api.CloseAll(sctx)
		log.Info("stopped")
		return nil
	})
	return g.Wait()
}

// debugServer serves net/http/pprof, for profiling; keep its listener on a
// private address.
func debugServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// quietRedis drops go-redis's internal log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// newIssuers makes the code issuer of each enabled flow, each with its own
// WeChat client: the official account's, the Mini Program's.
func newIssuers(log *slog.Logger, cfg *config.Config, b *backend, m *metrics.Metrics) (map[login.Flow]login.QRIssuer, error) {
	issuers := map[login.Flow]login.QRIssuer{}
	if cfg.Enabled(config.FlowOA) {
		wc, err := wechat.NewClient(wechat.Config{
			APIBase: cfg.APIBase, MPBase: cfg.MPBase, AppID: cfg.AppID, Secret: cfg.Secret,
			Logger: log, Tokens: b.tokens(cfg.AppID),
		})
		if err != nil {
			return nil, fmt.Errorf("wechat client: %w", err)
		}
		issuers[login.FlowOA] = qrIssuer{wc: wc, metrics: m}
	}
	if cfg.Enabled(config.FlowMiniProgram) {
		wc, err := wechat.NewClient(wechat.Config{
			APIBase: cfg.APIBase, MPBase: cfg.MPBase, AppID: cfg.MiniAppID, Secret: cfg.MiniSecret,
			Logger: log.With("app", "miniprogram"), Tokens: b.tokens(cfg.MiniAppID),
		})
		if err != nil {
			return nil, fmt.Errorf("mini program wechat client: %w", err)
		}
		issuers[login.FlowMiniProgram] = miniIssuer{wc: wc, images: b.images, page: cfg.MiniPage, env: cfg.MiniEnv, metrics: m}
	}
	return issuers, nil
}

// newIssuer loads TOKEN_KEY_FILE, or makes a key for this process only.
func newIssuer(log *slog.Logger, cfg *config.Config) (*token.Issuer, error) {
	var key = token.GenerateKey()
	if cfg.TokenKeyFile != "" {
		k, err := token.LoadKey(cfg.TokenKeyFile)
		if err != nil {
			return nil, fmt.Errorf("TOKEN_KEY_FILE: %w", err)
		}
		key = k
	} else {
		msg := "TOKEN_KEY_FILE is empty: signing login tokens with a key made for this process; tokens die with it and other instances cannot verify them"
		if cfg.RedisURL != "" {
			msg += "; with REDIS_URL set, give every instance the same TOKEN_KEY_FILE"
		}
		log.Warn(msg)
	}
	iss, err := token.New(key, cfg.TokenIssuer, cfg.TokenTTL)
	if err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	return iss, nil
}
