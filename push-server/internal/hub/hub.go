// Package hub knows who is online on this instance: which browser
// connections are attached to which login session and which user. It holds
// no sockets, only the small Conn interface, so it is cheap to test and
// never blocks.
package hub

import (
	"context"
	"slices"
	"sync"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
)

// Conn is a browser connection as the hub sees it.
type Conn interface {
	// Send queues f without blocking; false if the connection is closed
	// (a connection whose queue is full closes itself). The connection acts
	// on f's kind (a login closes it, say).
	Send(f browser.Frame) bool
}

// Hub is the registry of this instance's connections. Almost every session
// has one connection, so each key holds a small slice rather than a set.
// Its zero value is not usable; call New.
type Hub struct {
	mu        sync.RWMutex
	bySession map[string][]Conn // guarded by mu
	byUser    map[string][]Conn // guarded by mu
}

// New returns an empty Hub.
func New() *Hub {
	return &Hub{bySession: map[string][]Conn{}, byUser: map[string][]Conn{}}
}

// Remove forgets c; sid and openid are what it was attached to ("" for none).
func (h *Hub) Remove(c Conn, sid, openid string) {
	h.mu.Lock()
	detach(h.bySession, sid, c)
	detach(h.byUser, openid, c)
	h.mu.Unlock()
}

// AttachSession routes messages for login session sid to c.
func (h *Hub) AttachSession(sid string, c Conn) {
	h.mu.Lock()
	h.bySession[sid] = append(h.bySession[sid], c)
	h.mu.Unlock()
}

// DetachSession stops routing messages for sid to c.
func (h *Hub) DetachSession(sid string, c Conn) {
	h.mu.Lock()
	detach(h.bySession, sid, c)
	h.mu.Unlock()
}

// AttachUser routes messages for the user openid to c.
func (h *Hub) AttachUser(openid string, c Conn) {
	h.mu.Lock()
	h.byUser[openid] = append(h.byUser[openid], c)
	h.mu.Unlock()
}

// ToSession hands f to every connection of session sid and reports how
// many took it.
func (h *Hub) ToSession(_ context.Context, sid string, f browser.Frame) (int, error) {
	return h.send(h.bySession, sid, f), nil
}

// ToUser hands f to every connection of user openid.
func (h *Hub) ToUser(_ context.Context, openid string, f browser.Frame) (int, error) {
	return h.send(h.byUser, openid, f), nil
}

// Attached reports whether a connection is attached to session sid.
func (h *Hub) Attached(_ context.Context, sid string) (bool, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.bySession[sid]) > 0, nil
}

// Counts reports how many connections are attached to each session and to
// each user, so presence kept elsewhere can be rebuilt.
func (h *Hub) Counts() (sessions, users map[string]int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	sessions = make(map[string]int, len(h.bySession))
	for k, cs := range h.bySession {
		sessions[k] = len(cs)
	}
	users = make(map[string]int, len(h.byUser))
	for k, cs := range h.byUser {
		users[k] = len(cs)
	}
	return sessions, users
}

func (h *Hub) send(m map[string][]Conn, key string, f browser.Frame) int {
	h.mu.RLock()
	conns := m[key]
	if len(conns) == 1 { // the common case, without a copy
		c := conns[0]
		h.mu.RUnlock()
		if c.Send(f) {
			return 1
		}
		return 0
	}
	conns = slices.Clone(conns) // Send outside the lock
	h.mu.RUnlock()
	n := 0
	for _, c := range conns {
		if c.Send(f) {
			n++
		}
	}
	return n
}

func detach(m map[string][]Conn, key string, c Conn) {
	if key == "" {
		return
	}
	cs := m[key]
	i := slices.Index(cs, c)
	if i < 0 {
		return
	}
	if len(cs) == 1 {
		delete(m, key)
		return
	}
	m[key] = slices.Delete(slices.Clone(cs), i, i+1)
}
