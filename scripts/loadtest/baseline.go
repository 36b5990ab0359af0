package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The baseline is what a team would write first: the gorilla/websocket chat
// example (examples/chat: client.go, hub.go) turned into push-by-id. It keeps
// the example's shape on purpose, so that the benchmark compares scanlogin
// with it side by side on the same machine:
//
//   - two goroutines per connection, readPump and writePump, the latter
//     with a ping ticker;
//   - a send channel of 256 messages per connection;
//   - the Upgrader's default buffers (zero sizes: gorilla reuses net/http's
//     4 KiB bufio reader and writer of the hijacked connection);
//   - a slow client (full channel) is dropped.
//
// Differences from the example, none of which changes the cost of an idle
// connection: clients live in a map by id under a mutex instead of the
// example's hub goroutine (the example only broadcasts); queued messages are
// written one frame each instead of joined with newlines, so every frame is
// one JSON document; the first frame tells the client its id.
//
//	GET  /ws         → first frame {"type":"hello","id":N}
//	POST /push?id=N  body: any JSON → frame {"type":"message","event":"bench","data":<body>}
//	                 204 sent, 404 no such id, 503 dropped as slow
//	POST /push/batch body: [{"id":N,"data":<any JSON>}, …] (1 to 1,000)
//	                 → 200 {"results":[200 sent | 404 | 503, …]}, in order
//	GET  /healthz    200
//
// The batch endpoint is what the same team would add for high-volume
// senders: decode the array with encoding/json, push each in turn.

// Timings of the chat example.
const (
	chatWriteWait      = 10 * time.Second
	chatPongWait       = 60 * time.Second
	chatPingPeriod     = chatPongWait * 9 / 10
	chatMaxMessageSize = 512
	chatSendQueue      = 256
	maxPushBody        = 64 << 10
	maxBatchBody       = 1 << 20
)

// chatClient is one connection, as in the chat example.
type chatClient struct {
	hub  *chatHub
	id   uint64
	conn *websocket.Conn
	send chan []byte // closed by the hub when the client is removed
}

// chatHub holds the clients by id.
type chatHub struct {
	mu      sync.Mutex
	clients map[uint64]*chatClient // guarded by mu
	next    uint64                 // guarded by mu
}

func (h *chatHub) add(c *chatClient) {
	h.mu.Lock()
	h.next++
	c.id = h.next
	h.clients[c.id] = c
	h.mu.Unlock()
}

func (h *chatHub) remove(c *chatClient) {
	h.mu.Lock()
	if h.clients[c.id] == c {
		delete(h.clients, c.id)
		close(c.send)
	}
	h.mu.Unlock()
}

// push queues msg for client id; it reports 404 or 503 as the example would
// drop a slow client.
func (h *chatHub) push(id uint64, msg []byte) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.clients[id]
	if !ok {
		return http.StatusNotFound
	}
	select {
	case c.send <- msg:
		return http.StatusOK
	default:
		delete(h.clients, c.id)
		close(c.send)
		return http.StatusServiceUnavailable
	}
}

func (h *chatHub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, c := range h.clients {
		delete(h.clients, id)
		close(c.send)
	}
}

// readPump is the example's: it only reads, to answer pings and notice the
// close.
func (c *chatClient) readPump() {
	defer func() {
		c.hub.remove(c)
		c.conn.Close()
	}()
	c.conn.SetReadLimit(chatMaxMessageSize)
	c.conn.SetReadDeadline(time.Now().Add(chatPongWait))
	c.conn.SetPongHandler(func(string) error { c.conn.SetReadDeadline(time.Now().Add(chatPongWait)); return nil })
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			return
		}
	}
}

// writePump is the example's, one frame per message.
func (c *chatClient) writePump() {
	ticker := time.NewTicker(chatPingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case msg, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(chatWriteWait))
			if !ok {
				c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(chatWriteWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

// chatMessage is the frame of a push of data.
func chatMessage(data []byte) []byte {
	msg := make([]byte, 0, len(data)+48)
	msg = append(msg, `{"type":"message","event":"bench","data":`...)
	msg = append(msg, data...)
	return append(msg, '}')
}

// newBaseline returns the baseline server's handler and a function that
// closes every connection.
func newBaseline() (http.Handler, func()) {
	hub := &chatHub{clients: make(map[uint64]*chatClient)}
	upgrader := websocket.Upgrader{} // default buffers
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &chatClient{hub: hub, conn: conn, send: make(chan []byte, chatSendQueue)}
		hub.add(c)
		c.send <- []byte(`{"type":"hello","id":` + strconv.FormatUint(c.id, 10) + `}`)
		go c.writePump()
		go c.readPump()
	})
	mux.HandleFunc("POST /push", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.URL.Query().Get("id"), 10, 64)
		if err != nil {
			http.Error(w, "id must be a number", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPushBody))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if code := hub.push(id, chatMessage(body)); code != http.StatusOK {
			http.Error(w, http.StatusText(code), code)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /push/batch", func(w http.ResponseWriter, r *http.Request) {
		var pushes []struct {
			ID   uint64          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBatchBody))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := json.Unmarshal(body, &pushes); err != nil || len(pushes) == 0 || len(pushes) > maxBatch {
			http.Error(w, "body must be a JSON array of 1 to 1000 {id, data}", http.StatusBadRequest)
			return
		}
		res := struct {
			Results []int `json:"results"`
		}{make([]int, len(pushes))}
		for i, p := range pushes {
			res.Results[i] = hub.push(p.ID, chatMessage(p.Data))
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return mux, hub.closeAll
}

// runBaseline is the "baseline" subcommand: it serves until SIGINT/SIGTERM.
func runBaseline(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9000", "loopback host:port to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkAddr("addr", *addr); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	h, closeAll := newBaseline()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Info("listening", "addr", ln.Addr().String(), "pid", os.Getpid())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	closeAll()
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return err
}
