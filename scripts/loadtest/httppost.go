package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// postPool sends prebuilt HTTP/1.1 POSTs to one host over kept-alive
// connections, each request on the caller's goroutine: write the request,
// read the answer with http.ReadResponse, put the connection back.
//
// net/http's client hands every request to two goroutines of its own per
// connection and back; in a scan run that was a third of the load tool's
// CPU, on the 2 cores it shares with the servers it measures. Requests that
// find no idle connection dial one, so the pool grows to the requests in
// flight, as net/http's would with an unlimited MaxIdleConnsPerHost.
type postPool struct {
	addr    string // host:port, checked to be loopback when dialled
	timeout time.Duration
	dialer  net.Dialer

	mu   sync.Mutex
	idle []*postConn // guarded by mu
}

type postConn struct {
	c  net.Conn
	br *bufio.Reader
}

func newPostPool(addr string, timeout time.Duration) *postPool {
	return &postPool{addr: addr, timeout: timeout, dialer: net.Dialer{Timeout: timeout}}
}

// rawPost renders a POST of body to u with the given content type, as
// postPool.post sends it.
func rawPost(u *url.URL, contentType string, body []byte) []byte {
	return rawPostAuth(u, contentType, "", body)
}

// rawPostAuth is rawPost with an Authorization header when auth is set.
func rawPostAuth(u *url.URL, contentType, auth string, body []byte) []byte {
	b := make([]byte, 0, 256+len(body))
	b = append(b, "POST "+u.RequestURI()+" HTTP/1.1\r\nHost: "+u.Host+
		"\r\nUser-Agent: scanlogin-loadtest\r\nContent-Type: "+contentType+
		"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n"...)
	if auth != "" {
		b = append(b, "Authorization: "+auth+"\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// post sends req (from rawPost) and returns the answer's status code, having
// read its body. A connection that fails or that the server closes is not
// reused; a failed request is not retried.
func (p *postPool) post(ctx context.Context, req []byte) (int, error) {
	return p.send(ctx, req, io.Discard)
}

// postRead is post that also returns the answer's body.
func (p *postPool) postRead(ctx context.Context, req []byte) (int, []byte, error) {
	var body bytes.Buffer
	code, err := p.send(ctx, req, &body)
	return code, body.Bytes(), err
}

// send is post with the answer's body copied to dst.
func (p *postPool) send(ctx context.Context, req []byte, dst io.Writer) (int, error) {
	pc, err := p.get(ctx)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	pc.c.SetDeadline(deadline)
	if _, err := pc.c.Write(req); err != nil {
		pc.c.Close()
		return 0, fmt.Errorf("write request: %w", err)
	}
	res, err := http.ReadResponse(pc.br, nil)
	if err != nil {
		pc.c.Close()
		return 0, fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(dst, res.Body)
	res.Body.Close()
	if err != nil || res.Close {
		pc.c.Close()
	} else {
		p.put(pc)
	}
	if err != nil {
		return res.StatusCode, fmt.Errorf("read response body: %w", err)
	}
	return res.StatusCode, nil
}

// get returns an idle connection, or dials a new one.
func (p *postPool) get(ctx context.Context) (*postConn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		pc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return pc, nil
	}
	p.mu.Unlock()
	if err := checkAddr("target", p.addr); err != nil {
		return nil, err
	}
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	return &postConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

func (p *postPool) put(pc *postConn) {
	pc.c.SetDeadline(time.Time{})
	p.mu.Lock()
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// Close closes the idle connections.
func (p *postPool) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
	return nil
}
