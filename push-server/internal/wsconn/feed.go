package wsconn

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// feed is the net.Conn gorilla reads from. The connection reads the socket
// itself, without blocking, when the poller says bytes arrived; gorilla is
// then allowed exactly the bytes of complete units (see unit), so it never
// waits for more and an idle connection needs no goroutine parked in a read.
// Writes, deadlines and addresses go to the real connection.
type feed struct {
	net.Conn

	// Owned by the connection's reader (one at a time, see Conn.readable).
	buf     []byte // received, not yet consumed by gorilla
	allowed int    // how many bytes of buf gorilla may read now
}

// errStarved would mean gorilla asked for bytes it was not given; by
// construction it does not happen, and if it did the connection would end
// with this error instead of blocking.
var errStarved = errors.New("wsconn: read beyond the allowed bytes")

// Read implements net.Conn for gorilla.
func (f *feed) Read(p []byte) (int, error) {
	if f.allowed == 0 {
		return 0, errStarved
	}
	n := copy(p, f.buf[:f.allowed])
	f.buf = f.buf[n:]
	f.allowed -= n
	return n, nil
}

// hijacker makes gorilla's Upgrade hijack a feed instead of the raw
// connection, so the feed is what gorilla's reader wraps.
type hijacker struct {
	http.ResponseWriter
	feed *feed
}

// Hijack implements http.Hijacker.
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("wsconn: response writer cannot hijack")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.feed.Conn = nc
	return h.feed, brw, nil
}
