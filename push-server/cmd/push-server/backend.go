package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/scanlogin/scanlogin/internal/redisurl"
	"github.com/scanlogin/scanlogin/push-server/internal/cluster"
	"github.com/scanlogin/scanlogin/push-server/internal/codeimage"
	"github.com/scanlogin/scanlogin/push-server/internal/config"
	"github.com/scanlogin/scanlogin/push-server/internal/httpapi"
	"github.com/scanlogin/scanlogin/push-server/internal/hub"
	"github.com/scanlogin/scanlogin/push-server/internal/limit"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/redisstore"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/redistoken"
)

// retain is how long a session is remembered after it expires, so a late
// scan is answered "expired" rather than "not found".
const retain = 10 * time.Minute

// sweepInterval is how often the in-memory backend drops forgotten
// sessions, idle rate buckets and expired code images.
const sweepInterval = 30 * time.Second

// backend is where sessions, delivery, limits, WeChat tokens and Mini
// Program code images live:
// this process's memory (one instance), or Redis (many).
type backend struct {
	store    login.Store
	router   login.Router
	registry httpapi.Registry
	qrLimit  limit.Limiter
	// tokens is the access-token cache of the WeChat app appID; nil: the
	// client's own memory.
	tokens func(appID string) wechat.TokenCache
	images codeimage.Store // Mini Program code images
	ready  func(context.Context) error
	// redisUp reports whether Redis answered its last health check; nil
	// without Redis.
	redisUp func() bool
	// run serves the backend until ctx ends. After a Redis outage it hands
	// logins the sessions held here, to redeliver what their browsers missed.
	run func(ctx context.Context, logins *login.Service) error
}

func newBackend(log *slog.Logger, cfg *config.Config) (*backend, error) {
	h := hub.New()
	if cfg.RedisURL == "" {
		mem := login.NewMemory(retain)
		buckets := limit.NewBuckets(cfg.QRPerIP)
		images := codeimage.NewMemory()
		return &backend{
			store: mem, router: h, registry: h, qrLimit: buckets, images: images,
			tokens: func(string) wechat.TokenCache { return nil },
			ready:  func(context.Context) error { return nil },
			run: func(ctx context.Context, _ *login.Service) error {
				t := time.NewTicker(sweepInterval)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return nil
					case now := <-t.C:
						mem.Sweep(now)
						buckets.Sweep()
						images.Sweep(now)
					}
				}
			},
		}, nil
	}
	rdb, err := redisurl.NewClient(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	store := redisstore.New(rdb, cfg.RedisPrefix, retain)
	cl := cluster.New(log, rdb, h, store, cluster.Options{Prefix: cfg.RedisPrefix})
	log.Info("sessions shared through redis", "redis", redisurl.Safe(cfg.RedisURL), "instance", cl.ID())
	return &backend{
		store: store, router: cl, registry: cl,
		qrLimit: limit.NewShared(rdb, cfg.QRPerIP, cfg.RedisPrefix+"qr:"),
		tokens: func(appID string) wechat.TokenCache {
			return redistoken.New(rdb, cfg.RedisPrefix, appID)
		},
		images:  codeimage.NewRedis(rdb, cfg.RedisPrefix),
		ready:   cl.Ready,
		redisUp: cl.Up,
		run: func(ctx context.Context, logins *login.Service) error {
			defer rdb.Close()
			return cl.Run(ctx, logins.Redeliver)
		},
	}, nil
}
