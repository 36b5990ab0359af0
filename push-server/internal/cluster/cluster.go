// Package cluster lets many push server instances act as one through Redis.
// It keeps presence (which instance holds connections of which session or
// user) and routes each message to the instances that hold its target,
// over a pub/sub channel per instance. Local connections are reached through
// the hub directly.
//
// Keys and channels (the {hash tag} keeps a session's keys in one slot):
//
//	<prefix>s:{<id>}:c     hash instance → connections of session id
//	<prefix>u:{<openid>}:c hash instance → connections of user openid
//	<prefix>i:<instance>   the instance's delivery channel
//
// Pub/sub delivers at most once, so nothing relies on it alone: state
// messages are kept with the session and pushes that find no connection are
// kept too; after Redis comes back every instance re-registers its
// connections and hands its browsers whatever they missed.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/push-server/internal/hub"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
)

// Keeper keeps a push for a browser that is away (the session store).
type Keeper interface {
	AddPending(ctx context.Context, id string, msg []byte) error
}

// Options tune a Cluster.
type Options struct {
	Prefix string // key prefix, e.g. "scanlogin:"
	// PresenceTTL bounds how long presence outlives its last refresh.
	PresenceTTL time.Duration
	// OpTimeout bounds one Redis call made on a connection's behalf.
	OpTimeout time.Duration
}

// Cluster is a login.Router and a connection registry shared through Redis.
type Cluster struct {
	log  *slog.Logger
	rdb  redis.UniversalClient
	hub  *hub.Hub
	keep Keeper
	opt  Options
	id   string // this instance
	// exact: PUBLISH's count of receivers is the whole deployment's, so a
	// count of 0 means a dead instance; not so in Redis Cluster, where it
	// counts only the node's own subscribers.
	exact bool

	up atomic.Bool // Redis answered the last health check
}

// New returns a Cluster for this instance, with a fresh instance id.
func New(log *slog.Logger, rdb redis.UniversalClient, h *hub.Hub, keep Keeper, opt Options) *Cluster {
	if opt.PresenceTTL <= 0 {
		opt.PresenceTTL = 24 * time.Hour
	}
	if opt.OpTimeout <= 0 {
		opt.OpTimeout = 2 * time.Second
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	_, isCluster := rdb.(*redis.ClusterClient)
	c := &Cluster{log: log, rdb: rdb, hub: h, keep: keep, opt: opt, id: hex.EncodeToString(b), exact: !isCluster}
	c.up.Store(true)
	return c
}

// ID is this instance's id.
func (c *Cluster) ID() string { return c.id }

func (c *Cluster) sessionKey(id string) string  { return c.opt.Prefix + "s:{" + id + "}:c" }
func (c *Cluster) userKey(openid string) string { return c.opt.Prefix + "u:{" + openid + "}:c" }
func (c *Cluster) channel(inst string) string   { return c.opt.Prefix + "i:" + inst }

// Envelope kinds on the delivery channel. They differ from those of the
// earlier newline-framed envelope, so that one from an instance still
// running it is dropped rather than misread.
const (
	kindSession = 'S'
	kindUser    = 'U'
)

// envelope frames a message for another instance: kind, the target's length
// as a uvarint, target, message. Nothing in a target can end it early.
func envelope(kind byte, target string, msg []byte) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(target)+len(msg))
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(target)))
	b = append(b, target...)
	return append(b, msg...)
}

// parseEnvelope undoes envelope; ok is false for anything envelope cannot
// have made.
func parseEnvelope(p []byte) (kind byte, target string, msg []byte, ok bool) {
	if len(p) < 2 || (p[0] != kindSession && p[0] != kindUser) {
		return 0, "", nil, false
	}
	n, w := binary.Uvarint(p[1:])
	if w <= 0 || n == 0 || n > uint64(len(p)-1-w) {
		return 0, "", nil, false
	}
	rest := p[1+w:]
	return p[0], string(rest[:n]), rest[n:], true
}

