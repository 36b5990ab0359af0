package hub

import (
	"context"
	"sync"
	"testing"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
)

type fakeConn struct {
	mu   sync.Mutex
	got  []browser.Frame
	full bool
}

func (f *fakeConn) Send(fr browser.Frame) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full {
		return false
	}
	f.got = append(f.got, fr)
	return true
}

func push(data string) browser.Frame { return browser.PushFrame("e", []byte(data)) }

func TestRouting(t *testing.T) {
	ctx := context.Background()
	h := New()
	a, b, full := &fakeConn{}, &fakeConn{}, &fakeConn{full: true}
	h.AttachSession("s1", a)
	h.AttachUser("alice", a)
	h.AttachUser("alice", b)
	h.AttachUser("alice", full)

	if n, _ := h.ToSession(ctx, "s1", push("1")); n != 1 || len(a.got) != 1 || a.got[0].Kind != browser.KindMessage {
		t.Errorf("ToSession = %d", n)
	}
	if n, _ := h.ToUser(ctx, "alice", push("2")); n != 2 {
		t.Errorf("ToUser = %d, want 2 (one connection refused)", n)
	}
	if ok, _ := h.Attached(ctx, "s1"); !ok {
		t.Error("s1 not attached")
	}
	if s, u := h.Counts(); s["s1"] != 1 || u["alice"] != 3 {
		t.Errorf("Counts = %v %v", s, u)
	}
	h.DetachSession("s1", a)
	if n, _ := h.ToSession(ctx, "s1", push("1")); n != 0 {
		t.Errorf("detached session still routed: %d", n)
	}
	h.Remove(b, "", "alice")
	if n, _ := h.ToUser(ctx, "alice", push("3")); n != 1 {
		t.Errorf("after Remove ToUser = %d", n)
	}
	h.Remove(a, "", "alice")
	h.Remove(full, "", "alice")
	h.Remove(full, "", "alice") // twice is harmless
	if len(h.byUser) != 0 || len(h.bySession) != 0 {
		t.Errorf("leftovers: %v %v", h.byUser, h.bySession)
	}
}

// A Send during iteration never races an attach or detach.
func TestConcurrentSendAndDetach(t *testing.T) {
	h := New()
	conns := make([]*fakeConn, 50)
	for i := range conns {
		conns[i] = &fakeConn{}
		h.AttachUser("u", conns[i])
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 200 {
			h.ToUser(context.Background(), "u", push("4"))
		}
	}()
	go func() {
		defer wg.Done()
		for _, c := range conns {
			h.Remove(c, "", "u")
		}
	}()
	wg.Wait()
}
