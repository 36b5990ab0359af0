//go:build linux

package session

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The poller's goroutine waits in Go's network poller, not in a blocking
// epoll_wait: it must still end as soon as its context does.
func TestPollerStopsWithContext(t *testing.T) {
	m, err := NewManager(Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPoller(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond) // parked, with nothing to wait for
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("poller still running 5 s after its context ended")
	}
}

// Bytes that arrive long after the poller parked still wake it.
func TestPollerWakesAfterQuiet(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		s := newServer(t, Config{Portable: portable})
		ws := dial(t, s)
		time.Sleep(300 * time.Millisecond)
		if err := ws.WriteMessage(1, []byte(`{"type":"hi"}`)); err != nil {
			t.Fatal(err)
		}
		expect(t, ws, `{"type":"got-hi"}`)
	})
}

// Handlers that take their time hold up no other connection, however many
// of them there are.
func TestSlowHandlersHoldUpNoOne(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		release := make(chan struct{})
		held.Store(&release)
		defer close(release)
		s := newServer(t, Config{Portable: portable})
		for range 2 * pollWorkers {
			if err := dial(t, s).WriteMessage(websocket.TextMessage, []byte(`{"type":"hold"}`)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond) // every "hold" in its handler
		ws := dial(t, s)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"hi"}`)); err != nil {
			t.Fatal(err)
		}
		expect(t, ws, `{"type":"got-hi"}`)
	})
}
