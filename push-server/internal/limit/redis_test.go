package limit

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/internal/redistest"
)

func TestSharedAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var limiters []*Shared
	for range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { rdb.Close() })
		limiters = append(limiters, NewShared(rdb, Rate{N: 3, Per: time.Hour}, "rl:"))
	}
	allowed := 0
	for i := range 10 {
		if ok, err := limiters[i%2].Allow(ctx, "1.2.3.4"); err != nil {
			t.Fatal(err)
		} else if ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("%d allowed across two instances, want 3", allowed)
	}
	if ok, _ := limiters[0].Allow(ctx, "5.6.7.8"); !ok {
		t.Fatal("another IP was limited")
	}
	srv.Kill()
	if _, err := limiters[0].Allow(ctx, "9.9.9.9"); err == nil {
		t.Fatal("no error with Redis down")
	}
}
