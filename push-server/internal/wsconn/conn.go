package wsconn

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
)

// Handler receives the browser's requests other than ping, which the
// connection answers itself. Calls of Receive for one connection never
// overlap.
type Handler interface {
	// Receive handles a request of type typ and reports whether it knew
	// the type; an unknown one counts as a bad frame.
	Receive(c *Conn, typ string) bool
	// Alarm is called, on its own goroutine, once the time set with
	// SetAlarm has come (checked every SweepInterval).
	Alarm(c *Conn)
}

// Messages the connection sends by itself.
var (
	msgPong       = browser.Pong.JSON
	msgBadRequest = browser.NotJSON.JSON
	msgUnknown    = browser.UnknownType.JSON
)

// Errors that end a connection, as OnClose sees them.
var (
	ErrIdle        = errors.New("wsconn: ping not answered within PongWait")
	ErrCloseTimout = errors.New("wsconn: no close reply")
	ErrPeerGone    = errors.New("wsconn: peer closed the connection")
)

// Conn is one browser WebSocket. It costs no goroutine while idle: reads
// run when the poller reports bytes, writes run while the queue has items.
type Conn struct {
	_ [0]func() // not comparable by value (first: a trailing zero-size field is padded)

	m    *Manager
	ws   *websocket.Conn
	feed *feed
	idx  int     // position in Manager.conns; guarded by Manager.mu
	sock *socket // the socket outside Go's poller, for the epoll poller; nil in Portable mode
	fd   int     // its number, the poller's key; immutable

	backing *[]byte // the pooled array under feed.buf, if any; reader only

	h       Handler      // immutable
	onClose func(error)  // immutable
	bad     int          // malformed frames so far; reader only
	spent   int64        // unix ns until which inbound frames have used up the frame budget (see spend); reader only
	closing atomic.Bool  // Close was called: no more Sends
	dead    atomic.Bool  // the socket is closed
	killed  sync.Once    // guards the end
	drain   bool         // gorilla refused an oversized frame, or the frame budget ran out: discard what follows; reader only
	writing bool         // a writer goroutine is draining queue; guarded by mu (here, beside drain, it fills padding)
	early   uint16       // random; how much sooner than PingInterval this connection's pings come (see Manager.pingDue); immutable
	sent    atomic.Int64 // unix ns, Manager.clock's, of the last frame sent (pings included)
	asked   atomic.Int64 // unix ns of the first ping not yet answered by any bytes read; 0: none
	closeBy atomic.Int64 // unix ns by which the close reply must come; 0: not closing
	read    sync.Mutex   // held by readable: the poller runs one at a time, but a handover through epoll is no happens-before edge for Go
	alarm   atomic.Int64 // unix ns of the Handler's alarm; 0: none
	mu      sync.Mutex   // guards queue and writing
	queue   [][]byte     // guarded by mu
}

// Send queues msg for the browser without blocking. It reports false if the
// connection is closing, or if its queue is full, in which case the
// connection is closed as a slow consumer (1013).
func (c *Conn) Send(msg []byte) bool {
	if c.closing.Load() {
		return false
	}
	if !c.write(serverFrame(opText, msg), false) {
		c.Close(browser.CloseTryAgainLater, "slow consumer")
		return false
	}
	return true
}

// SendAndClose queues msg, then closes with code once msg is written: both
// frames in one write. It reports false if the connection was closing
// already, or if its queue is full, in which case it closes with 1013
// instead and msg is not sent.
func (c *Conn) SendAndClose(msg []byte, code int, reason string) bool {
	if !c.startClose() {
		return false
	}
	// Both frames in one allocation. They are the last bytes sent, so the
	// FIN goes with them (send's last) rather than in a segment of its own
	// when the socket closes after the browser's reply.
	closeMsg := websocket.FormatCloseMessage(code, reason)
	frames := make([]byte, 0, 2*frameHeaderMax+len(msg)+len(closeMsg))
	frames = appendFrame(appendFrame(frames, opText, msg), opClose, closeMsg)
	if !c.send(frames, false, true) {
		c.write(closeFrame(browser.CloseTryAgainLater, "slow consumer"), true)
		return false
	}
	return true
}

// Close starts an orderly close: what is queued is written, then a close
// frame with code; the browser has a moment to answer. Only the first call
// counts.
func (c *Conn) Close(code int, reason string) {
	if c.startClose() {
		c.write(closeFrame(code, reason), true)
	}
}

