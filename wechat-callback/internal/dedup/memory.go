package dedup

import (
	"context"
	"strings"
	"sync"
	"time"
)

// sweepEvery is how often Memory drops expired entries.
const sweepEvery = time.Minute

// Memory is a Store for one process. The zero value is not usable; call
// NewMemory.
type Memory struct {
	now func() time.Time

	mu        sync.Mutex       // guards the fields below
	entries   map[string]entry // by key
	lastSweep time.Time
}

type entry struct {
	value   string
	expires time.Time
}

// NewMemory returns an empty in-process Store.
func NewMemory() *Memory {
	return &Memory{now: time.Now, entries: make(map[string]entry)}
}

// Remember implements Store.
func (m *Memory) Remember(_ context.Context, key, digest string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.get(key); ok {
		return e.value == digest, nil
	}
	m.set(key, digest, ttl)
	return true, nil
}

// known returns the digest Remember stored under key, without storing one.
func (m *Memory) known(key string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.get(key)
	return e.value, ok
}

// Claim implements Store.
func (m *Memory) Claim(_ context.Context, key string, lease time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.get(key); ok {
		return false, nil
	}
	m.set(key, pending, lease)
	return true, nil
}

// Finish implements Store.
func (m *Memory) Finish(_ context.Context, key, answer string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.set(key, done+answer, ttl)
	return nil
}

// Answer implements Store.
func (m *Memory) Answer(_ context.Context, key string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.get(key)
	if !ok || !strings.HasPrefix(e.value, done) {
		return "", false, nil
	}
	return e.value[len(done):], true, nil
}

// Len returns the number of live entries (for tests and metrics).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(true)
	return len(m.entries)
}

// get returns the live entry under key. m.mu must be held.
func (m *Memory) get(key string) (entry, bool) {
	e, ok := m.entries[key]
	if ok && !m.now().Before(e.expires) {
		delete(m.entries, key)
		return entry{}, false
	}
	return e, ok
}

// set stores value under key for ttl. m.mu must be held.
func (m *Memory) set(key, value string, ttl time.Duration) {
	m.sweep(false)
	m.entries[key] = entry{value: value, expires: m.now().Add(ttl)}
}

// sweep drops expired entries, at most once per sweepEvery unless forced.
// m.mu must be held.
func (m *Memory) sweep(force bool) {
	now := m.now()
	if !force && now.Sub(m.lastSweep) < sweepEvery {
		return
	}
	m.lastSweep = now
	for k, e := range m.entries {
		if !now.Before(e.expires) {
			delete(m.entries, k)
		}
	}
}
