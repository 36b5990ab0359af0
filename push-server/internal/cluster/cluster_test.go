package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/push-server/internal/hub"
)

func TestEnvelopeRoundTrips(t *testing.T) {
	msg := []byte("{\"type\":\"message\",\"event\":\"e\",\"data\":\"a\\nb\"}\n")
	targets := []string{
		"oVictim",
		"oVictim\nX",
		"oVictim\n",
		"\noVictim",
		"a\x00b",
		strings.Repeat("x", 300), // a length of two uvarint bytes
	}
	for _, kind := range []byte{kindSession, kindUser} {
		for _, target := range targets {
			k, got, m, ok := parseEnvelope(envelope(kind, target, msg))
			if !ok || k != kind || got != target || !bytes.Equal(m, msg) {
				t.Errorf("envelope(%c, %q) came back as %c %q %q %v", kind, target, k, got, m, ok)
			}
		}
	}
	// The message may hold anything, a framed envelope included.
	inner := envelope(kindUser, "oVictim", []byte("x"))
	if _, got, m, ok := parseEnvelope(envelope(kindUser, "oEve", inner)); !ok || got != "oEve" || !bytes.Equal(m, inner) {
		t.Errorf("nested envelope came back as %q %q %v", got, m, ok)
	}
}

func TestMalformedEnvelopesAreRefused(t *testing.T) {
	for name, p := range map[string][]byte{
		"empty":            nil,
		"kind only":        {kindUser},
		"unknown kind":     append([]byte{'x'}, envelope(kindUser, "o", []byte("m"))[1:]...),
		"newline framing":  []byte("uoVictim\n{\"type\":\"message\"}"),
		"old session kind": []byte("sabc\n{}"),
		"empty target":     {kindUser, 0, '{', '}'},
		"target too long":  {kindUser, 5, 'a', 'b'},
		"bad uvarint":      {kindUser, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"truncated varint": {kindUser, 0x80},
	} {
		if k, target, msg, ok := parseEnvelope(p); ok {
			t.Errorf("%s: parsed as %c %q %q", name, k, target, msg)
		}
	}
}

type recorder struct {
	mu  sync.Mutex
	got [][]byte
}

func (r *recorder) Send(msg []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, msg)
	return true
}

func (r *recorder) messages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

type keeper struct{ ids []string }

func (k *keeper) AddPending(_ context.Context, id string, _ []byte) error {
	k.ids = append(k.ids, id)
	return nil
}

// A target with a newline, framed here without any validation, reaches
// exactly that target on the receiving instance and never another.
func TestDeliverRawMaliciousTarget(t *testing.T) {
	var logs bytes.Buffer
	h := hub.New()
	keep := &keeper{}
	// deliver needs no Redis for these envelopes; nothing listens there.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { rdb.Close() })
	c := New(slog.New(slog.NewTextHandler(&logs, nil)), rdb, h, keep, Options{})

	victim, attacker := &recorder{}, &recorder{}
	h.AttachUser("oVictim", victim)
	h.AttachUser("oVictim\nX", attacker)
	h.AttachSession("sVictim", victim)

	msg := []byte(`{"type":"message","event":"e","data":1}`)
	ctx := context.Background()
	c.deliver(ctx, envelope(kindUser, "oVictim\nX", msg))
	c.deliver(ctx, envelope(kindSession, "sVictim\nX", []byte(`{"type":"message","event":"e","data":2}`)))
	if got := victim.messages(); len(got) != 0 {
		t.Fatalf("the victim got %q", got)
	}
	if got := attacker.messages(); len(got) != 1 || !bytes.Equal(got[0], msg) {
		t.Fatalf("the named target got %q, want exactly %q", got, msg)
	}
	if len(keep.ids) != 1 || keep.ids[0] != "sVictim\nX" {
		t.Fatalf("kept for %q, want only the named session", keep.ids)
	}

	// An envelope of the old newline framing is dropped with one log line.
	c.deliver(ctx, []byte("uoVictim\n"+string(msg)))
	if got := victim.messages(); len(got) != 0 {
		t.Fatalf("the victim got %q", got)
	}
	if n := strings.Count(logs.String(), "bad envelope"); n != 1 {
		t.Fatalf("%d log lines for a bad envelope, want 1:\n%s", n, logs.String())
	}
}
