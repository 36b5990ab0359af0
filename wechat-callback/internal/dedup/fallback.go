package dedup

import (
	"context"
	"sync/atomic"
	"time"
)

// Fallback is a Store that uses a primary store and, for every operation on
// which the primary fails, a secondary one. After a failure the primary is
// left alone for Cooldown, so that an outage does not add a dial timeout to
// every request. OnError (when not nil) is told of each primary failure, for
// logs and metrics.
type Fallback struct {
	Primary, Secondary Store
	Cooldown           time.Duration
	OnError            func(error)

	downUntil atomic.Int64 // unix nanoseconds; the primary is skipped before it
}

// Remember implements Store.
func (f *Fallback) Remember(ctx context.Context, key, digest string, ttl time.Duration) (bool, error) {
	if f.up() {
		ok, err := f.Primary.Remember(ctx, key, digest, ttl)
		if err == nil {
			return ok, nil
		}
		f.failed(err)
	}
	return f.Secondary.Remember(ctx, key, digest, ttl)
}

// Claim implements Store.
func (f *Fallback) Claim(ctx context.Context, key string, lease time.Duration) (bool, error) {
	if f.up() {
		ok, err := f.Primary.Claim(ctx, key, lease)
		if err == nil {
			return ok, nil
		}
		f.failed(err)
	}
	return f.Secondary.Claim(ctx, key, lease)
}

// Finish implements Store. The answer goes to the secondary store too, so
// that copies which fell back while the primary failed find it there.
func (f *Fallback) Finish(ctx context.Context, key, answer string, ttl time.Duration) error {
	if f.up() {
		if err := f.Primary.Finish(ctx, key, answer, ttl); err != nil {
			f.failed(err)
		}
	}
	return f.Secondary.Finish(ctx, key, answer, ttl)
}

// Answer implements Store.
func (f *Fallback) Answer(ctx context.Context, key string) (string, bool, error) {
	if f.up() {
		a, ok, err := f.Primary.Answer(ctx, key)
		if err == nil && ok {
			return a, ok, nil
		}
		if err != nil {
			f.failed(err)
		}
	}
	return f.Secondary.Answer(ctx, key)
}

func (f *Fallback) up() bool {
	return time.Now().UnixNano() >= f.downUntil.Load()
}

func (f *Fallback) failed(err error) {
	f.downUntil.Store(time.Now().Add(f.Cooldown).UnixNano())
	if f.OnError != nil {
		f.OnError(err)
	}
}
