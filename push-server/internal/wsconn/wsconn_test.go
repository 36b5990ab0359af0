package wsconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
)

func TestParseHeaderAndUnit(t *testing.T) {
	mask := []byte{1, 2, 3, 4}
	masked := func(op byte, fin bool, payload []byte) []byte {
		b0 := op
		if fin {
			b0 |= 0x80
		}
		var h []byte
		switch n := len(payload); {
		case n < 126:
			h = []byte{b0, 0x80 | byte(n)}
		case n < 1<<16:
			h = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
		default:
			h = []byte{b0, 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
		}
		p := append([]byte(nil), payload...)
		unmask(mask, p)
		return append(append(h, mask...), p...)
	}
	text := masked(opText, true, []byte(`{"type":"ping"}`))
	big := masked(opText, true, make([]byte, 300))
	huge := masked(opText, true, make([]byte, 70000))
	frag1 := masked(opText, false, []byte(`{"type":`))
	pong := masked(opPong, true, nil)
	frag2 := masked(opContinuation, true, []byte(`"ping"}`))
	hugePing := []byte{0x89, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	tests := []struct {
		name   string
		b      []byte
		limit  int64
		n      int
		kind   unitKind
		frames int
	}{
		{"empty", nil, 4096, 0, unitWait, 0},
		{"one byte", text[:1], 4096, 0, unitWait, 0},
		{"header only", text[:6], 4096, 0, unitWait, 0},
		{"whole text", text, 4096, len(text), unitGorilla, 1},
		{"text then partial", cat(text, text[:3]), 4096, len(text), unitGorilla, 1},
		{"16-bit length", big, 4096, len(big), unitGorilla, 1},
		{"64-bit length over limit: header only", huge[:14], 4096, 14, unitGorilla, 1},
		{"over limit", big, 100, 8, unitGorilla, 1},
		{"pong", cat(pong, text), 4096, len(pong), unitPong, 1},
		{"ping", masked(opPing, true, []byte("hi")), 4096, 8, unitPing, 1},
		{"close", masked(opClose, true, []byte{3, 232}), 4096, 8, unitGorilla, 1},
		{"first fragment only", frag1, 4096, 0, unitWait, 0},
		{"fragments with a pong between", cat(frag1, pong, frag2), 4096, len(frag1) + len(pong) + len(frag2), unitGorilla, 3},
		{"fragments over limit", cat(frag1, frag2), 10, len(frag1) + 6, unitGorilla, 2},
		{"control too long", []byte{0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4}, 4096, 8, unitGorilla, 1},
		// A length near 2^63 must not wrap the offset around.
		{"fragments with a huge control frame between", cat(frag1, hugePing, frag2), 4096, len(frag1) + 14, unitGorilla, 2},
		{"fragments with a long control frame between", cat(frag1, []byte{0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4}), 4096, len(frag1) + 8, unitGorilla, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, kind, payload, frames := unit(tt.b, tt.limit)
			if n != tt.n || kind != tt.kind || frames != tt.frames {
				t.Fatalf("unit = %d, %v, %d frames; want %d, %v, %d", n, kind, frames, tt.n, tt.kind, tt.frames)
			}
			if kind == unitPing && string(payload) != "hi" {
				t.Fatalf("ping payload %q", payload)
			}
		})
	}
}

// echo answers each request with its type, so tests see Receive calls.
// A "hold" request first waits until the channel in held is closed; it
// knows every type but "unknown".
type echo struct{}

var held atomic.Pointer[chan struct{}]

func (echo) Receive(c *Conn, typ string) bool {
	if typ == "unknown" {
		return false
	}
	if typ == "hold" {
		<-*held.Load()
	}
	if typ == "alarm-me" {
		c.SetAlarm(time.Now().Add(50 * time.Millisecond))
	}
	c.Send([]byte(`{"type":"got-` + typ + `"}`))
	return true
}

func (echo) Alarm(c *Conn) { c.Send([]byte(`{"type":"alarm"}`)) }

type server struct {
	m      *Manager
	url    string
	mu     sync.Mutex
	conns  []*Conn
	ended  chan error
	cancel context.CancelFunc
}

func newServer(t *testing.T, cfg Config) *server {
	t.Helper()
	return newServerWith(t, cfg, echo{})
}

// newServerWith is newServer with h for every connection.
func newServerWith(t *testing.T, cfg Config, h Handler) *server {
	t.Helper()
	m, err := NewManager(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)
	s := &server{m: m, ended: make(chan error, 1000), cancel: cancel}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := m.Upgrade(w, r, h, func(err error) {
			select {
			case s.ended <- err:
			default: // a test that opens many connections need not drain it
			}
		})
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		c.Send([]byte(`{"type":"hello"}`))
		c.Start()
	}))
	t.Cleanup(func() { hs.Close(); cancel() })
	s.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	return s
}

