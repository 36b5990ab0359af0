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
	if now.Sub(l.swept) >= l.per {
		// Drop the buckets that are full again, so that memory follows
		// the addresses active in the last period.
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
	if b.AllowN(now, 1) {
		return true, 0
	}
	wait := (1 - b.TokensAt(now)) / float64(l.every)
	return false, time.Duration(math.Ceil(wait * float64(time.Second)))
}
