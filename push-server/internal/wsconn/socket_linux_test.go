//go:build linux

package wsconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPair returns both ends of a TCP connection over loopback.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

// detached returns the server end of a TCP connection as a socket, and the
// client end.
func detached(t *testing.T) (*socket, net.Conn) {
	t.Helper()
	c, client := tcpPair(t)
	s, err := detach(c)
	if err != nil {
		t.Fatalf("detach: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, client
}

// number is s's descriptor number.
func number(t *testing.T, s *socket) int {
	t.Helper()
	fd := -1
	if err := s.control(func(n int) error { fd = n; return nil }); err != nil {
		t.Fatalf("control: %v", err)
	}
	return fd
}

// startWrite writes p to s on another goroutine; p is far more than the
// socket's buffers hold while the peer does not read, so that Write has to
// wait for room. Its result comes on the channel.
func startWrite(s *socket, p []byte) <-chan error {
	done := make(chan error, 1)
	go func() { _, err := s.Write(p); done <- err }()
	return done
}

// writeEnded returns what the Write of startWrite returned, failing the
// test if by (what should have ended it) did not within 10 s.
func writeEnded(t *testing.T, done <-chan error, by string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end a waiting Write", by)
		return nil
	}
}

// A detached socket keeps the connection, both ways, and leaves no other
// descriptor of it open: the net package's is closed, and its own is not
// inherited by programs the process starts.
func TestDetachKeepsTheConnection(t *testing.T) {
	c, client := tcpPair(t)
	rc, _ := c.(*net.TCPConn).SyscallConn()
	orig := -1
	rc.Control(func(fd uintptr) { orig = int(fd) })
	s, err := detach(c)
	if err != nil {
		t.Fatalf("detach: %v", err)
	}
	defer s.Close()
	// First, before anything here opens a file and may get that number.
	if _, err := unix.FcntlInt(uintptr(orig), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("the original descriptor %d is still open (fcntl: %v)", orig, err)
	}
	if flags, _ := unix.FcntlInt(uintptr(number(t, s)), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Fatal("the new descriptor is not close-on-exec")
	}
	if _, err := client.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("Read = %q, %v; want %q", buf[:n], err, "hi")
	}
	if _, err := s.Write([]byte("yo")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, buf[:2]); err != nil || string(buf[:2]) != "yo" {
		t.Fatalf("peer read %q, %v; want %q", buf[:2], err, "yo")
	}
	if got, want := s.RemoteAddr().String(), client.LocalAddr().String(); got != want {
		t.Fatalf("RemoteAddr = %s, want %s", got, want)
	}
	if got, want := s.LocalAddr().String(), client.RemoteAddr().String(); got != want {
		t.Fatalf("LocalAddr = %s, want %s", got, want)
	}
}

func TestDetachRefusesWhatHasNoDescriptor(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	if _, err := detach(a); err == nil {
		t.Fatal("detach of a net.Pipe succeeded")
	}
}

func TestReadNowAndWriteNowNeverWait(t *testing.T) {
	s, client := detached(t)
	buf := make([]byte, 8)
	if n, err := s.readNow(buf); n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("readNow with nothing there = %d, %v; want 0, EAGAIN", n, err)
	}
	// Fill the socket's buffers until writeNow takes nothing more.
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var err error
	for range 10000 {
		if _, err = s.writeNow(chunk, false); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("writeNow into full buffers: %v, want EAGAIN", err)
	}

	s, client = detached(t) // a peer with unread bytes would reset the connection
	client.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := s.readNow(buf)
		if n == 0 && err == nil {
			break // the end of the stream
		}
		if !errors.Is(err, unix.EAGAIN) || time.Now().After(deadline) {
			t.Fatalf("readNow after the peer closed = %d, %v; want 0, nil", n, err)
		}
		time.Sleep(time.Millisecond)
	}
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end = %d, %v; want 0, io.EOF", n, err)
	}
}

