// Package wsconn runs browser WebSocket connections so that an idle one
// holds no goroutine, timer or buffer (on Linux). A poller wakes a reader only when
// bytes arrive; gorilla/websocket checks the frames, handed to it only
// once complete; outgoing frames are framed here and written without
// blocking by whoever sends. One sweeper per Manager pings connections
// that were sent nothing for a while, ends those that leave a ping
// unanswered and rings the handlers' alarms.
//
// The poller is epoll on Linux, where the connection's socket also leaves
// Go's network poller after the handshake (socket, epoll). Elsewhere, and
// with Config.Portable, each connection has a goroutine blocked in a read.
//
// # Invariants
//
// Who reads. One reader at a time per connection: Conn.readable, run by a
// poller worker for a one-shot readiness event (the socket is rearmed only
// after it returns), or by the connection's goroutine in Portable mode.
// Conn.read orders the readers. Only the reader touches the feed, the
// pooled read buffer, the frame budget and the bad-frame count, and only
// it calls gorilla.
//
// Who writes. Every frame is built here and goes through Conn.send, which
// any goroutine may call (Send, Close, the reader's pongs, the sweeper's
// pings). Conn.mu guards the queue and the writing flag: when nothing is
// being written the caller writes at once without waiting; what the socket
// does not take is queued, and one writer goroutine drains the queue and
// exits. So frames never interleave, and no goroutine waits on a socket
// unless it has bytes to write. Sends never block: a full queue closes the
// connection with 1013. gorilla writes only the close frame of a protocol
// error it finds while reading (1002, 1009); a browser's close frame is
// answered through Conn.send.
//
// How a frame reaches gorilla. The reader reads what the socket holds into
// a pooled buffer, given back once empty. unit finds the first complete
// unit: a whole message with all its fragments, a control frame, or the
// header of a frame gorilla will refuse. A ping or pong between messages
// is handled here (gorilla would go on reading after it); for the rest gorilla may read
// exactly the unit's bytes through feed.Read, so it never waits. At most
// ReadLimit+64 bytes wait for a unit to complete; past that gorilla gets
// them and rejects them.
//
// What happens on close. The first of Close, SendAndClose and the browser's
// close frame marks the connection closing: Send refuses from then on, the
// close frame goes out after what is queued, and nothing follows it. Last
// frames written at once in full also shut the socket's write side, so the
// FIN travels with them; the read side stays open for the reply. The
// browser's reply or end of stream ends the connection, and the sweeper
// ends it after WriteWait plus closeGrace if neither comes. kill
// runs once: it removes the connection from the Manager and the poller,
// closes the socket (which ends a waiting writer) and calls onClose, with
// nil for an ordinary end. The reader gives its buffer back.
//
// Why a socket number is never reused under a writer. The kernel gives a
// closed number to the next socket it opens. Every system call on a
// socket, epoll_ctl included, holds the socket's lock shared and first
// checks that it is open; Close closes the number holding the lock alone.
// So a frame either goes to this connection's socket or fails with
// net.ErrClosed: it never lands in another browser's socket. A writer that
// waits for room waits on a duplicate descriptor, which names the socket
// itself and which Close closes too. The poller removes a socket from its
// epoll before the socket is closed; an event already fetched for a number
// since reused at most wakes the new connection for nothing.
//
// The frame budget. Every inbound frame, control frames and each fragment
// included, is taken from the connection's budget before it is handled:
// Config.FrameBurst at once, refilled at Config.FrameRate a second (a
// token bucket kept in one number). A connection over it is closed with
// 1008, and what it sends after that, its close reply included, is
// discarded unread until closeGrace ends.
package wsconn
