package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/push-server/internal/browser"
	"github.com/scanlogin/scanlogin/push-server/internal/hub"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
)

// batchOf frames envelopes as Deliver's script does.
func batchOf(envs ...[]byte) []byte {
	b := []byte{batch}
	for _, e := range envs {
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	return b
}

// A batch envelope reaches each named target with its own frames, in order,
// and a malformed one is dropped with a log line, never misread.
func TestDeliverBatchEnvelope(t *testing.T) {
	c, h, keep, logs := offline(t)
	a, b := &recorder{}, &recorder{}
	h.AttachSession("sA", a)
	h.AttachUser("oB", b)

	f1, f2, f3 := browser.PushFrame("e", []byte("1")), browser.PushFrame("e", []byte("2")), browser.PushFrame("e", []byte("3"))
	ctx := context.Background()
	c.deliver(ctx, batchOf(envelope(toSession, "sA", f1), envelope(toUser, "oB", f2), envelope(toSession, "sA", f3),
		envelope(toSession, "sAway", f1)))
	if got := frames(a); !slices.Equal(got, []string{string(f1.JSON), string(f3.JSON)}) {
		t.Errorf("session got %q", got)
	}
	if got := frames(b); !slices.Equal(got, []string{string(f2.JSON)}) {
		t.Errorf("user got %q", got)
	}
	if !slices.Equal(keep.ids, []string{"sAway"}) {
		t.Errorf("kept for %q, want sAway", keep.ids)
	}

	good := envelope(toSession, "sA", f1)
	for name, p := range map[string][]byte{
		"length past the end": append([]byte{batch, byte(len(good) + 1)}, good...),
		"bad uvarint":         {batch, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"truncated uvarint":   {batch, 0x80},
	} {
		logs.Reset()
		c.deliver(ctx, p)
		if !strings.Contains(logs.String(), "bad batch envelope") {
			t.Errorf("%s: no log line:\n%s", name, logs.String())
		}
	}
	if got := frames(a); len(got) != 2 {
		t.Errorf("malformed batches delivered %q", got[2:])
	}
}

func frames(r *recorder) []string {
	var out []string
	for _, f := range r.messages() {
		out = append(out, string(f.JSON))
	}
	return out
}

// publishes is how many PUBLISH commands Redis ran since its stats were
// reset, scripts' included.
func publishes(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_publish:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// A batch of pushes to connections held by two other instances is one
// publish per instance, and each connection gets exactly its frames, in
// order; an instance that no longer listens is dropped from the presence.
func TestDeliverBatchOnePublishPerInstance(t *testing.T) {
	rs := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	newInstance := func(run bool) (*Cluster, *hub.Hub, *redis.Client) {
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
		t.Cleanup(func() { rdb.Close() })
		h := hub.New()
		c := New(slog.New(slog.DiscardHandler), rdb, h, &keeper{}, Options{Prefix: "t:"})
		if run {
			done := make(chan struct{})
			go func() { defer close(done); _ = c.Run(ctx, nil) }()
			t.Cleanup(func() { cancel(); <-done })
			waitSubscribed(t, rdb, c.channel(c.ID()))
		}
		return c, h, rdb
	}
	a, _, rdb := newInstance(false)
	b, _, _ := newInstance(true)
	c, _, _ := newInstance(true)
	dead, _, _ := newInstance(false)

	local := &recorder{}
	a.AttachSession("sLocal", local)
	conns := map[string]*recorder{}
	for i := range 6 {
		id := fmt.Sprintf("s%d", i)
		conns[id] = &recorder{}
		[]*Cluster{b, c}[i%2].AttachSession(id, conns[id])
	}
	u1, u2 := &recorder{}, &recorder{}
	b.AttachUser("oUser", u1)
	c.AttachUser("oUser", u2)
	dead.AttachSession("sDead", &recorder{})

	var ds []login.Delivery
	want := map[string][]string{}
	add := func(session, openid string) {
		f := browser.PushFrame("e", fmt.Appendf(nil, "%d", len(ds)))
		ds = append(ds, login.Delivery{SessionID: session, OpenID: openid, Frame: f})
		want[session+openid] = append(want[session+openid], string(f.JSON))
	}
	for round := range 3 {
		for i := range 6 {
			add(fmt.Sprintf("s%d", i), "")
		}
		if round == 1 {
			add("", "oUser")
			add("sLocal", "")
			add("sNobody", "")
			add("sDead", "")
		}
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	counts, err := a.Deliver(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		wantN := 1
		switch d.SessionID + d.OpenID {
		case "oUser":
			wantN = 2
		case "sNobody", "sDead":
			wantN = 0
		}
		if counts[i] != wantN {
			t.Errorf("delivery %d to %q: count %d, want %d", i, d.SessionID+d.OpenID, counts[i], wantN)
		}
	}
	// b, c and the dead instance: one publish each.
	if n := publishes(t, rdb); n != 3 {
		t.Errorf("%d publishes for a batch of %d to three instances, want 3", n, len(ds))
	}
	if n, _ := rdb.HLen(ctx, a.sessionKey("sDead")).Result(); n != 0 {
		t.Errorf("the dead instance is still present for sDead")
	}

	check := func(name string, r *recorder) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(r.messages()) < len(want[name]) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := frames(r); !slices.Equal(got, want[name]) {
			t.Errorf("%s got %q, want %q", name, got, want[name])
		}
	}
	for id, r := range conns {
		check(id, r)
	}
	check("sLocal", local)
	check("oUser", u1)
	check("oUser", u2)
}

// waitSubscribed waits until channel has a subscriber.
func waitSubscribed(t *testing.T, rdb *redis.Client, channel string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		if err == nil && m[channel] > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("nobody subscribed to %s", channel)
}
