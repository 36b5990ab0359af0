package wsconn

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// closeGrace is how long we wait for the browser's close reply.
const closeGrace = time.Second

// Config tunes connections. Zero fields take the defaults.
type Config struct {
	// PingInterval: a connection sent nothing for this long gets a ping;
	// default 25s, inside common 60s proxy idle timeouts. Any frame keeps
	// proxies' idle timers alive as a ping does, so busy connections are
	// not pinged.
	PingInterval time.Duration
	// PongWait: a ping that no bytes from the browser answer within this
	// closes the connection; default 35s, so an idle connection whose
	// browser vanished ends within 60s of its last sign of life. Where
	// frames are being written instead, the kernel ends it: unacknowledged
	// data times the socket out after PingInterval+PongWait
	// (TCP_USER_TIMEOUT, on Linux).
	PongWait     time.Duration
	WriteWait    time.Duration // deadline of one write; default 10s
	ReadLimit    int64         // largest accepted message; default 4 KiB
	QueueSize    int           // queued outbound messages before the connection counts as slow; default 32
	MaxBadFrames int           // malformed frames tolerated before closing; default 5
	// FrameBurst and FrameRate are each connection's budget of inbound
	// frames, control frames included: FrameBurst at once, refilled at
	// FrameRate a second; defaults 20 and 5, far above what a page sends
	// (a ping every 25s, a pong for each of ours, a refresh now and then).
	// A connection over it is closed with 1008.
	FrameBurst int
	FrameRate  int
	// SweepInterval is how often pings, silence and close replies are
	// checked; default 1s.
	SweepInterval time.Duration
	// Portable reads each connection with a goroutine of its own instead of
	// the platform's readiness poller (the only mode off Linux).
	Portable bool
}

func (c Config) withDefaults() Config {
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PongWait <= 0 {
		c.PongWait = 35 * time.Second
	}
	if c.WriteWait <= 0 {
		c.WriteWait = 10 * time.Second
	}
	if c.ReadLimit <= 0 {
		c.ReadLimit = 4 << 10
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 32
	}
	if c.MaxBadFrames <= 0 {
		c.MaxBadFrames = 5
	}
	if c.FrameBurst <= 0 {
		c.FrameBurst = 20
	}
	if c.FrameRate <= 0 {
		c.FrameRate = 5
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Second
	}
	return c
}

// poller watches connections for incoming bytes and calls readable.
type poller interface {
	// attach takes c's socket for the poller, before anything is sent.
	attach(c *Conn) error
	add(c *Conn) error
	remove(c *Conn)
	// fill moves what the socket holds into c.feed.buf.
	fill(c *Conn) (eof bool, err error)
	// writeNow writes what the socket takes now, without blocking; last:
	// nothing follows b, and the write side may be shut down after it.
	writeNow(c *Conn, b []byte, last bool) (int, error)
	run(ctx context.Context)
}

// Manager upgrades, watches and sweeps connections.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	poll     poller
	upgrader websocket.Upgrader

	mu    sync.Mutex
	conns []*Conn // open connections, each at its idx; guarded by mu

	// clock is unix ns, set by the sweeper at each tick: a send stamps
	// Conn.sent with it instead of reading the time. Pings need no finer
	// time than the sweep's.
	clock atomic.Int64
}

