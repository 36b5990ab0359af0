// Package grpcapi serves scanlogin.push.v1.PushService on top of the login
// service, translating its errors into gRPC status codes, and guards it with
// an optional bearer token.
package grpcapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"runtime"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
)

// Logins is what the gRPC API needs of the login service.
type Logins interface {
	Notify(ctx context.Context, ev login.Event) (login.Reply, error)
	Push(ctx context.Context, to login.Target, event string, data []byte) (int, bool, error)
	PushBatch(ctx context.Context, items []login.PushItem) ([]login.PushOutcome, error)
}

// Server implements pushv1.PushServiceServer.
type Server struct {
	pushv1.UnimplementedPushServiceServer
	log    *slog.Logger
	logins Logins
}

// New returns the PushService implementation.
func New(log *slog.Logger, logins Logins) *Server {
	return &Server{log: log, logins: logins}
}

var kinds = map[pushv1.Event]login.Kind{
	pushv1.Event_EVENT_SUBSCRIBE: login.KindSubscribe,
	pushv1.Event_EVENT_SCAN:      login.KindScan,
	pushv1.Event_EVENT_SCANNED:   login.KindScanned,
	pushv1.Event_EVENT_CONFIRMED: login.KindConfirmed,
	pushv1.Event_EVENT_CANCELLED: login.KindCancelled,
}

var results = map[login.Result]pushv1.Result{
	login.ResultDelivered:      pushv1.Result_RESULT_DELIVERED,
	login.ResultStored:         pushv1.Result_RESULT_STORED,
	login.ResultNotFound:       pushv1.Result_RESULT_NOT_FOUND,
	login.ResultExpired:        pushv1.Result_RESULT_EXPIRED,
	login.ResultTicketMismatch: pushv1.Result_RESULT_TICKET_MISMATCH,
	login.ResultAlreadyUsed:    pushv1.Result_RESULT_ALREADY_USED,
	login.ResultForbidden:      pushv1.Result_RESULT_FORBIDDEN,
}

// Notify implements pushv1.PushServiceServer.
func (s *Server) Notify(ctx context.Context, req *pushv1.NotifyRequest) (*pushv1.NotifyResponse, error) {
	kind, ok := kinds[req.GetEvent()]
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "event must be one of subscribe, scan, scanned, confirmed, cancelled")
	}
	u := req.GetUser()
	reply, err := s.logins.Notify(ctx, login.Event{
		Scene:   req.GetScene(),
		Ticket:  req.GetTicket(),
		Kind:    kind,
		EventID: req.GetEventId(),
		Confirm: req.GetConfirm(),
		User: login.User{
			OpenID:    u.GetOpenid(),
			UnionID:   u.GetUnionid(),
			Nickname:  u.GetNickname(),
			AvatarURL: u.GetAvatarUrl(),
		},
	})
	if err != nil {
		return nil, s.status("notify", err)
	}
	resp := &pushv1.NotifyResponse{Result: results[reply.Result], Duplicate: reply.Duplicate}
	if c := reply.Confirmation; c != nil {
		r := c.Requester
		resp.Confirmation = &pushv1.Confirmation{
			Secret:      c.Secret,
			ExpiresAtMs: c.ExpiresAt.UnixMilli(),
			Requester:   &pushv1.Requester{Browser: r.Browser, Os: r.OS, Ip: r.IP, AtMs: r.At.UnixMilli()},
			Flow:        string(c.Flow),
		}
	}
	return resp, nil
}

// Push implements pushv1.PushServiceServer.
func (s *Server) Push(ctx context.Context, req *pushv1.PushRequest) (*pushv1.PushResponse, error) {
	to := login.Target{SessionID: req.GetSessionId(), OpenID: req.GetOpenid()}
	n, stored, err := s.logins.Push(ctx, to, req.GetEvent(), req.GetData())
	if err != nil {
		return nil, s.status("push", err)
	}
	return &pushv1.PushResponse{Delivered: int32(n), Stored: stored}, nil
}