func dial(t *testing.T, s *server) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	expect(t, ws, `{"type":"hello"}`)
	return ws
}

func expect(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := ws.ReadMessage()
	if err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

func expectClose(t *testing.T, ws *websocket.Conn, code int) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("ended with %v, want close %d", err, code)
		}
		return
	}
}

func modes(t *testing.T, f func(t *testing.T, portable bool)) {
	for _, portable := range []bool{false, true} {
		name := "poller"
		if portable {
			name = "portable"
		}
		t.Run(name, func(t *testing.T) { f(t, portable) })
	}
}

func TestRequestsAndReplies(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		s := newServer(t, Config{Portable: portable})
		ws := dial(t, s)
		ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
		expect(t, ws, `{"type":"pong"}`)
		ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"refresh"}`))
		expect(t, ws, `{"type":"got-refresh"}`)
		ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"alarm-me"}`))
		expect(t, ws, `{"type":"got-alarm-me"}`)
		expect(t, ws, `{"type":"alarm"}`)

		// A message in fragments, with a pong between them.
		nw, _ := ws.NextWriter(websocket.TextMessage)
		nw.Write([]byte(`{"type":`))
		ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
		nw.Write([]byte(`"frag"}`))
		nw.Close()
		expect(t, ws, `{"type":"got-frag"}`)

		// A WebSocket ping is answered with a pong carrying its payload.
		pong := make(chan string, 1)
		ws.SetPongHandler(func(p string) error { pong <- p; return nil })
		ws.WriteControl(websocket.PingMessage, []byte("abc"), time.Now().Add(time.Second))
		ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"after"}`))
		expect(t, ws, `{"type":"got-after"}`)
		select {
		case p := <-pong:
			if p != "abc" {
				t.Errorf("pong %q", p)
			}
		case <-time.After(5 * time.Second):
			t.Error("no pong")
		}

		// A message larger than the read buffer takes several reads.
		ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"big","pad":"`+strings.Repeat("x", 3000)+`"}`))
		expect(t, ws, `{"type":"got-big"}`)

		// Bytes trickling in one at a time still make a message.
		raw := ws.NetConn()
		frame := []byte{0x81, 0x80 | 14, 0, 0, 0, 0}
		frame = append(frame, []byte(`{"type":"slow"}`)[:14]...)
		frame[1] = 0x80 | 15
		frame = append(frame[:6], []byte(`{"type":"slow"}`)...)
		for _, b := range frame {
			raw.Write([]byte{b})
			time.Sleep(2 * time.Millisecond)
		}
		expect(t, ws, `{"type":"got-slow"}`)
	})
}

func TestBadInputCloses(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		s := newServer(t, Config{Portable: portable, ReadLimit: 1024, MaxBadFrames: 2})
		ws := dial(t, s)
		ws.WriteMessage(websocket.TextMessage, make([]byte, 64<<10))
		expectClose(t, ws, websocket.CloseMessageTooBig)

		ws = dial(t, s)
		ws.WriteMessage(websocket.BinaryMessage, []byte{1})
		expectClose(t, ws, websocket.CloseUnsupportedData)

		// A control frame claiming 2^63 bytes between two fragments: a
		// protocol error, not a crash of the reader.
		ws = dial(t, s)
		ws.NetConn().Write([]byte{0x01, 0x80 | 2, 0, 0, 0, 0, '{', '}', 0x89, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
		expectClose(t, ws, websocket.CloseProtocolError)

		ws = dial(t, s)
		ws.WriteMessage(websocket.TextMessage, []byte("nope"))
		expect(t, ws, string(msgBadRequest))
		ws.WriteMessage(websocket.TextMessage, []byte("nope"))
		expectClose(t, ws, websocket.ClosePolicyViolation)
	})
}

