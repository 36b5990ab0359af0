package login

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Outcome is what Store.Apply did.
type Outcome struct {
	Result    Result   // ResultStored when accepted (the Service then tries to deliver)
	Duplicate bool     // the event id was accepted before
	Session   *Session // the session after the event; nil when not found
	// Rescan: accepted, but only the confirm secret changed; the browser
	// has nothing new to hear.
	Rescan bool
	// Confirm is the confirm secret an accepted two-step scan issued.
	Confirm string
}

// outcome is the Outcome of move on sess.
func outcome(m Move, sess *Session) Outcome {
	return Outcome{Result: m.Result, Duplicate: m.Duplicate, Session: sess, Rescan: m.Rescan, Confirm: m.Confirm}
}

// Store keeps login sessions. Implementations make every method atomic with
// respect to the others, across every instance that shares the store, and
// hand out copies.
type Store interface {
	// Create adds s; ErrExists if its id or scene is taken.
	Create(ctx context.Context, s *Session) error
	// Get returns the session with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Session, error)
	// Apply runs the state machine (Transition) for ev on the session
	// whose scene is ev.Scene, as one atomic step: of events racing on one
	// session, each decides on the state the one before it left. When the
	// event is accepted with a new state, render builds the message for
	// the browser, kept as Session.Last, in the same step.
	Apply(ctx context.Context, ev Event, now time.Time, render func(*Session) ([]byte, error)) (Outcome, error)
	// MarkDelivered records that Last reached a connection.
	MarkDelivered(ctx context.Context, id string) error
	// TakeLogin hands the login kept in session id to a resume, once: when
	// the session was confirmed at or after since and no resume took its
	// login before, it marks the session consumed (and Last delivered) and
	// returns Last; otherwise nil. ErrNotFound if the session is gone.
	TakeLogin(ctx context.Context, id string, since time.Time) ([]byte, error)
	// Expire ends a waiting or scanned session now (the browser asked for a
	// new code).
	Expire(ctx context.Context, id string, now time.Time) error
	// AddPending keeps msg for a browser that is away; the oldest is dropped
	// past a bound. ErrNotFound if the session is gone.
	AddPending(ctx context.Context, id string, msg []byte) error
	// TakePending removes and returns the kept messages, oldest first.
	TakePending(ctx context.Context, id string) ([][]byte, error)
}

// Memory is a Store in process memory, for a single instance. Sessions are
// forgotten Retain after they expire, so a late scan is still answered
// "expired" rather than "not found" for that long.
type Memory struct {
	retain time.Duration

	mu      sync.Mutex
	byID    map[string]*Session // guarded by mu
	byScene map[string]string   // scene → id; guarded by mu
}

// NewMemory returns an empty in-memory store that keeps sessions retain
// past their expiry.
func NewMemory(retain time.Duration) *Memory {
	return &Memory{retain: retain, byID: map[string]*Session{}, byScene: map[string]string{}}
}

// Create implements Store.
func (m *Memory) Create(_ context.Context, s *Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byID[s.ID]; ok {
		return fmt.Errorf("create %s: %w", s.ID, ErrExists)
	}
	if _, ok := m.byScene[s.Scene]; ok {
		return fmt.Errorf("create scene: %w", ErrExists)
	}
	m.byID[s.ID] = s.clone()
	m.byScene[s.Scene] = s.ID
	return nil
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.byID[id]
	if !ok {
		return nil, ErrNotFound
	}
	return s.clone(), nil
}

// Apply implements Store. The message is rendered (a token signed) outside
// the lock, so logins do not queue behind each other's signatures; if the
// session changed meanwhile, the event is applied again to the new state.
func (m *Memory) Apply(_ context.Context, ev Event, now time.Time, render func(*Session) ([]byte, error)) (Outcome, error) {
	for {
		m.mu.Lock()
		id, ok := m.byScene[ev.Scene]
		if !ok {
			m.mu.Unlock()
			return Outcome{Result: ResultNotFound}, nil
		}
		s := m.byID[id]
		rev := s.rev
		next := s.clone()
		m.mu.Unlock()

		move := Transition(next, ev, now)
		if !move.Changed {
			return outcome(move, next), nil
		}
		if !move.Rescan {
			msg, err := render(next)
			if err != nil {
				return Outcome{}, fmt.Errorf("render message: %w", err)
			}
			next.Last = msg
		}

		m.mu.Lock()
		if cur, ok := m.byID[id]; !ok || cur.rev != rev {
			m.mu.Unlock()
			continue // changed meanwhile: decide again on the new state
		}
		next.rev = rev + 1
		m.byID[id] = next
		m.mu.Unlock()
		return outcome(move, next.clone()), nil
	}
}

// MarkDelivered implements Store.
func (m *Memory) MarkDelivered(_ context.Context, id string) error {
	return m.update(id, func(s *Session) { s.Delivered = true })
}

// TakeLogin implements Store.
func (m *Memory) TakeLogin(_ context.Context, id string, since time.Time) ([]byte, error) {
	var out []byte
	err := m.update(id, func(s *Session) {
		if CanTakeLogin(s, since) {
			s.Consumed, s.Delivered = true, true
			out = s.Last
		}
	})
	return out, err
}

// Expire implements Store.
func (m *Memory) Expire(_ context.Context, id string, now time.Time) error {
	return m.update(id, func(s *Session) {
		if s.StateAt(now) == StateWaiting || s.StateAt(now) == StateScanned {
			s.ExpiresAt = now
		}
	})
}

// AddPending implements Store.
func (m *Memory) AddPending(_ context.Context, id string, msg []byte) error {
	return m.update(id, func(s *Session) {
		s.Pending = append(s.Pending, msg)
		if len(s.Pending) > maxPending {
			s.Pending = slices.Delete(s.Pending, 0, len(s.Pending)-maxPending)
		}
	})
}

// TakePending implements Store.
func (m *Memory) TakePending(_ context.Context, id string) ([][]byte, error) {
	var out [][]byte
	err := m.update(id, func(s *Session) { out, s.Pending = s.Pending, nil })
	return out, err
}

// update applies f to the stored session in place.
func (m *Memory) update(id string, f func(*Session)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.byID[id]
	if !ok {
		return ErrNotFound
	}
	f(s)
	s.rev++
	return nil
}

// Sweep forgets the sessions that expired more than Retain before now and
// reports how many it removed.
func (m *Memory) Sweep(now time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, s := range m.byID {
		if now.Sub(s.ExpiresAt) > m.retain {
			delete(m.byID, id)
			delete(m.byScene, s.Scene)
			n++
		}
	}
	return n
}

// Len reports how many sessions the store holds.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byID)
}

// RunSweeper calls Sweep every interval until ctx ends.
func (m *Memory) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.Sweep(now)
		}
	}
}

// clone returns a deep copy of s, so callers never share its slices.
func (s *Session) clone() *Session {
	c := *s
	if s.User != nil {
		u := *s.User
		c.User = &u
	}
	c.EventIDs = slices.Clone(s.EventIDs)
	c.Pending = slices.Clone(s.Pending)
	return &c
}
