// Package limit holds the per-client-IP limits of the push server: how many
// WebSockets one IP may hold open, and how many QR codes it may create per
// period (each costs WeChat quota: 100,000 a day per account).
package limit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/scanlogin/scanlogin/internal/settings"
)

// Rate is the LIMIT_QR_PER_IP setting: N per Per, the zero Rate meaning no
// limit.
type Rate = settings.Rate

// Limiter decides whether one more event for key is allowed now.
type Limiter interface {
	Allow(ctx context.Context, key string) (bool, error)
}

// Buckets is an in-memory Limiter: one token bucket per key holding r.N
// tokens, refilled at r.N per r.Per. Buckets idle long enough to be full
// again are dropped by Sweep.
type Buckets struct {
	r   Rate
	now func() time.Time

	mu sync.Mutex
	m  map[string]*rate.Limiter // guarded by mu
}

// NewBuckets returns a Limiter for r; a zero r allows everything.
func NewBuckets(r Rate) *Buckets {
	return &Buckets{r: r, now: time.Now, m: map[string]*rate.Limiter{}}
}

// Allow implements Limiter.
func (b *Buckets) Allow(_ context.Context, key string) (bool, error) {
	if b.r.N == 0 {
		return true, nil
	}
	b.mu.Lock()
	l := b.m[key]
	if l == nil {
		l = rate.NewLimiter(rate.Every(b.r.Per/time.Duration(b.r.N)), b.r.N)
		b.m[key] = l
	}
	b.mu.Unlock()
	return l.AllowN(b.now(), 1), nil
}

// Sweep drops the buckets that are full again, so memory follows the active
// clients only.
func (b *Buckets) Sweep() {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, l := range b.m {
		if l.TokensAt(now) >= float64(b.r.N) {
			delete(b.m, k)
		}
	}
}

// Conns counts open connections per key and refuses past a maximum.
type Conns struct {
	max int // 0: no limit

	mu sync.Mutex
	n  map[string]int // guarded by mu
}

// NewConns returns a counter allowing max open connections per key; 0 means
// no limit.
func NewConns(max int) *Conns { return &Conns{max: max, n: map[string]int{}} }

// Acquire takes a slot for key; false when key is at its maximum.
func (c *Conns) Acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.n[key] >= c.max {
		return false
	}
	c.n[key]++
	return true
}

// Release gives back a slot taken by Acquire.
func (c *Conns) Release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] <= 1 {
		delete(c.n, key)
		return
	}
	c.n[key]--
}
