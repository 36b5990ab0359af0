// Command push-server holds browser WebSockets for scan-to-login, creates
// their WeChat QR codes, and serves the internal gRPC PushService.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/health"

	"github.com/scanlogin/scanlogin/push-server/internal/config"
	"github.com/scanlogin/scanlogin/push-server/internal/grpcapi"
	"github.com/scanlogin/scanlogin/push-server/internal/httpapi"
	"github.com/scanlogin/scanlogin/push-server/internal/limit"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/metrics"
	"github.com/scanlogin/scanlogin/push-server/internal/token"
	"github.com/scanlogin/scanlogin/push-server/internal/web"
	"github.com/scanlogin/scanlogin/wechat"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.LookupEnv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "push-server:", err)
		os.Exit(1)
	}
}

// run starts the servers and blocks until ctx ends or a signal arrives, then
// shuts down gracefully. It logs a "listening" line with the bound addresses.
func run(ctx context.Context, args []string, lookupenv func(string) (string, bool), stderr io.Writer) error {
	fs := flag.NewFlagSet("push-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	checkOnly := fs.Bool("check-config", false, "validate the settings and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: push-server [-check-config]\nSettings come from the environment; see README.md.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(lookupenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	// go-redis logs every failed dial; the cluster's monitor reports outages
	// once per change instead.
	redis.SetLogger(quietRedis{})
	if *checkOnly {
		log.Info("config ok", "config", cfg)
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	tokens, err := newIssuer(log, cfg)
	if err != nil {
		return err
	}
	m := metrics.New()
	b, err := newBackend(log, cfg)
	if err != nil {
		return err
	}
	wc, err := wechat.NewClient(wechat.Config{
		APIBase: cfg.APIBase, MPBase: cfg.MPBase, AppID: cfg.AppID, Secret: cfg.Secret, Logger: log, Tokens: b.tokens,
	})
	if err != nil {
		return fmt.Errorf("wechat client: %w", err)
	}
	logins := login.NewService(log, login.Config{TTL: cfg.LoginTTL, LoginResume: login.ResumeWindow(cfg.TokenTTL)}, b.store,
		qrIssuer{wc: wc, metrics: m}, tokens, b.router, m)
	b.logins = logins

	api, err := httpapi.NewServer(log, httpapi.Options{
		AllowedOrigins: cfg.AllowedOrigins,
		TrustedProxies: cfg.TrustedProxies,
		MaxRefresh:     cfg.MaxRefresh,
		Page:           web.Handler(web.Options{SimulatorURL: cfg.SimulatorURL}),
	}, logins, b.registry, tokens, m, b.qrLimit, limit.NewConns(cfg.ConnsPerIP), b.ready)
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	hs := health.NewServer()
	gs := grpcapi.NewGRPCServer(grpcapi.New(log, logins), hs, cfg.GRPCAuthToken, m.GRPCAuthFailure.Inc)

	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("PUSH_HTTP_ADDR: %w", err)
	}
	grpcLn, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("PUSH_GRPC_ADDR: %w", err)
	}
	hsrv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("listening", "http", httpLn.Addr().String(), "grpc", grpcLn.Addr().String(), "config", cfg)

	g, gctx := errgroup.WithContext(ctx)
	if cfg.DebugAddr != "" {
		dbg, err := debugServer(log, cfg.DebugAddr)
		if err != nil {
			return err
		}
		g.Go(func() error { <-gctx.Done(); return dbg.Close() })
	}
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
	g.Go(func() error { return b.run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
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
			gs.Stop()
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

// debugServer serves net/http/pprof on its own listener, for profiling;
// keep it on a private address.
func debugServer(log *slog.Logger, addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("PUSH_DEBUG_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return srv, nil
}

// quietRedis drops go-redis's internal log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

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
