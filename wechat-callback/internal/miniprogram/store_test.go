package miniprogram_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/miniprogram"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient/pushtest"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// testStore checks a Store; wait lets ttl pass (a clock or real time).
func testStore(t *testing.T, s miniprogram.Store, wait func(time.Duration)) {
	ctx := context.Background()
	if _, ok, err := s.Get(ctx, "k"); ok || err != nil {
		t.Fatalf("Get of nothing: %v %v", ok, err)
	}
	if err := s.Put(ctx, "k", "v1", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", "v2", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, "k"); v != "v2" || !ok || err != nil {
		t.Fatalf("Get = %q %v %v", v, ok, err)
	}
	for i := int64(1); i <= 3; i++ {
		n, left, err := s.Incr(ctx, "c", 200*time.Millisecond)
		if n != i || err != nil || left <= 0 || left > 200*time.Millisecond {
			t.Fatalf("Incr %d = %d %v %v", i, n, left, err)
		}
	}
	wait(250 * time.Millisecond)
	if _, ok, _ := s.Get(ctx, "k"); ok {
		t.Error("value outlived its ttl")
	}
	if n, _, _ := s.Incr(ctx, "c", time.Second); n != 1 {
		t.Errorf("counter outlived its ttl: %d", n)
	}
}

func TestMemoryStore(t *testing.T) {
	clock := wechattest.NewClock(time.Unix(1_700_000_000, 0))
	testStore(t, miniprogram.NewMemory(clock.Now), clock.Advance)
}

func TestRedisStore(t *testing.T) {
	rs := redistest.Start(t)
	rdb := newRedis(t, rs)
	testStore(t, miniprogram.NewRedis(rdb, "test:"), time.Sleep)
	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "test:callback:mp:") {
			t.Errorf("key %q lacks the prefix", k)
		}
	}
}

func newRedis(t *testing.T, rs *redistest.Server) *redis.Client {
	opts, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestTwoInstancesShareRedis: a scan through one callback instance is
// confirmed through another, the per-scene limit counts both, and Redis
// holds no secret, openid-free keys only.
func TestTwoInstancesShareRedis(t *testing.T) {
	rs := redistest.Start(t)
	f := newFixture(t, func(c *config.MiniProgram) { c.ScansPerScene = 2 })
	one := f.serve(miniprogram.NewRedis(newRedis(t, rs), "scanlogin:"), func(c *config.MiniProgram) { c.ScansPerScene = 2 })
	two := f.serve(miniprogram.NewRedis(newRedis(t, rs), "scanlogin:"), func(c *config.MiniProgram) { c.ScansPerScene = 2 })
	f.addSession()

	a := f.scan(one, "oAnn", "")
	if a.status != 200 {
		t.Fatalf("scan: %d %v", a.status, a.body)
	}
	f.want(f.scan(two, "oBob", ""), 409, "already_used")
	f.want(f.confirm(two, "wrong-secret", true, ""), 403, "forbidden")
	// The in-memory instance does not know the secret.
	f.want(f.confirm(f.url, a.str("confirm"), true, ""), 403, "forbidden")
	if c := f.confirm(two, a.str("confirm"), true, ""); c.status != 200 || c.str("result") != "confirmed" {
		t.Fatalf("confirm through the other instance: %d %v", c.status, c.body)
	}
	f.want(f.confirm(one, a.str("confirm"), true, ""), 409, "already_used")
	if ts := f.session(); strings.Join(ts.Sent, ",") != "scanned,login" {
		t.Errorf("browser got %v", ts.Sent)
	}
	// Two scans counted by each instance: the third across both is refused.
	f.want(f.scan(one, "oAnn", ""), 429, "rate_limited")

	rdb := newRedis(t, rs)
	keys, _ := rdb.Keys(context.Background(), "*").Result()
	openid, _ := miniOpenID(f.wx, "oAnn")
	for _, k := range keys {
		v, _ := rdb.Get(context.Background(), k).Result()
		if strings.Contains(k+v, a.str("confirm")) || strings.Contains(k, openid) {
			t.Errorf("Redis holds a secret or an openid in a key: %s = %s", k, v)
		}
		if !strings.HasPrefix(k, "scanlogin:callback:mp:") {
			t.Errorf("key %q", k)
		}
	}
}

// TestRedisDown: without its store the API answers 503 and changes
// nothing.
func TestRedisDown(t *testing.T) {
	rs := redistest.Start(t)
	f := newFixture(t)
	url := f.serve(miniprogram.NewRedis(newRedis(t, rs), "scanlogin:"))
	f.addSession()
	rs.Kill()
	f.want(f.scan(url, "oAnn", ""), 503, "unavailable")
	if ts := f.session(); ts.State != pushtest.StateWaiting {
		t.Errorf("session %+v", ts)
	}
}