// The last bytes a socket sends end the stream (the peer reads EOF after
// them) while the socket still reads what the peer sends back.
func TestWriteLastEndsTheStreamAndKeepsReading(t *testing.T) {
	s, client := detached(t)
	if n, err := s.writeNow([]byte("bye"), true); n != 3 || err != nil {
		t.Fatalf("writeNow last = %d, %v; want 3, nil", n, err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client) // EOF only if the write side was shut down
	if err != nil || string(got) != "bye" {
		t.Fatalf("peer read %q, %v; want \"bye\" then EOF", got, err)
	}
	if _, err := client.Write([]byte("ack")); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 8)
	if n, err := s.Read(b); err != nil || string(b[:n]) != "ack" {
		t.Fatalf("Read after the last write = %q, %v; want \"ack\": the read side stays open", b[:n], err)
	}
}

func TestSocketWaitsForBytesAndForRoom(t *testing.T) {
	s, client := detached(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // far past both ends' buffers
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	if n, err := s.Write(want); n != len(want) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	s.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, not the %d written (or not the same)", len(b), len(want))
	}

	s, client = detached(t)
	read := make(chan string, 1)
	go func() {
		buf := make([]byte, 8)
		n, err := s.Read(buf)
		if err != nil {
			read <- err.Error()
			return
		}
		read <- string(buf[:n])
	}()
	client.Write([]byte("late")) // before or after Read began to wait: either way it gets it
	if got := <-read; got != "late" {
		t.Fatalf("Read = %q, want %q", got, "late")
	}
}

// A read deadline ends a Read that waits, as a timeout; the socket goes on
// working after it.
func TestSocketHonoursTheReadDeadline(t *testing.T) {
	s, client := detached(t)
	s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := s.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	s.SetReadDeadline(time.Time{})
	client.Write([]byte("x"))
	b := make([]byte, 1)
	if n, err := s.Read(b); n != 1 || err != nil {
		t.Fatalf("Read after a timeout = %d, %v; want 1, nil", n, err)
	}
}

// A write deadline set while Write waits reaches it; the bytes it wrote
// before still arrive.
func TestSocketHonoursAWriteDeadlineSetDuringTheWait(t *testing.T) {
	s, client := detached(t)
	done := startWrite(s, make([]byte, 64<<20))
	for s.wwait.Load() == nil { // until Write waits for room
		time.Sleep(time.Millisecond)
	}
	s.SetWriteDeadline(time.Now())
	if err := writeEnded(t, done, "a deadline set during Write"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline: %v, want a timeout", err)
	}
	s.Close()
	if n, err := io.Copy(io.Discard, client); n == 0 || err != nil {
		t.Fatalf("peer read %d bytes, %v; want what Write wrote, then EOF", n, err)
	}
}

func TestCloseEndsAWaitingWrite(t *testing.T) {
	s, _ := detached(t)
	done := startWrite(s, make([]byte, 64<<20))
	for s.wwait.Load() == nil { // until Write waits for room
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := writeEnded(t, done, "Close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write ended by Close: %v, want net.ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := s.writeNow([]byte("x"), false); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("writeNow after Close: %v, want net.ErrClosed", err)
	}
	if _, err := s.readNow(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("readNow after Close: %v, want net.ErrClosed", err)
	}
	if err := s.control(func(int) error { return nil }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("control after Close: %v, want net.ErrClosed", err)
	}
	if s.RemoteAddr() != nil {
		t.Fatal("RemoteAddr after Close is not nil")
	}
}

// Close waits for a call on the descriptor to end, so the number is never
// closed (and given to another socket) under it.
func TestCloseWaitsForCallsOnTheDescriptor(t *testing.T) {
	s, _ := detached(t)
	inside, release := make(chan struct{}), make(chan struct{})
	stillOpen := make(chan error, 1)
	go s.control(func(fd int) error {
		close(inside)
		<-release
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		stillOpen <- err
		return nil
	})
	<-inside
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a call was on the descriptor")
	case <-time.After(50 * time.Millisecond): // Close has most likely begun
	}
	close(release)
	if err := <-stillOpen; err != nil {
		t.Fatalf("the descriptor was closed under the call: %v", err)
	}
	<-closed
}

