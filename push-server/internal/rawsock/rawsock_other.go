//go:build !linux

package rawsock

import (
	"errors"
	"net"
)

// Listen returns ln: outside Linux the connections keep Go's own calls.
func Listen(ln net.Listener) net.Listener { return ln }

// Wrap returns c.
func Wrap(c net.Conn) net.Conn { return c }

// FD is a socket outside Go's network poller; outside Linux there is none:
// Detach fails.
type FD struct{}

// Detach fails outside Linux.
func Detach(net.Conn) (*FD, error) { return nil, errors.ErrUnsupported }

// Control fails outside Linux.
func (*FD) Control(func(fd int) error) error { return errors.ErrUnsupported }

// ReadNow fails outside Linux.
func (*FD) ReadNow([]byte) (int, error) { return 0, errors.ErrUnsupported }

// WriteNow fails outside Linux.
func (*FD) WriteNow([]byte, bool) (int, error) { return 0, errors.ErrUnsupported }
