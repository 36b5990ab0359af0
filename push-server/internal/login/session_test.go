package login

import (
	"bytes"
	"reflect"
	"regexp"
	"testing"
	"time"
)

func TestTransition(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	alice := User{OpenID: "alice", UnionID: "u-alice"}
	bob := User{OpenID: "bob"}
	secret, wrong := NewConfirmSecret(), NewConfirmSecret()
	const ticket = "T+/="

	// in makes a session of flow in state st; a scanned (or later) one was
	// scanned by alice, who was issued secret.
	in := func(flow Flow, st State) *Session {
		s := &Session{ID: "s", Flow: flow, Scene: "sc", Ticket: ticket, State: StateWaiting, ExpiresAt: now.Add(time.Minute)}
		if flow == FlowMiniProgram {
			s.Ticket = "image-key"
		}
		if st == StateWaiting {
			return s
		}
		u := alice
		s.State, s.User, s.EventIDs, s.ConfirmHash, s.Last = st, &u, []string{"e0"}, hashSecret(secret), []byte("last")
		switch st {
		case StateConfirmed:
			s.ConfirmHash, s.ConfirmedAt, s.EventIDs = nil, now.Add(-time.Second), []string{"e0", "e1"}
		case StateCancelled:
			s.ConfirmHash, s.EventIDs = nil, []string{"e0", "e1"}
		}
		return s
	}
	ev := func(k Kind, u User, confirm string) Event {
		return Event{Scene: "sc", Ticket: ticket, Kind: k, User: u, EventID: "e9", Confirm: confirm}
	}
	with := func(e Event, f func(*Event)) Event { f(&e); return e }
	later := now.Add(2 * time.Minute)

	const (
		both = iota
		oaOnly
		mpOnly
	)
	tests := []struct {
		name      string
		flows     int
		state     State
		ev        Event
		at        time.Time
		want      Result
		wantState State
	}{
		// Waiting.
		{"waiting: scanned", both, StateWaiting, ev(KindScanned, alice, ""), now, ResultStored, StateScanned},
		{"waiting: confirmed without a scan", both, StateWaiting, ev(KindConfirmed, alice, secret), now, ResultForbidden, StateWaiting},
		{"waiting: confirmed, no secret", both, StateWaiting, ev(KindConfirmed, alice, ""), now, ResultForbidden, StateWaiting},
		{"waiting: cancelled without a scan", both, StateWaiting, ev(KindCancelled, alice, secret), now, ResultForbidden, StateWaiting},
		{"waiting: subscribe confirms", oaOnly, StateWaiting, ev(KindSubscribe, alice, ""), now, ResultStored, StateConfirmed},
		{"waiting: scan confirms", oaOnly, StateWaiting, ev(KindScan, alice, ""), now, ResultStored, StateConfirmed},
		{"waiting: wrong ticket", oaOnly, StateWaiting, with(ev(KindScan, alice, ""), func(e *Event) { e.Ticket = "other" }), now, ResultTicketMismatch, StateWaiting},
		{"waiting: no ticket", oaOnly, StateWaiting, with(ev(KindScanned, alice, ""), func(e *Event) { e.Ticket = "" }), now, ResultTicketMismatch, StateWaiting},
		{"waiting: mini program scanned without a ticket", mpOnly, StateWaiting, with(ev(KindScanned, alice, ""), func(e *Event) { e.Ticket = "" }), now, ResultStored, StateScanned},
		{"waiting: mini program code scanned by an official account", mpOnly, StateWaiting, ev(KindScan, alice, ""), now, ResultTicketMismatch, StateWaiting},
		{"waiting: mini program code subscribed", mpOnly, StateWaiting, ev(KindSubscribe, alice, ""), now, ResultTicketMismatch, StateWaiting},
		{"waiting: expired", both, StateWaiting, ev(KindScanned, alice, ""), later, ResultExpired, StateWaiting},

		// Scanned by alice, who holds secret.
		{"scanned: same user scans again", both, StateScanned, ev(KindScanned, alice, ""), now, ResultStored, StateScanned},
		{"scanned: another user scans", both, StateScanned, ev(KindScanned, bob, ""), now, ResultAlreadyUsed, StateScanned},
		{"scanned: confirmed, same user, right secret", both, StateScanned, ev(KindConfirmed, alice, secret), now, ResultStored, StateConfirmed},
		{"scanned: confirmed, same user, wrong secret", both, StateScanned, ev(KindConfirmed, alice, wrong), now, ResultForbidden, StateScanned},
		{"scanned: confirmed, same user, no secret", both, StateScanned, ev(KindConfirmed, alice, ""), now, ResultForbidden, StateScanned},
		{"scanned: confirmed, other user, right secret", both, StateScanned, ev(KindConfirmed, bob, secret), now, ResultForbidden, StateScanned},
		{"scanned: confirmed, other user, wrong secret", both, StateScanned, ev(KindConfirmed, bob, wrong), now, ResultForbidden, StateScanned},
		{"scanned: cancelled, same user, right secret", both, StateScanned, ev(KindCancelled, alice, secret), now, ResultStored, StateCancelled},
		{"scanned: cancelled, same user, wrong secret", both, StateScanned, ev(KindCancelled, alice, wrong), now, ResultForbidden, StateScanned},
		{"scanned: cancelled, other user, right secret", both, StateScanned, ev(KindCancelled, bob, secret), now, ResultForbidden, StateScanned},
		{"scanned: cancelled, other user, wrong secret", both, StateScanned, ev(KindCancelled, bob, wrong), now, ResultForbidden, StateScanned},
		{"scanned: one-step scan by the scanner", oaOnly, StateScanned, ev(KindScan, alice, ""), now, ResultForbidden, StateScanned},
		{"scanned: one-step scan by another user", oaOnly, StateScanned, ev(KindSubscribe, bob, ""), now, ResultAlreadyUsed, StateScanned},
		{"scanned: right secret, wrong ticket", oaOnly, StateScanned, with(ev(KindConfirmed, alice, secret), func(e *Event) { e.Ticket = "other" }), now, ResultTicketMismatch, StateScanned},
		{"scanned: mini program confirmed without a ticket", mpOnly, StateScanned, with(ev(KindConfirmed, alice, secret), func(e *Event) { e.Ticket = "" }), now, ResultStored, StateConfirmed},

		// Confirmed and cancelled: nothing moves them.
		{"confirmed: same user scans", both, StateConfirmed, ev(KindScanned, alice, ""), now, ResultAlreadyUsed, StateConfirmed},
		{"confirmed: another user scans", both, StateConfirmed, ev(KindScanned, bob, ""), now, ResultAlreadyUsed, StateConfirmed},
		{"confirmed: confirmed again with the used secret", both, StateConfirmed, ev(KindConfirmed, alice, secret), now, ResultAlreadyUsed, StateConfirmed},
		{"confirmed: cancelled with the used secret", both, StateConfirmed, ev(KindCancelled, alice, secret), now, ResultAlreadyUsed, StateConfirmed},
		{"confirmed: other user, wrong secret", both, StateConfirmed, ev(KindConfirmed, bob, wrong), now, ResultAlreadyUsed, StateConfirmed},
		{"confirmed: one-step scan", oaOnly, StateConfirmed, ev(KindScan, bob, ""), now, ResultAlreadyUsed, StateConfirmed},
		{"confirmed: expiry does not matter", both, StateConfirmed, ev(KindScanned, bob, ""), later, ResultAlreadyUsed, StateConfirmed},
		{"cancelled: same user scans", both, StateCancelled, ev(KindScanned, alice, ""), now, ResultAlreadyUsed, StateCancelled},
		{"cancelled: another user scans", both, StateCancelled, ev(KindScanned, bob, ""), now, ResultAlreadyUsed, StateCancelled},
		{"cancelled: confirm after cancel", both, StateCancelled, ev(KindConfirmed, alice, secret), now, ResultAlreadyUsed, StateCancelled},
		{"cancelled: cancelled again", both, StateCancelled, ev(KindCancelled, alice, secret), now, ResultAlreadyUsed, StateCancelled},
		{"cancelled: other user, wrong secret", both, StateCancelled, ev(KindConfirmed, bob, wrong), now, ResultAlreadyUsed, StateCancelled},
		{"cancelled: one-step scan", oaOnly, StateCancelled, ev(KindScan, alice, ""), now, ResultAlreadyUsed, StateCancelled},

		// Expired while scanned.
		{"expired: same user scans again", both, StateScanned, ev(KindScanned, alice, ""), later, ResultExpired, StateScanned},
		{"expired: another user scans", both, StateScanned, ev(KindScanned, bob, ""), later, ResultExpired, StateScanned},
		{"expired: confirmed, right secret", both, StateScanned, ev(KindConfirmed, alice, secret), later, ResultExpired, StateScanned},
		{"expired: cancelled, right secret", both, StateScanned, ev(KindCancelled, alice, secret), later, ResultExpired, StateScanned},
		{"expired: confirmed, other user, wrong secret", both, StateScanned, ev(KindConfirmed, bob, wrong), later, ResultExpired, StateScanned},
	}
	for _, tt := range tests {
		for _, flow := range []Flow{FlowOA, FlowMiniProgram} {
			if tt.flows == oaOnly && flow != FlowOA || tt.flows == mpOnly && flow != FlowMiniProgram {
				continue
			}
			t.Run(string(flow)+"/"+tt.name, func(t *testing.T) {
				s := in(flow, tt.state)
				before := s.clone()
				m := Transition(s, tt.ev, tt.at)
				if m.Result != tt.want || m.Duplicate {
					t.Fatalf("Transition = %+v, want %v", m, tt.want)
				}
				if s.State != tt.wantState {
					t.Errorf("state = %s, want %s", s.State, tt.wantState)
				}
				if !m.Changed {
					if m.Confirm != "" || !reflect.DeepEqual(s, before) {
						t.Errorf("a rejected event changed the session or issued a secret: %+v → %+v", before, s)
					}
					return
				}
				if got := s.EventIDs[len(s.EventIDs)-1]; got != tt.ev.EventID {
					t.Errorf("last event id = %q", got)
				}
				// The user is the one who scanned first; a confirmation
				// keeps the user bound at the scan.
				if s.User == nil || s.User.OpenID != "alice" || (tt.state == StateScanned && *s.User != alice) {
					t.Errorf("user = %+v, want alice", s.User)
				}
				switch {
				case tt.ev.Kind == KindScanned:
					if !ValidConfirm(m.Confirm) || m.Confirm == secret || !s.ConfirmOK(m.Confirm) || s.ConfirmOK(secret) {
						t.Errorf("scan issued %q; the session must keep only the new one's hash", m.Confirm)
					}
					if bytes.Contains(s.ConfirmHash, []byte(m.Confirm)) {
						t.Error("the session holds the secret itself")
					}
					if rescan := tt.state == StateScanned; m.Rescan != rescan || rescan && (string(s.Last) != "last" || s.Delivered != before.Delivered) {
						t.Errorf("rescan = %v, last %q delivered %v: a scan again has nothing new for the browser", m.Rescan, s.Last, s.Delivered)
					}
				case m.Confirm != "" || m.Rescan || s.ConfirmHash != nil || s.Delivered:
					t.Errorf("after %v: confirm %q, rescan %v, hash %x, delivered %v; want the secret spent", tt.ev.Kind, m.Confirm, m.Rescan, s.ConfirmHash, s.Delivered)
				}
				if s.State == StateConfirmed && !s.ConfirmedAt.Equal(tt.at) {
					t.Errorf("confirmed at %v, want %v", s.ConfirmedAt, tt.at)
				}
			})
		}
	}
}