// While a Write waits with part of its bytes out, writeNow writes nothing:
// its bytes would land in the middle of the other write's.
func TestWriteNowNeverInterleavesAWrite(t *testing.T) {
	s, client := detached(t)
	big := bytes.Repeat([]byte("a"), 64<<20)
	done := startWrite(s, big)
	for s.wwait.Load() == nil { // until Write waits for room
		time.Sleep(time.Millisecond)
	}
	if n, err := s.writeNow([]byte("b"), false); n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("writeNow during a Write = %d, %v; want 0, EAGAIN", n, err)
	}
	got, err := io.ReadAll(io.LimitReader(client, int64(len(big))))
	if err != nil || len(got) != len(big) || bytes.IndexByte(got, 'b') >= 0 {
		t.Fatalf("peer read %d bytes (%v), want %d of the Write's alone", len(got), err, len(big))
	}
	if err := writeEnded(t, done, "the peer's reading"); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n, err := s.writeNow([]byte("b"), false); n != 1 || err != nil {
		t.Fatalf("writeNow after the Write = %d, %v; want 1, nil", n, err)
	}
}

func TestWriteToAResetPeerFails(t *testing.T) {
	s, client := detached(t)
	client.(*net.TCPConn).SetLinger(0) // close with RST
	client.Close()
	var err error
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		_, err = s.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("Write to a reset peer: %v, want EPIPE or ECONNRESET", err)
	}
}

// The connection's reads and writes, as the poller and Send do them,
// allocate nothing.
func TestReadsAndWritesDoNotAllocate(t *testing.T) {
	s, client := detached(t)
	peer, err := detach(client)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	msg, buf := []byte("ping"), make([]byte, 16)
	roundTrip := func(from, to *socket) {
		if _, err := from.writeNow(msg, false); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(msg); {
			m, err := to.readNow(buf[n:])
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				t.Fatal(err)
			}
			n += m
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		roundTrip(s, peer)
		roundTrip(peer, s)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip, want 0", allocs)
	}
}

func TestEpollReadyAndCtl(t *testing.T) {
	s, client := detached(t)
	sock := number(t, s)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(sock)}
	if err := epollCtl(ep, unix.EPOLL_CTL_ADD, sock, &ev); err != nil {
		t.Fatalf("epollCtl add: %v", err)
	}
	if err := epollCtl(ep, unix.EPOLL_CTL_ADD, sock, &ev); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("epollCtl add twice: %v, want EEXIST", err)
	}
	events := make([]unix.EpollEvent, 4)
	if n, err := epollReady(ep, events); n != 0 || err != nil {
		t.Fatalf("epollReady with nothing to read = %d, %v; want 0, nil", n, err)
	}
	client.Write([]byte("x"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := epollReady(ep, events)
		if err != nil {
			t.Fatalf("epollReady: %v", err)
		}
		if n == 1 && int(events[0].Fd) == sock && events[0].Events&unix.EPOLLIN != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("epollReady never reported the socket readable")
		}
		time.Sleep(time.Millisecond)
	}
}

// On Linux the kernel ends a connection whose written data stays
// unacknowledged for PingInterval+PongWait: what finds a vanished browser
// on a connection too busy to be pinged.
func TestUserTimeoutCoversBusyConnections(t *testing.T) {
	s := newServer(t, Config{PingInterval: 2 * time.Second, PongWait: 3 * time.Second})
	dial(t, s)
	s.mu.Lock()
	c := s.conns[len(s.conns)-1]
	s.mu.Unlock()
	var ms int
	if err := c.sock.control(func(fd int) (err error) {
		ms, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if ms != 5000 {
		t.Errorf("TCP_USER_TIMEOUT %d ms, want 5000", ms)
	}
}
