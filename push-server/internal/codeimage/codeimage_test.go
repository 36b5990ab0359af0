package codeimage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/internal/redisurl"
	"github.com/scanlogin/scanlogin/push-server/internal/codeimage"
)

func TestKeys(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := codeimage.NewKey()
		if !codeimage.ValidKey(k) || seen[k] {
			t.Fatalf("key %q: valid %v, seen %v", k, codeimage.ValidKey(k), seen[k])
		}
		seen[k] = true
	}
	for _, k := range []string{"", "short", "AAAAAAAAAAAAAAAAAAAAA/", "AAAAAAAAAAAAAAAAAAAAAAA", "../../../../etc/passwd", "AAAAAAAAAAAAAAAAAAAA%2"} {
		if codeimage.ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
}

// testStore checks what every Store does.
func testStore(t *testing.T, s codeimage.Store, expire func()) {
	ctx := context.Background()
	img := []byte("\xff\xd8\xff\xe0 an image")
	k := codeimage.NewKey()
	if _, _, err := s.Get(ctx, k); !errors.Is(err, codeimage.ErrNotFound) {
		t.Fatalf("Get of nothing: %v", err)
	}
	if err := s.Put(ctx, k, img, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, left, err := s.Get(ctx, k)
	if err != nil || string(got) != string(img) || left <= 50*time.Second || left > time.Minute {
		t.Fatalf("Get = %q, %s, %v", got, left, err)
	}
	short := codeimage.NewKey()
	if err := s.Put(ctx, short, img, time.Second); err != nil {
		t.Fatal(err)
	}
	expire()
	if _, _, err := s.Get(ctx, short); !errors.Is(err, codeimage.ErrNotFound) {
		t.Fatalf("Get after expiry: %v", err)
	}
	if _, _, err := s.Get(ctx, k); err != nil {
		t.Fatalf("the other image went too: %v", err)
	}
}

func TestMemory(t *testing.T) {
	s := codeimage.NewMemory()
	now := time.Now()
	codeimage.SetClock(s, func() time.Time { return now })
	testStore(t, s, func() { now = now.Add(2 * time.Second) })
	s.Sweep(now)
	if s.Len() != 1 {
		t.Errorf("after Sweep %d images held, want 1", s.Len())
	}
}

func TestRedis(t *testing.T) {
	rs := redistest.Start(t)
	rdb, err := redisurl.NewClient(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	s := codeimage.NewRedis(rdb, "test:")
	testStore(t, s, func() {
		// Wait for Redis to expire the short one (of two).
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if keys, _ := rdb.Keys(context.Background(), "test:wxacode:*").Result(); len(keys) == 1 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	keys, _ := rdb.Keys(context.Background(), "test:wxacode:*").Result()
	if len(keys) != 1 {
		t.Errorf("keys %v, want one under test:wxacode:", keys)
	}
}
