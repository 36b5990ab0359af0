package callback

import (
	"net/url"
	"sync"
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/testkit/redistest"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/dedup"
)

// sharedStore is what main builds for REDIS_URL: Redis, with memory standing
// in while Redis fails.
func sharedStore(t *testing.T, url string) dedup.Store {
	r, err := dedup.OpenRedis(url, "scanlogin:callback:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &dedup.Fallback{Primary: r, Secondary: dedup.NewMemory(), Cooldown: 100 * time.Millisecond}
}

// TestRedisSharedAcrossInstances runs two callback instances on one Redis
// and one push server: duplicates and replays are caught across them.
func TestRedisSharedAcrossInstances(t *testing.T) {
	rs := redistest.Start(t)
	a := newEnv(t, withStore(sharedStore(t, rs.URL())))
	b := newEnv(t, withStore(sharedStore(t, rs.URL())), withPush(a.push))
	a.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	a.push.SetDelay(100 * time.Millisecond)

	body := event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T")
	var wg sync.WaitGroup
	answers := make([]response, 6)
	for i := range answers {
		e := a
		if i%2 == 1 {
			e = b
		}
		q := e.query()
		wg.Go(func() { answers[i] = e.post(q, body) })
	}
	wg.Wait()
	for i, r := range answers {
		if r.status != 200 || parseText(t, r.body).Content != config.DefaultReplyLoginOK {
			t.Fatalf("copy %d: %+v", i, r)
		}
	}
	if n := len(a.push.Calls()); n != 1 {
		t.Fatalf("%d Notify calls across two instances, want 1", n)
	}

	// A query string used at instance a cannot carry another body at b.
	q := a.query()
	if r := a.post(q, event(testOpenID, time.Now().Unix()+1, "unsubscribe", "", "")); r.status != 200 {
		t.Fatalf("first: %+v", r)
	}
	if r := b.post(q, event("oAttacker", time.Now().Unix()+1, "SCAN", "s1", "T")); r.status != 403 {
		t.Fatalf("replay at the other instance: %+v", r)
	}
}

// TestRedisOutage: logins go on while Redis is down, and duplicates are
// still caught within an instance.
func TestRedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	e := newEnv(t, withStore(sharedStore(t, rs.URL())))
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	rs.Kill()

	body := event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T")
	start := time.Now()
	for range 3 {
		if r := e.post(e.query(), body); r.status != 200 || parseText(t, r.body).Content != config.DefaultReplyLoginOK {
			t.Fatalf("answer %+v", r)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("three requests took %v while Redis was down", d)
	}
	if n := len(e.push.Calls()); n != 1 {
		t.Fatalf("%d Notify calls, want 1", n)
	}
	var q url.Values = e.query()
	if r := e.post(q, event(testOpenID, time.Now().Unix()+1, "unsubscribe", "", "")); r.status != 200 {
		t.Fatal(r)
	}
	if r := e.post(q, event("oAttacker", time.Now().Unix()+1, "SCAN", "s1", "T")); r.status != 403 {
		t.Fatalf("replay while Redis is down: %+v", r)
	}
}