// startClose marks the connection closing and starts the wait for the
// browser's reply; false if it was closing already.
func (c *Conn) startClose() bool {
	if c.closing.Swap(true) {
		return false
	}
	c.closeBy.Store(time.Now().Add(c.m.cfg.WriteWait + closeGrace).UnixNano())
	return true
}

// closeFrame is a server close frame with code and reason.
func closeFrame(code int, reason string) []byte {
	return serverFrame(opClose, websocket.FormatCloseMessage(code, reason))
}

// SetAlarm asks for h.Alarm at t (the zero time cancels). One sweeper
// serves every connection's alarm, so an alarm costs no timer.
func (c *Conn) SetAlarm(t time.Time) {
	if t.IsZero() {
		c.alarm.Store(0)
		return
	}
	c.alarm.Store(max(t.UnixNano(), 1))
}

// Ended reports whether the connection has ended.
func (c *Conn) Ended() bool { return c.dead.Load() }

// serverFrame frames payload as one unmasked server frame (RFC 6455 §5.2).
func serverFrame(op byte, payload []byte) []byte {
	return appendFrame(make([]byte, 0, frameHeaderMax+len(payload)), op, payload)
}

// frameHeaderMax is the longest header of a server frame.
const frameHeaderMax = 10

// appendFrame appends payload, framed as one unmasked server frame, to b.
func appendFrame(b []byte, op byte, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|op, byte(n))
	case n < 1<<16:
		b = append(b, 0x80|op, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|op, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// write sends one frame. When nothing is being written it tries the socket
// at once, without blocking, from the caller's goroutine; what does not go
// out then is queued for a writer goroutine, which runs only while there is
// something to write. false: the queue is full (unless force).
func (c *Conn) write(frame []byte, force bool) bool { return c.send(frame, force, false) }

// send is write; last marks the last frame the connection sends, which,
// written at once in full, also shuts the socket's write side (see
// socket.writeNow). Queued, it leaves the FIN to the close of the socket.
func (c *Conn) send(frame []byte, force, last bool) bool {
	c.sent.Store(c.m.clock.Load())
	c.mu.Lock()
	if c.writing || len(c.queue) > 0 {
		if !force && len(c.queue) >= c.m.cfg.QueueSize {
			c.mu.Unlock()
			return false
		}
		c.queue = append(c.queue, frame)
		c.mu.Unlock()
		return true
	}
	c.writing = true
	c.mu.Unlock()

	n, err := c.m.poll.writeNow(c, frame, last)
	if err != nil {
		c.kill(err)
		return true
	}
	c.mu.Lock()
	if n < len(frame) {
		c.queue = append(c.queue, nil) // keep the slot order: the rest goes first
		copy(c.queue[1:], c.queue)
		c.queue[0] = frame[n:]
	}
	if len(c.queue) == 0 {
		c.writing = false
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()
	go c.writeLoop()
	return true
}

// ping queues a ping unless the connection is closing, and starts the
// wait for an answer if none is running.
func (c *Conn) ping(now time.Time) {
	c.asked.CompareAndSwap(0, now.UnixNano())
	if !c.closing.Load() {
		c.write(serverFrame(opPing, nil), false)
	}
	c.sent.Store(now.UnixNano()) // the sweep's time, finer than send's stamp
}

// writeLoop writes queued frames until the queue is empty, then exits: the
// single writer of the connection while it runs.
func (c *Conn) writeLoop() {
	nc := c.feed.Conn
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.dead.Load() {
			// The deadline would outlive us: the next direct write (through
			// the same file descriptor) would fail with "i/o timeout" once
			// it passed, and end the connection.
			_ = nc.SetWriteDeadline(time.Time{})
			c.writing = false
			c.queue = nil // an idle connection keeps no queue memory
			c.mu.Unlock()
			return
		}
		frame := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.mu.Unlock()

		_ = nc.SetWriteDeadline(time.Now().Add(c.m.cfg.WriteWait))
		if _, err := nc.Write(frame); err != nil {
			c.kill(err)
		}
	}
}

// readable reads what the socket holds, without blocking, and handles every
// complete unit. It reports whether the connection lives on (so the poller
// should wait for more).
func (c *Conn) readable() (alive bool) {
	c.read.Lock()
	defer c.read.Unlock()
	defer func() {
		if !alive {
			c.discard()
		}
	}()
	if c.dead.Load() {
		return false
	}
	eof, err := c.m.poll.fill(c)
	if err != nil {
		c.kill(err)
		return false
	}
	var now int64
	if len(c.feed.buf) > 0 || eof {
		now = time.Now().UnixNano()
		if c.asked.Load() != 0 {
			c.asked.Store(0) // any bytes answer a ping: the browser is there
		}
	}
	if c.drain {
		c.feed.buf = c.feed.buf[:0]
	}
	for !c.drain && len(c.feed.buf) > 0 {
		n, kind, payload, frames := unit(c.feed.buf, c.m.cfg.ReadLimit)
		if n == 0 {
			if len(c.feed.buf) >= c.m.maxBuffered() {
				// garbage; let gorilla say what is wrong
				n, kind, frames = len(c.feed.buf), unitGorilla, countFrames(c.feed.buf)
			} else {
				break
			}
		}
		if !c.closing.Load() && !c.spend(now, frames) {
			c.m.log.Info("websocket over its frame budget: closed with 1008", "frames", frames)
			c.Close(browser.ClosePolicy, "too many frames")
			// Nothing it sends matters now, its close reply included:
			// discard it unread until the close grace ends.
			c.drain = true
			c.closeBy.Store(now + int64(closeGrace))
			c.feed.buf = c.feed.buf[:0]
			break
		}
		switch kind {
		case unitPong:
			c.feed.buf = c.feed.buf[n:]
		case unitPing:
			c.feed.buf = c.feed.buf[n:]
			if !c.closing.Load() { // our close frame is out or queued: nothing may follow it
				c.write(serverFrame(opPong, payload), true)
			}
		case unitGorilla:
			c.feed.allowed = n
			if !c.gorilla() {
				return false
			}
			if c.feed.allowed != 0 {
				c.feed.buf = c.feed.buf[c.feed.allowed:] // gorilla stopped early (a refused frame)
				c.feed.allowed = 0
			}
		}
	}
	c.compact()
	if eof {
		c.kill(ErrPeerGone)
		return false
	}
	return true
}

// gorilla lets gorilla read one unit and handles the message; false when
// the connection has ended.
func (c *Conn) gorilla() bool {
	typ, r, err := c.ws.NextReader()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			// gorilla sent 1009. Closing now, with the rest of the frame
			// unread, would reset the socket and could destroy that close
			// frame: discard what follows until the close grace ends.
			c.drain = true
			c.closing.Store(true)
			c.closeBy.Store(time.Now().Add(closeGrace).UnixNano())
			return true
		}
		c.kill(err)
		return false
	}
	data, err := io.ReadAll(r)
	if err != nil {
		c.kill(err)
		return false
	}
	if c.closing.Load() {
		return true // draining until the close reply
	}
	if typ != websocket.TextMessage {
		c.Close(browser.CloseUnsupported, "text frames only")
		return true
	}
	var in struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(data, &in) != nil || in.Type == "" {
		c.badFrame(msgBadRequest)
		return true
	}
	if in.Type == browser.RequestPing {
		c.Send(msgPong)
		return true
	}
	if !c.h.Receive(c, in.Type) {
		c.badFrame(msgUnknown)
	}
	return true
}

