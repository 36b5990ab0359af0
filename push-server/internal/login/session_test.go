package login

import (
	"regexp"
	"testing"
	"time"
)

func TestTransition(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	alice := User{OpenID: "alice"}
	bob := User{OpenID: "bob"}
	waiting := func() *Session {
		return &Session{ID: "s", Scene: "sc", Ticket: "T+/=", State: StateWaiting, ExpiresAt: now.Add(time.Minute)}
	}
	scannedBy := func(u User) *Session {
		s := waiting()
		s.State, s.User, s.EventIDs = StateScanned, &u, []string{"e0"}
		return s
	}
	with := func(s *Session, f func(*Session)) *Session { f(s); return s }
	ev := func(k Kind, u User, id string) Event {
		return Event{Scene: "sc", Ticket: "T+/=", Kind: k, User: u, EventID: id}
	}

	tests := []struct {
		name      string
		s         *Session
		ev        Event
		at        time.Time
		want      Result
		dup       bool
		wantState State
	}{
		{"subscribe confirms", waiting(), ev(KindSubscribe, alice, "e1"), now, ResultStored, false, StateConfirmed},
		{"scan confirms", waiting(), ev(KindScan, alice, "e1"), now, ResultStored, false, StateConfirmed},
		{"confirmed without scanned", waiting(), ev(KindConfirmed, alice, "e1"), now, ResultStored, false, StateConfirmed},
		{"scanned", waiting(), ev(KindScanned, alice, "e1"), now, ResultStored, false, StateScanned},
		{"cancel while waiting", waiting(), ev(KindCancelled, alice, "e1"), now, ResultStored, false, StateCancelled},
		{"confirm after scanned by same user", scannedBy(alice), ev(KindConfirmed, alice, "e1"), now, ResultStored, false, StateConfirmed},
		{"cancel after scanned by same user", scannedBy(alice), ev(KindCancelled, alice, "e1"), now, ResultStored, false, StateCancelled},
		{"confirm by another user", scannedBy(alice), ev(KindConfirmed, bob, "e1"), now, ResultAlreadyUsed, false, StateScanned},
		{"scanned by another user", scannedBy(alice), ev(KindScanned, bob, "e1"), now, ResultAlreadyUsed, false, StateScanned},
		{"wrong ticket", waiting(), Event{Scene: "sc", Ticket: "other", Kind: KindScan, User: alice, EventID: "e1"}, now, ResultTicketMismatch, false, StateWaiting},
		{"empty ticket", waiting(), Event{Scene: "sc", Kind: KindScan, User: alice, EventID: "e1"}, now, ResultTicketMismatch, false, StateWaiting},
		{"expired", waiting(), ev(KindScan, alice, "e1"), now.Add(time.Minute), ResultExpired, false, StateWaiting},
		{"expired while scanned", scannedBy(alice), ev(KindConfirmed, alice, "e1"), now.Add(2 * time.Minute), ResultExpired, false, StateScanned},
		{"already confirmed", with(waiting(), func(s *Session) { s.State, s.User, s.EventIDs = StateConfirmed, &alice, []string{"e0"} }), ev(KindScan, bob, "e1"), now, ResultAlreadyUsed, false, StateConfirmed},
		{"already cancelled", with(waiting(), func(s *Session) { s.State, s.EventIDs = StateCancelled, []string{"e0"} }), ev(KindScan, alice, "e1"), now, ResultAlreadyUsed, false, StateCancelled},
		{"duplicate stored", with(waiting(), func(s *Session) { s.State, s.User, s.EventIDs = StateConfirmed, &alice, []string{"e1"} }), ev(KindScan, alice, "e1"), now, ResultStored, true, StateConfirmed},
		{"duplicate delivered", with(waiting(), func(s *Session) {
			s.State, s.User, s.EventIDs, s.Delivered = StateConfirmed, &alice, []string{"e1"}, true
		}), ev(KindScan, alice, "e1"), now, ResultDelivered, true, StateConfirmed},
		{"duplicate after expiry still answered", with(waiting(), func(s *Session) { s.State, s.User, s.EventIDs = StateConfirmed, &alice, []string{"e1"} }), ev(KindScan, alice, "e1"), now.Add(time.Hour), ResultStored, true, StateConfirmed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.s.clone()
			res, dup, changed := Transition(tt.s, tt.ev, tt.at)
			if res != tt.want || dup != tt.dup {
				t.Fatalf("apply = %v dup=%v, want %v dup=%v", res, dup, tt.want, tt.dup)
			}
			if tt.s.State != tt.wantState {
				t.Errorf("state = %s, want %s", tt.s.State, tt.wantState)
			}
			if !changed {
				if tt.s.State != before.State || len(tt.s.EventIDs) != len(before.EventIDs) || (tt.s.User == nil) != (before.User == nil) {
					t.Errorf("rejected event changed the session: %+v → %+v", before, tt.s)
				}
				return
			}
			if tt.s.User == nil || tt.s.User.OpenID != tt.ev.User.OpenID {
				t.Errorf("user = %+v, want %s", tt.s.User, tt.ev.User.OpenID)
			}
			if got := tt.s.EventIDs[len(tt.s.EventIDs)-1]; got != tt.ev.EventID {
				t.Errorf("last event id = %q", got)
			}
		})
	}
}

func TestStateAt(t *testing.T) {
	now := time.Now()
	s := &Session{State: StateScanned, ExpiresAt: now}
	if got := s.StateAt(now.Add(-time.Nanosecond)); got != StateScanned {
		t.Errorf("before expiry: %s", got)
	}
	if got := s.StateAt(now); got != StateExpired {
		t.Errorf("at expiry: %s", got)
	}
	s.State = StateConfirmed
	if got := s.StateAt(now.Add(time.Hour)); got != StateConfirmed {
		t.Errorf("confirmed sessions do not expire: %s", got)
	}
}

func TestRandomIDs(t *testing.T) {
	alphabet := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	tests := []struct {
		name    string
		gen     func() string
		minBits int
		maxLen  int
	}{
		{"scene", NewScene, 128, 64},
		{"session", NewSessionID, 128, 64},
		{"resume", NewResumeSecret, 256, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]bool{}
			for range 10000 {
				s := tt.gen()
				if !alphabet.MatchString(s) || len(s) > tt.maxLen {
					t.Fatalf("%q: not URL-safe or longer than %d", s, tt.maxLen)
				}
				if bits := len(s) * 6; bits < tt.minBits {
					t.Fatalf("%q carries %d bits, want ≥ %d", s, bits, tt.minBits)
				}
				if seen[s] {
					t.Fatalf("duplicate %q", s)
				}
				seen[s] = true
			}
		})
	}
}

func TestResumeOK(t *testing.T) {
	s := &Session{ResumeHash: HashResume("secret")}
	if !s.ResumeOK("secret") || s.ResumeOK("secreT") || s.ResumeOK("") {
		t.Fatal("ResumeOK does not match exactly the secret")
	}
}