// ToSession implements login.Router: local connections through the hub,
// remote ones through their instances' channels.
func (c *Cluster) ToSession(ctx context.Context, id string, msg []byte) (int, error) {
	n, _ := c.hub.ToSession(ctx, id, msg)
	m, err := c.remote(ctx, c.sessionKey(id), kindSession, id, msg)
	return n + m, err
}

// ToUser implements login.Router.
func (c *Cluster) ToUser(ctx context.Context, openid string, msg []byte) (int, error) {
	n, _ := c.hub.ToUser(ctx, openid, msg)
	m, err := c.remote(ctx, c.userKey(openid), kindUser, openid, msg)
	return n + m, err
}

// Attached implements login.Router.
func (c *Cluster) Attached(ctx context.Context, id string) (bool, error) {
	if ok, _ := c.hub.Attached(ctx, id); ok {
		return true, nil
	}
	n, err := c.rdb.HLen(ctx, c.sessionKey(id)).Result()
	if err != nil {
		return false, fmt.Errorf("presence: %w: %w", login.ErrUnavailable, err)
	}
	return n > 0, nil
}

// publishRemote reads the presence hash KEYS[1] and publishes ARGV[3] to the
// channel ARGV[2]..instance of every instance in it but ARGV[1], in one round
// trip, and returns the connections those instances hold. With ARGV[4] =
// "1", PUBLISH's count of receivers is trusted: an instance whose channel has
// no subscriber (it died) is dropped from the presence and not counted.
var publishRemote = redis.NewScript(`
local pres = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #pres, 2 do
  local inst = pres[i]
  if inst ~= ARGV[1] then
    if redis.call('PUBLISH', ARGV[2] .. inst, ARGV[3]) == 0 and ARGV[4] == '1' then
      redis.call('HDEL', KEYS[1], inst)
    else
      n = n + (tonumber(pres[i + 1]) or 0)
    end
  end
end
return n
`)

// remote publishes msg to every other instance that holds connections of
// key, and reports how many connections those instances hold.
//
// In Redis Cluster, PUBLISH counts only the subscribers connected to the
// node it runs on, so a count of 0 does not mean a dead instance there:
// presence is then kept until its TTL, and a dead instance's connections
// still count until the browsers reconnect elsewhere.
func (c *Cluster) remote(ctx context.Context, key string, kind byte, target string, msg []byte) (int, error) {
	exact := "0"
	if c.exact {
		exact = "1"
	}
	n, err := publishRemote.Run(ctx, c.rdb, []string{key}, c.id, c.channel(""), envelope(kind, target, msg), exact).Int()
	if err != nil {
		return 0, fmt.Errorf("presence and publish: %w: %w", login.ErrUnavailable, err)
	}
	return n, nil
}

// Registry: what httpapi needs to register connections. Each method updates
// the local hub, then the shared presence.

// AttachSession routes session id's messages to conn, from any instance.
func (c *Cluster) AttachSession(id string, conn hub.Conn) {
	c.hub.AttachSession(id, conn)
	c.incr(c.sessionKey(id), 1)
}

// DetachSession stops routing session id's messages to conn.
func (c *Cluster) DetachSession(id string, conn hub.Conn) {
	c.hub.DetachSession(id, conn)
	c.incr(c.sessionKey(id), -1)
}

// AttachUser routes the user's messages to conn, from any instance.
func (c *Cluster) AttachUser(openid string, conn hub.Conn) {
	c.hub.AttachUser(openid, conn)
	c.incr(c.userKey(openid), 1)
}

// Remove forgets conn, attached to session sid and user openid ("" for none).
func (c *Cluster) Remove(conn hub.Conn, sid, openid string) {
	c.hub.Remove(conn, sid, openid)
	if sid != "" {
		c.incr(c.sessionKey(sid), -1)
	}
	if openid != "" {
		c.incr(c.userKey(openid), -1)
	}
}

