//go:build linux

package wsconn

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socket is a connected TCP socket outside Go's network poller, which the
// epoll poller watches instead: while idle it costs its number, its locks
// and its deadlines, where Go's poller would keep a record with two timers,
// a finalizer and the net package's connection.
//
// Every system call on the number holds mu shared and Close holds it
// alone, so no call ever reaches a number that was closed and given to
// another socket meanwhile. The system calls never block. A Write (or
// Read) that has to wait borrows a duplicate of the descriptor in Go's
// poller for the length of the wait, which honours the deadlines and ends
// when Close is called.
//
// socket implements net.Conn, for gorilla and the writer goroutine.
type socket struct {
	_ [0]func() // not comparable (first: a trailing zero-size field is padded)

	mu sync.RWMutex // shared for each system call on fd, exclusive to close it
	fd int          // the descriptor; -1 once closed; guarded by mu

	rmu, wmu     sync.Mutex              // held by each read, each write
	rdl, wdl     atomic.Int64            // read and write deadlines, unix ns; 0: none
	rwait, wwait atomic.Pointer[os.File] // the duplicate a waiting Read or Write uses
}

// detach moves the socket of c out of Go's network poller: it returns a
// socket for a duplicate of c's descriptor and closes c, which leaves the
// socket itself open. c must be a connected, non-blocking socket (any TCP
// connection of the net package); the caller must not use c again.
func detach(c net.Conn) (*socket, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("detach: %T has no descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("detach: %w", err)
	}
	dup := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("detach: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("detach: dup: %w", derr)
	}
	if err := c.Close(); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("detach: close: %w", err)
	}
	return &socket{fd: dup}, nil
}

// setUserTimeout sets TCP_USER_TIMEOUT on c, a TCP connection: the kernel
// ends it (ETIMEDOUT) once data written to it has stayed unacknowledged
// for d.
func setUserTimeout(c net.Conn, d time.Duration) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("user timeout: %T has no descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("user timeout: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	}); err != nil {
		return fmt.Errorf("user timeout: %w", err)
	}
	return serr
}

// control calls f with the descriptor, which stays open until f returns;
// net.ErrClosed after Close. f must not block.
func (s *socket) control(f func(fd int) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fd < 0 {
		return net.ErrClosed
	}
	return f(s.fd)
}

// readNow reads what the socket holds into p without waiting: 0 and EAGAIN
// when nothing is there (or while a Read is under way), 0 and nil at the
// end of the stream, net.ErrClosed after Close.
func (s *socket) readNow(p []byte) (int, error) {
	if !s.rmu.TryLock() {
		return 0, unix.EAGAIN
	}
	defer s.rmu.Unlock()
	return s.readOnce(p)
}

func (s *socket) readOnce(p []byte) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fd < 0 {
		return 0, net.ErrClosed
	}
	return sysReadWrite(unix.SYS_READ, s.fd, p, 0)
}

// writeNow writes what the socket takes of p without waiting: a full socket
// buffer writes less, or fails with EAGAIN, and so does a Write under way
// (which may have written part of its bytes), so that the bytes of two
// writes never interleave. last: p is the last the socket sends, and once
// all of p is taken the write side is shut down, so that the FIN leaves in
// the segment that carries p; the read side stays open.
func (s *socket) writeNow(p []byte, last bool) (int, error) {
	if !s.wmu.TryLock() {
		return 0, unix.EAGAIN
	}
	defer s.wmu.Unlock()
	return s.writeOnce(p, last)
}

func (s *socket) writeOnce(p []byte, last bool) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fd < 0 {
		return 0, net.ErrClosed
	}
	if !last {
		return sysReadWrite(unix.SYS_WRITE, s.fd, p, 0)
	}
	// MSG_MORE holds the bytes back until the FIN joins them. A short
	// write leaves the socket open for the rest, which a later Write sends.
	n, err := sysReadWrite(unix.SYS_SENDTO, s.fd, p, unix.MSG_MORE|unix.MSG_NOSIGNAL)
	if err != nil || n < len(p) {
		return n, err
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(s.fd), unix.SHUT_WR, 0); e != 0 {
		return n, e
	}
	return n, nil
}