// badFrame counts a frame the connection could not use: answered with
// answer, or with a close (1008) once MaxBadFrames are reached.
func (c *Conn) badFrame(answer []byte) {
	c.bad++
	if c.bad >= c.m.cfg.MaxBadFrames {
		c.Close(browser.ClosePolicy, "too many bad frames")
		return
	}
	c.Send(answer)
}

// spend takes n inbound frames, read at now (unix ns), from the
// connection's budget and reports whether it had them. The budget is a
// token bucket kept in one number (GCRA): each frame moves spent, never
// behind the clock, one frameCost further, and it may run at most
// FrameBurst frames ahead of the clock.
func (c *Conn) spend(now int64, n int) bool {
	cost := c.m.frameCost()
	t := max(c.spent, now) + int64(n)*cost
	if t-now > int64(c.m.cfg.FrameBurst)*cost {
		return false
	}
	c.spent = t
	return true
}

// kill ends the connection once: it leaves the poller, closes the socket
// and tells the owner.
func (c *Conn) kill(err error) {
	c.killed.Do(func() {
		c.closing.Store(true)
		c.dead.Store(true)
		c.m.remove(c)
		_ = c.ws.Close() // closes the socket, and ends a waiting writer
		if isNormalClose(err) {
			err = nil
		}
		if c.onClose != nil {
			c.onClose(err)
		}
	})
}

// isNormalClose reports whether err is an ordinary end of a connection
// rather than a problem worth logging.
func isNormalClose(err error) bool {
	if err == nil || errors.Is(err, ErrPeerGone) {
		return true
	}
	return websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) ||
		errors.Is(err, websocket.ErrCloseSent)
}
