// Package login holds scanlogin's login sessions: their state machine, the
// store they live in, and the Service that creates, resumes and completes
// them. It knows nothing about sockets: connections are reached through a
// Router.
package login

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
)

// State is where a login session stands.
type State string

// The states of a login session. waiting → scanned → confirmed | cancelled;
// waiting or scanned → expired when LOGIN_TTL passes.
const (
	StateWaiting   State = "waiting"
	StateScanned   State = "scanned"
	StateConfirmed State = "confirmed"
	StateCancelled State = "cancelled"
	StateExpired   State = "expired"
)

// States lists every state, for metrics.
var States = []State{StateWaiting, StateScanned, StateConfirmed, StateCancelled, StateExpired}

// Kind is what the WeChat user did, as reported by Notify.
type Kind int

// The kinds of events Notify reports.
const (
	KindSubscribe Kind = iota + 1 // new follower scanned: confirms
	KindScan                      // existing follower scanned: confirms
	KindScanned                   // two-step flow: scanned, awaiting confirmation
	KindConfirmed                 // two-step flow: confirmed
	KindCancelled                 // two-step flow: declined
)

// Result is the outcome of a Notify.
type Result int

// Notify results, as in the PushService contract.
const (
	ResultDelivered      Result = iota + 1 // accepted; a connected browser got it
	ResultStored                           // accepted; kept for the browser's resume
	ResultNotFound                         // no session with this scene
	ResultExpired                          // the QR code expired
	ResultTicketMismatch                   // not the ticket the QR code was made with
	ResultAlreadyUsed                      // confirmed or cancelled already, or claimed by another user
)

// String names the result for logs and metrics.
func (r Result) String() string {
	switch r {
	case ResultDelivered:
		return "delivered"
	case ResultStored:
		return "stored"
	case ResultNotFound:
		return "not_found"
	case ResultExpired:
		return "expired"
	case ResultTicketMismatch:
		return "ticket_mismatch"
	case ResultAlreadyUsed:
		return "already_used"
	}
	return "unknown"
}

// User is the WeChat user who scanned a code.
type User struct {
	OpenID    string `json:"openid"`
	UnionID   string `json:"unionid,omitempty"`
	Nickname  string `json:"nickname,omitempty"`
	AvatarURL string `json:"avatar_url,omitempty"`
}

// Event is one Notify: what a user did to the QR code of a scene.
type Event struct {
	Scene   string
	Ticket  string
	Kind    Kind
	User    User
	EventID string
}

// maxEventIDs bounds how many accepted event ids a session remembers; a
// session sees at most a scanned and a confirming event.
const maxEventIDs = 4

// maxPending bounds the messages kept for a browser that is away.
const maxPending = 32

// Session is one login attempt: a scene, its QR code, and what happened to it.
// Stores hand out copies; a Session value is never shared between goroutines.
type Session struct {
	ID         string    `json:"id"`
	ResumeHash []byte    `json:"resume_hash"` // SHA-256 of the resume secret; the secret itself is only given to the browser
	Scene      string    `json:"scene"`
	Ticket     string    `json:"ticket"`
	ScanURL    string    `json:"scan_url"` // what the QR image encodes; the image's URL derives from Ticket
	ExpiresAt  time.Time `json:"expires_at"`
	State      State     `json:"state"`
	User       *User     `json:"user,omitempty"`      // who scanned, confirmed or cancelled
	EventIDs   []string  `json:"event_ids,omitempty"` // accepted events, for idempotency
	// Last is the latest state message (scanned, login or cancelled),
	// resent on resume; State says which (LastFrame).
	Last      []byte `json:"last,omitempty"`
	Delivered bool   `json:"delivered,omitempty"` // Last reached a connection
	// ConfirmedAt is when the login was accepted: a resume may be handed
	// the login only shortly after.
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	// Consumed: a resume was handed the login; the session cannot be
	// resumed any more.
	Consumed bool     `json:"consumed,omitempty"`
	Pending  [][]byte `json:"pending,omitempty"` // pushes for a browser that is away

	rev uint64 // the Memory store's revision of this record: +1 on every change
}

