// Package pushtest runs a fake PushService on a real gRPC listener for
// wechat-callback's tests. It answers Notify from a scene table, or for
// two-step sessions (Mini Program, and official-account with OA_CONFIRM)
// by the push server's rules, records
// every call, can be slowed down, made to fail, stopped and restarted on
// the same port, and checks the bearer token like the real push server.
package pushtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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
	"google.golang.org/protobuf/proto"
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
	results  map[string]pushv1.Result          // by scene; missing: RESULT_NOT_FOUND
	twoStep  map[string]*TwoStep               // two-step sessions by scene
	seen     map[string]*pushv1.NotifyResponse // by event_id, for idempotence
	now      func() time.Time
	token    string        // required bearer token; empty: none
	delay    time.Duration // before each answer
	failN    int           // the next failN calls fail with failCode
	failCode codes.Code
}

// Start listens on 127.0.0.1:0 and serves PushService and grpc.health.v1
// until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := newServer(t)
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
	s := newServer(t)
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

func newServer(t testing.TB) *Server {
	return &Server{
		t:       t,
		results: map[string]pushv1.Result{},
		twoStep: map[string]*TwoStep{},
		seen:    map[string]*pushv1.NotifyResponse{},
		now:     time.Now,
	}
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
		dup := proto.CloneOf(r)
		dup.Duplicate = true
		return dup, nil
	}
	var resp *pushv1.NotifyResponse
	if ts, ok := s.twoStep[req.GetScene()]; ok {
		resp = ts.notify(req, s.now())
	} else {
		r, ok := s.results[req.GetScene()]
		if !ok {
			r = pushv1.Result_RESULT_NOT_FOUND
		}
		resp = &pushv1.NotifyResponse{Result: r}
	}
	s.seen[req.GetEventId()] = resp
	return proto.CloneOf(resp), nil
}

// Two-step session states.
const (
	StateWaiting   = "waiting"
	StateScanned   = "scanned"
	StateConfirmed = "confirmed"
	StateCancelled = "cancelled"
)

// TwoStep is a fake two-step (Mini Program) session: what the browser was
// sent and who scanned.
type TwoStep struct {
	State     string // StateWaiting, ...
	Scanner   string // openid of the user who scanned
	UnionID   string // as sent with the scan
	Confirmer string // openid sent with the confirmation or cancellation
	// Messages the browser got: "scanned", "login", "cancelled".
	Sent      []string
	Expires   time.Time
	Requester *pushv1.Requester

	secret string
	ticket string // the QR code's ticket of an oa session; empty: miniprogram
	flow   string
}

// AddTwoStep makes scene a two-step session of the miniprogram flow that
// waits for a scan until expires and shows requester to the phone. Notify
// then follows the push server's rules: EVENT_SCANNED (ticket empty) binds
// the first user and answers a new confirm secret (again for the same
// user; ALREADY_USED for another); EVENT_CONFIRMED and EVENT_CANCELLED need
// that user and the latest secret (else FORBIDDEN) and end the session;
// after the end ALREADY_USED; past expires EXPIRED.
func (s *Server) AddTwoStep(scene string, expires time.Time, requester *pushv1.Requester) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.twoStep[scene] = &TwoStep{State: StateWaiting, Expires: expires, Requester: requester, flow: "miniprogram"}
}

// AddTwoStepOA makes scene a session of the oa flow whose QR code has
// ticket, for OA_CONFIRM: the same rules as AddTwoStep, except that every
// event must carry ticket (else TICKET_MISMATCH), and a one-step event
// (subscribe, scan) logs a waiting session in at once, as without
// OA_CONFIRM.
func (s *Server) AddTwoStepOA(scene, ticket string, expires time.Time, requester *pushv1.Requester) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.twoStep[scene] = &TwoStep{State: StateWaiting, Expires: expires, Requester: requester, ticket: ticket, flow: "oa"}
}

// TwoStep returns a copy of the two-step session of scene.
func (s *Server) TwoStep(scene string) (TwoStep, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.twoStep[scene]
	if !ok {
		return TwoStep{}, false
	}
	cp := *ts
	cp.Sent = append([]string(nil), ts.Sent...)
	return cp, true
}

// SetNow replaces the clock that decides the expiry of two-step sessions.
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// notify applies req to the session; s.mu must be held.
func (ts *TwoStep) notify(req *pushv1.NotifyRequest, now time.Time) *pushv1.NotifyResponse {
	answer := func(r pushv1.Result) *pushv1.NotifyResponse { return &pushv1.NotifyResponse{Result: r} }
	openid := req.GetUser().GetOpenid()
	switch {
	case req.GetTicket() != ts.ticket:
		return answer(pushv1.Result_RESULT_TICKET_MISMATCH)
	case !now.Before(ts.Expires):
		return answer(pushv1.Result_RESULT_EXPIRED)
	case ts.State == StateConfirmed || ts.State == StateCancelled:
		return answer(pushv1.Result_RESULT_ALREADY_USED)
	}
	switch req.GetEvent() {
	case pushv1.Event_EVENT_SCANNED:
		if ts.State == StateScanned && ts.Scanner != openid {
			return answer(pushv1.Result_RESULT_ALREADY_USED)
		}
		if ts.State == StateWaiting {
			ts.State, ts.Scanner, ts.UnionID = StateScanned, openid, req.GetUser().GetUnionid()
			ts.Sent = append(ts.Sent, "scanned")
		}
		ts.secret = newSecret()
		return &pushv1.NotifyResponse{
			Result: pushv1.Result_RESULT_DELIVERED,
			Confirmation: &pushv1.Confirmation{
				Secret:      ts.secret,
				ExpiresAtMs: ts.Expires.UnixMilli(),
				Requester:   ts.Requester,
				Flow:        ts.flow,
			},
		}
	case pushv1.Event_EVENT_CONFIRMED, pushv1.Event_EVENT_CANCELLED:
		if ts.State != StateScanned || openid != ts.Scanner || req.GetConfirm() != ts.secret {
			return answer(pushv1.Result_RESULT_FORBIDDEN)
		}
		ts.Confirmer = openid
		if req.GetEvent() == pushv1.Event_EVENT_CONFIRMED {
			ts.State = StateConfirmed
			ts.Sent = append(ts.Sent, "login")
		} else {
			ts.State = StateCancelled
			ts.Sent = append(ts.Sent, "cancelled")
		}
		return answer(pushv1.Result_RESULT_DELIVERED)
	}
	if ts.flow != "oa" {
		return answer(pushv1.Result_RESULT_TICKET_MISMATCH) // an official-account event
	}
	switch {
	case ts.State == StateWaiting:
		ts.State, ts.Scanner, ts.Confirmer = StateConfirmed, openid, openid
		ts.Sent = append(ts.Sent, "login")
		return answer(pushv1.Result_RESULT_DELIVERED)
	case openid == ts.Scanner:
		return answer(pushv1.Result_RESULT_FORBIDDEN)
	}
	return answer(pushv1.Result_RESULT_ALREADY_USED)
}

func newSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
