// Package storetest checks that a login.Store keeps the contract: the same
// tests run against every implementation.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/login"
)

// Run runs the conformance tests on stores made by newStore; each call must
// return an empty store.
func Run(t *testing.T, newStore func(t *testing.T) login.Store) {
	ctx := context.Background()
	now := time.Now()
	fresh := func() *login.Session {
		return &login.Session{
			ID: login.NewSessionID(), Scene: login.NewScene(), Ticket: "tk+/=", State: login.StateWaiting,
			ResumeHash: login.HashResume("r"), ExpiresAt: now.Add(time.Minute),
		}
	}
	render := func(s *login.Session) ([]byte, error) { return []byte("msg-for-" + s.User.OpenID), nil }
	scan := func(s *login.Session, openid, id string) login.Event {
		return login.Event{Scene: s.Scene, Ticket: s.Ticket, Kind: login.KindScan, User: login.User{OpenID: openid}, EventID: id}
	}

	t.Run("create and get", func(t *testing.T) {
		st := newStore(t)
		s := fresh()
		if err := st.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, s.ID)
		if err != nil || got.Scene != s.Scene || got.Ticket != s.Ticket || !got.ResumeOK("r") || !got.ExpiresAt.Equal(s.ExpiresAt) {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		if err := st.Create(ctx, s); !errors.Is(err, login.ErrExists) {
			t.Errorf("second Create: %v", err)
		}
		if _, err := st.Get(ctx, "missing"); !errors.Is(err, login.ErrNotFound) {
			t.Errorf("Get missing: %v", err)
		}
	})

	t.Run("apply", func(t *testing.T) {
		st := newStore(t)
		s := fresh()
		st.Create(ctx, s)
		out, err := st.Apply(ctx, scan(s, "alice", "e1"), now, render)
		if err != nil || out.Result != login.ResultStored || out.Duplicate || out.Session.State != login.StateConfirmed {
			t.Fatalf("Apply = %+v, %v", out, err)
		}
		got, _ := st.Get(ctx, s.ID)
		if string(got.Last) != "msg-for-alice" || got.User.OpenID != "alice" || got.Delivered {
			t.Fatalf("stored = %+v", got)
		}
		if err := st.MarkDelivered(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		out, _ = st.Apply(ctx, scan(s, "alice", "e1"), now, render)
		if out.Result != login.ResultDelivered || !out.Duplicate {
			t.Errorf("duplicate = %+v", out)
		}
		out, _ = st.Apply(ctx, scan(s, "bob", "e2"), now, render)
		if out.Result != login.ResultAlreadyUsed {
			t.Errorf("second = %+v", out)
		}
		out, _ = st.Apply(ctx, login.Event{Scene: "nope", Ticket: "t", Kind: login.KindScan, EventID: "e"}, now, render)
		if out.Result != login.ResultNotFound {
			t.Errorf("unknown scene = %+v", out)
		}
		if err := st.MarkDelivered(ctx, "missing"); !errors.Is(err, login.ErrNotFound) {
			t.Errorf("MarkDelivered missing: %v", err)
		}
	})

	t.Run("render failure leaves the session", func(t *testing.T) {
		st := newStore(t)
		s := fresh()
		st.Create(ctx, s)
		boom := errors.New("boom")
		if _, err := st.Apply(ctx, scan(s, "a", "e1"), now, func(*login.Session) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if got, _ := st.Get(ctx, s.ID); got.State != login.StateWaiting || len(got.EventIDs) != 0 {
			t.Fatalf("session changed: %+v", got)
		}
	})

	t.Run("exactly once under concurrency", func(t *testing.T) {
		st := newStore(t)
		s := fresh()
		st.Create(ctx, s)
		var wg sync.WaitGroup
		var mu sync.Mutex
		accepted := 0
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := st.Apply(ctx, scan(s, fmt.Sprint("u", i), fmt.Sprint("e", i%10)), now, render)
				if err != nil {
					t.Error(err)
					return
				}
				if out.Result == login.ResultStored && !out.Duplicate {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if accepted != 1 {
			t.Fatalf("%d accepted, want 1", accepted)
		}
	})

	t.Run("two-step", func(t *testing.T) { twoStep(t, newStore(t)) })
	t.Run("two-step races", func(t *testing.T) { twoStepRaces(t, newStore) })

	t.Run("expire", func(t *testing.T) {
		st := newStore(t)
		s := fresh()
		st.Create(ctx, s)
		if err := st.Expire(ctx, s.ID, now); err != nil {
			t.Fatal(err)
		}
		out, _ := st.Apply(ctx, scan(s, "a", "e1"), now, render)
		if out.Result != login.ResultExpired {
			t.Fatalf("after Expire: %+v", out)
		}
	})

	t.Run("take login", func(t *testing.T) {
		st := newStore(t)
		s := fresh()
		st.Create(ctx, s)
		login1 := func(s *login.Session) ([]byte, error) { return []byte(`{"type":"login","token":"t"}`), nil }
		if msg, err := st.TakeLogin(ctx, s.ID, now.Add(-time.Minute)); err != nil || msg != nil {
			t.Fatalf("TakeLogin of a waiting session = %q, %v; want nothing", msg, err)
		}
		if _, err := st.Apply(ctx, scan(s, "alice", "e1"), now, login1); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.Get(ctx, s.ID); !got.ConfirmedAt.Equal(now) || got.Consumed {
			t.Fatalf("after the login: confirmed at %v, consumed %v; want %v, false", got.ConfirmedAt, got.Consumed, now)
		}
		// Past the window (confirmed before since): nothing, and nothing changes.
		if msg, err := st.TakeLogin(ctx, s.ID, now.Add(time.Millisecond)); err != nil || msg != nil {
			t.Fatalf("TakeLogin after the window = %q, %v; want nothing", msg, err)
		}
		if got, _ := st.Get(ctx, s.ID); got.Consumed || got.Delivered {
			t.Fatalf("a refused TakeLogin changed the session: %+v", got)
		}
		// Within the window: once, under concurrency.
		var wg sync.WaitGroup
		var mu sync.Mutex
		handed := 0
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg, err := st.TakeLogin(ctx, s.ID, now.Add(-time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				if msg != nil {
					if string(msg) != `{"type":"login","token":"t"}` {
						t.Errorf("TakeLogin = %q", msg)
					}
					mu.Lock()
					handed++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if handed != 1 {
			t.Fatalf("the login was handed to %d resumes, want 1", handed)
		}
		if got, _ := st.Get(ctx, s.ID); !got.Consumed || !got.Delivered {
			t.Fatalf("after TakeLogin: consumed %v, delivered %v; want both", got.Consumed, got.Delivered)
		}
		if _, err := st.TakeLogin(ctx, "missing", now); !errors.Is(err, login.ErrNotFound) {
			t.Errorf("TakeLogin missing: %v", err)
		}
	})

	t.Run("pending", func(t *testing.T) {
		st := newStore(t)
		s := fresh()
		st.Create(ctx, s)
		for i := range 40 {
			if err := st.AddPending(ctx, s.ID, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		got, err := st.TakePending(ctx, s.ID)
		if err != nil || len(got) != 32 || string(got[0]) != "8" || string(got[31]) != "39" {
			t.Fatalf("TakePending = %q, %v (want the newest 32, oldest first)", got, err)
		}
		if got, _ := st.TakePending(ctx, s.ID); len(got) != 0 {
			t.Fatalf("taken twice: %q", got)
		}
		if err := st.AddPending(ctx, "missing", []byte("x")); !errors.Is(err, login.ErrNotFound) {
			t.Errorf("AddPending missing: %v", err)
		}
	})
}

// miniSession is a fresh waiting Mini Program session.
func miniSession(now time.Time) *login.Session {
	return &login.Session{
		ID: login.NewSessionID(), Flow: login.FlowMiniProgram, Scene: login.NewScene(), Ticket: "image-key",
		State: login.StateWaiting, ResumeHash: login.HashResume("r"), ExpiresAt: now.Add(time.Minute),
		Requester: login.Requester{Browser: "Chrome 120", OS: "Windows 10", IP: "203.0.113.7", At: now.Truncate(time.Millisecond)},
	}
}

// step is an event of a two-step flow on s (no ticket: a Mini Program code).
func step(s *login.Session, k login.Kind, openid, id, confirm string) login.Event {
	return login.Event{Scene: s.Scene, Kind: k, User: login.User{OpenID: openid}, EventID: id, Confirm: confirm}
}

// countingRender renders "<kind>-<openid>" and counts its calls.
type countingRender struct {
	mu sync.Mutex
	n  int
}

func (r *countingRender) render(k login.Kind) func(*login.Session) ([]byte, error) {
	return func(s *login.Session) ([]byte, error) {
		r.mu.Lock()
		r.n++
		r.mu.Unlock()
		return []byte(fmt.Sprint(k, "-", s.User.OpenID)), nil
	}
}

// twoStep walks a session through scan, scan again, refusals and the
// confirmation; the store keeps the flow, the requester and only the
// secret's hash.
func twoStep(t *testing.T, st login.Store) {
	ctx := context.Background()
	now := time.Now()
	s := miniSession(now)
	if err := st.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	var r countingRender
	out, err := st.Apply(ctx, step(s, login.KindScanned, "alice", "e1", ""), now, r.render(login.KindScanned))
	if err != nil || out.Result != login.ResultStored || out.Rescan || !login.ValidConfirm(out.Confirm) || out.Session.State != login.StateScanned {
		t.Fatalf("scan = %+v, %v", out, err)
	}
	first := out.Confirm
	got, _ := st.Get(ctx, s.ID)
	r1, r2 := got.Requester, s.Requester
	if r1.Browser != r2.Browser || r1.OS != r2.OS || r1.IP != r2.IP || !r1.At.Equal(r2.At) {
		t.Fatalf("requester stored %+v, want %+v", r1, r2)
	}
	if got.Flow != login.FlowMiniProgram || got.State != login.StateScanned ||
		got.User.OpenID != "alice" || !got.ConfirmOK(first) || string(got.Last) != "3-alice" {
		t.Fatalf("stored after scan = %+v", got)
	}
	if err := st.MarkDelivered(ctx, s.ID); err != nil {
		t.Fatal(err)
	}

	// The same user again: a new secret, nothing rendered, still delivered.
	out, err = st.Apply(ctx, step(s, login.KindScanned, "alice", "e2", ""), now, r.render(login.KindScanned))
	if err != nil || out.Result != login.ResultStored || !out.Rescan || out.Confirm == "" || out.Confirm == first || r.n != 1 {
		t.Fatalf("scan again = %+v, %v (renders %d)", out, err, r.n)
	}
	second := out.Confirm
	got, _ = st.Get(ctx, s.ID)
	if got.ConfirmOK(first) || !got.ConfirmOK(second) || !got.Delivered || string(got.Last) != "3-alice" {
		t.Fatalf("stored after scan again = %+v", got)
	}
	// A duplicate: the first answer, no secret.
	if out, _ := st.Apply(ctx, step(s, login.KindScanned, "alice", "e2", ""), now, r.render(login.KindScanned)); !out.Duplicate || out.Confirm != "" || out.Result != login.ResultDelivered {
		t.Fatalf("duplicate scan = %+v", out)
	}

	// Refusals change nothing.
	for _, ev := range []login.Event{
		step(s, login.KindScanned, "bob", "r1", ""),
		step(s, login.KindConfirmed, "alice", "r2", first),
		step(s, login.KindConfirmed, "bob", "r3", second),
		step(s, login.KindCancelled, "alice", "r4", ""),
	} {
		out, err := st.Apply(ctx, ev, now, r.render(ev.Kind))
		want := login.ResultForbidden
		if ev.Kind == login.KindScanned {
			want = login.ResultAlreadyUsed
		}
		if err != nil || out.Result != want || out.Confirm != "" {
			t.Errorf("%v by %s: %+v, %v; want %v", ev.Kind, ev.User.OpenID, out, err, want)
		}
	}
	if after, _ := st.Get(ctx, s.ID); !reflect.DeepEqual(after, got) {
		t.Fatalf("a refusal changed the session:\n%+v\n%+v", got, after)
	}

	out, err = st.Apply(ctx, step(s, login.KindConfirmed, "alice", "e3", second), now, r.render(login.KindConfirmed))
	if err != nil || out.Result != login.ResultStored || out.Session.State != login.StateConfirmed || out.Confirm != "" {
		t.Fatalf("confirm = %+v, %v", out, err)
	}
	got, _ = st.Get(ctx, s.ID)
	if got.State != login.StateConfirmed || got.User.OpenID != "alice" || len(got.ConfirmHash) != 0 || string(got.Last) != "4-alice" || got.Delivered || !got.ConfirmedAt.Equal(now) {
		t.Fatalf("stored after confirm = %+v", got)
	}
	if out, _ := st.Apply(ctx, step(s, login.KindCancelled, "alice", "e4", second), now, r.render(login.KindCancelled)); out.Result != login.ResultAlreadyUsed {
		t.Fatalf("cancel after confirm = %+v", out)
	}
}

// twoStepRaces: two phones racing on one code, one winner; of confirmations
// and cancels racing with the right secret, one winner, and the state is
// the winner's; nothing confirms after a cancel.
func twoStepRaces(t *testing.T, newStore func(t *testing.T) login.Store) {
	ctx := context.Background()
	now := time.Now()
	// race runs f(i) on n goroutines at once and returns the outcomes.
	race := func(n int, f func(i int) (login.Outcome, error)) []login.Outcome {
		outs := make([]login.Outcome, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out, err := f(i)
				if err != nil {
					t.Error(err)
				}
				outs[i] = out
			}()
		}
		close(start)
		wg.Wait()
		return outs
	}
	winners := func(outs []login.Outcome) []int {
		var w []int
		for i, o := range outs {
			if o.Result == login.ResultStored && !o.Duplicate {
				w = append(w, i)
			}
		}
		return w
	}
	render := func(s *login.Session) ([]byte, error) { return []byte("m-" + s.User.OpenID), nil }

	t.Run("phones scanning one code", func(t *testing.T) {
		st := newStore(t)
		s := miniSession(now)
		st.Create(ctx, s)
		outs := race(40, func(i int) (login.Outcome, error) {
			return st.Apply(ctx, step(s, login.KindScanned, fmt.Sprint("user", i), fmt.Sprint("e", i), ""), now, render)
		})
		w := winners(outs)
		if len(w) != 1 {
			t.Fatalf("%d scans won, want 1", len(w))
		}
		for i, o := range outs {
			if i != w[0] && (o.Result != login.ResultAlreadyUsed || o.Confirm != "") {
				t.Errorf("loser %d: %+v", i, o)
			}
		}
		got, _ := st.Get(ctx, s.ID)
		if got.User.OpenID != fmt.Sprint("user", w[0]) || !got.ConfirmOK(outs[w[0]].Confirm) {
			t.Fatalf("the session is bound to %s, the winner was user%d", got.User.OpenID, w[0])
		}
	})

	t.Run("confirmations and cancels", func(t *testing.T) {
		st := newStore(t)
		s := miniSession(now)
		st.Create(ctx, s)
		out, _ := st.Apply(ctx, step(s, login.KindScanned, "alice", "scan", ""), now, render)
		secret := out.Confirm
		outs := race(40, func(i int) (login.Outcome, error) {
			k := login.KindConfirmed
			if i%2 == 1 {
				k = login.KindCancelled
			}
			return st.Apply(ctx, step(s, k, "alice", fmt.Sprint("e", i), secret), now, render)
		})
		w := winners(outs)
		if len(w) != 1 {
			t.Fatalf("%d confirmations won, want 1", len(w))
		}
		for i, o := range outs {
			if i != w[0] && o.Result != login.ResultAlreadyUsed {
				t.Errorf("loser %d: %+v", i, o)
			}
		}
		want := login.StateConfirmed
		if w[0]%2 == 1 {
			want = login.StateCancelled
		}
		if got, _ := st.Get(ctx, s.ID); got.State != want {
			t.Fatalf("state %s, the winner made it %s", got.State, want)
		}
	})

	t.Run("scans again racing a confirmation", func(t *testing.T) {
		st := newStore(t)
		s := miniSession(now)
		st.Create(ctx, s)
		out, _ := st.Apply(ctx, step(s, login.KindScanned, "alice", "scan", ""), now, render)
		secret := out.Confirm
		// Every scan again writes: a dozen, so that a store that retries on
		// conflict (each retry follows another's write) is not worn out.
		outs := race(12, func(i int) (login.Outcome, error) {
			if i == 0 {
				return st.Apply(ctx, step(s, login.KindConfirmed, "alice", "confirm", secret), now, render)
			}
			return st.Apply(ctx, step(s, login.KindScanned, "alice", fmt.Sprint("e", i), ""), now, render)
		})
		got, _ := st.Get(ctx, s.ID)
		// Either the confirmation came first (and every later scan found
		// the code used), or a scan again replaced the secret first (and
		// the confirmation with the old one was refused).
		switch confirmed := outs[0].Result == login.ResultStored; {
		case confirmed && got.State != login.StateConfirmed, !confirmed && (outs[0].Result != login.ResultForbidden || got.State != login.StateScanned):
			t.Fatalf("confirmation %+v, session %s", outs[0], got.State)
		}
		for i, o := range outs[1:] {
			if o.Result == login.ResultStored && (!o.Rescan || o.Confirm == "") {
				t.Errorf("scan again %d: %+v", i+1, o)
			}
		}
	})
}
