//go:build linux

package rawsock

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

// pair returns a connection accepted through Listen and its client end.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	raw := Listen(ln)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := raw.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, ok := c.(*Conn)
	if !ok {
		t.Fatalf("Accept returned %T, want *rawsock.Conn", c)
	}
	return rc, client
}

func TestConnReadsWhatArrivesAndWaitsForMore(t *testing.T) {
	c, client := pair(t)
	go func() {
		client.Write([]byte("hello"))
		time.Sleep(50 * time.Millisecond) // the second Read has to wait in the poller
		client.Write([]byte(" world"))
		client.Close()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if string(got) != "hello world" {
		t.Fatalf("read %q, want %q", got, "hello world")
	}
}

func TestConnWritesMoreThanTheSocketBufferHolds(t *testing.T) {
	c, client := pair(t)
	// Far more than the kernel buffers of both ends: Write must wait for
	// room and go on where it stopped.
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // the writer fills the buffers first
		b, _ := io.ReadAll(client)
		got <- b
	}()
	n, err := c.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, not the %d written (or not the same)", len(b), len(want))
	}
}

func TestWriteLastEndsTheStreamAndKeepsReading(t *testing.T) {
	c, client := pair(t)
	var n int
	var werr error
	if err := c.rc.Write(func(fd uintptr) bool { n, werr = WriteLast(int(fd), []byte("bye")); return true }); err != nil || werr != nil || n != 3 {
		t.Fatalf("WriteLast = %d, %v (%v); want 3, nil", n, werr, err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client) // EOF only if the write side was shut down
	if err != nil || string(got) != "bye" {
		t.Fatalf("peer read %q, %v; want \"bye\" then EOF", got, err)
	}
	if _, err := client.Write([]byte("ack")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 8)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "ack" {
		t.Fatalf("Read after WriteLast = %q, %v; want \"ack\": the read side stays open", b[:n], err)
	}
}

// Reads and writes allocate nothing: the functions handed to RawConn are
// bound to pooled values, not closures made per call, and an FD's calls
// need none.
func TestReadsAndWritesDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops values)")
	}
	c, client := pair(t)
	msg, buf := []byte("ping"), make([]byte, 16)
	peer, err := Detach(client)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(msg); { // the peer's raw reads, as the WebSocket poller does them
			m, err := peer.ReadNow(buf[n:])
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				t.Fatal(err)
			}
			n += m
		}
		if _, err := peer.WriteNow(msg, false); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip, want 0", allocs)
	}
}

func TestConnReadHonoursTheDeadline(t *testing.T) {
	c, _ := pair(t)
	expectReadTimeout(t, c)
}

// expectReadTimeout sets a read deadline 30 ms ahead on c, where nothing
// arrives, and checks that Read times out then, neither before nor long
// after.
func expectReadTimeout(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	switch d := time.Since(start); {
	case d < 30*time.Millisecond:
		t.Fatalf("Read returned after %v, before the deadline", d)
	case d > 3*time.Second:
		t.Fatalf("Read took %v to time out", d)
	}
}

func TestConnReadAfterCloseIsErrClosed(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 10)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed conn: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a waiting Read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed conn: %v, want net.ErrClosed", err)
	}
}

func TestConnWriteToAResetPeerFails(t *testing.T) {
	c, client := pair(t)
	client.(*net.TCPConn).SetLinger(0) // close with RST
	client.Close()
	time.Sleep(20 * time.Millisecond)
	var err error
	for range 100 {
		if _, err = c.Write([]byte("x")); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("Write to a reset peer: %v, want EPIPE or ECONNRESET", err)
	}
}

func TestEpollPollAndCtl(t *testing.T) {
	c, client := pair(t)
	rc, _ := c.SyscallConn()
	var sock int
	rc.Control(func(fd uintptr) { sock = int(fd) })
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(sock)}
	if err := EpollCtl(ep, unix.EPOLL_CTL_ADD, sock, &ev); err != nil {
		t.Fatalf("EpollCtl add: %v", err)
	}
	if err := EpollCtl(ep, unix.EPOLL_CTL_ADD, sock, &ev); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("EpollCtl add twice: %v, want EEXIST", err)
	}
	events := make([]unix.EpollEvent, 4)
	if n, err := EpollPoll(ep, events); n != 0 || err != nil {
		t.Fatalf("EpollPoll with nothing to read = %d, %v; want 0, nil", n, err)
	}
	client.Write([]byte("x"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := EpollPoll(ep, events)
		if err != nil {
			t.Fatalf("EpollPoll: %v", err)
		}
		if n == 1 && int(events[0].Fd) == sock && events[0].Events&unix.EPOLLIN != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("EpollPoll never reported the socket readable")
		}
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 4)
	if n, err := Read(sock, buf); n != 1 || err != nil || buf[0] != 'x' {
		t.Fatalf("Read = %d, %v, %q", n, err, buf[:n])
	}
	if _, err := Read(sock, buf); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("Read of an empty non-blocking socket: %v, want EAGAIN", err)
	}
}
