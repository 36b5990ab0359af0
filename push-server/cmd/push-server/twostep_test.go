package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scanlogin/scanlogin/internal/browsertest"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

// qrcodeWithFlow reads the qrcode message and checks that it names flow.
func qrcodeWithFlow(t *testing.T, b *browsertest.Conn, flow string) browsertest.Message {
	t.Helper()
	m := b.Expect("qrcode")
	if m.Flow != flow {
		t.Fatalf("qrcode of flow %q, want %q", m.Flow, flow)
	}
	return m
}

// step sends a two-step event for the code of qr through gRPC.
func (in *instance) step(qr browsertest.Message, ev pushv1.Event, openid, eventID, confirm string) (*pushv1.NotifyResponse, error) {
	return in.client.Notify(context.Background(), &pushv1.NotifyRequest{
		Scene: qr.Scene, Ticket: in.ticket(qr), Event: ev, EventId: eventID, Confirm: confirm,
		User: &pushv1.User{Openid: openid, Unionid: "u-" + openid},
	})
}

// The two-step flow through gRPC on an official-account code: scanned with
// the confirmation, refusals as RESULT_FORBIDDEN or InvalidArgument, the
// login for the scanner; a cancel leaves the browser connected to ask for a
// new code.
func TestTwoStepThroughGRPC(t *testing.T) {
	in := start(t, nil)
	b := in.mustDial("")
	qr := qrcodeWithFlow(t, b, "oa")

	res, err := in.step(qr, pushv1.Event_EVENT_SCANNED, "oAlice", "s1", "")
	if err != nil || res.Result != pushv1.Result_RESULT_DELIVERED || res.Duplicate {
		t.Fatalf("scanned = %v, %v", res, err)
	}
	c := res.GetConfirmation()
	r := c.GetRequester()
	if len(c.GetSecret()) != 43 || c.GetFlow() != "oa" || c.GetExpiresAtMs() != qr.ExpiresAt || r.GetIp() != "127.0.0.1" ||
		time.Since(time.UnixMilli(r.GetAtMs())) > time.Minute {
		t.Fatalf("confirmation = %v", c)
	}
	b.Expect("scanned")

	// A retry of the same event: the first answer, without a secret.
	if dup, err := in.step(qr, pushv1.Event_EVENT_SCANNED, "oAlice", "s1", ""); err != nil || !dup.Duplicate ||
		dup.Result != pushv1.Result_RESULT_DELIVERED || dup.GetConfirmation() != nil {
		t.Fatalf("duplicate scanned = %v, %v", dup, err)
	}
	if other, _ := in.step(qr, pushv1.Event_EVENT_SCANNED, "oBob", "s2", ""); other.Result != pushv1.Result_RESULT_ALREADY_USED || other.GetConfirmation() != nil {
		t.Fatalf("scanned by another user = %v", other)
	}
	for name, tc := range map[string]struct{ openid, confirm string }{
		"wrong secret": {"oAlice", strings.Repeat("A", 43)},
		"no secret":    {"oAlice", ""},
		"another user": {"oBob", c.GetSecret()},
	} {
		res, err := in.step(qr, pushv1.Event_EVENT_CONFIRMED, tc.openid, "c-"+name, tc.confirm)
		if err != nil || res.Result != pushv1.Result_RESULT_FORBIDDEN {
			t.Errorf("%s: %v, %v; want RESULT_FORBIDDEN", name, res, err)
		}
	}
	for _, bad := range []string{"short", strings.Repeat("A", 44), strings.Repeat("A", 42) + "\n"} {
		_, err := in.step(qr, pushv1.Event_EVENT_CONFIRMED, "oAlice", "bad", bad)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "confirm") {
			t.Errorf("confirm %q: %v, want InvalidArgument naming confirm", bad, err)
		}
	}
	if _, err := in.step(qr, pushv1.Event_EVENT_SCANNED, "oAlice", "bad", c.GetSecret()); status.Code(err) != codes.InvalidArgument {
		t.Errorf("confirm with a scan: %v, want InvalidArgument", err)
	}

	res, err = in.step(qr, pushv1.Event_EVENT_CONFIRMED, "oAlice", "c1", c.GetSecret())
	if err != nil || res.Result != pushv1.Result_RESULT_DELIVERED {
		t.Fatalf("confirm = %v, %v", res, err)
	}
	if lg := b.Expect("login"); lg.User["openid"] != "oAlice" || lg.Token == "" {
		t.Fatalf("login = %+v", lg)
	}
	b.ExpectClose(websocket.CloseNormalClosure)
	if res, _ := in.step(qr, pushv1.Event_EVENT_CANCELLED, "oAlice", "c2", c.GetSecret()); res.Result != pushv1.Result_RESULT_ALREADY_USED {
		t.Fatalf("cancel after the login = %v", res)
	}

	t.Run("cancel", func(t *testing.T) {
		b := in.mustDial("")
		qr := qrcodeWithFlow(t, b, "oa")
		res, err := in.step(qr, pushv1.Event_EVENT_SCANNED, "oCarol", "s1", "")
		if err != nil || res.GetConfirmation() == nil {
			t.Fatalf("scanned = %v, %v", res, err)
		}
		b.Expect("scanned")
		secret := res.GetConfirmation().GetSecret()
		if res, err := in.step(qr, pushv1.Event_EVENT_CANCELLED, "oCarol", "x1", secret); err != nil || res.Result != pushv1.Result_RESULT_DELIVERED {
			t.Fatalf("cancel = %v, %v", res, err)
		}
		b.Expect("cancelled")
		if res, _ := in.step(qr, pushv1.Event_EVENT_CONFIRMED, "oCarol", "x2", secret); res.Result != pushv1.Result_RESULT_ALREADY_USED {
			t.Fatalf("confirm after cancel = %v", res)
		}
		b.Send(`{"type":"refresh"}`)
		if next := qrcodeWithFlow(t, b, "oa"); next.Scene == qr.Scene {
			t.Fatal("refresh after cancel reused the code")
		}
	})
}
