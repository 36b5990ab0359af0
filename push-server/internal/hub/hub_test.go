package hub

import (
	"context"
	"sync"
	"testing"
)

type fakeConn struct {
	mu     sync.Mutex
	got    [][]byte
	closed int
	full   bool
}

func (f *fakeConn) Send(msg []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full {
		return false
	}
	f.got = append(f.got, msg)
	return true
}

func (f *fakeConn) Close(code int, _ string) {
	f.mu.Lock()
	f.closed = code
	f.mu.Unlock()
}

func TestRouting(t *testing.T) {
	ctx := context.Background()
	h := New()
	a, b, full := &fakeConn{}, &fakeConn{}, &fakeConn{full: true}
	for _, c := range []*fakeConn{a, b, full} {
		h.Add(c)
	}
	h.AttachSession("s1", a)
	h.AttachUser("alice", a)
	h.AttachUser("alice", b)
	h.AttachUser("alice", full)

	if n, _ := h.ToSession(ctx, "s1", []byte("x")); n != 1 {
		t.Errorf("ToSession = %d", n)
	}
	if n, _ := h.ToUser(ctx, "alice", []byte("y")); n != 2 {
		t.Errorf("ToUser = %d, want 2 (one connection refused)", n)
	}
	if ok, _ := h.Attached(ctx, "s1"); !ok {
		t.Error("s1 not attached")
	}
	h.DetachSession("s1", a)
	if n, _ := h.ToSession(ctx, "s1", []byte("x")); n != 0 {
		t.Errorf("detached session still routed: %d", n)
	}
	h.Remove(b, "", "alice")
	if n, _ := h.ToUser(ctx, "alice", []byte("z")); n != 1 {
		t.Errorf("after Remove ToUser = %d", n)
	}
	h.CloseAll(1001, "bye")
	if a.closed != 1001 || full.closed != 1001 || b.closed != 0 {
		t.Errorf("CloseAll codes: %d %d %d", a.closed, full.closed, b.closed)
	}
	h.Remove(a, "", "alice")
	h.Remove(full, "", "alice")
	if h.Len() != 0 || len(h.byUser) != 0 || len(h.bySession) != 0 {
		t.Errorf("leftovers: %d %v %v", h.Len(), h.byUser, h.bySession)
	}
}
