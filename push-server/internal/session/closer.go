package session

import (
	"io"
	"sync"
	"time"
)

// closeBatch is how long an ended connection's socket may wait to be
// closed together with others.
const closeBatch = 10 * time.Millisecond

// batchCloser closes sockets in batches. Reads and writes here are raw
// system calls, but closing a socket goes through Go's poller and is a
// blocking system call for the scheduler: the first one after every P was
// idle wakes the runtime's sysmon thread, which then polls every 20 µs until
// the process is idle again. At 2,000 logins a second, each ending its
// connection, that polling was an eighth of push-server's CPU
// (docs/benchmarks.md). Closed together, the sockets wake it once a batch.
// The browser is not kept waiting: a login's last frames carry the FIN
// already, and the poller stops watching a connection when it ends.
type batchCloser struct {
	after time.Duration

	mu      sync.Mutex
	pending []io.Closer
}

// close closes c within b.after.
func (b *batchCloser) close(c io.Closer) {
	b.mu.Lock()
	b.pending = append(b.pending, c)
	first := len(b.pending) == 1
	b.mu.Unlock()
	if first {
		time.AfterFunc(b.after, b.flush)
	}
}

// flush closes what is pending.
func (b *batchCloser) flush() {
	b.mu.Lock()
	p := b.pending
	b.pending = nil
	b.mu.Unlock()
	for _, c := range p {
		_ = c.Close()
	}
}
