//go:build linux

package wsconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// epoll is the Linux poller: one epoll instance, one goroutine waiting on
// it, and a few workers that handle the readiness events (a new goroutine
// for an event that finds no worker free). Each socket is armed one-shot
// and rearmed after its bytes were handled, so one connection is never
// read by two goroutines at once.
//
// The epoll descriptor is itself registered with Go's network poller (an
// epoll descriptor is readable while it has events), and epoll_wait is only
// ever called with a zero timeout. So the waiting goroutine parks like any
// other network read instead of holding its thread in a blocking system
// call. None of the calls here can block, so they are raw system calls.
type epoll struct {
	m    *Manager
	fd   int
	file *os.File        // owns fd
	rc   syscall.RawConn // fd through the network poller

	mu    sync.RWMutex
	conns []*Conn // indexed by socket number (small and dense); guarded by mu

	work chan *Conn // to a free worker; unbuffered
}

// pollWorkers is how many goroutines wait to handle readiness events. A
// worker keeps the stack it grew, where a new goroutine per event would
// grow its own again along the deep path of a close reply (gorilla, the
// handler, the end of the connection). Events beyond the free workers get
// a goroutine each, so a slow handler never holds up the others.
const pollWorkers = 8

func newPoller(m *Manager) (poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	// A non-blocking descriptor: os.NewFile registers it with the poller.
	file := os.NewFile(uintptr(fd), "epoll")
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	return &epoll{m: m, fd: fd, file: file, rc: rc, work: make(chan *Conn)}, nil
}

const armed = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// attach takes c's socket out of Go's network poller (see socket), which
// this poller watches instead.
func (p *epoll) attach(c *Conn) error {
	s, err := detach(c.feed.Conn)
	if err != nil {
		return err
	}
	c.feed.Conn, c.sock = s, s
	return s.control(func(fd int) error { c.fd = fd; return nil })
}

// add and remove need c attached, as every Conn of this poller is
// (Upgrade refuses one that attach failed).
func (p *epoll) add(c *Conn) error {
	p.mu.Lock()
	if c.fd >= len(p.conns) {
		p.conns = append(p.conns, make([]*Conn, c.fd+1-len(p.conns))...)
	}
	p.conns[c.fd] = c
	p.mu.Unlock()
	if err := p.ctl(c, unix.EPOLL_CTL_ADD); err != nil {
		p.forget(c)
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

func (p *epoll) remove(c *Conn) {
	// Before the socket is closed, so its number cannot be reused meanwhile.
	_ = p.ctl(c, unix.EPOLL_CTL_DEL)
	p.forget(c)
}

// ctl is epoll_ctl for c's socket, armed for one event when op adds or
// modifies; net.ErrClosed once the socket is closed, whose number may
// belong to another socket by then.
func (p *epoll) ctl(c *Conn, op int) error {
	return c.sock.control(func(fd int) error {
		ev := unix.EpollEvent{Events: armed, Fd: int32(fd)}
		return epollCtl(p.fd, op, fd, &ev)
	})
}

// epollCtl is unix.EpollCtl as a raw system call (it cannot block).
func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func (p *epoll) forget(c *Conn) {
	p.mu.Lock()
	if c.fd < len(p.conns) && p.conns[c.fd] == c {
		p.conns[c.fd] = nil
	}
	p.mu.Unlock()
}

func (p *epoll) rearm(c *Conn) {
	_ = p.ctl(c, unix.EPOLL_CTL_MOD) // fails only if c was removed meanwhile
}

func (p *epoll) run(ctx context.Context) {
	defer p.file.Close()
	// Wakes the wait below when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = p.file.SetReadDeadline(time.Now()) })
	defer stop()
	for range pollWorkers {
		go p.worker(ctx)
	}
	events := make([]unix.EpollEvent, 256)
	for ctx.Err() == nil {
		n, err := p.wait(events)
		if err != nil {
			if ctx.Err() == nil {
				p.m.log.Error("epoll wait failed", "err", err)
			}
			return
		}
		p.mu.RLock()
		for _, ev := range events[:n] {
			if int(ev.Fd) < len(p.conns) {
				if c := p.conns[ev.Fd]; c != nil {
					select {
					case p.work <- c:
					default:
						go p.serve(c)
					}
				}
			}
		}
		p.mu.RUnlock()
	}
}

// wait returns the events ready now, parking in the network poller while
// there are none.
func (p *epoll) wait(events []unix.EpollEvent) (int, error) {
	var n int
	var werr error
	err := p.rc.Read(func(fd uintptr) bool {
		n, werr = epollReady(int(fd), events)
		// Park only when nothing is ready: the poller wakes us on the
		// next event, also one that came after this call.
		return n > 0 || werr != nil
	})
	if err != nil {
		return 0, err
	}
	return n, werr
}

// epollReady returns the events ready now on epfd, without waiting.
func epollReady(epfd int, events []unix.EpollEvent) (int, error) {
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

// worker serves the connections it is handed until ctx ends.
func (p *epoll) worker(ctx context.Context) {
	for {
		select {
		case c := <-p.work:
			p.serve(c)
		case <-ctx.Done():
			return
		}
	}
}

func (p *epoll) serve(c *Conn) {
	if c.readable() {
		p.rearm(c)
	}
}

// fill reads, without blocking, what the socket holds (up to the bound of
// one unit) into c.feed.buf. A read that leaves room in the buffer took
// everything there was: fill stops there rather than spend a second read
// on EAGAIN. Bytes that arrive after it still wake the poller, since rearm
// re-checks the socket.
func (p *epoll) fill(c *Conn) (bool, error) {
	for len(c.feed.buf) < p.m.maxBuffered() {
		buf := c.grow()
		room := cap(buf) - len(buf)
		n, err := c.sock.readNow(buf[len(buf):cap(buf)]) // the poller said bytes are there
		switch {
		case errors.Is(err, unix.EAGAIN):
			return false, nil
		case err != nil:
			return false, err
		case n == 0:
			return true, nil
		}
		c.feed.buf = buf[:len(buf)+n]
		if n < room {
			return false, nil
		}
	}
	return false, nil
}

// writeNow writes b to the socket without waiting; a full socket buffer
// writes less, or nothing. last: b is all the socket will send (see
// Conn.send).
func (p *epoll) writeNow(c *Conn, b []byte, last bool) (int, error) {
	n, err := c.sock.writeNow(b, last) // never waits: the writer goroutine does
	switch {
	case errors.Is(err, unix.EAGAIN):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return n, nil
}
