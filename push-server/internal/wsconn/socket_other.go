//go:build !linux

package wsconn

import (
	"net"
	"time"
)

// socket is the socket outside Go's network poller that the epoll poller
// uses; off Linux every connection keeps Go's own.
type socket struct{}

// setUserTimeout does nothing off Linux.
func setUserTimeout(net.Conn, time.Duration) error { return nil }
