package dedup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/internal/redisurl"
)

// rememberScript sets KEYS[1] to ARGV[1] for ARGV[2] ms unless it exists, and
// returns 1 when the stored value equals ARGV[1], else 0. A script keeps the
// read and the write atomic across callback instances.
var rememberScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then return 1 end
return 0
`)

// Redis is a Store shared by every callback instance that uses the same
// Redis. Its keys are <REDIS_PREFIX>callback:<key>, so that the database can
// be shared.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedis returns a Store on rdb whose keys all start with prefix (the
// REDIS_PREFIX setting, for example "scanlogin:") and "callback:".
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix + "callback:"}
}

// Timeouts of a Redis opened by OpenRedis. They are short because the
// callback has 5 seconds in all: a slow Redis is a failed one.
const (
	redisDialTimeout = 500 * time.Millisecond
	redisIOTimeout   = 300 * time.Millisecond
)

// OpenRedis connects (lazily) to the Redis that url names (a single node,
// Sentinel or Cluster; see package redisurl) with short timeouts and no
// retries, and returns a Store on it whose keys start with prefix (see
// NewRedis). Close it when done.
func OpenRedis(url, prefix string) (*Redis, error) {
	rdb, err := redisurl.NewClient(url, func(o *redis.UniversalOptions) {
		o.DialTimeout = redisDialTimeout
		o.ReadTimeout = redisIOTimeout
		o.WriteTimeout = redisIOTimeout
		o.PoolTimeout = redisIOTimeout
		o.MaxRetries = -1
		o.DialerRetries = 1
	})
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	return NewRedis(rdb, prefix), nil
}

// Client is the Redis client, for other state the callback shares (the
// WeChat access token).
func (r *Redis) Client() redis.UniversalClient { return r.rdb }

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Close closes the client.
func (r *Redis) Close() error {
	if err := r.rdb.Close(); err != nil {
		return fmt.Errorf("close redis: %w", err)
	}
	return nil
}

// Remember implements Store.
func (r *Redis) Remember(ctx context.Context, key, digest string, ttl time.Duration) (bool, error) {
	n, err := rememberScript.Run(ctx, r.rdb, []string{r.prefix + key}, digest, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("redis remember: %w", err)
	}
	return n == 1, nil
}

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, key string, lease time.Duration) (bool, error) {
	ok, err := r.rdb.SetNX(ctx, r.prefix+key, pending, lease).Result()
	if err != nil {
		return false, fmt.Errorf("redis claim: %w", err)
	}
	return ok, nil
}

// Finish implements Store.
func (r *Redis) Finish(ctx context.Context, key, answer string, ttl time.Duration) error {
	if err := r.rdb.Set(ctx, r.prefix+key, done+answer, ttl).Err(); err != nil {
		return fmt.Errorf("redis finish: %w", err)
	}
	return nil
}

// Answer implements Store.
func (r *Redis) Answer(ctx context.Context, key string) (string, bool, error) {
	v, err := r.rdb.Get(ctx, r.prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("redis answer: %w", err)
	}
	if !strings.HasPrefix(v, done) {
		return "", false, nil
	}
	return v[len(done):], true, nil
}
