package wechat

import (
	"context"
	"sync"
	"time"
)

// Token is a cached access token. ExpiresAt is when the client stops using
// it, already a safety margin before WeChat's own expiry; a shared cache
// may use it as its TTL.
type Token struct {
	Value     string
	ExpiresAt time.Time
}

// TokenCache stores the access token between calls. WeChat allows few token
// fetches a day and each account should have one token holder, so processes
// that share an account should share a cache (for example in Redis).
// Implementations must be safe for concurrent use.
type TokenCache interface {
	// Load returns the cached token; ok is false when there is none.
	// The client checks ExpiresAt itself.
	Load(ctx context.Context) (t Token, ok bool, err error)
	// Store replaces the cached token.
	Store(ctx context.Context, t Token) error
	// Invalidate forgets the cached token only if it is still value
	// (compare-and-invalidate), so that a caller holding a stale token
	// never drops a newer one that another caller has just stored.
	Invalidate(ctx context.Context, value string) error
}

// MemoryTokenCache is a TokenCache for one process. The zero value is an
// empty cache ready to use; it is the default of [Config].Tokens.
type MemoryTokenCache struct {
	mu sync.Mutex
	t  Token
	ok bool
}

// Load implements TokenCache.
func (m *MemoryTokenCache) Load(context.Context) (Token, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t, m.ok, nil
}

// Store implements TokenCache.
func (m *MemoryTokenCache) Store(_ context.Context, t Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t, m.ok = t, true
	return nil
}

// Invalidate implements TokenCache.
func (m *MemoryTokenCache) Invalidate(_ context.Context, value string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ok && m.t.Value == value {
		m.t, m.ok = Token{}, false
	}
	return nil
}