// StateAt is the session's state at now: a waiting or scanned session whose
// time has passed is expired.
func (s *Session) StateAt(now time.Time) State {
	if (s.State == StateWaiting || s.State == StateScanned) && !now.Before(s.ExpiresAt) {
		return StateExpired
	}
	return s.State
}

// ResumeOK reports in constant time whether secret is the session's resume secret.
func (s *Session) ResumeOK(secret string) bool {
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], s.ResumeHash) == 1
}

// HashResume is how resume secrets are kept: only their SHA-256.
func HashResume(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Transition runs the state machine: it applies ev to s at now and reports the
// result and whether s changed. Rejected events leave s untouched. A
// duplicate (an event id s accepted before) changes nothing; its result is
// what the first call was answered.
func Transition(s *Session, ev Event, now time.Time) (res Result, duplicate, changed bool) {
	for _, id := range s.EventIDs {
		if id == ev.EventID {
			if s.Delivered {
				return ResultDelivered, true, false
			}
			return ResultStored, true, false
		}
	}
	if subtle.ConstantTimeCompare([]byte(ev.Ticket), []byte(s.Ticket)) != 1 {
		return ResultTicketMismatch, false, false
	}
	switch s.StateAt(now) {
	case StateExpired:
		return ResultExpired, false, false
	case StateConfirmed, StateCancelled:
		return ResultAlreadyUsed, false, false
	case StateScanned:
		if s.User == nil || s.User.OpenID != ev.User.OpenID {
			return ResultAlreadyUsed, false, false
		}
	}
	next := s.State
	switch ev.Kind {
	case KindSubscribe, KindScan, KindConfirmed:
		next = StateConfirmed
	case KindScanned:
		next = StateScanned
	case KindCancelled:
		next = StateCancelled
	}
	user := ev.User
	if next == StateConfirmed {
		s.ConfirmedAt = now
	}
	s.State = next
	s.User = &user
	s.Delivered = false
	s.EventIDs = append(s.EventIDs, ev.EventID)
	if len(s.EventIDs) > maxEventIDs {
		s.EventIDs = s.EventIDs[len(s.EventIDs)-maxEventIDs:]
	}
	return ResultStored, false, true
}

// Errors of stores and of the Service.
var (
	// ErrNotFound: no session with that id or scene.
	ErrNotFound = errors.New("login session not found")
	// ErrExists: a session with that id or scene exists already.
	ErrExists = errors.New("login session exists")
	// ErrUnavailable: the store cannot be reached; the caller may retry.
	ErrUnavailable = errors.New("session store unavailable")
)

// randomID returns n random bytes from crypto/rand as unpadded base64url:
// URL-safe, and within WeChat's scene_str alphabet [A-Za-z0-9_-].
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Lengths of the random identifiers, in bytes of entropy.
const (
	sceneBytes  = 18 // 144 bits, 24 characters: well within WeChat's 64
	idBytes     = 16 // 128 bits, 22 characters
	resumeBytes = 32 // 256 bits, 43 characters
)

// NewScene returns an unguessable scene for a QR code.
func NewScene() string { return randomID(sceneBytes) }

// NewSessionID returns an unguessable session id.
func NewSessionID() string { return randomID(idBytes) }

// NewResumeSecret returns an unguessable resume secret.
func NewResumeSecret() string { return randomID(resumeBytes) }

// CanTakeLogin reports whether a resume may be handed the login of s: s is
// confirmed, at or after since, and no resume took its login before.
func CanTakeLogin(s *Session, since time.Time) bool {
	return s.State == StateConfirmed && !s.Consumed && !s.ConfirmedAt.Before(since) && len(s.Last) > 0
}

// LastFrame is Last with its kind, which the state decides: a scanned
// session's Last is scanned, a confirmed one's the login, a cancelled one's
// cancelled. ok is false when there is none.
func (s *Session) LastFrame() (f browser.Frame, ok bool) {
	if len(s.Last) == 0 {
		return browser.Frame{}, false
	}
	switch s.State {
	case StateScanned:
		return browser.Frame{Kind: browser.KindScanned, JSON: s.Last}, true
	case StateConfirmed:
		return browser.Frame{Kind: browser.KindLogin, JSON: s.Last}, true
	case StateCancelled:
		return browser.Frame{Kind: browser.KindCancelled, JSON: s.Last}, true
	}
	return browser.Frame{}, false
}
