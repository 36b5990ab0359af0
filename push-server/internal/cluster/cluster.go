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
// A delivery is an envelope: who it is for (a session or a user), the
// frame's kind, the target's length as a uvarint, the target, and the
// frame's JSON. The receiving instance acts on the kind as the sending one
// would, without reading the JSON. A batch of pushes travels as one publish
// per instance: "b" and that instance's envelopes, each length-prefixed.
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

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
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

// Cluster is a login.Router and a browser connection registry shared
// through Redis.
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

// Who an envelope is for. These bytes differ from those of the envelopes
// without a frame kind, and of the newline-framed ones before them, so an
// envelope from an instance still running either is dropped, not misread.
// A batch envelope is 'b' followed by envelopes, each after its length as a
// uvarint.
const (
	toSession = 's'
	toUser    = 'u'
	batch     = 'b'
)

// envelope frames f for another instance: to, f's kind, the target's length
// as a uvarint, target, f's JSON. Nothing in a target can end it early.
func envelope(to byte, target string, f browser.Frame) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen64+len(target)+len(f.JSON))
	b = append(b, to, byte(f.Kind))
	b = binary.AppendUvarint(b, uint64(len(target)))
	b = append(b, target...)
	return append(b, f.JSON...)
}

// parseEnvelope undoes envelope; ok is false for anything envelope cannot
// have made.
func parseEnvelope(p []byte) (to byte, target string, f browser.Frame, ok bool) {
	if len(p) < 3 || (p[0] != toSession && p[0] != toUser) || !browser.Kind(p[1]).Valid() {
		return 0, "", browser.Frame{}, false
	}
	n, w := binary.Uvarint(p[2:])
	if w <= 0 || n == 0 || n > uint64(len(p)-2-w) {
		return 0, "", browser.Frame{}, false
	}
	rest := p[2+w:]
	return p[0], string(rest[:n]), browser.Frame{Kind: browser.Kind(p[1]), JSON: rest[n:]}, true
}

// ToSession implements login.Router: local connections through the hub,
// remote ones through their instances' channels.
func (c *Cluster) ToSession(ctx context.Context, id string, f browser.Frame) (int, error) {
	n, _ := c.hub.ToSession(ctx, id, f)
	m, err := c.remote(ctx, c.sessionKey(id), envelope(toSession, id, f))
	return n + m, err
}

