package login

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
)

type fakeQR struct{ n atomic.Int64 }

func (f *fakeQR) CreateQR(_ context.Context, scene string, _ time.Duration) (QRCode, error) {
	n := f.n.Add(1)
	return QRCode{Ticket: fmt.Sprintf("ticket+/=%d", n), ImageURL: "img", URL: "url/" + scene}, nil
}

func (f *fakeQR) ImageURL(ticket string) string { return "img?" + ticket }

// fakeMini issues Mini Program codes: an image key, no ticket to present.
type fakeMini struct{ n atomic.Int64 }

func (f *fakeMini) CreateQR(_ context.Context, scene string, _ time.Duration) (QRCode, error) {
	key := fmt.Sprintf("key%d", f.n.Add(1))
	return QRCode{Ticket: key, ImageURL: "/wxacode/" + key, URL: "ignored"}, nil
}

func (f *fakeMini) ImageURL(ticket string) string { return "/wxacode/" + ticket }

type fakeMinter struct{}

func (fakeMinter) Mint(openid, _, sid string, _ time.Time) (string, error) {
	return "tok-" + openid + "-" + sid, nil
}

// fakeRouter records deliveries; attached sessions take messages.
type fakeRouter struct {
	mu       sync.Mutex
	attached map[string]bool
	got      map[string][]browser.Frame
}

func newRouter() *fakeRouter {
	return &fakeRouter{attached: map[string]bool{}, got: map[string][]browser.Frame{}}
}

func (r *fakeRouter) ToSession(_ context.Context, id string, f browser.Frame) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.attached[id] {
		return 0, nil
	}
	r.got[id] = append(r.got[id], f)
	return 1, nil
}
func (r *fakeRouter) ToUser(context.Context, string, browser.Frame) (int, error) { return 0, nil }
func (r *fakeRouter) Attached(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attached[id], nil
}
func (r *fakeRouter) attach(id string) { r.mu.Lock(); r.attached[id] = true; r.mu.Unlock() }
func (r *fakeRouter) messages(id string) []browser.Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

// is reports whether f is of kind k and its JSON says so too.
func is(f browser.Frame, k browser.Kind) bool {
	var m struct{ Type string }
	return f.Kind == k && json.Unmarshal(f.JSON, &m) == nil && m.Type == k.String()
}

type nopObserver struct{}

func (nopObserver) SessionState(State)            {}
func (nopObserver) NotifyResult(Result, bool)     {}
func (nopObserver) NotifyDelivered(time.Duration) {}
func (nopObserver) Pushed(string, int, bool)      {}

func newService(t *testing.T) (*Service, *fakeRouter) {
	t.Helper()
	r := newRouter()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewService(log, Config{TTL: time.Minute}, NewMemory(time.Minute), map[Flow]QRIssuer{FlowOA: &fakeQR{}, FlowMiniProgram: &fakeMini{}}, fakeMinter{}, r, nopObserver{}), r
}

// oa asks for an official-account session.
var oa = Request{Flow: FlowOA, From: Describe("Mozilla/5.0", "192.0.2.1")}

// notifyResult is Notify's result and duplicate flag.
func notifyResult(svc *Service, ctx context.Context, ev Event) (Result, bool, error) {
	r, err := svc.Notify(ctx, ev)
	return r.Result, r.Duplicate, err
}

func scan(st *Started, openid, id string) Event {
	return Event{Scene: st.Session.Scene, Ticket: st.Session.Ticket, Kind: KindScan, User: User{OpenID: openid}, EventID: id}
}

