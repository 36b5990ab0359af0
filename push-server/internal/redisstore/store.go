// Package redisstore keeps login sessions in Redis, so that every push
// server instance sees the same sessions and one session is confirmed
// exactly once across all of them.
//
// Keys (the {hash tag} keeps one session's keys in one Cluster slot):
//
//	<prefix>s:{<id>}        the session, JSON; expires Retain after the session does
//	<prefix>s:{<id>}:p      pushes kept for a browser that is away (a list)
//	<prefix>scene:{<scene>} the id of the session with that scene
//
// State changes run the login state machine (login.Transition) inside a
// WATCH/MULTI transaction on the session key, retried on conflict: of
// events racing on one session across instances (two phones confirming one
// code), each decides on the state the committed one before it left. A
// confirm secret is kept only as its hash.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/push-server/internal/login"
)

// Store is a login.Store on Redis.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	retain time.Duration
}

// New returns a Store using keys that start with prefix, keeping sessions
// retain past their expiry.
func New(rdb redis.UniversalClient, prefix string, retain time.Duration) *Store {
	return &Store{rdb: rdb, prefix: prefix, retain: retain}
}

// maxAttempts bounds the optimistic retries of one state change. Contention
// ends after the first commit (later callers see the new state and do not
// write), so a handful is plenty.
const maxAttempts = 16

// maxPending matches the in-memory store's bound.
const maxPending = 32

func (s *Store) sessionKey(id string) string { return s.prefix + "s:{" + id + "}" }
func (s *Store) pendingKey(id string) string { return s.prefix + "s:{" + id + "}:p" }
func (s *Store) sceneKey(sc string) string   { return s.prefix + "scene:{" + sc + "}" }

// unavailable classifies a Redis failure.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, login.ErrUnavailable, err)
}

func (s *Store) expiry(sess *login.Session) time.Time { return sess.ExpiresAt.Add(s.retain) }

// Create implements login.Store.
func (s *Store) Create(ctx context.Context, sess *login.Session) error {
	b, err := encode(sess)
	if err != nil {
		return err
	}
	ttl := time.Until(s.expiry(sess))
	ok, err := s.rdb.SetNX(ctx, s.sceneKey(sess.Scene), sess.ID, ttl).Result()
	if err != nil {
		return unavailable("create session", err)
	}
	if !ok {
		return fmt.Errorf("create scene: %w", login.ErrExists)
	}
	ok, err = s.rdb.SetNX(ctx, s.sessionKey(sess.ID), b, ttl).Result()
	if err != nil {
		return unavailable("create session", err)
	}
	if !ok {
		return fmt.Errorf("create %s: %w", sess.ID, login.ErrExists)
	}
	return nil
}

// Get implements login.Store.
func (s *Store) Get(ctx context.Context, id string) (*login.Session, error) {
	return s.get(ctx, s.rdb, id)
}

func (s *Store) get(ctx context.Context, c redis.Cmdable, id string) (*login.Session, error) {
	b, err := c.Get(ctx, s.sessionKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, login.ErrNotFound
	}
	if err != nil {
		return nil, unavailable("get session", err)
	}
	var sess login.Session
	if err := json.Unmarshal(b, &sess); err != nil {
		return nil, fmt.Errorf("decode session %s: %w", id, err)
	}
	return &sess, nil
}

// Apply implements login.Store.
func (s *Store) Apply(ctx context.Context, ev login.Event, now time.Time, render func(*login.Session) ([]byte, error)) (login.Outcome, error) {
	id, err := s.rdb.Get(ctx, s.sceneKey(ev.Scene)).Result()
	if errors.Is(err, redis.Nil) {
		return login.Outcome{Result: login.ResultNotFound}, nil
	}
	if err != nil {
		return login.Outcome{}, unavailable("find scene", err)
	}
	var out login.Outcome
	err = s.update(ctx, id, func(sess *login.Session) (bool, error) {
		// A retried attempt decides again, and issues its own secret.
		move := login.Transition(sess, ev, now)
		out = login.Outcome{Result: move.Result, Duplicate: move.Duplicate, Session: sess, Rescan: move.Rescan, Confirm: move.Confirm}
		if !move.Changed || move.Rescan {
			return move.Changed, nil
		}
		msg, err := render(sess)
		if err != nil {
			return false, fmt.Errorf("render message: %w", err)
		}
		sess.Last = msg
		return true, nil
	})
	if errors.Is(err, login.ErrNotFound) {
		return login.Outcome{Result: login.ResultNotFound}, nil
	}
	return out, err
}