func TestPingsAndSilence(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		s := newServer(t, Config{Portable: portable, PingInterval: 100 * time.Millisecond,
			PongWait: time.Second, SweepInterval: 20 * time.Millisecond})
		ws := dial(t, s)
		var pings atomic.Int64
		ws.SetPingHandler(func(string) error {
			pings.Add(1)
			return ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
		})
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		// Answering pings keeps the connection alive past PongWait: 20
		// pings at least 100ms apart span more than PongWait.
		for start := time.Now(); pings.Load() < 20; time.Sleep(10 * time.Millisecond) {
			if time.Since(start) > time.Minute {
				t.Fatalf("%d pings in a minute at a 100ms interval", pings.Load())
			}
		}
		select {
		case err := <-s.ended:
			t.Fatalf("a live connection was closed: %v", err)
		default:
		}

		// A client that stops answering is closed after PongWait.
		silent, _, err := websocket.DefaultDialer.Dial(s.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		select {
		case err := <-s.ended:
			if !errors.Is(err, ErrIdle) {
				t.Fatalf("ended with %v, want ErrIdle", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("silent connection not closed")
		}
	})
}

func TestCloseFlushesQueue(t *testing.T) {
	s := newServer(t, Config{})
	ws := dial(t, s)
	s.mu.Lock()
	c := s.conns[0]
	s.mu.Unlock()
	c.SendAndClose([]byte(`{"type":"login"}`), websocket.CloseNormalClosure, "bye")
	if c.Send([]byte("late")) {
		t.Error("Send after Close accepted")
	}
	expect(t, ws, `{"type":"login"}`)
	expectClose(t, ws, websocket.CloseNormalClosure)
	select {
	case err := <-s.ended:
		if err != nil {
			t.Fatalf("ended with %v, want an ordinary close", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("connection did not end after the close handshake")
	}
	if !c.Ended() {
		t.Fatal("Ended() is false after the end")
	}
}

func TestSlowConsumerIsClosed(t *testing.T) {
	s := newServer(t, Config{QueueSize: 4, WriteWait: 200 * time.Millisecond})
	ws := dial(t, s)
	s.mu.Lock()
	c := s.conns[0]
	s.mu.Unlock()
	// The client reads nothing; big messages fill the socket, then the queue.
	msg := make([]byte, 1<<20)
	refused := false
	for range 64 {
		if !c.Send(msg) {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("a full queue never refused")
	}
	select {
	case <-s.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("slow consumer not closed")
	}
	_ = ws
}

// The point of the design: idle connections hold no goroutine.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	s := newServer(t, Config{})
	dial(t, s) // warm up the server's own goroutines
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	const n = 200
	var clients []*websocket.Conn
	for range n {
		clients = append(clients, dial(t, s))
	}
	time.Sleep(200 * time.Millisecond)
	after := runtime.NumGoroutine()
	// Each client here has one goroutine of its own in gorilla's dialer?
	// No: a gorilla client that is not reading holds none. So the growth
	// is the server's alone.
	if grew := after - before; grew > n/10 {
		t.Fatalf("%d idle connections added %d goroutines", n, grew)
	}
	// They still work.
	clients[n/2].WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
	expect(t, clients[n/2], `{"type":"pong"}`)
}

// After the server's close frame and the browser's reply, the server closes
// the socket without a second close frame (RFC 6455 §5.5.1: one close frame
// each way).
func TestCloseReplyIsNotEchoed(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		s := newServer(t, Config{Portable: portable})
		ws := dial(t, s)
		s.mu.Lock()
		c := s.conns[0]
		s.mu.Unlock()
		if !c.SendAndClose([]byte(`{"type":"login"}`), websocket.CloseNormalClosure, "bye") {
			t.Fatal("SendAndClose refused on an open connection")
		}
		if c.SendAndClose([]byte(`{"type":"login"}`), websocket.CloseNormalClosure, "bye") {
			t.Fatal("a second SendAndClose was accepted")
		}
		expect(t, ws, `{"type":"login"}`)
		expectClose(t, ws, websocket.CloseNormalClosure) // gorilla answers the close
		raw := ws.UnderlyingConn()
		raw.SetReadDeadline(time.Now().Add(3 * time.Second))
		b := make([]byte, 64)
		n, err := raw.Read(b)
		if n > 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("after the close handshake read %x, %v; want the server to hang up (EOF)", b[:n], err)
		}
	})
}

