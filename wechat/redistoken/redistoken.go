// Package redistoken is a wechat.TokenCache in Redis, so every process of
// an account (push servers, callbacks) uses one access token instead of
// fetching their own.
package redistoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/wechat"
)

// Cache keeps the token of one account under one key, expiring with it.
type Cache struct {
	rdb redis.UniversalClient
	key string
}

// New returns a cache for the account appID under prefix (e.g. "scanlogin:").
func New(rdb redis.UniversalClient, prefix, appID string) *Cache {
	return &Cache{rdb: rdb, key: prefix + "wechat:token:" + appID}
}

type entry struct {
	Value     string `json:"v"`
	ExpiresAt int64  `json:"e"` // unix ms
}

// Load implements wechat.TokenCache.
func (c *Cache) Load(ctx context.Context) (wechat.Token, bool, error) {
	b, err := c.rdb.Get(ctx, c.key).Bytes()
	if errors.Is(err, redis.Nil) {
		return wechat.Token{}, false, nil
	}
	if err != nil {
		return wechat.Token{}, false, fmt.Errorf("load token: %w", err)
	}
	var e entry
	if err := json.Unmarshal(b, &e); err != nil {
		return wechat.Token{}, false, fmt.Errorf("decode token: %w", err)
	}
	return wechat.Token{Value: e.Value, ExpiresAt: time.UnixMilli(e.ExpiresAt)}, true, nil
}

// Store implements wechat.TokenCache.
func (c *Cache) Store(ctx context.Context, t wechat.Token) error {
	ttl := time.Until(t.ExpiresAt)
	if ttl <= 0 {
		return nil
	}
	b, _ := json.Marshal(entry{Value: t.Value, ExpiresAt: t.ExpiresAt.UnixMilli()})
	if err := c.rdb.Set(ctx, c.key, b, ttl).Err(); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	return nil
}

// invalidate deletes the key only while it still holds the given token.
var invalidate = redis.NewScript(`
local b = redis.call('GET', KEYS[1])
if not b then return 0 end
if cjson.decode(b)['v'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Invalidate implements wechat.TokenCache.
func (c *Cache) Invalidate(ctx context.Context, value string) error {
	if err := invalidate.Run(ctx, c.rdb, []string{c.key}, value).Err(); err != nil {
		return fmt.Errorf("invalidate token: %w", err)
	}
	return nil
}
