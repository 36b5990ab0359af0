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
	ResultForbidden                        // two-step flows: the confirm secret is wrong, or the user is not the scanner
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
	case ResultForbidden:
		return "forbidden"
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
	Ticket  string // the official account's ticket; none for a Mini Program code
	Kind    Kind
	User    User
	EventID string
	// Confirm is the confirm secret a scan issued, carried by KindConfirmed
	// and KindCancelled.
	Confirm string
}

// twoStep reports whether k is an event of a two-step flow.
func (k Kind) twoStep() bool { return k == KindScanned || k == KindConfirmed || k == KindCancelled }

// maxEventIDs bounds how many accepted event ids a session remembers: a
// scan, a few scans again by the same user, and a confirmation.
const maxEventIDs = 8

// maxPending bounds the messages kept for a browser that is away.
const maxPending = 32

// Session is one login attempt: a scene, its QR code, and what happened to it.
// Stores hand out copies; a Session value is never shared between goroutines.
type Session struct {
	ID         string `json:"id"`
	Flow       Flow   `json:"flow,omitempty"` // empty: FlowOA (sessions made before flows existed)
	ResumeHash []byte `json:"resume_hash"`    // SHA-256 of the resume secret; the secret itself is only given to the browser
	Scene      string `json:"scene"`
	// Ticket is what the issuer named the code with: the official
	// account's ticket, which Notify must present, or the key of a Mini
	// Program code's image.
	Ticket    string    `json:"ticket"`
	ScanURL   string    `json:"scan_url"` // what the QR image encodes; the image's URL derives from Ticket
	Requester Requester `json:"requester"`
	ExpiresAt time.Time `json:"expires_at"`
	State     State     `json:"state"`
	User      *User     `json:"user,omitempty"`      // who scanned, confirmed or cancelled; in two-step flows, bound at the scan
	EventIDs  []string  `json:"event_ids,omitempty"` // accepted events, for idempotency
	// ConfirmHash is the SHA-256 of the confirm secret the latest scan
	// issued, while the session is scanned; the secret itself is only
	// handed to the scanner's phone.
	ConfirmHash []byte `json:"confirm_hash,omitempty"`
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

// flow is the session's flow; sessions made before flows existed are FlowOA.
func (s *Session) flow() Flow {
	if s.Flow == "" {
		return FlowOA
	}
	return s.Flow
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
func HashResume(secret string) []byte { return hashSecret(secret) }

// hashSecret is how secrets are kept: only their SHA-256.
func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ConfirmOK reports in constant time whether secret is the confirm secret
// the session's latest scan issued.
func (s *Session) ConfirmOK(secret string) bool {
	if secret == "" || len(s.ConfirmHash) == 0 {
		return false
	}
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], s.ConfirmHash) == 1
}

// Move is what Transition did to a session.
type Move struct {
	Result    Result // ResultStored when accepted
	Duplicate bool   // the event id was accepted before; Result is the first answer
	Changed   bool   // the session changed and must be written back
	// Rescan: the scanner scanned again; only the confirm secret changed,
	// and the browser has nothing new to hear (Last stays).
	Rescan bool
	// Confirm is the confirm secret an accepted KindScanned issued. It
	// exists only here: the session keeps its hash.
	Confirm string
}

// Transition runs the state machine: it applies ev to s at now. Rejected
// events leave s untouched. A duplicate (an event id s accepted before)
// changes nothing; its result is what the first call was answered, without
// a confirm secret (only its hash was kept).
//
// One-step events (subscribe, scan) confirm a waiting official-account
// session. Two-step events: a scan (KindScanned) binds the scanner and
// issues a confirm secret; only that user, with that secret, confirms or
// cancels. The same user scanning again gets a new secret, which replaces
// the old one.
func Transition(s *Session, ev Event, now time.Time) Move {
	for _, id := range s.EventIDs {
		if id == ev.EventID {
			if s.Delivered {
				return Move{Result: ResultDelivered, Duplicate: true}
			}
			return Move{Result: ResultStored, Duplicate: true}
		}
	}
	if s.Flow == FlowMiniProgram {
		// No official account ever scans a Mini Program code.
		if !ev.Kind.twoStep() {
			return Move{Result: ResultTicketMismatch}
		}
	} else if s.Ticket == "" || subtle.ConstantTimeCompare([]byte(ev.Ticket), []byte(s.Ticket)) != 1 {
		return Move{Result: ResultTicketMismatch}
	}
	switch s.StateAt(now) {
	case StateExpired:
		return Move{Result: ResultExpired}
	case StateConfirmed, StateCancelled:
		return Move{Result: ResultAlreadyUsed}
	case StateScanned:
		return scannedMove(s, ev, now)
	}
	// Waiting.
	user := ev.User
	switch ev.Kind {
	case KindConfirmed, KindCancelled:
		return Move{Result: ResultForbidden} // no scan issued a secret yet
	case KindScanned:
		secret := NewConfirmSecret()
		s.State, s.User, s.ConfirmHash = StateScanned, &user, hashSecret(secret)
		return s.accept(ev.EventID, Move{Confirm: secret})
	}
	s.State, s.User, s.ConfirmedAt = StateConfirmed, &user, now
	return s.accept(ev.EventID, Move{})
}

// scannedMove is Transition for a session scanned by s.User.
func scannedMove(s *Session, ev Event, now time.Time) Move {
	same := s.User != nil && s.User.OpenID == ev.User.OpenID
	switch ev.Kind {
	case KindScanned:
		if !same {
			return Move{Result: ResultAlreadyUsed}
		}
		secret := NewConfirmSecret()
		s.ConfirmHash = hashSecret(secret)
		return s.accept(ev.EventID, Move{Rescan: true, Confirm: secret})
	case KindConfirmed, KindCancelled:
		if !same || !s.ConfirmOK(ev.Confirm) {
			return Move{Result: ResultForbidden}
		}
		s.ConfirmHash = nil // one use
		if ev.Kind == KindConfirmed {
			s.State, s.ConfirmedAt = StateConfirmed, now
		} else {
			s.State = StateCancelled
		}
		// The login is the scanner's, as bound at the scan.
		return s.accept(ev.EventID, Move{})
	}
	// A one-step event: only a confirmation moves a scanned session on.
	if same {
		return Move{Result: ResultForbidden}
	}
	return Move{Result: ResultAlreadyUsed}
}

// accept records the accepted event id in s and completes m. A new state
// has a new message for the browser, not delivered yet.
func (s *Session) accept(eventID string, m Move) Move {
	if !m.Rescan {
		s.Delivered = false
	}
	s.EventIDs = append(s.EventIDs, eventID)
	if len(s.EventIDs) > maxEventIDs {
		s.EventIDs = s.EventIDs[len(s.EventIDs)-maxEventIDs:]
	}
	m.Result, m.Changed = ResultStored, true
	return m
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
	sceneBytes   = 18 // 144 bits, 24 characters: within WeChat's 32 for Mini Program codes and 64 for QR codes
	idBytes      = 16 // 128 bits, 22 characters
	resumeBytes  = 32 // 256 bits, 43 characters
	confirmBytes = 32 // 256 bits, 43 characters
)

// NewScene returns an unguessable scene for a QR code.
func NewScene() string { return randomID(sceneBytes) }

// NewSessionID returns an unguessable session id.
func NewSessionID() string { return randomID(idBytes) }

// NewResumeSecret returns an unguessable resume secret.
func NewResumeSecret() string { return randomID(resumeBytes) }

// NewConfirmSecret returns an unguessable confirm secret.
func NewConfirmSecret() string { return randomID(confirmBytes) }

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
