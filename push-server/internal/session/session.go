// Package session runs one browser WebSocket: a reader goroutine that owns
// every read (frames, pongs, deadlines) and a writer goroutine that owns
// every write, fed by a bounded queue. Producers never block: a connection
// whose queue is full is closed as a slow consumer.
package session

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket close codes this package sends besides gorilla's own (1002
// protocol error, 1009 message too big).
const (
	CloseNormal        = websocket.CloseNormalClosure     // 1000: login delivered
	CloseGoingAway     = websocket.CloseGoingAway         // 1001: server shutting down; resume elsewhere
	CloseUnsupported   = websocket.CloseUnsupportedData   // 1003: binary frame
	ClosePolicy        = websocket.ClosePolicyViolation   // 1008: too many bad frames
	CloseInternal      = websocket.CloseInternalServerErr // 1011
	CloseTryAgainLater = websocket.CloseTryAgainLater     // 1013: slow consumer, rate limited, upstream down
)

// Config tunes a connection. Zero fields take the defaults.
type Config struct {
	PingInterval time.Duration // server ping period; default 25s, inside common 60s proxy idle timeouts
	PongWait     time.Duration // read deadline, extended by any frame or pong; default 60s
	WriteWait    time.Duration // deadline of one write; default 10s
	ReadLimit    int64         // largest accepted frame; default 4 KiB
	QueueSize    int           // queued outbound messages before the connection counts as slow; default 32
	MaxBadFrames int           // malformed frames tolerated before closing; default 5
}

func (c Config) withDefaults() Config {
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PongWait <= 0 {
		c.PongWait = 60 * time.Second
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
	return c
}

// Handler receives the browser's requests other than ping, which the
// connection answers itself. It runs on the reader goroutine.
type Handler interface {
	Receive(c *Conn, typ string)
}

// Messages the connection sends by itself.
var (
	msgPong       = []byte(`{"type":"pong"}`)
	msgBadRequest = []byte(`{"type":"error","code":"bad_request","message":"expected a JSON text frame like {\"type\":\"ping\"}"}`)
)

// closeGrace is how long we wait for the browser's close reply.
const closeGrace = time.Second

// Conn is one browser WebSocket.
type Conn struct {
	ws  *websocket.Conn
	cfg Config
	log *slog.Logger

	send chan []byte // producers → writer

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: writer flushes, sends the close frame, stops
	closed    atomic.Bool   // set by Close; Send refuses afterwards
	code      int           // close code; written once under closeOnce, read by the writer after closing
	reason    string        // likewise

	dead chan struct{} // closed when the reader has stopped
}

// New wraps an upgraded WebSocket. Call Serve to run it.
func New(ws *websocket.Conn, cfg Config, log *slog.Logger) *Conn {
	cfg = cfg.withDefaults()
	return &Conn{
		ws:      ws,
		cfg:     cfg,
		log:     log,
		send:    make(chan []byte, cfg.QueueSize),
		closing: make(chan struct{}),
		dead:    make(chan struct{}),
	}
}

// Send queues msg for the browser without blocking. It reports false if the
// connection is closing, or if its queue is full, in which case the
// connection is closed as a slow consumer (1013).
func (c *Conn) Send(msg []byte) bool {
	if c.closed.Load() {
		return false
	}
	select {
	case c.send <- msg:
		return true
	default:
		c.Close(CloseTryAgainLater, "slow consumer")
		return false
	}
}

// SendAndClose queues msg, then closes with code once msg is written.
func (c *Conn) SendAndClose(msg []byte, code int, reason string) bool {
	ok := c.Send(msg)
	c.Close(code, reason)
	return ok
}

// Close starts an orderly close: what is queued is written, then a close
// frame with code. Only the first call counts.
func (c *Conn) Close(code int, reason string) {
	c.closeOnce.Do(func() {
		c.code, c.reason = code, reason
		c.closed.Store(true)
		close(c.closing)
	})
}

// Done is closed when the connection has stopped reading.
func (c *Conn) Done() <-chan struct{} { return c.dead }

// Serve runs the connection until it ends: the reader on this goroutine,
// the writer on another. It returns after both have stopped and the socket
// is closed. The error says why the reader stopped; normal closes are nil.
func (c *Conn) Serve(h Handler) error {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop(h)
	close(c.dead)
	c.Close(CloseNormal, "") // no-op if closing already; stops the writer otherwise
	<-writerDone
	if errors.Is(err, websocket.ErrReadLimit) {
		// gorilla sent 1009; closing now, with the rest of the frame unread,
		// would reset the socket and could destroy that close frame.
		c.drain()
	}
	_ = c.ws.Close()
	if isNormalClose(err) {
		return nil
	}
	return err
}

// drain discards what the browser still sends, for at most closeGrace.
func (c *Conn) drain() {
	nc := c.ws.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
}

func (c *Conn) readLoop(h Handler) error {
	c.ws.SetReadLimit(c.cfg.ReadLimit)
	_ = c.ws.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
	})
	bad := 0
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		if c.closed.Load() {
			continue // draining until the close reply
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
		if typ != websocket.TextMessage {
			c.Close(CloseUnsupported, "text frames only")
			continue
		}
		var in struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(data, &in) != nil || in.Type == "" {
			bad++
			if bad >= c.cfg.MaxBadFrames {
				c.Close(ClosePolicy, "too many bad frames")
				continue
			}
			c.Send(msgBadRequest)
			continue
		}
		if in.Type == "ping" {
			c.Send(msgPong)
			continue
		}
		h.Receive(c, in.Type)
	}
}

func (c *Conn) writeLoop() {
	ping := time.NewTicker(c.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case msg := <-c.send:
			if !c.write(websocket.TextMessage, msg) {
				return
			}
		case <-ping.C:
			if !c.write(websocket.PingMessage, nil) {
				return
			}
		case <-c.dead:
			return
		case <-c.closing:
			c.flushAndClose()
			return
		}
	}
}

// flushAndClose writes what is queued and the close frame, then gives the
// browser closeGrace to answer before the reader is cut off.
func (c *Conn) flushAndClose() {
	for {
		select {
		case msg := <-c.send:
			if !c.write(websocket.TextMessage, msg) {
				return
			}
			continue
		default:
		}
		break
	}
	select {
	case <-c.dead:
		return
	default:
	}
	frame := websocket.FormatCloseMessage(c.code, c.reason)
	_ = c.ws.WriteControl(websocket.CloseMessage, frame, time.Now().Add(c.cfg.WriteWait))
	_ = c.ws.SetReadDeadline(time.Now().Add(closeGrace))
}

func (c *Conn) write(typ int, msg []byte) bool {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteWait))
	if err := c.ws.WriteMessage(typ, msg); err != nil {
		c.log.Debug("write failed", "err", err)
		_ = c.ws.SetReadDeadline(time.Now()) // wake the reader: the socket is done
		return false
	}
	return true
}

// isNormalClose reports whether err is an ordinary end of a connection
// rather than a problem worth logging.
func isNormalClose(err error) bool {
	if err == nil {
		return true
	}
	return websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) ||
		errors.Is(err, websocket.ErrCloseSent)
}
