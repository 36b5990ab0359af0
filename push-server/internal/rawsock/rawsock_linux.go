//go:build linux

// Package rawsock does the system calls of sockets that never block (reads
// and writes of non-blocking sockets, epoll_ctl, epoll_wait with a zero
// timeout) as raw system calls, wraps a TCP listener so that its
// connections read and write that way, and takes a socket out of Go's
// network poller altogether for a server that waits for it itself (FD).
//
// Go's ordinary system calls tell the scheduler that the goroutine may block:
// the P is released for the length of the call, and the first such call after
// the process was idle wakes sysmon, which then polls every 20 µs while any P
// is busy. At a few thousand small requests a second, with the process going
// idle between them, that bookkeeping cost more than the calls themselves
// (sysmon alone was a fifth of push-server's CPU). A call that cannot block
// needs none of it. Waiting is still done by Go's network poller, so
// deadlines and Close work as for any net.Conn.
package rawsock

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read reads from the non-blocking descriptor fd.
func Read(fd int, p []byte) (int, error) { return readWrite(unix.SYS_READ, fd, p, 0) }

// Write writes to the non-blocking descriptor fd; a full socket buffer
// writes less, or fails with EAGAIN.
func Write(fd int, p []byte) (int, error) { return readWrite(unix.SYS_WRITE, fd, p, 0) }

// WriteLast writes p to the non-blocking socket fd as the last bytes it
// sends, and when all of p is taken shuts the write side down (the read side
// stays open): the FIN leaves in the segment that carries p, instead of in a
// second one when the socket is closed. A short write (or EAGAIN) leaves the
// socket open for the rest, which a later Write sends.
func WriteLast(fd int, p []byte) (int, error) {
	// MSG_MORE holds the bytes back until the FIN joins them.
	n, err := readWrite(unix.SYS_SENDTO, fd, p, unix.MSG_MORE|unix.MSG_NOSIGNAL)
	if err != nil || n < len(p) {
		return n, err
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0); e != 0 {
		return n, e
	}
	return n, nil
}

// readWrite is read(2), write(2) or send(2) of p (flags are send's), retried
// on EINTR.
func readWrite(trap uintptr, fd int, p []byte, flags uintptr) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), flags, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// EpollCtl is unix.EpollCtl as a raw system call.
func EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// EpollPoll returns the events ready now on epfd, without waiting.
func EpollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// Listen wraps ln: the TCP connections it accepts read and write with raw
// system calls. Other connections pass through unchanged.
func Listen(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// Wrap returns c as a *Conn if it is a TCP connection, else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{TCPConn: tc, rc: rc}
}

// Conn is a TCP connection whose Read and Write are raw system calls on its
// non-blocking socket, waiting in Go's network poller when there is nothing
// to read or no room to write. Everything else is the *net.TCPConn's.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := getCall(p)
	err := c.rc.Read(op.readWait)
	n, serr := op.n, op.err
	putCall(op)
	switch {
	case err != nil: // closed, or past the deadline
		return 0, c.opError("read", err)
	case serr != nil:
		return 0, c.opError("read", os.NewSyscallError("read", serr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write implements net.Conn.
func (c *Conn) Write(p []byte) (int, error) {
	op := getCall(p)
	err := c.rc.Write(op.writeAll)
	n, serr := op.n, op.err
	putCall(op)
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case serr != nil:
		return n, c.opError("write", os.NewSyscallError("write", serr))
	}
	return n, nil
}

// call carries one read or write through syscall.RawConn. The functions
// RawConn calls are bound to it once, and calls are pooled, so a read or a
// write allocates nothing (closures capturing the buffer and results did:
// several allocations per gRPC call).
type call struct {
	p   []byte
	n   int
	err error

	readWait, writeAll func(fd uintptr) bool
}

var calls = sync.Pool{New: func() any {
	c := new(call)
	c.readWait, c.writeAll = c.doReadWait, c.doWriteAll
	return c
}}

func getCall(p []byte) *call {
	c := calls.Get().(*call)
	c.p, c.n, c.err = p, 0, nil
	return c
}

func putCall(c *call) {
	c.p, c.err = nil, nil
	calls.Put(c)
}

// doReadWait reads once; on EAGAIN, RawConn waits for the socket and calls
// it again.
func (c *call) doReadWait(fd uintptr) bool {
	c.n, c.err = Read(int(fd), c.p)
	return c.err != unix.EAGAIN
}

// doWriteAll writes until all of p is taken, waiting (by returning false)
// whenever the socket is full.
func (c *call) doWriteAll(fd uintptr) bool {
	for c.n < len(c.p) {
		m, e := Write(int(fd), c.p[c.n:])
		if e == unix.EAGAIN {
			return false // wait until writable
		}
		if e != nil {
			c.err = e
			return true
		}
		c.n += m
	}
	return true
}

// opError wraps err as the net package would, so callers that look for
// net.ErrClosed or a timeout find it.
func (c *Conn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