// The last frames of a connection carry the FIN: the browser sees the end
// of the stream right after the close frame, before it has replied, and its
// reply still reaches the server, which then ends the connection normally.
func TestLastFramesCarryTheFIN(t *testing.T) {
	// The poller (the portable mode leaves the FIN to the close); no ping
	// among the bytes read raw, and the close reply long awaited.
	s := newServer(t, Config{PingInterval: time.Hour, PongWait: 2 * time.Hour, WriteWait: time.Hour})
	ws := dial(t, s)
	s.mu.Lock()
	c := s.conns[0]
	s.mu.Unlock()
	// Frames sent while another write is under way (the hello, whose
	// sender may not have finished though the browser has read it) are
	// queued, and a queued last frame leaves the FIN to the socket's close.
	waitUntilNotWriting(c)
	c.SendAndClose([]byte(`{"type":"login"}`), websocket.CloseNormalClosure, "bye")

	raw := ws.UnderlyingConn()
	raw.SetReadDeadline(time.Now().Add(time.Minute)) // only if the FIN never came
	got, err := io.ReadAll(raw)
	if err != nil {
		t.Fatalf("read until EOF: %v (got %x); want the server's FIN after its close frame", err, got)
	}
	want := append(serverFrame(opText, []byte(`{"type":"login"}`)), closeFrame(websocket.CloseNormalClosure, "bye")...)
	if !bytes.Equal(got, want) {
		t.Fatalf("read %x before EOF, want the login and close frames %x", got, want)
	}
	select {
	case err := <-s.ended:
		t.Fatalf("connection ended (%v) before the browser replied", err)
	default:
	}
	closeMsg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if _, err := raw.Write(maskedFrame(0x8, closeMsg)); err != nil {
		t.Fatalf("close reply on the half-closed connection: %v", err)
	}
	// Without the reply the connection would end, an hour on, with
	// ErrCloseTimout.
	if err := <-s.ended; err != nil {
		t.Fatalf("connection ended with %v, want a normal end on the close reply", err)
	}
}

// waitUntilNotWriting returns once no write of c is under way.
func waitUntilNotWriting(c *Conn) {
	for {
		c.mu.Lock()
		writing := c.writing
		c.mu.Unlock()
		if !writing {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// A connection that ends gives its read buffer back to the pool, whoever
// closed it and whatever was left in the buffer.
func TestEndedConnectionReturnsItsBuffer(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		s := newServer(t, Config{Portable: portable})
		conn := func(i int) *Conn {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.conns[i]
		}
		ended := func(c *Conn) {
			t.Helper()
			select {
			case <-s.ended:
			case <-time.After(5 * time.Second):
				t.Fatal("the connection did not end")
			}
			c.read.Lock()
			defer c.read.Unlock()
			if c.backing != nil || c.feed.buf != nil {
				t.Fatalf("ended connection still holds its read buffer (%d bytes in it)", len(c.feed.buf))
			}
		}

		// The server closes (as after a login); the browser answers.
		ws := dial(t, s)
		c := conn(0)
		c.SendAndClose([]byte(`{"type":"login"}`), websocket.CloseNormalClosure, "bye")
		expect(t, ws, `{"type":"login"}`)
		expectClose(t, ws, websocket.CloseNormalClosure)
		ended(c)

		// The browser closes, with a request right behind its close frame.
		ws = dial(t, s)
		c = conn(1)
		raw := ws.UnderlyingConn()
		closeMsg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "")
		frames := append(maskedFrame(0x8, closeMsg), maskedFrame(0x1, []byte(`{"type":"ping"}`))...)
		if _, err := raw.Write(frames); err != nil {
			t.Fatal(err)
		}
		ended(c)
	})
}