// update runs f on session id inside WATCH/MULTI and writes the session back
// when f says it changed, retrying when another writer got there first.
func (s *Store) update(ctx context.Context, id string, f func(*login.Session) (bool, error)) error {
	key := s.sessionKey(id)
	for range maxAttempts {
		var fnErr error // what our function returned, as opposed to Redis itself
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			fnErr = s.apply(ctx, tx, id, f)
			return fnErr
		}, key)
		switch {
		case errors.Is(err, redis.TxFailedErr):
			continue
		case err != nil && err != fnErr:
			return unavailable("update session", err)
		}
		return err
	}
	return fmt.Errorf("update session %s: %w: too much contention", id, login.ErrUnavailable)
}

// apply is one attempt of update, inside WATCH.
func (s *Store) apply(ctx context.Context, tx *redis.Tx, id string, f func(*login.Session) (bool, error)) error {
	sess, err := s.get(ctx, tx, id)
	if err != nil {
		return err
	}
	changed, err := f(sess)
	if err != nil || !changed {
		return err
	}
	b, err := encode(sess)
	if err != nil {
		return err
	}
	key := s.sessionKey(id)
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, b, 0)
		p.PExpireAt(ctx, key, s.expiry(sess))
		return nil
	})
	if err != nil && !errors.Is(err, redis.TxFailedErr) {
		return unavailable("write session", err)
	}
	return err
}

// MarkDelivered implements login.Store.
func (s *Store) MarkDelivered(ctx context.Context, id string) error {
	return s.update(ctx, id, func(sess *login.Session) (bool, error) {
		if sess.Delivered {
			return false, nil
		}
		sess.Delivered = true
		return true, nil
	})
}

// TakeLogin implements login.Store. The check and the mark are one
// WATCH/MULTI transaction, so of resumes racing on several instances only
// one is handed the login.
func (s *Store) TakeLogin(ctx context.Context, id string, since time.Time) ([]byte, error) {
	var out []byte
	err := s.update(ctx, id, func(sess *login.Session) (bool, error) {
		out = nil // a retried attempt decides again
		if !login.CanTakeLogin(sess, since) {
			return false, nil
		}
		sess.Consumed, sess.Delivered = true, true
		out = sess.Last
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Expire implements login.Store.
func (s *Store) Expire(ctx context.Context, id string, now time.Time) error {
	return s.update(ctx, id, func(sess *login.Session) (bool, error) {
		if st := sess.StateAt(now); st != login.StateWaiting && st != login.StateScanned {
			return false, nil
		}
		sess.ExpiresAt = now
		return true, nil
	})
}

// addPending appends to the list only while the session exists, trims it to
// the bound, and gives it the session's remaining life.
var addPending = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`)

// AddPending implements login.Store.
func (s *Store) AddPending(ctx context.Context, id string, msg []byte) error {
	n, err := addPending.Run(ctx, s.rdb, []string{s.sessionKey(id), s.pendingKey(id)}, msg, maxPending).Int()
	if err != nil {
		return unavailable("keep message", err)
	}
	if n == 0 {
		return login.ErrNotFound
	}
	return nil
}

// TakePending implements login.Store.
func (s *Store) TakePending(ctx context.Context, id string) ([][]byte, error) {
	key := s.pendingKey(id)
	var lr *redis.StringSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		lr = p.LRange(ctx, key, 0, -1)
		p.Del(ctx, key)
		return nil
	})
	if err != nil {
		return nil, unavailable("take messages", err)
	}
	var out [][]byte
	for _, m := range lr.Val() {
		out = append(out, []byte(m))
	}
	return out, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// encode renders a session for Redis; pushes live in their own list.
func encode(sess *login.Session) ([]byte, error) {
	c := *sess
	c.Pending = nil
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	return b, nil
}