func TestNotifyExactlyOnceUnderConcurrency(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	st, err := svc.Start(ctx, oa)
	if err != nil {
		t.Fatal(err)
	}
	r.attach(st.Session.ID)

	const n = 100
	var wg sync.WaitGroup
	results := make([]Result, n)
	dups := make([]bool, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half the calls repeat event "e0"; the rest are distinct events.
			id := "e0"
			if i%2 == 1 {
				id = fmt.Sprintf("e%d", i)
			}
			res, dup, err := notifyResult(svc, ctx, scan(st, fmt.Sprintf("user%d", i%3), id))
			if err != nil {
				t.Error(err)
			}
			results[i], dups[i] = res, dup
		}()
	}
	wg.Wait()
	accepted := 0
	for i, res := range results {
		if (res == ResultDelivered || res == ResultStored) && !dups[i] {
			accepted++
		}
	}
	if accepted != 1 {
		t.Fatalf("%d events accepted, want exactly 1: %v", accepted, results)
	}
	if got := len(r.messages(st.Session.ID)); got != 1 {
		t.Fatalf("browser got %d messages, want 1 login", got)
	}
	if !is(r.messages(st.Session.ID)[0], browser.KindLogin) {
		t.Fatalf("not a login message: %s", r.messages(st.Session.ID)[0])
	}
}

func TestNotifyDuplicateAnsweredAsFirst(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	st, _ := svc.Start(ctx, oa)
	r.attach(st.Session.ID)
	res, dup, err := notifyResult(svc, ctx, scan(st, "alice", "e1"))
	if err != nil || res != ResultDelivered || dup {
		t.Fatalf("first = %v %v %v", res, dup, err)
	}
	res, dup, err = notifyResult(svc, ctx, scan(st, "alice", "e1"))
	if err != nil || res != ResultDelivered || !dup {
		t.Fatalf("duplicate = %v %v %v, want delivered duplicate", res, dup, err)
	}
	res, _, _ = notifyResult(svc, ctx, scan(st, "bob", "e2"))
	if res != ResultAlreadyUsed {
		t.Fatalf("second confirmation = %v, want already_used", res)
	}
	if len(r.messages(st.Session.ID)) != 1 {
		t.Fatalf("browser got %d messages", len(r.messages(st.Session.ID)))
	}
}

func TestNotifyStoredThenCatchup(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	st, _ := svc.Start(ctx, oa)
	res, _, err := notifyResult(svc, ctx, scan(st, "alice", "e1"))
	if err != nil || res != ResultStored {
		t.Fatalf("notify while away = %v %v, want stored", res, err)
	}
	if _, err := svc.Resume(ctx, st.Session.ID, "wrong"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resume with wrong secret: %v", err)
	}
	if _, err := svc.Resume(ctx, st.Session.ID, st.Resume); err != nil {
		t.Fatalf("resume: %v", err)
	}
	r.attach(st.Session.ID)
	now, missed, err := svc.Catchup(ctx, st.Session.ID)
	if err != nil || now.State != StateConfirmed || len(missed) != 1 || !is(missed[0], browser.KindLogin) {
		t.Fatalf("catchup = %+v %q %v", now, missed, err)
	}
	// The stored login was handed over: a duplicate now reports delivered.
	if res, dup, _ := notifyResult(svc, ctx, scan(st, "alice", "e1")); res != ResultDelivered || !dup {
		t.Fatalf("duplicate after catch-up = %v %v", res, dup)
	}
}

