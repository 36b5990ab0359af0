// Package pushtest runs a fake PushService on a real gRPC listener for
// wechat-callback's tests. It answers Notify from a scene table, records
// every call, can be slowed down, made to fail, stopped and restarted on the
// same port, and checks the bearer token like the real push server.
package pushtest

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Server is a fake push server. Configure it before traffic arrives or
// under its own lock through the setters.
type Server struct {
	pushv1.UnimplementedPushServiceServer
	t    testing.TB
	addr string

	mu       sync.Mutex // guards the fields below
	srv      *grpc.Server
	calls    []*pushv1.NotifyRequest
	results  map[string]pushv1.Result // by scene; missing: RESULT_NOT_FOUND
	seen     map[string]pushv1.Result // by event_id, for idempotence
	token    string                   // required bearer token; empty: none
	delay    time.Duration            // before each answer
	failN    int                      // the next failN calls fail with failCode
	failCode codes.Code
}

// Start listens on 127.0.0.1:0 and serves PushService and grpc.health.v1
// until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, results: map[string]pushv1.Result{}, seen: map[string]pushv1.Result{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pushtest: listen: %v", err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(s.Stop)
	return s
}

// StartUnix is Start on a Unix socket in a temporary directory (abstract:
// in the abstract namespace, Linux only); Addr is then "unix:<path>" or
// "unix-abstract:<name>". Restart is for TCP servers only.
func StartUnix(t testing.TB, abstract bool) *Server {
	t.Helper()
	s := &Server{t: t, results: map[string]pushv1.Result{}, seen: map[string]pushv1.Result{}}
	path := filepath.Join(t.TempDir(), "push.sock")
	listen := path
	s.addr = "unix:" + path
	if abstract {
		listen = "@" + path
		s.addr = "unix-abstract:" + path
	}
	l, err := net.Listen("unix", listen)
	if err != nil {
		t.Fatalf("pushtest: listen: %v", err)
	}
	s.serve(l)
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's "127.0.0.1:port" (or "unix:<path>"), a gRPC target.
func (s *Server) Addr() string { return s.addr }

// SetResult makes Notify for scene answer r.
func (s *Server) SetResult(scene string, r pushv1.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results[scene] = r
}

// RequireToken makes every call without "authorization: Bearer token" fail
// with Unauthenticated.
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// SetDelay delays every Notify answer by d (the call is recorded at once).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// FailNext makes the next n Notify calls fail with code.
func (s *Server) FailNext(n int, code codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode = n, code
}

// Calls returns the Notify requests received so far.
func (s *Server) Calls() []*pushv1.NotifyRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*pushv1.NotifyRequest(nil), s.calls...)
}

// Stop closes the listener and every connection at once.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Restart serves again on the same address after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(l)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("pushtest: listen again on %s: %v", s.addr, err)
}

func (s *Server) serve(l net.Listener) {
	srv := grpc.NewServer()
	pushv1.RegisterPushServiceServer(srv, s)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// Notify implements pushv1.PushServiceServer.
func (s *Server) Notify(ctx context.Context, req *pushv1.NotifyRequest) (*pushv1.NotifyResponse, error) {
	s.mu.Lock()
	token, delay := s.token, s.delay
	s.calls = append(s.calls, req)
	fail := s.failN > 0
	if fail {
		s.failN--
	}
	code := s.failCode
	s.mu.Unlock()

	if token != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+token {
			return nil, status.Error(codes.Unauthenticated, "bad token")
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if fail {
		return nil, status.Error(code, "injected failure")
	}
	if req.GetScene() == "" || req.GetUser().GetOpenid() == "" || req.GetEventId() == "" || req.GetEvent() == pushv1.Event_EVENT_UNSPECIFIED {
		return nil, status.Error(codes.InvalidArgument, "missing field")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.seen[req.GetEventId()]; ok {
		return &pushv1.NotifyResponse{Result: r, Duplicate: true}, nil
	}
	r, ok := s.results[req.GetScene()]
	if !ok {
		r = pushv1.Result_RESULT_NOT_FOUND
	}
	s.seen[req.GetEventId()] = r
	return &pushv1.NotifyResponse{Result: r}, nil
}