// A repeated event id is answered as the first time, changes nothing, and
// carries no secret: only its hash was kept.
func TestTransitionDuplicate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, flow := range []Flow{FlowOA, FlowMiniProgram} {
		s := &Session{Flow: flow, Scene: "sc", Ticket: "T", State: StateWaiting, ExpiresAt: now.Add(time.Minute)}
		scan := Event{Scene: "sc", Ticket: "T", Kind: KindScanned, User: User{OpenID: "alice"}, EventID: "e1"}
		first := Transition(s, scan, now)
		if first.Result != ResultStored || first.Confirm == "" {
			t.Fatalf("%s: first = %+v", flow, first)
		}
		for _, at := range []time.Time{now, now.Add(time.Hour)} {
			before := s.clone()
			m := Transition(s, scan, at)
			if m != (Move{Result: ResultStored, Duplicate: true}) || !reflect.DeepEqual(s, before) {
				t.Fatalf("%s: duplicate at %v = %+v, session %+v", flow, at, m, s)
			}
		}
		s.Delivered = true
		if m := Transition(s, scan, now); m != (Move{Result: ResultDelivered, Duplicate: true}) {
			t.Fatalf("%s: duplicate after delivery = %+v", flow, m)
		}
		// A duplicate of the confirmation, even with another secret, is
		// answered as the first; it is not a new confirmation.
		conf := Event{Scene: "sc", Ticket: "T", Kind: KindConfirmed, User: User{OpenID: "alice"}, EventID: "e2", Confirm: first.Confirm}
		if m := Transition(s, conf, now); m.Result != ResultStored || m.Duplicate {
			t.Fatalf("%s: confirm = %+v", flow, m)
		}
		conf.Confirm = NewConfirmSecret()
		if m := Transition(s, conf, now); m != (Move{Result: ResultStored, Duplicate: true}) {
			t.Fatalf("%s: duplicate confirm = %+v", flow, m)
		}
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
		{"scene", NewScene, 128, 32}, // a Mini Program scene: 22 to 32 characters
		{"session", NewSessionID, 128, 64},
		{"resume", NewResumeSecret, 256, 64},
		{"confirm", NewConfirmSecret, 128, 64},
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