// maskedFrame is one final client frame of opcode op (payload < 126 bytes).
func maskedFrame(op byte, payload []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := []byte{0x80 | op, 0x80 | byte(len(payload)), key[0], key[1], key[2], key[3]}
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// A write that the writer goroutine finished leaves no deadline behind: a
// later direct write must not fail with "i/o timeout" once WriteWait has
// passed, which would end the connection without a close frame.
func TestNoStaleWriteDeadline(t *testing.T) {
	s := newServer(t, Config{WriteWait: 100 * time.Millisecond})
	ws := dial(t, s)
	s.mu.Lock()
	c := s.conns[0]
	s.mu.Unlock()
	big := bytes.Repeat([]byte("x"), 4<<20) // more than the socket takes at once: the writer goroutine sends the rest
	if !c.Send(big) {
		t.Fatal("Send of a big message refused")
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, got, err := ws.ReadMessage(); err != nil || len(got) != len(big) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(big))
	}
	time.Sleep(300 * time.Millisecond) // past the writer's deadline
	if !c.Send([]byte(`{"type":"later"}`)) {
		t.Fatal("Send refused")
	}
	expect(t, ws, `{"type":"later"}`)
	if c.Ended() {
		t.Fatal("the connection ended")
	}
}

// A connection that is sent frames gets no pings, and is not closed for
// sending nothing back: its frames keep proxies awake as pings would. Once
// the frames stop, pings come again, and one left unanswered for PongWait
// closes it.
func TestBusyConnectionsAreNotPinged(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		s := newServer(t, Config{Portable: portable, PingInterval: 100 * time.Millisecond,
			PongWait: 300 * time.Millisecond, SweepInterval: 20 * time.Millisecond})
		ws := dial(t, s)
		var pings atomic.Int64
		ws.SetPingHandler(func(string) error { pings.Add(1); return nil }) // never answers
		got := make(chan string, 100)
		go func() {
			for {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					close(got)
					return
				}
				got <- string(msg)
			}
		}()
		s.mu.Lock()
		c := s.conns[len(s.conns)-1]
		s.mu.Unlock()
		// 1.5s of frames every 40ms: five PongWaits, fifteen PingIntervals.
		for start := time.Now(); time.Since(start) < 1500*time.Millisecond; time.Sleep(40 * time.Millisecond) {
			if !c.Send([]byte(`{"type":"message"}`)) {
				t.Fatal("send refused: the busy connection was closed")
			}
			<-got
		}
		if n := pings.Load(); n != 0 {
			t.Errorf("%d pings to a connection sent a frame every 40ms, want none", n)
		}
		select {
		case err := <-s.ended:
			t.Fatalf("a busy connection was closed: %v", err)
		default:
		}
		// Quiet now: pinged, never answered, closed.
		select {
		case err := <-s.ended:
			if !errors.Is(err, ErrIdle) {
				t.Fatalf("ended with %v, want ErrIdle", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a connection that left its ping unanswered was not closed")
		}
		if pings.Load() == 0 {
			t.Error("the quiet connection was closed without a ping")
		}
	})
}

