package redistoken

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

func TestCache(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	c := New(rdb, "t:", "wxapp")
	if _, ok, err := c.Load(ctx); ok || err != nil {
		t.Fatalf("empty Load = %v %v", ok, err)
	}
	exp := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	if err := c.Store(ctx, wechat.Token{Value: "A", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, "t:wechat:token:wxapp").Val(); ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("TTL %s", ttl)
	}
	got, ok, err := c.Load(ctx)
	if !ok || err != nil || got.Value != "A" || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("Load = %+v %v %v", got, ok, err)
	}
	c.Invalidate(ctx, "stale")
	if _, ok, _ := c.Load(ctx); !ok {
		t.Fatal("invalidating another token dropped the current one")
	}
	c.Invalidate(ctx, "A")
	if _, ok, _ := c.Load(ctx); ok {
		t.Fatal("Invalidate did not drop the token")
	}
}

// Two clients of one account sharing the cache fetch the token once.
func TestClientsShareOneToken(t *testing.T) {
	srv := redistest.Start(t)
	fake := wechattest.New(t, "wxapp", "secret")
	ctx := context.Background()
	var tokens []string
	for range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { rdb.Close() })
		cfg := fake.Config()
		cfg.Tokens = New(rdb, "t:", "wxapp")
		wc, err := wechat.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := wc.AccessToken(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	if tokens[0] != tokens[1] || fake.TokenFetches() != 1 {
		t.Fatalf("tokens %v after %d fetches, want one shared token", tokens, fake.TokenFetches())
	}
}
