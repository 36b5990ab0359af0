package session

import (
	"sync/atomic"
	"testing"
	"time"
)

type countingCloser struct{ closed *atomic.Int32 }

func (c countingCloser) Close() error {
	c.closed.Add(1)
	return nil
}

// Sockets of connections that end together are closed together, once the
// batch's time is up, not one by one as each ends.
func TestSocketsCloseInBatches(t *testing.T) {
	var closed atomic.Int32
	b := &batchCloser{after: time.Hour}
	for range 3 {
		b.close(countingCloser{&closed})
	}
	if n := closed.Load(); n != 0 {
		t.Fatalf("%d sockets closed before their batch was due", n)
	}
	b.flush()
	if n := closed.Load(); n != 3 {
		t.Fatalf("flush closed %d sockets, want 3", n)
	}
	b.flush()
	if n := closed.Load(); n != 3 {
		t.Fatalf("a second flush closed sockets again: %d closes", n)
	}
}

// Every socket handed over is closed once its batch is due, also those
// handed over while a batch was being closed.
func TestEverySocketIsClosed(t *testing.T) {
	var closed atomic.Int32
	b := &batchCloser{after: time.Millisecond}
	const n = 200
	for i := range n {
		b.close(countingCloser{&closed})
		if i%50 == 0 {
			time.Sleep(2 * time.Millisecond) // let a batch go out in between
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := closed.Load(); got != n {
		t.Fatalf("%d of %d sockets closed", got, n)
	}
}
