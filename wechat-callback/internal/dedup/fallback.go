package dedup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is Fallback.Remember's error while the primary store is
// left alone after a failure.
var ErrUnavailable = errors.New("shared store unavailable")

// Fallback is the Store of a callback instance with a shared primary store
// (Redis) and its own memory (Local). After a primary failure the primary is
// left alone for Cooldown, so that an outage does not add a dial timeout to
// every request. OnError (when not nil) is told of each primary failure, for
// logs and metrics.
//
// Remember fails closed: a key is new only if neither Local nor the primary
// knows it, and an error when the primary cannot say. Keys Local learns
// while the primary fails are copied to the primary once it answers again,
// so that nothing remembered during an outage is forgotten.
//
// Claim, Finish and Answer are best effort: Local stands in while the
// primary fails, and answers go to both.
type Fallback struct {
	Primary  Store
	Local    *Memory
	Cooldown time.Duration
	OnError  func(error)

	downUntil atomic.Int64 // unix nanoseconds; the primary is skipped before it

	mu     sync.Mutex           // guards unsent
	unsent map[string]unsentKey // Remember keys the primary has not got yet
}

type unsentKey struct {
	digest  string
	expires time.Time
}

// Remember implements Nonces.
func (f *Fallback) Remember(ctx context.Context, key, digest string, ttl time.Duration) (bool, error) {
	if d, ok := f.Local.known(key); ok && d != digest {
		return false, nil // the primary may have lost it (restarted empty)
	}
	err := ErrUnavailable
	if f.up() {
		var ok bool
		if ok, err = f.Primary.Remember(ctx, key, digest, ttl); err == nil {
			if !ok {
				return false, nil
			}
			f.resend(ctx)
			return f.Local.Remember(ctx, key, digest, ttl)
		}
		f.failed(err)
	}
	// Keep the first body seen for the key here, and for the primary later:
	// another body under the key is refused, now and after the outage.
	if ok, _ := f.Local.Remember(ctx, key, digest, ttl); ok {
		f.mu.Lock()
		if _, queued := f.unsent[key]; !queued {
			if f.unsent == nil {
				f.unsent = make(map[string]unsentKey)
			}
			f.unsent[key] = unsentKey{digest, time.Now().Add(ttl)}
		}
		f.mu.Unlock()
	}
	return false, fmt.Errorf("replay memory: %w", err)
}

// resend copies to the primary the keys Local learnt while it failed.
func (f *Fallback) resend(ctx context.Context) {
	f.mu.Lock()
	batch := f.unsent
	f.unsent = nil
	f.mu.Unlock()
	for key, u := range batch {
		if ttl := time.Until(u.expires); ttl > 0 {
			if _, err := f.Primary.Remember(ctx, key, u.digest, ttl); err != nil {
				f.failed(err)
				f.mu.Lock()
				if f.unsent == nil {
					f.unsent = batch
				} else {
					maps.Copy(f.unsent, batch)
				}
				f.mu.Unlock()
				return
			}
		}
		delete(batch, key)
	}
}

// Claim implements Store. A key this instance has claimed or finished stays
// claimed even if the primary lost it.
func (f *Fallback) Claim(ctx context.Context, key string, lease time.Duration) (bool, error) {
	if ok, err := f.Local.Claim(ctx, key, lease); err != nil || !ok {
		return ok, err
	}
	if f.up() {
		ok, err := f.Primary.Claim(ctx, key, lease)
		if err == nil {
			return ok, nil
		}
		f.failed(err)
	}
	return true, nil
}

// Finish implements Store. The answer goes to both stores, also while the
// primary is left alone: copies that fell back find it in Local, other
// instances in the primary.
func (f *Fallback) Finish(ctx context.Context, key, answer string, ttl time.Duration) error {
	if err := f.Primary.Finish(ctx, key, answer, ttl); err != nil {
		f.failed(err)
	}
	return f.Local.Finish(ctx, key, answer, ttl)
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
	return f.Local.Answer(ctx, key)
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
