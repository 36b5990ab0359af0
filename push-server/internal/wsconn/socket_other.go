//go:build !linux

package wsconn

// socket is the socket outside Go's network poller that the epoll poller
// uses; off Linux every connection keeps Go's own.
type socket struct{}
