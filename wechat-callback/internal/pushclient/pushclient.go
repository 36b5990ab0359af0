// Package pushclient calls the push server's PushService.Notify over gRPC,
// with a deadline per attempt and a bounded retry when the push server is
// unavailable, all within the caller's context.
package pushclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Retry policy of Notify: at most maxAttempts calls, retryDelay apart (doubled
// each time), and none started with less than minAttempt left of the context.
const (
	maxAttempts = 3
	retryDelay  = 20 * time.Millisecond
	minAttempt  = 50 * time.Millisecond
)

// Client is a PushService client. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	api     pushv1.PushServiceClient
	health  healthpb.HealthClient
	timeout time.Duration
}

// New returns a Client for the push server at target (a gRPC target such as
// "127.0.0.1:9090"). It does not connect yet. Each Notify attempt gets at most
// timeout; authToken, when not empty, is sent as "authorization: Bearer".
// The connection is plaintext: PushService is internal.
func New(target, authToken string, timeout time.Duration) (*Client, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly after a push-server restart: the default
		// backoff grows to two minutes, far beyond WeChat's 5 s.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		// A fixed flow-control window turns off BDP estimation, which pings
		// the push server after most answers: a write and a read on each
		// side per Notify. Answers are tiny; 1 MiB never limits them.
		grpc.WithInitialWindowSize(1 << 20),
		grpc.WithInitialConnWindowSize(1 << 20),
	}
	if authToken != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(authToken)))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("push client for %q: %w", target, err)
	}
	return &Client{
		conn:    conn,
		api:     pushv1.NewPushServiceClient(conn),
		health:  healthpb.NewHealthClient(conn),
		timeout: timeout,
	}, nil
}

// Notify calls PushService.Notify. An attempt that fails with Unavailable or
// runs out of its own deadline is retried with the same request (Notify is
// idempotent by event_id), up to maxAttempts in all and never past ctx's
// deadline. The error of the last attempt is returned, with its gRPC status.
func (c *Client) Notify(ctx context.Context, req *pushv1.NotifyRequest) (*pushv1.NotifyResponse, error) {
	delay := retryDelay
	var err error
	for attempt := 1; ; attempt++ {
		var resp *pushv1.NotifyResponse
		resp, err = c.notifyOnce(ctx, req)
		if err == nil {
			return resp, nil
		}
		if attempt == maxAttempts || !retryable(ctx, err) {
			break
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay+minAttempt {
			break
		}
		c.conn.ResetConnectBackoff()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("notify: %w", err)
		case <-time.After(delay):
		}
		delay *= 2
	}
	return nil, fmt.Errorf("notify: %w", err)
}

func (c *Client) notifyOnce(ctx context.Context, req *pushv1.NotifyRequest) (*pushv1.NotifyResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.api.Notify(ctx, req)
}

// retryable reports whether a failed attempt may be repeated: the push
// server was unreachable, or the attempt's own deadline (not ctx's) passed.
func retryable(ctx context.Context, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		return ctx.Err() == nil
	}
	return false
}

// Ready reports whether the push server answers on its gRPC port. Any answer
// of the health service counts, even Unimplemented or Unauthenticated: the
// question is whether Notify could get through.
func (c *Client) Ready(ctx context.Context) error {
	resp, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{})
	switch status.Code(err) {
	case codes.OK:
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("push server health: %v", s)
		}
		return nil
	case codes.Unimplemented, codes.Unauthenticated, codes.NotFound, codes.PermissionDenied:
		return nil
	}
	return fmt.Errorf("push server health: %w", err)
}

// Close closes the connection.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close push client: %w", err)
	}
	return nil
}

// bearer sends "authorization: Bearer <token>" on every call. Transport
// security is not required because PushService runs on a private network.
type bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (bearer) RequireTransportSecurity() bool { return false }
