package dedup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scanlogin/scanlogin/internal/redistest"
)

// testStore runs the behaviour every Store must have.
func testStore(t *testing.T, s Store, wait func(time.Duration)) {
	testNonces(t, s)
	testAnswers(t, s, wait)
}

// testNonces runs the behaviour of a working replay memory.
func testNonces(t *testing.T, s Nonces) {
	ctx := context.Background()
	t.Run("Remember", func(t *testing.T) {
		for i, tc := range []struct {
			key, digest string
			want        bool
		}{
			{"n1", "a", true},
			{"n1", "a", true},  // same body again: a retry
			{"n1", "b", false}, // same key, other body: a replay
			{"n2", "b", true},
		} {
			got, err := s.Remember(ctx, tc.key, tc.digest, time.Minute)
			if err != nil || got != tc.want {
				t.Fatalf("step %d: Remember(%s, %s) = %v, %v; want %v", i, tc.key, tc.digest, got, err, tc.want)
			}
		}
	})
}

// testAnswers runs the behaviour of a duplicate memory.
func testAnswers(t *testing.T, s Store, wait func(time.Duration)) {
	ctx := context.Background()
	t.Run("ClaimFinishAnswer", func(t *testing.T) {
		if _, ok, err := s.Answer(ctx, "e1"); ok || err != nil {
			t.Fatalf("Answer before Claim = %v, %v", ok, err)
		}
		if ok, err := s.Claim(ctx, "e1", time.Minute); !ok || err != nil {
			t.Fatalf("first Claim = %v, %v", ok, err)
		}
		if ok, err := s.Claim(ctx, "e1", time.Minute); ok || err != nil {
			t.Fatalf("second Claim = %v, %v", ok, err)
		}
		if _, ok, err := s.Answer(ctx, "e1"); ok || err != nil {
			t.Fatalf("Answer while pending = %v, %v", ok, err)
		}
		for _, answer := range []string{"login ok", ""} {
			if err := s.Finish(ctx, "e1", answer, time.Minute); err != nil {
				t.Fatal(err)
			}
			if got, ok, err := s.Answer(ctx, "e1"); !ok || err != nil || got != answer {
				t.Fatalf("Answer = %q, %v, %v; want %q", got, ok, err, answer)
			}
		}
		if ok, _ := s.Claim(ctx, "e1", time.Minute); ok {
			t.Fatal("Claim of a finished key succeeded")
		}
	})

	t.Run("LeaseExpires", func(t *testing.T) {
		if ok, _ := s.Claim(ctx, "e2", 50*time.Millisecond); !ok {
			t.Fatal("first Claim failed")
		}
		wait(100 * time.Millisecond)
		if ok, err := s.Claim(ctx, "e2", time.Minute); !ok || err != nil {
			t.Fatalf("Claim after the lease = %v, %v", ok, err)
		}
	})

	t.Run("ConcurrentClaims", func(t *testing.T) {
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if ok, err := s.Claim(ctx, "e3", time.Minute); err == nil && ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d claims won, want 1", wins.Load())
		}
	})
}

func TestMemory(t *testing.T) {
	m := NewMemory()
	now := time.Now()
	var mu sync.Mutex
	m.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	testStore(t, m, func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() })

	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if n := m.Len(); n != 0 {
		t.Errorf("Len after expiry = %d, want 0", n)
	}
}

func TestRedis(t *testing.T) {
	srv := redistest.Start(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	testStore(t, NewRedis(rdb, "test:"), time.Sleep)

	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "test:callback:") {
			t.Errorf("key %q lacks the prefix", k)
		}
	}
}

// failing is a Store whose every operation fails.
type failing struct{}

var errDown = errors.New("down")

func (failing) Remember(context.Context, string, string, time.Duration) (bool, error) {
	return false, errDown
}
func (failing) Claim(context.Context, string, time.Duration) (bool, error)  { return false, errDown }
func (failing) Finish(context.Context, string, string, time.Duration) error { return errDown }
func (failing) Answer(context.Context, string) (string, bool, error)        { return "", false, errDown }

func TestFallback(t *testing.T) {
	var errs atomic.Int32
	f := &Fallback{Primary: failing{}, Local: NewMemory(), OnError: func(error) { errs.Add(1) }}
	testAnswers(t, f, time.Sleep)
	if errs.Load() == 0 {
		t.Error("OnError never called")
	}
}

