// Package storetest checks that a login.Store keeps the contract: the same
// tests run against every implementation.
package storetest

import (
	"context"
	"errors"
	"fmt"
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