// ToUser implements login.Router.
func (c *Cluster) ToUser(ctx context.Context, openid string, f browser.Frame) (int, error) {
	n, _ := c.hub.ToUser(ctx, openid, f)
	m, err := c.remote(ctx, c.userKey(openid), envelope(toUser, openid, f))
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

// remote publishes the envelope env to every other instance that holds
// connections of key, and reports how many connections those instances hold.
//
// In Redis Cluster, PUBLISH counts only the subscribers connected to the
// node it runs on, so a count of 0 does not mean a dead instance there:
// presence is then kept until its TTL, and a dead instance's connections
// still count until the browsers reconnect elsewhere.
func (c *Cluster) remote(ctx context.Context, key string, env []byte) (int, error) {
	exact := "0"
	if c.exact {
		exact = "1"
	}
	n, err := publishRemote.Run(ctx, c.rdb, []string{key}, c.id, c.channel(""), env, exact).Int()
	if err != nil {
		return 0, fmt.Errorf("presence and publish: %w: %w", login.ErrUnavailable, err)
	}
	return n, nil
}

// publishBatch is publishRemote for many envelopes at once: KEYS[k] is the
// presence hash of the envelope ARGV[3 + k], which comes length-prefixed.
// Each instance named in any of the hashes but ARGV[1] gets one PUBLISH of
// "b" and its envelopes, in order. It returns, per key, the connections the
// reached instances hold (ARGV[3] = "1": as in publishRemote).
var publishBatch = redis.NewScript(`
local parts, items, order = {}, {}, {}
for k = 1, #KEYS do
  local pres = redis.call('HGETALL', KEYS[k])
  for i = 1, #pres, 2 do
    local inst = pres[i]
    if inst ~= ARGV[1] then
      if parts[inst] == nil then
        parts[inst], items[inst] = {}, {}
        order[#order + 1] = inst
      end
      table.insert(parts[inst], ARGV[3 + k])
      table.insert(items[inst], k)
      table.insert(items[inst], tonumber(pres[i + 1]) or 0)
    end
  end
end
local counts = {}
for k = 1, #KEYS do counts[k] = 0 end
for _, inst in ipairs(order) do
  local it = items[inst]
  if redis.call('PUBLISH', ARGV[2] .. inst, 'b' .. table.concat(parts[inst])) == 0 and ARGV[3] == '1' then
    for j = 1, #it, 2 do redis.call('HDEL', KEYS[it[j]], inst) end
  else
    for j = 1, #it, 2 do counts[it[j]] = counts[it[j]] + it[j + 1] end
  end
end
return counts
`)

var _ login.BatchRouter = (*Cluster)(nil)

// Deliver implements login.BatchRouter: local connections through the hub,
// and one publish per other instance for all of ds it should see. In Redis
// Cluster a script cannot read keys of many slots, so there each delivery
// takes its own round trip.
func (c *Cluster) Deliver(ctx context.Context, ds []login.Delivery) ([]int, error) {
	counts := make([]int, len(ds))
	keys := make([]string, len(ds))
	args := make([]any, 3, 3+len(ds))
	for i, d := range ds {
		var env []byte
		if d.OpenID != "" {
			counts[i], _ = c.hub.ToUser(ctx, d.OpenID, d.Frame)
			keys[i], env = c.userKey(d.OpenID), envelope(toUser, d.OpenID, d.Frame)
		} else {
			counts[i], _ = c.hub.ToSession(ctx, d.SessionID, d.Frame)
			keys[i], env = c.sessionKey(d.SessionID), envelope(toSession, d.SessionID, d.Frame)
		}
		if !c.exact {
			m, err := c.remote(ctx, keys[i], env)
			if err != nil {
				return counts, err
			}
			counts[i] += m
			continue
		}
		args = append(args, append(binary.AppendUvarint(make([]byte, 0, len(env)+3), uint64(len(env))), env...))
	}
	if !c.exact || len(ds) == 0 {
		return counts, nil
	}
	args[0], args[1], args[2] = c.id, c.channel(""), "1"
	remote, err := publishBatch.Run(ctx, c.rdb, keys, args...).Int64Slice()
	if err != nil {
		return counts, fmt.Errorf("presence and publish: %w: %w", login.ErrUnavailable, err)
	}
	for i, m := range remote {
		if i < len(counts) {
			counts[i] += int(m)
		}
	}
	return counts, nil
}

// Registry: what httpapi needs to register browser connections. Each method updates
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

// deliver hands what another instance published, an envelope or a batch
// of them, to local connections.
func (c *Cluster) deliver(ctx context.Context, p []byte) {
	if len(p) == 0 || p[0] != batch {
		c.deliverOne(ctx, p)
		return
	}
	for p = p[1:]; len(p) > 0; {
		n, w := binary.Uvarint(p)
		if w <= 0 || n > uint64(len(p)-w) {
			c.log.Warn("bad batch envelope on delivery channel", "bytes", len(p))
			return
		}
		c.deliverOne(ctx, p[w:w+int(n)])
		p = p[w+int(n):]
	}
}

// deliverOne hands a frame from another instance to local connections; a
// push that finds none is kept for the browser's resume (state messages are
// kept with the session already).
func (c *Cluster) deliverOne(ctx context.Context, p []byte) {
	to, target, f, ok := parseEnvelope(p)
	if !ok {
		c.log.Warn("bad envelope on delivery channel", "bytes", len(p))
		return
	}
	switch to {
	case toSession:
		n, _ := c.hub.ToSession(ctx, target, f)
		if n == 0 && f.Kind == browser.KindMessage {
			kctx, cancel := context.WithTimeout(ctx, c.opt.OpTimeout)
			defer cancel()
			if err := c.keep.AddPending(kctx, target, f.JSON); err != nil && !errors.Is(err, login.ErrNotFound) {
				c.log.Warn("keep undelivered push", "err", err)
			}
		}
	case toUser:
		c.hub.ToUser(ctx, target, f)
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
