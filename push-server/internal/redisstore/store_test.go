package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/login/storetest"
)

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	n := 0
	storetest.Run(t, func(*testing.T) login.Store {
		n++
		return New(rdb, "t"+string(rune('a'+n))+":", time.Minute)
	})
}

func TestTTLAndUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	st := New(rdb, "x:", 30*time.Second)
	ctx := context.Background()
	now := time.Now()
	s := &login.Session{ID: "id1", Scene: "sc1", Ticket: "t", State: login.StateWaiting, ExpiresAt: now.Add(time.Minute)}
	if err := st.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	ttl := rdb.PTTL(ctx, "x:s:{id1}").Val()
	if ttl < 85*time.Second || ttl > 90*time.Second {
		t.Errorf("session TTL %s, want about LOGIN_TTL + retain = 90s", ttl)
	}
	st.AddPending(ctx, "id1", []byte("m"))
	if pttl := rdb.PTTL(ctx, "x:s:{id1}:p").Val(); pttl <= 0 || pttl > ttl {
		t.Errorf("pending TTL %s, want the session's", pttl)
	}
	if err := st.Expire(ctx, "id1", now); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, "x:s:{id1}").Val(); ttl > 31*time.Second {
		t.Errorf("after Expire TTL %s, want about retain", ttl)
	}

	srv.Kill()
	if _, err := st.Get(ctx, "id1"); !errors.Is(err, login.ErrUnavailable) {
		t.Errorf("Get with Redis down: %v", err)
	}
	if _, err := st.Apply(ctx, login.Event{Scene: "sc1"}, now, nil); !errors.Is(err, login.ErrUnavailable) {
		t.Errorf("Apply with Redis down: %v", err)
	}
	if err := st.MarkDelivered(ctx, "id1"); !errors.Is(err, login.ErrUnavailable) {
		t.Errorf("MarkDelivered with Redis down: %v", err)
	}
	srv.Restart()
	if err := st.Create(ctx, &login.Session{ID: "id2", Scene: "sc2", ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Errorf("after restart: %v", err)
	}
}
