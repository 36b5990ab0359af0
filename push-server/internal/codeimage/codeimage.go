// Package codeimage keeps the images of Mini Program codes while their
// login sessions live, so that any instance can serve a browser the image
// of a code another instance created. WeChat's getwxacodeunlimit answers
// the image itself, not a URL, and is limited to 5,000 calls a minute per
// Mini Program: creating the image again on a miss would spend that quota.
package codeimage

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound: no image under that key (never stored, or expired).
var ErrNotFound = errors.New("code image not found")

// Store keeps images under keys for a time.
type Store interface {
	// Put stores img under key for ttl.
	Put(ctx context.Context, key string, img []byte, ttl time.Duration) error
	// Get returns the image under key and how long it is kept still, or
	// ErrNotFound.
	Get(ctx context.Context, key string) (img []byte, left time.Duration, err error)
}

// keyLen is the length of a key: 128 random bits in unpadded base64url.
const keyLen = 22

// NewKey returns a fresh unguessable key.
func NewKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidKey reports whether k has the shape of a key from NewKey, so that
// other strings are answered without a lookup.
func ValidKey(k string) bool {
	if len(k) != keyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Memory is a Store in this process's memory, for a single instance.
// Expired images are dropped by Sweep and never returned.
type Memory struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]memEntry // guarded by mu
}

type memEntry struct {
	img     []byte
	expires time.Time
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{now: time.Now, m: map[string]memEntry{}} }

// Put implements Store.
func (s *Memory) Put(_ context.Context, key string, img []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = memEntry{img: img, expires: s.now().Add(ttl)}
	return nil
}

// Get implements Store.
func (s *Memory) Get(_ context.Context, key string) ([]byte, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	left := e.expires.Sub(s.now())
	if !ok || left <= 0 {
		return nil, 0, ErrNotFound
	}
	return e.img, left, nil
}

// Sweep drops the images expired at now.
func (s *Memory) Sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.m {
		if !now.Before(e.expires) {
			delete(s.m, k)
		}
	}
}

// Len returns how many images are held, expired or not.
func (s *Memory) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Redis is a Store shared by every instance: one string key
// <prefix>wxacode:<key> per image, expiring with it.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedis returns a Store in rdb under prefix (e.g. "scanlogin:").
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix + "wxacode:"}
}

// Put implements Store.
func (s *Redis) Put(ctx context.Context, key string, img []byte, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.prefix+key, img, ttl).Err(); err != nil {
		return fmt.Errorf("store code image: %w", err)
	}
	return nil
}

// Get implements Store.
func (s *Redis) Get(ctx context.Context, key string) ([]byte, time.Duration, error) {
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, s.prefix+key)
		ttl = p.PTTL(ctx, s.prefix+key)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load code image: %w", err)
	}
	img, _ := get.Bytes()
	left := ttl.Val()
	if left <= 0 {
		// Expiring this very moment, or (never written so) kept for ever.
		left = 0
	}
	return img, left, nil
}