// TestFallbackRememberFailsClosed: while the primary fails no key is new,
// and the first body seen for a key is kept.
func TestFallbackRememberFailsClosed(t *testing.T) {
	f := &Fallback{Primary: failing{}, Local: NewMemory(), Cooldown: time.Hour}
	ctx := context.Background()
	for i, tc := range []struct {
		digest  string
		wantErr bool
	}{
		{"a", true},  // first seen: cannot tell
		{"a", true},  // the same body again: still cannot tell
		{"b", false}, // another body: known here, refused
	} {
		ok, err := f.Remember(ctx, "n1", tc.digest, time.Minute)
		if ok || (err != nil) != tc.wantErr {
			t.Fatalf("step %d: Remember(n1, %s) = %v, %v; want false, error %v", i, tc.digest, ok, err, tc.wantErr)
		}
		if tc.wantErr && !errors.Is(err, errDown) && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("step %d: error %v", i, err)
		}
	}
}

// TestFallbackRedisOutage: replay memory fails closed and forgets nothing
// across an outage and a Redis that restarts empty; duplicate memory falls
// back to the instance's own.
func TestFallbackRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	opts, _ := redis.ParseURL(srv.URL())
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.DialTimeout = 200 * time.Millisecond
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	var errs atomic.Int32
	const cooldown = 100 * time.Millisecond
	f := &Fallback{Primary: NewRedis(rdb, "t:"), Local: NewMemory(), Cooldown: cooldown,
		OnError: func(error) { errs.Add(1) }}
	other := &Fallback{Primary: NewRedis(rdb, "t:"), Local: NewMemory(), Cooldown: cooldown} // another instance
	ctx := context.Background()
	remember := func(f *Fallback, key, digest string, want bool, wantErr bool) {
		t.Helper()
		ok, err := f.Remember(ctx, key, digest, time.Minute)
		if ok != want || (err != nil) != wantErr {
			t.Fatalf("Remember(%s, %s) = %v, %v; want %v, error %v", key, digest, ok, err, want, wantErr)
		}
	}

	remember(f, "before", "a", true, false)
	if ok, err := f.Claim(ctx, "e:before", time.Minute); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	if err := f.Finish(ctx, "e:before", "x", time.Minute); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	remember(f, "during", "a", false, true) // Redis cannot tell: not new
	remember(f, "during", "b", false, false)
	remember(f, "before", "b", false, false)
	for i := range 3 { // duplicates fall back to memory
		key := fmt.Sprint("during", i)
		if ok, err := f.Claim(ctx, key, time.Minute); !ok || err != nil {
			t.Fatalf("Claim during outage = %v, %v", ok, err)
		}
		if ok, _ := f.Claim(ctx, key, time.Minute); ok {
			t.Fatal("second Claim during outage succeeded")
		}
		if err := f.Finish(ctx, key, "x", time.Minute); err != nil {
			t.Fatal(err)
		}
		if a, ok, err := f.Answer(ctx, key); a != "x" || !ok || err != nil {
			t.Fatalf("Answer = %q, %v, %v", a, ok, err)
		}
	}
	if errs.Load() == 0 {
		t.Fatal("outage not reported")
	}

	srv.Restart() // empty
	time.Sleep(2 * cooldown)
	remember(f, "before", "b", false, false) // Redis lost it, memory did not
	if ok, _ := f.Claim(ctx, "e:before", time.Minute); ok {
		t.Fatal("Claim of a key finished before the restart succeeded")
	}
	if a, ok, err := f.Answer(ctx, "e:before"); a != "x" || !ok || err != nil {
		t.Fatalf("Answer after restart = %q, %v, %v", a, ok, err)
	}

	remember(f, "after", "a", true, false) // Redis is back; "during" is sent to it
	if v, err := rdb.Get(ctx, "t:callback:during").Result(); err != nil || v != "a" {
		t.Fatalf("key seen during the outage in Redis: %q, %v", v, err)
	}
	remember(other, "during", "b", false, false) // another body, another instance
	remember(f, "during", "a", true, false)      // the first body, retried
	if ok, err := f.Claim(ctx, "e:after", time.Minute); !ok || err != nil {
		t.Fatalf("Claim after restart = %v, %v", ok, err)
	}
	if n, _ := rdb.Exists(ctx, "t:callback:e:after").Result(); n != 1 {
		t.Fatal("claim after restart did not reach Redis")
	}
}