// NewManager returns a Manager; call Run to serve its connections.
func NewManager(cfg Config, log *slog.Logger) (*Manager, error) {
	cfg = cfg.withDefaults()
	m := &Manager{cfg: cfg, log: log}
	m.clock.Store(time.Now().UnixNano())
	m.upgrader = websocket.Upgrader{
		// gorilla's reader only ever holds what a unit needs; the smallest
		// buffer it accepts is enough, since control frames are at most 125 bytes.
		ReadBufferSize: 128,
		// Frames are written by Conn.write, never by gorilla; a pool (never
		// used) stops gorilla from keeping the handshake's 4 KiB write
		// buffer for each connection.
		WriteBufferSize: 128,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(*http.Request) bool { return true }, // checked by the caller
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	if cfg.Portable {
		m.poll = &goroutines{}
	} else {
		p, err := newPoller(m)
		if err != nil {
			return nil, err
		}
		m.poll = p
	}
	return m, nil
}

// frameCost is the time, in ns, the frame budget takes to refill by one frame.
func (m *Manager) frameCost() int64 { return int64(time.Second) / int64(m.cfg.FrameRate) }

// maxBuffered bounds the bytes kept for one unit that is not complete yet.
func (m *Manager) maxBuffered() int { return int(m.cfg.ReadLimit) + 64 }

// Upgrade completes the WebSocket handshake for h, which will receive the
// browser's requests; onClose is told, once, when the connection has ended
// (nil error for an ordinary close). The connection can Send at once; call
// Start to read from it.
func (m *Manager) Upgrade(w http.ResponseWriter, r *http.Request, h Handler, onClose func(error)) (*Conn, error) {
	f := &feed{}
	ws, err := m.upgrader.Upgrade(&hijacker{ResponseWriter: w, feed: f}, r, nil)
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	ws.SetReadLimit(m.cfg.ReadLimit)
	c := &Conn{m: m, ws: ws, feed: f, h: h, onClose: onClose, early: uint16(rand.Uint32())}
	// Every frame goes out through c.write, never through gorilla, so that
	// frames never interleave; this answers a browser's close frame, unless
	// it is the reply to ours.
	ws.SetCloseHandler(func(code int, _ string) error {
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		if c.startClose() {
			c.write(closeFrame(code, ""), true)
		}
		return nil
	})
	// A socket on which written data stays unacknowledged this long is
	// ended by the kernel: what finds a vanished browser on a busy
	// connection, which gets no pings. Best effort: not every platform has it.
	_ = setUserTimeout(f.Conn, m.cfg.PingInterval+m.cfg.PongWait)
	c.sent.Store(time.Now().UnixNano())
	if err := m.poll.attach(c); err != nil {
		ws.Close()
		m.log.Warn("websocket refused after its handshake", "err", err) // our side's failure (out of descriptors, say), not the browser's
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	m.mu.Lock()
	c.idx = len(m.conns)
	m.conns = append(m.conns, c)
	m.mu.Unlock()
	return c, nil
}

// Start begins reading the connection.
func (c *Conn) Start() {
	if c.dead.Load() {
		return
	}
	if err := c.m.poll.add(c); err != nil {
		c.kill(fmt.Errorf("watch connection: %w", err))
	}
}

// remove forgets c; called once, by kill.
func (m *Manager) remove(c *Conn) {
	m.mu.Lock()
	last := len(m.conns) - 1
	m.conns[c.idx] = m.conns[last]
	m.conns[c.idx].idx = c.idx
	m.conns[last] = nil
	m.conns = m.conns[:last]
	m.mu.Unlock()
	m.poll.remove(c)
}

// CloseAll starts an orderly close of every connection with code.
func (m *Manager) CloseAll(code int, reason string) {
	m.mu.Lock()
	all := slices.Clone(m.conns)
	m.mu.Unlock()
	for _, c := range all {
		c.Close(code, reason)
	}
}

// Len reports how many connections are open.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

// sweepSlices is how many ticks one sweep over every connection takes. The
// pings due in one SweepInterval then leave in small groups, not in one
// burst of system calls that holds up everything else on the P.
const sweepSlices = 50

// Run serves the connections (poller and sweeper) until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	go m.poll.run(ctx)
	t := time.NewTicker(max(m.cfg.SweepInterval/sweepSlices, time.Millisecond))
	defer t.Stop()
	var batch []*Conn
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.clock.Store(now.UnixNano())
			batch = m.sweep(now, tick%sweepSlices, batch[:0])
		}
	}
}

// sweep pings the connections of one slice that were sent nothing for
// PingInterval, and ends those that left a ping or a close unanswered.
// Slice i of sweepSlices is a contiguous range of m.conns; a connection
// moved by a removal meanwhile may wait one more round. batch is reused
// between sweeps.
func (m *Manager) sweep(now time.Time, slice int, batch []*Conn) []*Conn {
	m.mu.Lock()
	per := (len(m.conns) + sweepSlices - 1) / sweepSlices
	lo := min(slice*per, len(m.conns))
	batch = append(batch, m.conns[lo:min(lo+per, len(m.conns))]...)
	m.mu.Unlock()
	n := now.UnixNano()
	for i, c := range batch {
		if at := c.alarm.Load(); at != 0 && n >= at && c.alarm.CompareAndSwap(at, 0) {
			go c.h.Alarm(c)
		}
		asked := c.asked.Load()
		switch by := c.closeBy.Load(); {
		case by != 0 && n > by:
			c.kill(ErrCloseTimout)
		case asked != 0 && n-asked > int64(m.cfg.PongWait):
			c.kill(ErrIdle)
		case m.pingDue(c, n):
			c.ping(now)
		}
		batch[i] = nil
	}
	return batch
}

// pingDue reports whether c, sent nothing since its last frame, is due for
// a ping at n: PingInterval after that frame, less up to a quarter of it,
// by c.early. Connections that were sent a frame together (a wave of new
// connections each sent its code) so ping at different times, and their
// pings drift further apart every round instead of leaving in waves.
func (m *Manager) pingDue(c *Conn, n int64) bool {
	interval := int64(m.cfg.PingInterval)
	return n-c.sent.Load() >= interval-interval/4*int64(c.early)>>16
}

// goroutines is the portable poller: one goroutine per connection, blocked
// in a read.
type goroutines struct{}

func (goroutines) add(c *Conn) error {
	go func() {
		for c.readable() {
		}
	}()
	return nil
}

func (goroutines) attach(*Conn) error { return nil }

// writeNow leaves everything to the writer goroutine.
func (goroutines) writeNow(*Conn, []byte, bool) (int, error) { return 0, nil }

func (goroutines) remove(*Conn)        {}
func (goroutines) run(context.Context) {}

func (goroutines) fill(c *Conn) (bool, error) {
	buf := c.grow()
	n, err := c.feed.Conn.Read(buf[len(buf):cap(buf)])
	c.feed.buf = buf[:len(buf)+n]
	if n == 0 && err != nil {
		if isEOF(err) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}
