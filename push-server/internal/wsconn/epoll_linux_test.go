//go:build linux

package wsconn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
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

// tagger remembers each connection under the name it sends ({"type":NAME}),
// so a test can address frames to it.
type tagger struct {
	mu    sync.Mutex
	conns map[string]*Conn
}

func (g *tagger) Receive(c *Conn, name string) bool {
	g.mu.Lock()
	g.conns[name] = c
	g.mu.Unlock()
	c.Send([]byte(`{"type":"tagged"}`))
	return true
}

func (*tagger) Alarm(*Conn) {}

// Frames sent to connections that end while others open never reach
// another connection, though the socket numbers of the ended ones are
// reused at once: a frame for one browser must never carry another's login
// (a socket closes its number only when no call is on it).
func TestFramesNeverReachAnotherConnection(t *testing.T) {
	g := &tagger{conns: map[string]*Conn{}}
	s := newServerWith(t, Config{}, g)
	stop := make(chan struct{})
	var senders sync.WaitGroup
	for range 4 { // frames for every tagged connection, ended or not
		senders.Add(1)
		go func() {
			defer senders.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				g.mu.Lock()
				all := make(map[string]*Conn, len(g.conns))
				maps.Copy(all, g.conns)
				g.mu.Unlock()
				for name, c := range all {
					c.Send([]byte(`{"type":"for","to":"` + name + `"}`))
				}
			}
		}()
	}
	var clients sync.WaitGroup
	var received atomic.Int64
	errs := make(chan error, 64)
	for w := range 8 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for i := range 40 { // connections opened and ended one after another
				name := fmt.Sprintf("c%d-%d", w, i)
				ws, _, err := websocket.DefaultDialer.Dial(s.url, nil)
				if err != nil {
					errs <- err
					return
				}
				ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"`+name+`"}`))
				ws.SetReadDeadline(time.Now().Add(5 * time.Second))
				for n := 0; n < 5; {
					_, msg, err := ws.ReadMessage()
					if err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
						ws.Close()
						return
					}
					var f struct{ Type, To string }
					json.Unmarshal(msg, &f)
					if f.Type == "for" {
						if f.To != name {
							errs <- fmt.Errorf("connection %s got a frame for %s", name, f.To)
						}
						n++
						received.Add(1)
					}
				}
				ws.Close() // ends it while frames for it are still being sent
			}
		}()
	}
	clients.Wait()
	close(stop)
	senders.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if received.Load() == 0 {
		t.Fatal("no frame arrived")
	}
}
