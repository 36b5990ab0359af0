package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// postServer answers POST /cb with the body's length, and counts the
// connections it accepts.
func postServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func echoLength(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/cb" || r.URL.Query().Get("n") != "1" || r.Header.Get("Content-Type") != "text/xml" {
			t.Errorf("got %s %s %q", r.Method, r.URL, r.Header.Get("Content-Type"))
		}
		if string(b) != "<xml/>" {
			t.Errorf("body %q", b)
		}
		w.Write([]byte("success"))
	}
}

func poolFor(t *testing.T, srv *httptest.Server, timeout time.Duration) (*postPool, []byte) {
	t.Helper()
	u, err := url.Parse(srv.URL + "/cb?n=1")
	if err != nil {
		t.Fatal(err)
	}
	p := newPostPool(hostPort(u), timeout)
	t.Cleanup(func() { p.Close() })
	return p, rawPost(u, "text/xml", []byte("<xml/>"))
}

func TestPostPoolKeepsConnectionsAlive(t *testing.T) {
	srv, conns := postServer(t, echoLength(t))
	p, req := poolFor(t, srv, 5*time.Second)
	for range 20 {
		if code, err := p.post(context.Background(), req); err != nil || code != 200 {
			t.Fatalf("post: %d %v", code, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 POSTs one after the other opened %d connections, want 1", n)
	}
	for range 5 { // bursts: the pool grows to the requests in flight, no more
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if code, err := p.post(context.Background(), req); err != nil || code != 200 {
					t.Errorf("post: %d %v", code, err)
				}
			})
		}
		wg.Wait()
	}
	if n := conns.Load(); n > 9 {
		t.Errorf("5 bursts of 8 opened %d connections in all, want at most 9", n)
	}
}

func TestPostPoolStatusAndClose(t *testing.T) {
	srv, conns := postServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "no", http.StatusForbidden)
	})
	p, req := poolFor(t, srv, 5*time.Second)
	for range 3 {
		if code, err := p.post(context.Background(), req); err != nil || code != http.StatusForbidden {
			t.Fatalf("post: %d %v, want 403", code, err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("a server that closes after each answer saw %d connections, want 3", n)
	}
}

func TestPostPoolTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv, _ := postServer(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	p, req := poolFor(t, srv, 200*time.Millisecond)
	start := time.Now()
	_, err := p.post(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("post to a server that does not answer: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timed out after %v, want about 200ms", d)
	}
}

func TestPostPoolRefusesOtherHosts(t *testing.T) {
	p := newPostPool("192.168.1.1:80", time.Second)
	if _, err := p.post(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "not a loopback") {
		t.Fatalf("post to 192.168.1.1: %v, want a refusal", err)
	}
}