func TestNotifyResults(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	st, _ := svc.Start(ctx, oa)
	ev := scan(st, "alice", "e1")
	ev.Scene = "nope"
	if res, _, _ := notifyResult(svc, ctx, ev); res != ResultNotFound {
		t.Errorf("unknown scene = %v", res)
	}
	ev = scan(st, "alice", "e1")
	ev.Ticket = "forged"
	if res, _, _ := notifyResult(svc, ctx, ev); res != ResultTicketMismatch {
		t.Errorf("wrong ticket = %v", res)
	}
	svc.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if res, _, _ := notifyResult(svc, ctx, scan(st, "alice", "e2")); res != ResultExpired {
		t.Errorf("late scan = %v", res)
	}
	for name, ev := range map[string]Event{
		"no scene":        {Ticket: "t", Kind: KindScan, User: User{OpenID: "a"}, EventID: "e"},
		"ticket too long": {Scene: "s", Ticket: strings.Repeat("t", 257), Kind: KindScan, User: User{OpenID: "a"}, EventID: "e"},
		// A confirm secret goes only with a confirmation, and has one shape.
		"confirm on a scan":  {Scene: "s", Ticket: "t", Kind: KindScanned, User: User{OpenID: "a"}, EventID: "e", Confirm: NewConfirmSecret()},
		"confirm too short":  {Scene: "s", Ticket: "t", Kind: KindConfirmed, User: User{OpenID: "a"}, EventID: "e", Confirm: "abc"},
		"confirm too long":   {Scene: "s", Ticket: "t", Kind: KindConfirmed, User: User{OpenID: "a"}, EventID: "e", Confirm: NewConfirmSecret() + "A"},
		"newline in confirm": {Scene: "s", Ticket: "t", Kind: KindCancelled, User: User{OpenID: "a"}, EventID: "e", Confirm: NewConfirmSecret()[:42] + "\n"},
		"no kind":            {Scene: "s", Ticket: "t", User: User{OpenID: "a"}, EventID: "e"},
		"no openid":          {Scene: "s", Ticket: "t", Kind: KindScan, EventID: "e"},
		"no event id":        {Scene: "s", Ticket: "t", Kind: KindScan, User: User{OpenID: "a"}},
		// Nothing WeChat could have sent: refused before the session is looked up.
		"newline in openid":  {Scene: st.Session.Scene, Ticket: st.Session.Ticket, Kind: KindScan, User: User{OpenID: "oVictim\nX"}, EventID: "e"},
		"space in openid":    {Scene: st.Session.Scene, Ticket: st.Session.Ticket, Kind: KindScan, User: User{OpenID: "o Victim"}, EventID: "e"},
		"openid too long":    {Scene: st.Session.Scene, Ticket: st.Session.Ticket, Kind: KindScan, User: User{OpenID: strings.Repeat("o", 65)}, EventID: "e"},
		"newline in unionid": {Scene: st.Session.Scene, Ticket: st.Session.Ticket, Kind: KindScan, User: User{OpenID: "a", UnionID: "u\nX"}, EventID: "e"},
		"newline in scene":   {Scene: st.Session.Scene + "\n", Ticket: st.Session.Ticket, Kind: KindScan, User: User{OpenID: "a"}, EventID: "e"},
		"scene too long":     {Scene: strings.Repeat("s", 65), Ticket: "t", Kind: KindScan, User: User{OpenID: "a"}, EventID: "e"},
	} {
		_, _, err := notifyResult(svc, ctx, ev)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if got, _ := svc.store.Get(ctx, st.Session.ID); got.State != StateWaiting {
		t.Errorf("a refused Notify changed the session: %s", got.State)
	}
}

func TestPushToSession(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	st, _ := svc.Start(ctx, oa)
	n, stored, err := svc.Push(ctx, Target{SessionID: st.Session.ID}, "hello", []byte(`{"a":1}`))
	if err != nil || n != 0 || !stored {
		t.Fatalf("push while away = %d %v %v, want stored", n, stored, err)
	}
	r.attach(st.Session.ID)
	_, missed, _ := svc.Catchup(ctx, st.Session.ID)
	if len(missed) != 1 || missed[0].Kind != browser.KindMessage || string(missed[0].JSON) != `{"type":"message","event":"hello","data":{"a":1}}` {
		t.Fatalf("missed = %q", missed)
	}
	n, stored, err = svc.Push(ctx, Target{SessionID: st.Session.ID}, "hello", nil)
	if err != nil || n != 1 || stored {
		t.Fatalf("push while attached = %d %v %v", n, stored, err)
	}
	if _, _, err := svc.Push(ctx, Target{SessionID: NewSessionID()}, "e", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown session: %v", err)
	}
	for name, tc := range map[string]struct {
		to   Target
		ev   string
		data []byte
	}{
		"no target":   {Target{}, "e", nil},
		"two targets": {Target{SessionID: "a", OpenID: "b"}, "e", nil},
		"no event":    {Target{OpenID: "b"}, "", nil},
		"not json":    {Target{OpenID: "b"}, "e", []byte("{")},
		"not UTF-8":   {Target{OpenID: "b"}, "e", []byte("\"\xff\"")},
		"name twice":  {Target{OpenID: "b"}, "e", []byte(`{"a":1,"a":2}`)},
		"bad event":   {Target{OpenID: "b"}, "a\"b", nil},
		"too big":     {Target{OpenID: "b"}, "e", make([]byte, MaxPushData+1)},
		// Targets no one could have: they never reach a key or a channel.
		"newline in openid":     {Target{OpenID: "oVictim\nX"}, "e", nil},
		"openid too long":       {Target{OpenID: strings.Repeat("o", 65)}, "e", nil},
		"newline in session id": {Target{SessionID: st.Session.ID[:21] + "\n"}, "e", nil},
		"session id too long":   {Target{SessionID: st.Session.ID + "\nX"}, "e", nil},
		"session id too short":  {Target{SessionID: st.Session.ID[:21]}, "e", nil},
		"event too long":        {Target{OpenID: "b"}, strings.Repeat("e", MaxEventName+1), nil},
	} {
		if _, _, err := svc.Push(ctx, tc.to, tc.ev, tc.data); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestRefreshExpiresOldSession(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	old, _ := svc.Start(ctx, oa)
	st, err := svc.Refresh(ctx, old.Session.ID, oa)
	if err != nil || st.Session.Scene == old.Session.Scene {
		t.Fatalf("refresh = %+v %v", st, err)
	}
	if res, _, _ := notifyResult(svc, ctx, scan(old, "alice", "e1")); res != ResultExpired {
		t.Fatalf("scan of the replaced code = %v, want expired", res)
	}
}

// The state messages of a two-step flow reach the browser, live and on
// catch-up, as frames of their kind.
func TestStateFramesCarryTheirKind(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	st, _ := svc.Start(ctx, oa)
	if !is(st.Frame, browser.KindQRCode) {
		t.Fatalf("start sent %v %s", st.Frame.Kind, st.Frame.JSON)
	}
	ev := scan(st, "alice", "e1")
	ev.Kind = KindScanned
	reply, _ := svc.Notify(ctx, ev)
	if reply.Result != ResultStored || reply.Confirmation == nil {
		t.Fatalf("scanned = %+v", reply)
	}
	if _, missed, _ := svc.Catchup(ctx, st.Session.ID); len(missed) != 1 || !is(missed[0], browser.KindScanned) {
		t.Fatalf("catch-up after scanned = %q", missed)
	}
	r.attach(st.Session.ID)
	ev.Kind, ev.EventID, ev.Confirm = KindCancelled, "e2", reply.Confirmation.Secret
	if res, _, _ := notifyResult(svc, ctx, ev); res != ResultDelivered {
		t.Fatalf("cancelled = %v", res)
	}
	if got := r.messages(st.Session.ID); len(got) != 1 || !is(got[0], browser.KindCancelled) {
		t.Fatalf("browser got %q, want cancelled", got)
	}
}

func TestResumeWindow(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		5 * time.Minute: time.Minute, 2 * time.Minute: time.Minute, 90 * time.Second: 45 * time.Second,
		2 * time.Second: time.Second, 0: time.Minute,
	} {
		if got := ResumeWindow(ttl); got != want {
			t.Errorf("ResumeWindow(%s) = %s, want %s", ttl, got, want)
		}
	}
}

// A login is handed to a resume only within LoginResume of the
// confirmation, and to one resume only; later resumes fail.
func TestResumeHandsLoginOnceWithinWindow(t *testing.T) {
	ctx := context.Background()
	clock := time.Now()
	setup := func(t *testing.T) (*Service, *fakeRouter, *Started) {
		svc, r := newService(t)
		svc.now = func() time.Time { return clock }
		st, _ := svc.Start(ctx, oa)
		if res, _, _ := notifyResult(svc, ctx, scan(st, "alice", "e1")); res != ResultStored {
			t.Fatalf("notify while away = %v", res)
		}
		return svc, r, st
	}
	resume := func(svc *Service, st *Started) ([]browser.Frame, error) {
		if _, err := svc.Resume(ctx, st.Session.ID, st.Resume); err != nil {
			return nil, err
		}
		_, missed, err := svc.Catchup(ctx, st.Session.ID)
		return missed, err
	}

	t.Run("once", func(t *testing.T) {
		svc, _, st := setup(t)
		clock = clock.Add(ResumeWindow(0) - time.Second)
		missed, err := resume(svc, st)
		if err != nil || len(missed) != 1 || !is(missed[0], browser.KindLogin) {
			t.Fatalf("first resume = %q, %v; want the login", missed, err)
		}
		if _, err := svc.Resume(ctx, st.Session.ID, st.Resume); !errors.Is(err, ErrNotFound) {
			t.Fatalf("resume after a resume took the login: %v, want ErrNotFound", err)
		}
		if _, missed, _ := svc.Catchup(ctx, st.Session.ID); len(missed) != 0 {
			t.Fatalf("catch-up after a resume took the login = %q, want nothing", missed)
		}
	})

	t.Run("after the window", func(t *testing.T) {
		svc, _, st := setup(t)
		clock = clock.Add(ResumeWindow(0) + time.Second)
		if _, err := svc.Resume(ctx, st.Session.ID, st.Resume); !errors.Is(err, ErrNotFound) {
			t.Fatalf("resume after the window: %v, want ErrNotFound", err)
		}
		// Even a caller that got past Resume earlier gets no token now.
		if _, missed, _ := svc.Catchup(ctx, st.Session.ID); len(missed) != 0 {
			t.Fatalf("catch-up after the window = %q, want nothing", missed)
		}
	})

	t.Run("delivered live, then resumed", func(t *testing.T) {
		svc, r := newService(t)
		svc.now = func() time.Time { return clock }
		st, _ := svc.Start(ctx, oa)
		r.attach(st.Session.ID)
		if res, _, _ := notifyResult(svc, ctx, scan(st, "alice", "e1")); res != ResultDelivered {
			t.Fatalf("notify = %v", res)
		}
		// The browser may have dropped right after the frame: one resume
		// within the window gets it again, and no other.
		if missed, err := resume(svc, st); err != nil || len(missed) != 1 || !is(missed[0], browser.KindLogin) {
			t.Fatalf("resume after a live login = %q, %v", missed, err)
		}
		if _, err := svc.Resume(ctx, st.Session.ID, st.Resume); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second resume: %v, want ErrNotFound", err)
		}
	})
}

// A resume tells the connections already attached to the session that it
// was taken over.
func TestResumeDisplacesAttached(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	st, _ := svc.Start(ctx, oa)
	r.attach(st.Session.ID)
	if _, err := svc.Resume(ctx, st.Session.ID, "wrong"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if got := r.messages(st.Session.ID); len(got) != 0 {
		t.Fatalf("a failed resume told the attached connection %q", got)
	}
	if _, err := svc.Resume(ctx, st.Session.ID, st.Resume); err != nil {
		t.Fatal(err)
	}
	if got := r.messages(st.Session.ID); len(got) != 1 || !is(got[0], browser.KindSessionTaken) || string(got[0].JSON) != string(browser.SessionTaken.JSON) {
		t.Fatalf("attached connection got %q, want session_taken", got)
	}
}

// After the store lost a session (Redis restarted empty), its browser is
// told the code expired.
func TestRedeliverLostSession(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	st, _ := svc.Start(ctx, oa)
	r.attach(st.Session.ID)
	r.attach("lost")
	svc.Redeliver(ctx, []string{st.Session.ID, "lost"})
	if got := r.messages("lost"); len(got) != 1 || !is(got[0], browser.KindExpired) {
		t.Fatalf("lost session's browser got %q, want expired", got)
	}
	if got := r.messages(st.Session.ID); len(got) != 0 {
		t.Fatalf("live session's browser got %q", got)
	}
}