// presenceAdd adds delta to this instance's count in a presence hash,
// removing the field at zero, and refreshes the hash's TTL.
var presenceAdd = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return n
`)

func (c *Cluster) incr(key string, delta int) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opt.OpTimeout)
	defer cancel()
	err := presenceAdd.Run(ctx, c.rdb, []string{key}, c.id, delta, c.opt.PresenceTTL.Milliseconds()).Err()
	if err != nil {
		// The health monitor reports the outage once; presence is rebuilt
		// when Redis is back.
		c.log.Debug("presence update failed", "err", err)
	}
}

// Ready reports whether Redis answers.
func (c *Cluster) Ready(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis unreachable: %w", err)
	}
	return nil
}

// Run listens on this instance's channel and watches Redis's health until
// ctx ends. After Redis comes back, redeliver is called with the sessions
// held here, to hand their browsers what they missed meanwhile.
func (c *Cluster) Run(ctx context.Context, redeliver func(ctx context.Context, sessions []string)) error {
	var monitor sync.WaitGroup
	monitor.Go(func() { c.monitor(ctx) })
	defer monitor.Wait()
	ps := c.rdb.Subscribe(ctx, c.channel(c.id))
	// Receive does not watch ctx while it waits on the socket: closing the
	// subscription is what ends it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	defer ps.Close()
	subscribed := false
	for {
		m, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// go-redis reconnects and resubscribes on the next Receive.
			c.log.Debug("pubsub receive", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch m := m.(type) {
		case *redis.Subscription:
			if subscribed {
				c.resync(ctx, redeliver)
			}
			subscribed = true
		case *redis.Message:
			c.deliver(ctx, []byte(m.Payload))
		}
	}
}

// deliver hands a message from another instance to local connections; a
// push that finds none is kept for the browser's resume.
func (c *Cluster) deliver(ctx context.Context, p []byte) {
	kind, target, msg, ok := parseEnvelope(p)
	if !ok {
		c.log.Warn("bad envelope on delivery channel", "bytes", len(p))
		return
	}
	switch kind {
	case kindSession:
		n, _ := c.hub.ToSession(ctx, target, msg)
		if n == 0 && login.IsPush(msg) {
			kctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
			defer cancel()
			if err := c.keep.AddPending(kctx, target, msg); err != nil && !errors.Is(err, login.ErrNotFound) {
				c.log.Warn("keep undelivered push", "err", err)
			}
		}
	case kindUser:
		c.hub.ToUser(ctx, target, msg)
	}
}

// resync re-registers this instance's connections, which a Redis restart
// may have forgotten, and lets browsers catch up on what they missed.
func (c *Cluster) resync(ctx context.Context, redeliver func(context.Context, []string)) {
	c.setUp(nil)
	sessions, users := c.hub.Counts()
	c.log.Info("re-registering connections with redis", "sessions", len(sessions), "users", len(users))
	ttl := c.opt.PresenceTTL
	set := func(key string, n int) {
		sctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
		defer cancel()
		_, err := c.rdb.TxPipelined(sctx, func(p redis.Pipeliner) error {
			p.HSet(sctx, key, c.id, n)
			p.PExpire(sctx, key, ttl)
			return nil
		})
		if err != nil {
			c.log.Debug("presence resync", "err", err)
		}
	}
	ids := make([]string, 0, len(sessions))
	for id, n := range sessions {
		set(c.sessionKey(id), n)
		ids = append(ids, id)
	}
	for openid, n := range users {
		set(c.userKey(openid), n)
	}
	if redeliver != nil {
		redeliver(ctx, ids)
	}
}

// monitor pings Redis every second and logs each change of reachability once.
func (c *Cluster) monitor(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := c.rdb.Ping(pctx).Err()
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.setUp(err)
	}
}

// setUp records whether Redis answered and logs each change once.
func (c *Cluster) setUp(err error) {
	switch {
	case err != nil && c.up.Swap(false):
		c.log.Error("redis unreachable: new logins refused, open connections kept", "err", err)
	case err == nil && !c.up.Swap(true):
		c.log.Info("redis reachable again")
	}
}

// Up reports whether the last health check reached Redis.
func (c *Cluster) Up() bool { return c.up.Load() }