// PushBatch implements pushv1.PushServiceServer.
func (s *Server) PushBatch(ctx context.Context, req *pushv1.PushBatchRequest) (*pushv1.PushBatchResponse, error) {
	pushes := req.GetPushes()
	items := make([]login.PushItem, len(pushes))
	for i, p := range pushes {
		items[i] = login.PushItem{
			To:    login.Target{SessionID: p.GetSessionId(), OpenID: p.GetOpenid()},
			Event: p.GetEvent(),
			Data:  p.GetData(),
		}
	}
	outs, err := s.logins.PushBatch(ctx, items)
	if err != nil {
		return nil, s.status("push batch", err)
	}
	res := make([]*pushv1.PushResult, len(outs))
	for i, o := range outs {
		if o.Err != nil {
			st, _ := status.FromError(s.status("push", o.Err))
			res[i] = &pushv1.PushResult{Outcome: &pushv1.PushResult_Error{Error: &pushv1.PushError{
				Code: errorCode(st.Code()), Message: st.Message(),
			}}}
			continue
		}
		res[i] = &pushv1.PushResult{Outcome: &pushv1.PushResult_Ok{Ok: &pushv1.PushResponse{
			Delivered: int32(o.Delivered), Stored: o.Stored,
		}}}
	}
	return &pushv1.PushBatchResponse{Results: res}, nil
}

// errorCode names a status code as PushError.code does: anything but a
// bad argument or an unknown session is worth retrying.
func errorCode(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid_argument"
	case codes.NotFound:
		return "not_found"
	}
	return "unavailable"
}

// status translates a login error into a gRPC status with a safe message.
func (s *Server) status(op string, err error) error {
	switch {
	case errors.Is(err, login.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, login.ErrNotFound):
		return status.Error(codes.NotFound, "no such session")
	case errors.Is(err, login.ErrUnavailable):
		s.log.Debug(op+" failed", "err", err) // the store's monitor logs the outage once
		return status.Error(codes.Unavailable, "session store unavailable; retry")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	s.log.Error(op+" failed", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// Auth returns interceptors that require "authorization: Bearer <token>" on
// every call but health checks, compared in constant time. onFail is called
// for each refused call.
func Auth(token string, onFail func()) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	want := []byte("Bearer " + token)
	check := func(ctx context.Context, method string) error {
		if strings.HasPrefix(method, "/grpc.health.v1.Health/") {
			return nil
		}
		md, _ := metadata.FromIncomingContext(ctx)
		got := md.Get("authorization")
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), want) != 1 {
			onFail()
			return status.Error(codes.Unauthenticated, "missing or wrong bearer token")
		}
		return nil
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if err := check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		if err := check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return next(srv, ss)
	}
	return unary, stream
}

// streamWorkersPerP is how many gRPC stream workers run per P.
const streamWorkersPerP = 16

// NewGRPCServer returns a gRPC server with PushService and grpc.health.v1
// registered; authToken empty means no authentication.
func NewGRPCServer(svc *Server, hs *health.Server, authToken string, onAuthFail func()) *grpc.Server {
	var opts []grpc.ServerOption
	if authToken != "" {
		u, st := Auth(authToken, onAuthFail)
		opts = append(opts, grpc.ChainUnaryInterceptor(u), grpc.ChainStreamInterceptor(st))
	}
	// A pool of stream workers rather than a goroutine per call: a call that
	// finds every worker busy gets a fresh goroutine, which grows its stack
	// along the handler's path, and several requests often arrive in one
	// read, so a few workers per P are not enough. An idle worker is a
	// parked goroutine. The option is marked experimental in grpc-go; the
	// measurements are in docs/benchmarks.md.
	opts = append(opts, grpc.NumStreamWorkers(uint32(streamWorkersPerP*runtime.GOMAXPROCS(0))))
	// A fixed flow-control window turns off grpc-go's BDP estimation, which
	// otherwise pings the client after data arrives, about once per call at
	// a steady rate: a write and a read less per Push. Requests are small,
	// so the window never limits them.
	opts = append(opts, grpc.InitialWindowSize(1<<20), grpc.InitialConnWindowSize(1<<20))
	gs := grpc.NewServer(opts...)
	pushv1.RegisterPushServiceServer(gs, svc)
	healthpb.RegisterHealthServer(gs, hs)
	return gs
}
