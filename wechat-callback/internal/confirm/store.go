package confirm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store is the state a confirm API keeps between a scan and its
// confirmation, shared by every callback instance when it is Redis: which
// user a confirm secret belongs to, one-time values, counters. Keys are
// opaque strings chosen by the API (hashes: no secret is a key).
type Store interface {
	// Put stores value under key for ttl, replacing any value.
	Put(ctx context.Context, key, value string, ttl time.Duration) error
	// Get returns the value under key; ok is false when there is none.
	Get(ctx context.Context, key string) (value string, ok bool, err error)
	// Incr adds one to the counter under key, which starts at zero and
	// lives ttl from its first Incr, and returns the new count and the
	// time the counter has left.
	Incr(ctx context.Context, key string, ttl time.Duration) (n int64, left time.Duration, err error)
}

// maxMemoryEntries bounds a Memory store; past it Put and Incr fail (the
// APIs answer 503) until entries expire.
const maxMemoryEntries = 200_000

// Memory is a Store in this process, for a single callback instance.
type Memory struct {
	now func() time.Time

	mu    sync.Mutex
	m     map[string]*memEntry // guarded by mu
	swept time.Time            // guarded by mu
}

type memEntry struct {
	value   string
	n       int64
	expires time.Time
}

// NewMemory returns an empty Memory store on clock now (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, m: map[string]*memEntry{}}
}

var errMemoryFull = errors.New("confirm: memory store full")

// entry returns the live entry under key, creating it for ttl when create
// is set; mu must be held.
func (s *Memory) entry(key string, ttl time.Duration, create bool) (*memEntry, error) {
	now := s.now()
	if now.Sub(s.swept) >= time.Minute || len(s.m) >= maxMemoryEntries {
		for k, e := range s.m {
			if !now.Before(e.expires) {
				delete(s.m, k)
			}
		}
		s.swept = now
	}
	e, ok := s.m[key]
	if ok && now.Before(e.expires) {
		return e, nil
	}
	delete(s.m, key)
	if !create {
		return nil, nil
	}
	if len(s.m) >= maxMemoryEntries {
		return nil, errMemoryFull
	}
	e = &memEntry{expires: now.Add(ttl)}
	s.m[key] = e
	return e, nil
}

// Put implements Store.
func (s *Memory) Put(_ context.Context, key, value string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	e, err := s.entry(key, ttl, true)
	if err != nil {
		return err
	}
	e.value = value
	return nil
}

// Get implements Store.
func (s *Memory) Get(_ context.Context, key string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, _ := s.entry(key, 0, false)
	if e == nil {
		return "", false, nil
	}
	return e.value, true, nil
}

// Incr implements Store.
func (s *Memory) Incr(_ context.Context, key string, ttl time.Duration) (int64, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.entry(key, ttl, true)
	if err != nil {
		return 0, 0, err
	}
	e.n++
	return e.n, e.expires.Sub(s.now()), nil
}

// Len returns how many entries the store holds, expired ones included.
func (s *Memory) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// incrScript adds one to KEYS[1], sets its expiry to ARGV[1] ms when it is
// new, and returns the count and the time left in ms: one atomic step, so
// that instances racing on one scene count every scan.
var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
`)

// Redis is a Store shared by every callback instance on the same Redis.
// Its keys are <prefix><key>.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedis returns a Store on rdb whose keys start with prefix (the
// REDIS_PREFIX setting and the API's own part, such as "callback:mp:").
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix}
}

// Put implements Store.
func (s *Redis) Put(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.prefix+key, value, ttl).Err(); err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// Get implements Store.
func (s *Redis) Get(ctx context.Context, key string) (string, bool, error) {
	v, err := s.rdb.Get(ctx, s.prefix+key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("redis get: %w", err)
	}
	return v, true, nil
}

// Incr implements Store.
func (s *Redis) Incr(ctx context.Context, key string, ttl time.Duration) (int64, time.Duration, error) {
	v, err := incrScript.Run(ctx, s.rdb, []string{s.prefix + key}, ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("redis incr: %w", err)
	}
	if len(v) != 2 {
		return 0, 0, errors.New("redis incr: unexpected answer")
	}
	return v[0], time.Duration(max(v[1], 0)) * time.Millisecond, nil
}
