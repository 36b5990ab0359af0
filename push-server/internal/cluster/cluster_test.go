package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
	"github.com/scanlogin/scanlogin/push-server/internal/hub"
)

func TestEnvelopeRoundTrips(t *testing.T) {
	frames := []browser.Frame{
		{Kind: browser.KindMessage, JSON: []byte("{\"type\":\"message\",\"event\":\"e\",\"data\":\"a\\nb\"}\n")},
		{Kind: browser.KindLogin, JSON: []byte(`{"type":"login","token":"t","user":{"openid":"o"}}`)},
		browser.SessionTaken,
		browser.Expired,
	}
	targets := []string{
		"oVictim",
		"oVictim\nX",
		"oVictim\n",
		"\noVictim",
		"a\x00b",
		strings.Repeat("x", 300), // a length of two uvarint bytes
	}
	for _, to := range []byte{toSession, toUser} {
		for _, target := range targets {
			for _, f := range frames {
				k, got, g, ok := parseEnvelope(envelope(to, target, f))
				if !ok || k != to || got != target || g.Kind != f.Kind || !bytes.Equal(g.JSON, f.JSON) {
					t.Errorf("envelope(%c, %q, %v) came back as %c %q %v %q %v", to, target, f.Kind, k, got, g.Kind, g.JSON, ok)
				}
			}
		}
	}
	// The frame may hold anything, a framed envelope included.
	inner := envelope(toUser, "oVictim", browser.Pong)
	f := browser.Frame{Kind: browser.KindMessage, JSON: inner}
	if _, got, g, ok := parseEnvelope(envelope(toUser, "oEve", f)); !ok || got != "oEve" || !bytes.Equal(g.JSON, inner) {
		t.Errorf("nested envelope came back as %q %q %v", got, g.JSON, ok)
	}
}

func TestMalformedEnvelopesAreRefused(t *testing.T) {
	m := byte(browser.KindMessage)
	for name, p := range map[string][]byte{
		"empty":              nil,
		"target kind only":   {toUser},
		"no target length":   {toUser, m},
		"unknown target":     append([]byte{'x'}, envelope(toUser, "o", browser.Pong)[1:]...),
		"frame kind 0":       {toUser, 0, 1, 'o', '{', '}'},
		"unknown frame kind": {toUser, byte(browser.KindPong + 1), 1, 'o', '{', '}'},
		"newline framing":    []byte("uoVictim\n{\"type\":\"message\"}"),
		"old session kind":   []byte("sabc\n{}"),
		// Envelopes without a frame kind, as instances sent them before.
		"no frame kind, session": []byte("S\x01s{}"),
		"no frame kind, user":    []byte("U\x07oVictim{\"type\":\"message\"}"),
		"empty target":           {toUser, m, 0, '{', '}'},
		"target too long":        {toUser, m, 5, 'a', 'b'},
		"bad uvarint":            {toUser, m, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"truncated varint":       {toUser, m, 0x80},
	} {
		if k, target, f, ok := parseEnvelope(p); ok {
			t.Errorf("%s: parsed as %c %q %v %q", name, k, target, f.Kind, f.JSON)
		}
	}
}

type recorder struct {
	mu  sync.Mutex
	got []browser.Frame
}

func (r *recorder) Send(f browser.Frame) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, f)
	return true
}

func (r *recorder) messages() []browser.Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

type keeper struct{ ids []string }

// offline is a Cluster whose deliver is tested without Redis (nothing
// listens at its address), with its hub, its keeper of pending pushes and
// its log.
func offline(t *testing.T) (*Cluster, *hub.Hub, *keeper, *bytes.Buffer) {
	logs := &bytes.Buffer{}
	h := hub.New()
	keep := &keeper{}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { rdb.Close() })
	return New(slog.New(slog.NewTextHandler(logs, nil)), rdb, h, keep, Options{}), h, keep, logs
}

func (k *keeper) AddPending(_ context.Context, id string, _ []byte) error {
	k.ids = append(k.ids, id)
	return nil
}

// A target with a newline, framed here without any validation, reaches
// exactly that target on the receiving instance and never another.
func TestDeliverRawMaliciousTarget(t *testing.T) {
	c, h, keep, logs := offline(t)

	victim, attacker := &recorder{}, &recorder{}
	h.AttachUser("oVictim", victim)
	h.AttachUser("oVictim\nX", attacker)
	h.AttachSession("sVictim", victim)

	msg := browser.PushFrame("e", []byte("1"))
	ctx := context.Background()
	c.deliver(ctx, envelope(toUser, "oVictim\nX", msg))
	c.deliver(ctx, envelope(toSession, "sVictim\nX", browser.PushFrame("e", []byte("2"))))
	if got := victim.messages(); len(got) != 0 {
		t.Fatalf("the victim got %q", got)
	}
	if got := attacker.messages(); len(got) != 1 || got[0].Kind != msg.Kind || !bytes.Equal(got[0].JSON, msg.JSON) {
		t.Fatalf("the named target got %q, want exactly %q", got, msg.JSON)
	}
	if len(keep.ids) != 1 || keep.ids[0] != "sVictim\nX" {
		t.Fatalf("kept for %q, want only the named session", keep.ids)
	}

	// An envelope of the old newline framing is dropped with one log line.
	c.deliver(ctx, []byte("uoVictim\n"+string(msg.JSON)))
	if got := victim.messages(); len(got) != 0 {
		t.Fatalf("the victim got %q", got)
	}
	if n := strings.Count(logs.String(), "bad envelope"); n != 1 {
		t.Fatalf("%d log lines for a bad envelope, want 1:\n%s", n, logs.String())
	}
}

// The receiving instance acts on the frame's kind from the envelope: a
// login keeps its kind, and only a push that finds no connection is kept,
// whatever its JSON looks like.
func TestDeliverActsOnFrameKind(t *testing.T) {
	h := hub.New()
	keep := &keeper{}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { rdb.Close() })
	c := New(slog.New(slog.DiscardHandler), rdb, h, keep, Options{})
	ctx := context.Background()

	here := &recorder{}
	h.AttachSession("sHere", here)
	login := browser.Frame{Kind: browser.KindLogin, JSON: []byte(`{"type":"login","token":"t","user":{"openid":"o"}}`)}
	c.deliver(ctx, envelope(toSession, "sHere", login))
	c.deliver(ctx, envelope(toSession, "sHere", browser.SessionTaken))
	if got := here.messages(); len(got) != 2 || got[0].Kind != browser.KindLogin || got[1].Kind != browser.KindSessionTaken {
		t.Fatalf("the connection got %v", got)
	}

	// Nobody holds sAway: its push is kept, its state messages are not
	// (the session keeps those), even one whose JSON reads like a push.
	c.deliver(ctx, envelope(toSession, "sAway", browser.Scanned))
	c.deliver(ctx, envelope(toSession, "sAway", browser.Frame{Kind: browser.KindScanned, JSON: []byte(`{"type":"message"}`)}))
	c.deliver(ctx, envelope(toSession, "sAway", browser.PushFrame("e", []byte("1"))))
	if len(keep.ids) != 1 || keep.ids[0] != "sAway" {
		t.Fatalf("kept for %q, want the one push", keep.ids)
	}
}
