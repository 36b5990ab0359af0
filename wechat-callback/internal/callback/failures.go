package callback

import (
	"sync"
	"time"

	"github.com/scanlogin/scanlogin/wechat-callback/internal/config"
	"golang.org/x/time/rate"
)

// failureLimit limits decrypt failures per source address: one token bucket
// per address holding N tokens, refilled at N per period; each failure takes
// a token, and an address with none left has its encrypted requests refused
// before they are decrypted. WeChat's own requests decrypt, so only someone
// probing with the Token (an oracle attack needs tens of thousands of
// tries) runs dry. A nil *failureLimit limits nothing.
type failureLimit struct {
	every rate.Limit
	burst int
	per   time.Duration

	mu    sync.Mutex
	m     map[string]*rate.Limiter // guarded by mu
	swept time.Time                // guarded by mu
}

// newFailureLimit returns the limit for r, or nil for the zero Rate.
func newFailureLimit(r config.Rate) *failureLimit {
	if r.N == 0 {
		return nil
	}
	return &failureLimit{
		every: rate.Every(r.Per / time.Duration(r.N)),
		burst: r.N,
		per:   r.Per,
		m:     map[string]*rate.Limiter{},
	}
}

// blocked reports whether addr has no failure left at now, and when it will
// have one again.
func (f *failureLimit) blocked(addr string, now time.Time) (bool, time.Duration) {
	if f == nil {
		return false, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.m[addr]
	if l == nil {
		return false, 0
	}
	tokens := l.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) / float64(f.every) * float64(time.Second))
}

// failed counts a decrypt failure of addr at now. Now and then it drops the
// buckets that are full again, so memory follows the addresses that fail.
func (f *failureLimit) failed(addr string, now time.Time) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.swept) >= f.per {
		for k, l := range f.m {
			if l.TokensAt(now) >= float64(f.burst) {
				delete(f.m, k)
			}
		}
		f.swept = now
	}
	l := f.m[addr]
	if l == nil {
		l = rate.NewLimiter(f.every, f.burst)
		f.m[addr] = l
	}
	l.AllowN(now, 1)
}
