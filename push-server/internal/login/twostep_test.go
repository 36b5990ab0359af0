package login

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
)

const chromeOnWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.130 Safari/537.36"

// mini asks for a Mini Program session.
var mini = Request{Flow: FlowMiniProgram, From: Describe(chromeOnWindows, "203.0.113.7")}

// qrcodeFrame decodes a qrcode message.
func qrcodeFrame(t *testing.T, f browser.Frame) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f.JSON, &m); err != nil || f.Kind != browser.KindQRCode {
		t.Fatalf("not a qrcode frame: %v %s", f.Kind, f.JSON)
	}
	return m
}

// A Mini Program session shows the issuer's image path, no scan URL, and
// says its flow; each session keeps the flow it was asked for.
func TestStartFlows(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	st, err := svc.Start(ctx, mini)
	if err != nil {
		t.Fatal(err)
	}
	m := qrcodeFrame(t, st.Frame)
	if m["flow"] != "miniprogram" || m["qrcode_url"] != "/wxacode/"+st.Session.Ticket || m["scan_url"] != "" || m["scene"] != st.Session.Scene {
		t.Fatalf("mini program qrcode = %s", st.Frame.JSON)
	}
	if st.Session.Flow != FlowMiniProgram || st.Session.ScanURL != "" {
		t.Fatalf("session = %+v", st.Session)
	}
	oaSt, _ := svc.Start(ctx, oa)
	if m := qrcodeFrame(t, oaSt.Frame); m["flow"] != "oa" || m["qrcode_url"] != "img?"+oaSt.Session.Ticket || m["scan_url"] != "url/"+oaSt.Session.Scene {
		t.Fatalf("oa qrcode = %s", oaSt.Frame.JSON)
	}
	// Refresh starts the flow it is asked for.
	next, err := svc.Refresh(ctx, st.Session.ID, mini)
	if err != nil || next.Session.Flow != FlowMiniProgram {
		t.Fatalf("refresh = %+v, %v", next, err)
	}
	// Resume renders the same frame from the stored session.
	if f := svc.QRCodeFrame(next.Session, next.Resume); string(f.JSON) != string(next.Frame.JSON) {
		t.Fatalf("frame on resume %s, at start %s", f.JSON, next.Frame.JSON)
	}

	only := NewService(svc.log, Config{TTL: time.Minute}, NewMemory(time.Minute), map[Flow]QRIssuer{FlowMiniProgram: &fakeMini{}}, fakeMinter{}, newRouter(), nopObserver{})
	for _, f := range []Flow{FlowOA, "", "wechat"} {
		if _, err := only.Start(ctx, Request{Flow: f}); !errors.Is(err, ErrInvalid) {
			t.Errorf("start of flow %q that is not enabled: %v, want ErrInvalid", f, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		ua, ip           string
		browser, os, wip string
	}{
		{chromeOnWindows, "203.0.113.7", "Chrome 120", "Windows 10", "203.0.113.7"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15", "2001:db8::1", "Safari 17", "macOS 10.15", "2001:db8::1"},
		{"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "::ffff:192.0.2.1", "Firefox 121", "Linux", "192.0.2.1"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1", "", "Safari 17", "iOS 17.2", ""},
		{"Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36 Edg/109.0.1518.78", "", "Edge 109", "Windows 7", ""},
		{"", "not an ip", "", "", ""},
		// Whatever a browser writes, the phone is shown a short plain label.
		{"Evil<script>\x00\n/1.0 (Windows NT 10.0)", "1.2.3.4\n", "Evilscript 1", "Windows 10", ""},
		{string(make([]byte, 4096)), "", "", "", ""},
	} {
		r := Describe(tc.ua, tc.ip)
		if r.Browser != tc.browser || r.OS != tc.os || r.IP != tc.wip || !r.At.IsZero() {
			t.Errorf("Describe(%.60q, %q) = %+v, want %q %q %q", tc.ua, tc.ip, r, tc.browser, tc.os, tc.wip)
		}
	}
	if got := clean("Evil<script>\x00\n" + string(make([]byte, 100))); got != "Evilscript" {
		t.Errorf("clean = %q", got)
	}
	long := clean("Browser " + string(make([]byte, 10)) + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	if len(long) > maxLabel {
		t.Errorf("label of %d bytes", len(long))
	}
}

// twoStep is a session of the service in the scanned state.
func twoStep(t *testing.T, svc *Service, req Request, openid string) (*Started, Reply) {
	t.Helper()
	st, err := svc.Start(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := svc.Notify(context.Background(), stepEvent(st, KindScanned, openid, "scan-"+openid, ""))
	if err != nil || reply.Result != ResultStored && reply.Result != ResultDelivered || reply.Confirmation == nil {
		t.Fatalf("scan = %+v, %v", reply, err)
	}
	return st, reply
}

// stepEvent is an event of a two-step flow; Mini Program codes carry no ticket.
func stepEvent(st *Started, k Kind, openid, id, confirm string) Event {
	ev := Event{Scene: st.Session.Scene, Kind: k, User: User{OpenID: openid, UnionID: "u-" + openid}, EventID: id, Confirm: confirm}
	if st.Session.Flow != FlowMiniProgram {
		ev.Ticket = st.Session.Ticket
	}
	return ev
}

// The whole two-step flow, for both flows: scanned (with what the phone
// shows), a scan again by the same user (a new secret, no second frame),
// refused confirmations that change nothing, the login for the scanner.
func TestTwoStepConfirm(t *testing.T) {
	for _, req := range []Request{mini, {Flow: FlowOA, From: Describe(chromeOnWindows, "203.0.113.7")}} {
		t.Run(string(req.Flow), func(t *testing.T) {
			svc, r := newService(t)
			ctx := context.Background()
			st, err := svc.Start(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			r.attach(st.Session.ID)
			reply, err := svc.Notify(ctx, stepEvent(st, KindScanned, "alice", "e1", ""))
			c := reply.Confirmation
			if err != nil || reply.Result != ResultDelivered || reply.Duplicate || c == nil {
				t.Fatalf("scan = %+v, %v", reply, err)
			}
			want := Requester{Browser: "Chrome 120", OS: "Windows 10", IP: "203.0.113.7", At: st.Session.Requester.At}
			if !ValidConfirm(c.Secret) || c.Flow != req.Flow || !c.ExpiresAt.Equal(st.Session.ExpiresAt) || c.Requester != want {
				t.Fatalf("confirmation = %+v, want requester %+v", c, want)
			}
			if got := r.messages(st.Session.ID); len(got) != 1 || !is(got[0], browser.KindScanned) {
				t.Fatalf("browser got %q, want scanned", got)
			}

			// A duplicate: the first answer, without the secret.
			if dup, _ := svc.Notify(ctx, stepEvent(st, KindScanned, "alice", "e1", "")); dup.Result != ResultDelivered || !dup.Duplicate || dup.Confirmation != nil {
				t.Fatalf("duplicate scan = %+v", dup)
			}
			// The same user again: a new secret replaces the old one; the
			// browser hears nothing new.
			again, _ := svc.Notify(ctx, stepEvent(st, KindScanned, "alice", "e2", ""))
			if again.Result != ResultDelivered || again.Confirmation == nil || again.Confirmation.Secret == c.Secret {
				t.Fatalf("scan again = %+v", again)
			}
			if got := r.messages(st.Session.ID); len(got) != 1 {
				t.Fatalf("browser got %q after a scan again, want only the first scanned", got)
			}
			// Another user: the code is taken.
			if other, _ := svc.Notify(ctx, stepEvent(st, KindScanned, "bob", "e3", "")); other.Result != ResultAlreadyUsed || other.Confirmation != nil {
				t.Fatalf("scan by another user = %+v", other)
			}
			// Refused confirmations change nothing.
			for name, ev := range map[string]Event{
				"the replaced secret":            stepEvent(st, KindConfirmed, "alice", "e4", c.Secret),
				"no secret":                      stepEvent(st, KindConfirmed, "alice", "e5", ""),
				"another user with the secret":   stepEvent(st, KindConfirmed, "bob", "e6", again.Confirmation.Secret),
				"a cancel with the wrong secret": stepEvent(st, KindCancelled, "alice", "e7", NewConfirmSecret()),
			} {
				if res, dup, err := notifyResult(svc, ctx, ev); res != ResultForbidden || dup || err != nil {
					t.Errorf("%s: %v %v %v, want forbidden", name, res, dup, err)
				}
			}
			if got, _ := svc.store.Get(ctx, st.Session.ID); got.State != StateScanned || got.User.OpenID != "alice" {
				t.Fatalf("after refusals: %+v", got)
			}

			res, _, err := notifyResult(svc, ctx, stepEvent(st, KindConfirmed, "alice", "e8", again.Confirmation.Secret))
			if err != nil || res != ResultDelivered {
				t.Fatalf("confirm = %v, %v", res, err)
			}
			got := r.messages(st.Session.ID)
			if len(got) != 2 || !is(got[1], browser.KindLogin) {
				t.Fatalf("browser got %q, want scanned then login", got)
			}
			var lg struct {
				Token string
				User  browser.User
			}
			json.Unmarshal(got[1].JSON, &lg)
			if lg.Token != "tok-alice-"+st.Session.ID || lg.User.OpenID != "alice" || lg.User.UnionID != "u-alice" {
				t.Fatalf("login = %s", got[1].JSON)
			}
			// The secret was for one use; the code is used.
			for _, k := range []Kind{KindConfirmed, KindCancelled} {
				if res, _, _ := notifyResult(svc, ctx, stepEvent(st, k, "alice", "e9", again.Confirmation.Secret)); res != ResultAlreadyUsed {
					t.Errorf("%v after the login = %v, want already_used", k, res)
				}
			}
		})
	}
}

// A cancel tells the browser, which stays to ask for a new code in the
// same flow; a confirmation after the cancel is refused.
func TestTwoStepCancel(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	st, reply := twoStep(t, svc, mini, "alice")
	r.attach(st.Session.ID)
	res, _, err := notifyResult(svc, ctx, stepEvent(st, KindCancelled, "alice", "c1", reply.Confirmation.Secret))
	if err != nil || res != ResultDelivered {
		t.Fatalf("cancel = %v %v", res, err)
	}
	if got := r.messages(st.Session.ID); len(got) != 1 || !is(got[0], browser.KindCancelled) {
		t.Fatalf("browser got %q, want cancelled", got)
	}
	if res, _, _ := notifyResult(svc, ctx, stepEvent(st, KindConfirmed, "alice", "c2", reply.Confirmation.Secret)); res != ResultAlreadyUsed {
		t.Fatalf("confirm after cancel = %v, want already_used", res)
	}
	if expired, _ := svc.Expired(ctx, st.Session.ID); expired {
		t.Fatal("a cancelled session reads as expired")
	}
	next, err := svc.Refresh(ctx, st.Session.ID, mini)
	if err != nil || next.Session.Flow != FlowMiniProgram || next.Session.Scene == st.Session.Scene {
		t.Fatalf("refresh after cancel = %+v, %v", next, err)
	}
}

// Expiry ends a scanned session: its secret confirms nothing.
func TestTwoStepExpired(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	st, reply := twoStep(t, svc, mini, "alice")
	svc.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	for _, k := range []Kind{KindConfirmed, KindCancelled} {
		if res, _, _ := notifyResult(svc, ctx, stepEvent(st, k, "alice", "x", reply.Confirmation.Secret)); res != ResultExpired {
			t.Errorf("%v after expiry = %v", k, res)
		}
	}
	if res, _, _ := notifyResult(svc, ctx, stepEvent(st, KindScanned, "alice", "y", "")); res != ResultExpired {
		t.Errorf("scan after expiry = %v", res)
	}
}

// The ticket check stays for official-account sessions: a scan without the
// ticket is refused there, and accepted for a Mini Program code.
func TestTicketOnlyForOA(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	oaSt, _ := svc.Start(ctx, oa)
	ev := stepEvent(oaSt, KindScanned, "alice", "e1", "")
	ev.Ticket = ""
	if reply, err := svc.Notify(ctx, ev); err != nil || reply.Result != ResultTicketMismatch || reply.Confirmation != nil {
		t.Fatalf("oa scan without ticket = %+v, %v", reply, err)
	}
	mpSt, _ := svc.Start(ctx, mini)
	if reply, err := svc.Notify(ctx, stepEvent(mpSt, KindScanned, "alice", "e1", "")); err != nil || reply.Result != ResultStored {
		t.Fatalf("mini program scan = %+v, %v", reply, err)
	}
	// One-step events never log in a Mini Program session.
	if res, _, _ := notifyResult(svc, ctx, Event{Scene: mpSt.Session.Scene, Ticket: mpSt.Session.Ticket, Kind: KindScan, User: User{OpenID: "alice"}, EventID: "e2"}); res != ResultTicketMismatch {
		t.Fatalf("one-step scan of a mini program session = %v", res)
	}
}
