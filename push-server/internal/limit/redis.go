package limit

import (
	"context"
	"fmt"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Shared is a Limiter whose buckets live in Redis (GCRA, through
// redis_rate), so a limit holds across every instance.
type Shared struct {
	l      *redis_rate.Limiter
	r      Rate
	prefix string
}

// NewShared returns a Limiter for r on Redis, with keys under prefix.
func NewShared(rdb redis.UniversalClient, r Rate, prefix string) *Shared {
	return &Shared{l: redis_rate.NewLimiter(rdb), r: r, prefix: prefix}
}

// Allow implements Limiter.
func (s *Shared) Allow(ctx context.Context, key string) (bool, error) {
	if s.r.N == 0 {
		return true, nil
	}
	res, err := s.l.Allow(ctx, s.prefix+key, redis_rate.Limit{Rate: s.r.N, Burst: s.r.N, Period: s.r.Per})
	if err != nil {
		return false, fmt.Errorf("rate limit: %w", err)
	}
	return res.Allowed > 0, nil
}
