package pushclient

import (
	"context"
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat-callback/internal/pushclient/pushtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func request(scene string) *pushv1.NotifyRequest {
	return &pushv1.NotifyRequest{
		Scene: scene, Ticket: "T", Event: pushv1.Event_EVENT_SCAN,
		User: &pushv1.User{Openid: "o1"}, EventId: "o1|1|SCAN|" + scene,
	}
}

func newClient(t *testing.T, target, token string, timeout time.Duration) *Client {
	t.Helper()
	c, err := New(target, token, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNotify(t *testing.T) {
	fake := pushtest.Start(t)
	fake.RequireToken("sekret")
	fake.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	c := newClient(t, fake.Addr(), "sekret", time.Second)
	ctx := context.Background()

	resp, err := c.Notify(ctx, request("s1"))
	if err != nil || resp.GetResult() != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("Notify = %v, %v", resp, err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	bad := newClient(t, fake.Addr(), "wrong", time.Second)
	if _, err := bad.Notify(ctx, request("s1")); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v", err)
	}
	if n := len(fake.Calls()); n != 2 {
		t.Fatalf("%d calls, want 2 (Unauthenticated is not retried)", n)
	}
}

// unix: and unix-abstract: targets keep grpc-go's own dialer (the raw
// dialer is for TCP).
func TestNotifyOverUnixSocket(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		fake := pushtest.StartUnix(t, abstract)
		fake.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
		c := newClient(t, fake.Addr(), "", time.Second)
		resp, err := c.Notify(context.Background(), request("s1"))
		if err != nil || resp.GetResult() != pushv1.Result_RESULT_DELIVERED {
			t.Fatalf("Notify over %s = %v, %v", fake.Addr(), resp, err)
		}
	}
}

func TestNotifyRetriesUnavailable(t *testing.T) {
	fake := pushtest.Start(t)
	fake.SetResult("s1", pushv1.Result_RESULT_STORED)
	fake.FailNext(2, codes.Unavailable)
	c := newClient(t, fake.Addr(), "", time.Second)
	resp, err := c.Notify(context.Background(), request("s1"))
	if err != nil || resp.GetResult() != pushv1.Result_RESULT_STORED {
		t.Fatalf("Notify = %v, %v", resp, err)
	}
	if n := len(fake.Calls()); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}

	fake.FailNext(5, codes.Unavailable)
	if _, err := c.Notify(context.Background(), request("s1")); status.Code(err) != codes.Unavailable {
		t.Fatalf("Notify = %v, want Unavailable", err)
	}
	if n := len(fake.Calls()); n != 6 {
		t.Fatalf("%d calls, want 6 (3 attempts at most)", n)
	}
}

func TestNotifySlowServer(t *testing.T) {
	fake := pushtest.Start(t)
	fake.SetDelay(time.Second)
	c := newClient(t, fake.Addr(), "", 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Notify(ctx, request("s1"))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Notify = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Fatalf("Notify took %v, beyond the context's 250ms", d)
	}
}

func TestNotifyServerDownAndBack(t *testing.T) {
	fake := pushtest.Start(t)
	fake.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	c := newClient(t, fake.Addr(), "", time.Second)
	ctx := context.Background()
	if _, err := c.Notify(ctx, request("s1")); err != nil {
		t.Fatal(err)
	}
	fake.Stop()
	start := time.Now()
	if _, err := c.Notify(ctx, request("s1")); status.Code(err) != codes.Unavailable {
		t.Fatalf("Notify while down = %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Notify while down took %v", d)
	}
	if err := c.Ready(ctx); err == nil {
		t.Error("Ready while down = nil")
	}
	fake.Restart()
	// The client must reconnect within WeChat's patience, not after the
	// default two-minute backoff.
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := c.Notify(ctx, request("s1"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