// Connections sent their first frame together (a wave of new connections)
// are pinged at different times, not in one wave.
func TestPingsOfAWaveSpread(t *testing.T) {
	const n = 40
	s := newServer(t, Config{PingInterval: time.Second, PongWait: time.Minute, SweepInterval: 10 * time.Millisecond})
	firsts := make(chan time.Time, n)
	for range n {
		ws := dial(t, s)
		var once sync.Once
		ws.SetPingHandler(func(string) error { once.Do(func() { firsts <- time.Now() }); return nil })
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	var lo, hi time.Time
	for i := range n {
		select {
		case at := <-firsts:
			if i == 0 || at.Before(lo) {
				lo = at
			}
			if at.After(hi) {
				hi = at
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d connections pinged", i, n)
		}
	}
	// Each connection's pings come up to 250ms sooner than the second,
	// at random: 40 first pings spread over most of that.
	if hi.Sub(lo) < 120*time.Millisecond {
		t.Errorf("the first pings of %d connections came within %v", n, hi.Sub(lo))
	}
}

// One sweep tick pings only its slice of the connections that are due, and
// the sweepSlices ticks of a round together ping every one of them once.
func TestSweepSpreadsPings(t *testing.T) {
	const n = 130 // 3 per slice: the last slices get fewer, then none
	s := newServer(t, Config{PingInterval: time.Hour, PongWait: 2 * time.Hour, SweepInterval: time.Hour})
	for range n {
		dial(t, s)
	}
	if s.m.Len() != n {
		t.Fatalf("%d connections, want %d", s.m.Len(), n)
	}
	due := time.Now().Add(90 * time.Minute) // every first ping is due, nobody silent too long
	seen := map[*Conn]bool{}
	perSlice := (n + sweepSlices - 1) / sweepSlices
	for slice := range sweepSlices {
		s.m.sweep(due, slice, nil)
		pinged := 0
		s.mu.Lock()
		for _, c := range s.conns {
			if c.sent.Load() == due.UnixNano() && !seen[c] {
				seen[c] = true
				pinged++
			}
		}
		s.mu.Unlock()
		if want := min(perSlice, max(n-slice*perSlice, 0)); pinged != want {
			t.Errorf("slice %d pinged %d connections, want %d", slice, pinged, want)
		}
	}
	if len(seen) != n {
		t.Errorf("a round pinged %d of %d connections", len(seen), n)
	}
}

// Server frames carry every payload length in the shortest of RFC 6455's
// three header forms.
func TestServerFrameLengths(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		f := serverFrame(opText, payload)
		var hdr, got int
		switch {
		case f[1] < 126:
			hdr, got = 2, int(f[1])
		case f[1] == 126:
			hdr, got = 4, int(binary.BigEndian.Uint16(f[2:]))
		default:
			hdr, got = 10, int(binary.BigEndian.Uint64(f[2:]))
		}
		wantHdr := 10
		if n < 126 {
			wantHdr = 2
		} else if n < 1<<16 {
			wantHdr = 4
		}
		if f[0] != 0x80|opText || got != n || hdr != wantHdr || len(f) != hdr+n || !bytes.Equal(f[hdr:], payload) {
			t.Fatalf("frame of %d bytes: header %x, length %d in %d header bytes, %d in all", n, f[:hdr], got, hdr, len(f))
		}
	}
}

// expectCloseReason reads until the connection closes and checks the close
// code and reason; it returns how many messages came before.
func expectCloseReason(t *testing.T, ws *websocket.Conn, code int, reason string) (messages int) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			messages++
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code || ce.Text != reason {
			t.Fatalf("ended with %v after %d messages, want close %d %q", err, messages, code, reason)
		}
		return messages
	}
}

