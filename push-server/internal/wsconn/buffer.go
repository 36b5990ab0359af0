package wsconn

import (
	"errors"
	"io"
	"net"
	"sync"
)

// readBufSize is the size of the pooled buffers that hold bytes between
// their arrival and gorilla reading them. An idle connection holds none.
const readBufSize = 2048

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// grow returns the feed's buffer with room for more bytes at its end,
// taking a pooled one when it has none. Reader only.
func (c *Conn) grow() []byte {
	buf := c.feed.buf
	switch {
	case buf == nil:
		c.backing = readBufs.Get().(*[]byte)
		buf = (*c.backing)[:0]
	case len(buf) < cap(buf):
		// room at the end
	case c.backing != nil && len(buf) < len(*c.backing):
		// room at the front of the pooled array: move the bytes there
		n := copy(*c.backing, buf)
		buf = (*c.backing)[:n]
	default:
		bigger := make([]byte, len(buf), 2*cap(buf)+readBufSize)
		copy(bigger, buf)
		c.release()
		buf = bigger
	}
	c.feed.buf = buf
	return buf
}

// compact gives the pooled buffer back once every byte was consumed.
func (c *Conn) compact() {
	if len(c.feed.buf) == 0 {
		c.feed.buf = nil
		c.release()
	}
}

// discard drops what the feed holds and gives its buffer back: for a
// connection that has ended, whose bytes (the browser's close frame, say)
// nobody will read. Reader only.
func (c *Conn) discard() {
	c.feed.buf = nil
	c.release()
}

func (c *Conn) release() {
	if c.backing != nil {
		readBufs.Put(c.backing)
		c.backing = nil
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
