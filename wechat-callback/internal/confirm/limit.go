package confirm

import (
	"math"
	"sync"
	"time"

	"github.com/scanlogin/scanlogin/internal/settings"
	"golang.org/x/time/rate"
)

// IPLimit allows each client address N requests at once, refilled at N per
// period (a token bucket per address), in this instance's memory. A nil
// *IPLimit limits nothing.
type IPLimit struct {
	every rate.Limit
	burst int
	per   time.Duration

	mu    sync.Mutex
	m     map[string]*rate.Limiter // guarded by mu
	swept time.Time                // guarded by mu
}

// NewIPLimit returns the limit for r, or nil for the zero Rate.
func NewIPLimit(r settings.Rate) *IPLimit {
	if r.N == 0 {
		return nil
	}
	return &IPLimit{
		every: rate.Every(r.Per / time.Duration(r.N)),
		burst: r.N,
		per:   r.Per,
		m:     map[string]*rate.Limiter{},
	}
}

// Allow takes one request of addr at now; when none is left it reports
// false and how long until one is.
func (l *IPLimit) Allow(addr string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(addr, now)
	if b.AllowN(now, 1) {
		return true, 0
	}
	return false, l.wait(b, now)
}

// Blocked reports, taking nothing, whether addr has none left at now, and
// how long until it has one.
func (l *IPLimit) Blocked(addr string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[addr]
	if b == nil || b.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, l.wait(b, now)
}

// bucket returns addr's bucket, made full when new. Once a period it drops
// the buckets that are full again, so that memory follows the addresses
// active in the last period. l.mu is held.
func (l *IPLimit) bucket(addr string, now time.Time) *rate.Limiter {
	if now.Sub(l.swept) >= l.per {
		for k, b := range l.m {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.m, k)
			}
		}
		l.swept = now
	}
	b := l.m[addr]
	if b == nil {
		b = rate.NewLimiter(l.every, l.burst)
		l.m[addr] = b
	}
	return b
}

// wait is how long until b has one again.
func (l *IPLimit) wait(b *rate.Limiter, now time.Time) time.Duration {
	w := (1 - b.TokensAt(now)) / float64(l.every)
	return time.Duration(math.Ceil(w * float64(time.Second)))
}