func TestFrameBudget(t *testing.T) {
	modes(t, func(t *testing.T, portable bool) {
		const burst, flood = 10, 200
		s := newServer(t, Config{Portable: portable, FrameBurst: burst, FrameRate: 1})

		// JSON pings: a pong for each until the budget is spent, then 1008.
		ws := dial(t, s)
		for range flood {
			if ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)) != nil {
				break
			}
		}
		if pongs := expectCloseReason(t, ws, websocket.ClosePolicyViolation, "too many frames"); pongs >= flood {
			t.Fatalf("%d pongs for %d pings", pongs, flood)
		}

		// WebSocket pings, which the connection answers without gorilla.
		ws = dial(t, s)
		pongs := 0
		ws.SetPongHandler(func(string) error { pongs++; return nil })
		for range flood {
			if ws.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)) != nil {
				break
			}
		}
		expectCloseReason(t, ws, websocket.ClosePolicyViolation, "too many frames")
		if pongs >= flood {
			t.Fatalf("%d pongs for %d pings", pongs, flood)
		}

		// Pongs, answering nothing, count as well.
		ws = dial(t, s)
		for range flood {
			if ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second)) != nil {
				break
			}
		}
		expectCloseReason(t, ws, websocket.ClosePolicyViolation, "too many frames")

		// A message in fragments is as many frames, pings between them
		// included: one message of many frames spends the budget at once.
		ws = dial(t, s)
		nw, _ := ws.NextWriter(websocket.TextMessage)
		for range burst {
			nw.Write([]byte(" "))
			ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
		}
		nw.Write([]byte(`{"type":"frag"}`))
		nw.Close()
		expectCloseReason(t, ws, websocket.ClosePolicyViolation, "too many frames")

		// Up to the burst, anything goes.
		ws = dial(t, s)
		for range burst - 1 {
			ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
		}
		for range burst - 1 {
			expect(t, ws, `{"type":"pong"}`)
		}
		s.mu.Lock()
		c := s.conns[len(s.conns)-1]
		s.mu.Unlock()
		if !c.Send([]byte(`{"type":"still-open"}`)) {
			t.Fatal("a connection within its burst is closing")
		}
		expect(t, ws, `{"type":"still-open"}`)
	})
}

// A page pings every 25 s and answers the server's pings; now and then its
// user asks for a few new codes in a row, or the network holds its frames
// back and delivers them at once. None of that comes near the default budget.
func TestFrameBudgetFitsAPage(t *testing.T) {
	m := &Manager{cfg: Config{}.withDefaults()}
	c := &Conn{m: m}
	now := time.Unix(1_700_000_000, 0).UnixNano()
	for i := range 24 * 3600 / 25 { // a day
		frames := 2 // its ping and its pong to ours
		switch i % 100 {
		case 0:
			frames += 5 // five refreshes in a row
		case 50:
			frames += 10 // a minute of frames held back by the network, at once
		}
		for range frames {
			if !c.spend(now, 1) {
				t.Fatalf("frame refused %v into the day", time.Duration(i*25)*time.Second)
			}
		}
		now += int64(25 * time.Second)
	}
}

func TestFrameBudgetRefills(t *testing.T) {
	m := &Manager{cfg: Config{FrameBurst: 3, FrameRate: 2}.withDefaults()}
	c := &Conn{m: m}
	now := time.Unix(1_700_000_000, 0).UnixNano()
	for i := range 3 {
		if !c.spend(now, 1) {
			t.Fatalf("frame %d of the burst refused", i)
		}
	}
	if c.spend(now, 1) {
		t.Fatal("a frame over the burst was allowed")
	}
	now += int64(500 * time.Millisecond) // one frame's refill at 2 a second
	if !c.spend(now, 1) || c.spend(now, 1) {
		t.Fatal("half a second did not give back exactly one frame")
	}
	now += int64(time.Hour)
	if c.spend(now, 4) || !c.spend(now, 3) {
		t.Fatal("after a long pause the budget is not the whole burst")
	}
}

// Unknown types count toward the close for bad frames.
func TestUnknownTypesAreBadFrames(t *testing.T) {
	s := newServer(t, Config{MaxBadFrames: 3})
	ws := dial(t, s)
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"unknown"}`))
	expect(t, ws, string(msgUnknown))
	ws.WriteMessage(websocket.TextMessage, []byte(`not json`))
	expect(t, ws, string(msgBadRequest))
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
	expect(t, ws, `{"type":"pong"}`)
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"unknown"}`))
	expectCloseReason(t, ws, websocket.ClosePolicyViolation, "too many bad frames")
}

// An idle connection's memory is mostly this struct: keep it in the
// allocator's 192-byte class.
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) == 8 && unsafe.Sizeof(Conn{}) > 192 {
		t.Fatalf("Conn is %d bytes, over 192", unsafe.Sizeof(Conn{}))
	}
}
