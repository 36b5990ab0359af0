package callback

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scanlogin/scanlogin/internal/redistest"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/dedup"
)

// storeCooldown is the Fallback cooldown in these tests.
const storeCooldown = 100 * time.Millisecond

// sharedStore is what main builds for REDIS_URL: Redis and the instance's
// own memory.
func sharedStore(t *testing.T, url string) dedup.Store {
	r, err := dedup.OpenRedis(url, "scanlogin:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &dedup.Fallback{Primary: r, Local: dedup.NewMemory(), Cooldown: storeCooldown}
}

// restart restarts Redis empty and waits until the stores try it again.
func restart(rs *redistest.Server) {
	rs.Restart()
	time.Sleep(2 * storeCooldown)
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

// twoInstances starts Redis and two callback instances on it that share one
// push server, where scenes s1 and s2 are logins waiting for a scan.
func twoInstances(t *testing.T, opts ...envOption) (rs *redistest.Server, a, b *testEnv) {
	t.Helper()
	rs = redistest.Start(t)
	a = newEnv(t, append(opts, withStore(sharedStore(t, rs.URL())))...)
	b = newEnv(t, append(opts, withStore(sharedStore(t, rs.URL())), withPush(a.push))...)
	a.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	a.push.SetResult("s2", pushv1.Result_RESULT_DELIVERED)
	return rs, a, b
}

// wantUnavailable checks a plaintext answer: 200 and REPLY_UNAVAILABLE.
func wantUnavailable(t *testing.T, what string, r response, reply string) {
	t.Helper()
	if r.status != 200 || parseText(t, r.body).Content != reply {
		t.Fatalf("%s: %+v, want 200 and %q", what, r, reply)
	}
}

// TestReplayDuringOutage: a captured plaintext query string carrying a
// forged body while Redis is down is not processed but answered "unavailable"
// (the replay check fails closed); so are genuine requests, while the URL
// verification goes on.
func TestReplayDuringOutage(t *testing.T) {
	const unavailable = "Try again later!"
	rs, a, b := twoInstances(t, withEnv("REPLY_UNAVAILABLE", unavailable))
	now := time.Now().Unix()
	q := a.query() // one nonce counter for both instances
	if r := b.post(q, event(testOpenID, now, "SCAN", "s1", "T")); r.status != 200 || parseText(t, r.body).Content != config.DefaultReplyLoginOK {
		t.Fatalf("genuine: %+v", r)
	}
	rs.Kill()

	forged := event("oAttacker", now, "SCAN", "s2", "T")
	wantUnavailable(t, "replay at another instance", a.post(q, forged), unavailable)
	if r := b.post(q, forged); r.status != 403 {
		t.Fatalf("replay at the instance that saw it: %+v", r)
	}
	wantUnavailable(t, "genuine during the outage", a.post(a.query(), event(testOpenID, now+1, "SCAN", "s2", "T")), unavailable)
	if n := len(a.push.Calls()); n != 1 {
		t.Fatalf("%d Notify calls, want 1", n)
	}
	if got := a.counter("wechat_callback_rejected_total", "reason", reasonReplayUnavailable); got != 2 {
		t.Errorf("rejected{%s} = %v, want 2", reasonReplayUnavailable, got)
	}
	if !strings.Contains(a.logs.String(), "reason="+reasonReplayUnavailable) {
		t.Errorf("no log line for the unprocessed request:\n%s", a.logs)
	}

	v := a.query()
	v.Set("echostr", "echo")
	if r := a.do("GET", v, ""); r.status != 200 || r.body != "echo" {
		t.Fatalf("URL verification during the outage: %+v", r)
	}
}

// TestReplayAfterRedisRestartsEmpty: a pair processed before Redis lost its
// data is still refused with another body by the instance that saw it.
func TestReplayAfterRedisRestartsEmpty(t *testing.T) {
	rs, a, _ := twoInstances(t)
	now := time.Now().Unix()
	q := a.query()
	if r := a.post(q, event(testOpenID, now, "SCAN", "s1", "T")); r.status != 200 {
		t.Fatalf("genuine: %+v", r)
	}
	restart(rs)
	if r := a.post(q, event("oAttacker", now, "SCAN", "s2", "T")); r.status != 403 {
		t.Fatalf("replay after Redis restarted empty: %+v", r)
	}
	if n := len(a.push.Calls()); n != 1 {
		t.Fatalf("%d Notify calls, want 1", n)
	}
}

// TestPairFirstSeenDuringOutage: a pair that came while Redis was down is
// not processed, and cannot carry another body after Redis returns, at this
// instance or (once this instance has talked to Redis again) at another.
func TestPairFirstSeenDuringOutage(t *testing.T) {
	rs, a, b := twoInstances(t)
	now := time.Now().Unix()
	q := a.query()
	rs.Kill()
	wantUnavailable(t, "genuine during the outage", a.post(q, event(testOpenID, now, "SCAN", "s1", "T")), config.DefaultReplyUnavailable)
	restart(rs)

	forged := event("oAttacker", now, "SCAN", "s2", "T")
	if r := a.post(q, forged); r.status != 403 {
		t.Fatalf("replay at the same instance after the outage: %+v", r)
	}
	if r := a.post(a.query(), event(testOpenID, now+1, "SCAN", "s1", "T")); r.status != 200 || parseText(t, r.body).Content != config.DefaultReplyLoginOK {
		t.Fatalf("genuine after the outage: %+v", r)
	}
	if r := b.post(q, forged); r.status != 403 {
		t.Fatalf("replay at another instance after the outage: %+v", r)
	}
	calls := a.push.Calls()
	if len(calls) != 1 || calls[0].GetUser().GetOpenid() != testOpenID {
		t.Fatalf("Notify calls %v, want the genuine one after the outage", calls)
	}
}

// TestDowngradeDuringOutage: a safe-mode query string stripped to plaintext
// (CALLBACK_REQUIRE_ENCRYPTION unset) with a forged body while Redis is down
// is not processed. Safe-mode requests get the same check, answered
// encrypted.
func TestDowngradeDuringOutage(t *testing.T) {
	rs, a, b := twoInstances(t, safeMode)
	now := time.Now().Unix()
	q, body := a.encrypted(a.query(), event(testOpenID, now, "SCAN", "s1", "T"))
	if r := b.post(q, body); r.status != 200 || openReply(t, r.body).Content != config.DefaultReplyLoginOK {
		t.Fatalf("genuine: %+v", r)
	}
	rs.Kill()

	plain := a.query()
	for _, k := range []string{"signature", "timestamp", "nonce"} {
		plain.Set(k, q.Get(k))
	}
	forged := event("oAttacker", now, "SCAN", "s2", "T")
	wantUnavailable(t, "downgraded replay", a.post(plain, forged), config.DefaultReplyUnavailable)
	if r := b.post(plain, forged); r.status != 403 {
		t.Fatalf("downgraded replay at the instance that saw it: %+v", r)
	}
	q2, body2 := a.encrypted(a.query(), event(testOpenID, now+1, "SCAN", "s2", "T"))
	if r := a.post(q2, body2); r.status != 200 || openReply(t, r.body).Content != config.DefaultReplyUnavailable {
		t.Fatalf("safe mode during the outage: %+v", r)
	}
	if n := len(a.push.Calls()); n != 1 {
		t.Fatalf("%d Notify calls, want 1", n)
	}
}

// TestSlowRedis: a Redis that does not answer (all clients paused) is a
// failed one: the request is not processed and answered "unavailable" well
// before WeChat gives up.
func TestSlowRedis(t *testing.T) {
	rs, a, _ := twoInstances(t)
	if r := a.post(a.query(), event(testOpenID, time.Now().Unix(), "unsubscribe", "", "")); r.body != "success" {
		t.Fatalf("warm-up: %+v", r)
	}
	opts, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(opts)
	t.Cleanup(func() { admin.Close() })
	const pause = 10 * time.Second
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	wantUnavailable(t, "login while Redis is paused", a.post(a.query(), event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T")), config.DefaultReplyUnavailable)
	if d := time.Since(paused); d >= 5*time.Second {
		t.Errorf("answered after %v, WeChat waits 5 s", d)
	}
	if n := len(a.push.Calls()); n != 0 {
		t.Fatalf("%d Notify calls, want 0", n)
	}
}
