//go:build linux

package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// detached returns the server end of a TCP connection as an FD, and the
// client end.
func detached(t *testing.T) (*FD, net.Conn) {
	t.Helper()
	c, client := pair(t)
	s, err := Detach(c)
	if err != nil {
		t.Fatalf("Detach: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, client
}

// number is s's descriptor number.
func number(t *testing.T, s *FD) int {
	t.Helper()
	fd := -1
	if err := s.Control(func(n int) error { fd = n; return nil }); err != nil {
		t.Fatalf("Control: %v", err)
	}
	return fd
}

// watchers counts the epoll instances of this process that watch fd, from
// /proc/self/fdinfo (Go's network poller is one of them).
func watchers(t *testing.T, fd int) int {
	t.Helper()
	links, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range links {
		if dest, _ := os.Readlink(l); dest != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + filepath.Base(l))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(info), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "tfd:" && f[1] == strconv.Itoa(fd) {
				n++
			}
		}
	}
	return n
}

// waitingWrite writes p to s on another goroutine, p being far more than
// the socket's buffers hold while the peer does not read, and returns once
// that Write is waiting for room; its result comes on the channel.
func waitingWrite(s *FD, p []byte) <-chan error {
	done := make(chan error, 1)
	go func() { _, err := s.Write(p); done <- err }()
	time.Sleep(50 * time.Millisecond)
	return done
}

// ended returns what a waiting Write returned, failing the test if by (what
// should have ended it) did not within 5 s.
func ended(t *testing.T, done <-chan error, by string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not end a waiting Write", by)
		return nil
	}
}

func TestDetachLeavesGoPollerAndKeepsTheSocket(t *testing.T) {
	c, client := pair(t)
	rc, _ := c.SyscallConn()
	orig := -1
	rc.Control(func(fd uintptr) { orig = int(fd) })
	if w := watchers(t, orig); w != 1 {
		t.Fatalf("before Detach %d epoll instances watch the socket, want 1 (Go's poller)", w)
	}
	s, err := Detach(c)
	if err != nil {
		t.Fatalf("Detach: %v", err)
	}
	defer s.Close()
	// First, before anything here opens a file and may get that number.
	if _, err := unix.FcntlInt(uintptr(orig), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("the original descriptor %d is still open (fcntl: %v)", orig, err)
	}
	fd := number(t, s)
	if w := watchers(t, fd); w != 0 {
		t.Fatalf("after Detach %d epoll instances watch the socket, want 0", w)
	}
	if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Fatal("the new descriptor is not close-on-exec")
	}
	// The socket itself is still connected, both ways.
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
	if _, err := Detach(a); err == nil {
		t.Fatal("Detach of a net.Pipe succeeded")
	}
}

func TestReadNowAndWriteNowNeverWait(t *testing.T) {
	s, client := detached(t)
	buf := make([]byte, 8)
	if n, err := s.ReadNow(buf); n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("ReadNow with nothing there = %d, %v; want 0, EAGAIN", n, err)
	}
	// Fill the socket's buffers until WriteNow takes nothing more.
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var err error
	for range 10000 {
		if _, err = s.WriteNow(chunk, false); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("WriteNow into full buffers: %v, want EAGAIN", err)
	}

	s, client = detached(t) // a peer with unread bytes would reset the connection
	client.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.ReadNow(buf)
		if n == 0 && err == nil {
			break // the end of the stream
		}
		if !errors.Is(err, unix.EAGAIN) || time.Now().After(deadline) {
			t.Fatalf("ReadNow after the peer closed = %d, %v; want 0, nil", n, err)
		}
		time.Sleep(time.Millisecond)
	}
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestFDWaitsForBytesAndForRoom(t *testing.T) {
	s, client := detached(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB, far past both buffers
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // the writer fills the buffers first
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
	go func() {
		time.Sleep(50 * time.Millisecond) // Read has to wait
		client.Write([]byte("late"))
	}()
	buf := make([]byte, 8)
	if n, err := s.Read(buf); err != nil || string(buf[:n]) != "late" {
		t.Fatalf("Read = %q, %v; want %q", buf[:n], err, "late")
	}
}

func TestFDHonoursDeadlines(t *testing.T) {
	s, _ := detached(t)
	expectReadTimeout(t, s)

	// A deadline set while Write waits reaches it.
	done := waitingWrite(s, make([]byte, 64<<20))
	s.SetWriteDeadline(time.Now())
	if err := ended(t, done, "a deadline set during Write"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline: %v, want a timeout", err)
	}
	if w := watchers(t, number(t, s)); w != 0 {
		t.Fatalf("after the wait %d epoll instances watch the socket, want 0", w)
	}
}

func TestCloseEndsAWaitingWrite(t *testing.T) {
	s, _ := detached(t)
	done := waitingWrite(s, make([]byte, 64<<20))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := ended(t, done, "Close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write ended by Close: %v, want net.ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
	if _, err := s.WriteNow([]byte("x"), false); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteNow after Close: %v, want net.ErrClosed", err)
	}
	if _, err := s.ReadNow(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadNow after Close: %v, want net.ErrClosed", err)
	}
	if err := s.Control(func(int) error { return nil }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Control after Close: %v, want net.ErrClosed", err)
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
	go s.Control(func(fd int) error {
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
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-stillOpen; err != nil {
		t.Fatalf("the descriptor was closed under the call: %v", err)
	}
	<-closed
}

// While a Write waits with part of its bytes out, WriteNow writes nothing:
// its bytes would land in the middle of the other write's.
func TestWriteNowNeverInterleavesAWrite(t *testing.T) {
	s, client := detached(t)
	big := bytes.Repeat([]byte("a"), 64<<20)
	done := waitingWrite(s, big)
	if n, err := s.WriteNow([]byte("b"), false); n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("WriteNow during a Write = %d, %v; want 0, EAGAIN", n, err)
	}
	got, err := io.ReadAll(io.LimitReader(client, int64(len(big))))
	if err != nil || len(got) != len(big) || bytes.IndexByte(got, 'b') >= 0 {
		t.Fatalf("peer read %d bytes (%v), want %d of the Write's alone", len(got), err, len(big))
	}
	if err := ended(t, done, "the peer's reading"); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n, err := s.WriteNow([]byte("b"), false); n != 1 || err != nil {
		t.Fatalf("WriteNow after the Write = %d, %v; want 1, nil", n, err)
	}
}