// sysReadWrite is read(2), write(2) or send(2) of p on the non-blocking fd
// (flags are send's), retried on EINTR. It is a raw system call: it cannot
// block, so the scheduler need not hand the P over for it.
func sysReadWrite(trap uintptr, fd int, p []byte, flags uintptr) (int, error) {
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

// Read implements net.Conn: it reads what is there, or waits for bytes
// until the read deadline.
func (s *socket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	n, err := s.readOnce(p)
	switch {
	case errors.Is(err, unix.EAGAIN):
		n, err = s.wait(&s.rwait, &s.rdl, func(f *os.File) (int, error) { return f.Read(p) })
	case err == nil && n == 0:
		return 0, io.EOF
	}
	if err != nil {
		return n, opError("read", err)
	}
	return n, nil
}

// Write implements net.Conn: it writes all of p, waiting for room in the
// socket's buffer until the write deadline.
func (s *socket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n, err := s.writeOnce(p, false)
	if errors.Is(err, unix.EAGAIN) {
		n, err = 0, nil
	}
	if err == nil && n < len(p) {
		var m int
		m, err = s.wait(&s.wwait, &s.wdl, func(f *os.File) (int, error) { return f.Write(p[n:]) })
		n += m
	}
	if err != nil {
		return n, opError("write", err)
	}
	return n, nil
}

// wait runs op on a duplicate of the descriptor registered with Go's
// poller, under the deadline dl; Close and a new deadline reach it through
// slot.
func (s *socket) wait(slot *atomic.Pointer[os.File], dl *atomic.Int64, op func(*os.File) (int, error)) (int, error) {
	f, err := s.borrow(slot)
	if err != nil {
		return 0, err
	}
	defer func() {
		if slot.CompareAndSwap(f, nil) {
			f.Close()
		}
	}()
	// After the slot is set: a deadline set meanwhile is either read here
	// or finds f in the slot (see setDeadline).
	if err := f.SetDeadline(unixTime(dl.Load())); err != nil {
		return 0, err
	}
	n, err := op(f)
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed // Close took the duplicate away
	}
	return n, err
}

// borrow puts a duplicate of the descriptor, in Go's poller, into slot.
func (s *socket) borrow(slot *atomic.Pointer[os.File]) (*os.File, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fd < 0 {
		return nil, net.ErrClosed
	}
	dup, err := unix.FcntlInt(uintptr(s.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	// Non-blocking (the flag belongs to the socket, not the number), so
	// os.NewFile registers it with the poller.
	f := os.NewFile(uintptr(dup), "socket")
	slot.Store(f) // under the lock: Close, which takes it, sees f
	return f, nil
}

// Close implements net.Conn: it closes the descriptor once no call is on
// it, and ends a waiting Read or Write.
func (s *socket) Close() error {
	s.mu.Lock()
	fd := s.fd
	s.fd = -1
	s.mu.Unlock()
	if fd < 0 {
		return net.ErrClosed
	}
	for _, slot := range []*atomic.Pointer[os.File]{&s.rwait, &s.wwait} {
		if f := slot.Swap(nil); f != nil {
			f.Close()
		}
	}
	// A raw call: closing a socket without SO_LINGER does not block.
	if _, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0); e != 0 {
		return os.NewSyscallError("close", e)
	}
	return nil
}

// SetDeadline implements net.Conn.
func (s *socket) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (s *socket) SetReadDeadline(t time.Time) error { return setDeadline(&s.rdl, &s.rwait, t) }

// SetWriteDeadline implements net.Conn.
func (s *socket) SetWriteDeadline(t time.Time) error { return setDeadline(&s.wdl, &s.wwait, t) }

func setDeadline(dl *atomic.Int64, slot *atomic.Pointer[os.File], t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = max(t.UnixNano(), 1)
	}
	dl.Store(ns)
	if f := slot.Load(); f != nil {
		_ = f.SetDeadline(t) // fails only if the wait ended meanwhile
	}
	return nil
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// LocalAddr implements net.Conn; it asks the kernel each time (nil once
// closed).
func (s *socket) LocalAddr() net.Addr { return s.addr(unix.Getsockname) }

// RemoteAddr implements net.Conn; it asks the kernel each time (nil once
// closed).
func (s *socket) RemoteAddr() net.Addr { return s.addr(unix.Getpeername) }

func (s *socket) addr(get func(int) (unix.Sockaddr, error)) net.Addr {
	var sa unix.Sockaddr
	if s.control(func(fd int) (err error) { sa, err = get(fd); return err }) != nil {
		return nil
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *unix.SockaddrInet6:
		a := &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return a
	}
	return nil
}

// opError wraps err as the net package would, so that callers looking for
// net.ErrClosed or a timeout find it.
func opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) || err == io.EOF {
		return err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the duplicate's name says nothing
	}
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}
