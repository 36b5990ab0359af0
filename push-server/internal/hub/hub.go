// Package hub knows who is online on this instance: which connections are
// attached to which login session and which user. It holds no sockets, only
// the small Conn interface, so it is cheap to test and never blocks.
package hub

import (
	"context"
	"sync"
)

// Conn is a connection as the hub sees it.
type Conn interface {
	// Send queues msg without blocking; false if the connection is closed
	// (a connection whose queue is full closes itself).
	Send(msg []byte) bool
	// Close closes the connection with a WebSocket close code.
	Close(code int, reason string)
}

// Hub is the registry of this instance's connections. Its zero value is not
// usable; call New.
type Hub struct {
	mu        sync.RWMutex
	bySession map[string]map[Conn]struct{} // guarded by mu
	byUser    map[string]map[Conn]struct{} // guarded by mu
	all       map[Conn]struct{}            // guarded by mu
}

// New returns an empty Hub.
func New() *Hub {
	return &Hub{
		bySession: map[string]map[Conn]struct{}{},
		byUser:    map[string]map[Conn]struct{}{},
		all:       map[Conn]struct{}{},
	}
}

// Add registers c, so CloseAll reaches it.
func (h *Hub) Add(c Conn) {
	h.mu.Lock()
	h.all[c] = struct{}{}
	h.mu.Unlock()
}

// Remove forgets c everywhere; sid and openid are what it was attached to
// ("" for none).
func (h *Hub) Remove(c Conn, sid, openid string) {
	h.mu.Lock()
	delete(h.all, c)
	detach(h.bySession, sid, c)
	detach(h.byUser, openid, c)
	h.mu.Unlock()
}

// AttachSession routes messages for login session sid to c.
func (h *Hub) AttachSession(sid string, c Conn) {
	h.mu.Lock()
	attach(h.bySession, sid, c)
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
	attach(h.byUser, openid, c)
	h.mu.Unlock()
}

// ToSession hands msg to every connection of session sid and reports how
// many took it.
func (h *Hub) ToSession(_ context.Context, sid string, msg []byte) (int, error) {
	return h.send(h.bySession, sid, msg), nil
}

// ToUser hands msg to every connection of user openid.
func (h *Hub) ToUser(_ context.Context, openid string, msg []byte) (int, error) {
	return h.send(h.byUser, openid, msg), nil
}

// Attached reports whether a connection is attached to session sid.
func (h *Hub) Attached(_ context.Context, sid string) (bool, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.bySession[sid]) > 0, nil
}

// Len reports how many connections are registered.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.all)
}

// CloseAll closes every registered connection with code.
func (h *Hub) CloseAll(code int, reason string) {
	h.mu.RLock()
	conns := make([]Conn, 0, len(h.all))
	for c := range h.all {
		conns = append(conns, c)
	}
	h.mu.RUnlock()
	for _, c := range conns {
		c.Close(code, reason)
	}
}

func (h *Hub) send(m map[string]map[Conn]struct{}, key string, msg []byte) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for c := range m[key] {
		if c.Send(msg) {
			n++
		}
	}
	return n
}

func attach(m map[string]map[Conn]struct{}, key string, c Conn) {
	set := m[key]
	if set == nil {
		set = make(map[Conn]struct{}, 1)
		m[key] = set
	}
	set[c] = struct{}{}
}

func detach(m map[string]map[Conn]struct{}, key string, c Conn) {
	if key == "" {
		return
	}
	if set := m[key]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

// Counts reports how many connections are attached to each session and to
// each user, so presence kept elsewhere can be rebuilt.
func (h *Hub) Counts() (sessions, users map[string]int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	sessions = make(map[string]int, len(h.bySession))
	for k, set := range h.bySession {
		sessions[k] = len(set)
	}
	users = make(map[string]int, len(h.byUser))
	for k, set := range h.byUser {
		users[k] = len(set)
	}
	return sessions, users
}
