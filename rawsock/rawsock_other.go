//go:build !linux

package rawsock

import "net"

// Listen returns ln: outside Linux the connections keep Go's own calls.
func Listen(ln net.Listener) net.Listener { return ln }

// Wrap returns c.
func Wrap(c net.Conn) net.Conn { return c }
