package login

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
)

// Each push of a batch gets the result Push would give it, in order, and a
// bad one fails alone.
func TestPushBatchResultsInOrder(t *testing.T) {
	svc, r := newService(t)
	ctx := context.Background()
	here, _ := svc.Start(ctx, Request{Flow: FlowOA})
	away, _ := svc.Start(ctx, Request{Flow: FlowOA})
	r.attach(here.Session.ID)

	outs, err := svc.PushBatch(ctx, []PushItem{
		{To: Target{SessionID: here.Session.ID}, Event: "a", Data: []byte(`1`)},
		{To: Target{SessionID: here.Session.ID, OpenID: "o"}, Event: "b"},
		{To: Target{SessionID: away.Session.ID}, Event: "c", Data: []byte(`{"x":2}`)},
		{To: Target{SessionID: NewSessionID()}, Event: "d"},
		{To: Target{OpenID: "oNobody"}, Event: "e"},
		{To: Target{OpenID: "oNobody"}, Event: "bad event"},
		{To: Target{SessionID: here.Session.ID}, Event: "f"},
	})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		n      int
		stored bool
		err    error
	}
	for i, w := range []want{{1, false, nil}, {0, false, ErrInvalid}, {0, true, nil}, {0, false, ErrNotFound},
		{0, false, nil}, {0, false, ErrInvalid}, {1, false, nil}} {
		o := outs[i]
		if o.Delivered != w.n || o.Stored != w.stored || !errors.Is(o.Err, w.err) || (w.err == nil) != (o.Err == nil) {
			t.Errorf("push %d = %+v, want %+v", i, o, w)
		}
	}
	got := r.messages(here.Session.ID)
	if len(got) != 2 || string(got[0].JSON) != `{"type":"message","event":"a","data":1}` ||
		string(got[1].JSON) != `{"type":"message","event":"f","data":null}` {
		t.Errorf("attached session got %q", got)
	}
	r.attach(away.Session.ID)
	if _, missed, _ := svc.Catchup(ctx, away.Session.ID); len(missed) != 1 ||
		string(missed[0].JSON) != `{"type":"message","event":"c","data":{"x":2}}` {
		t.Errorf("away session missed %q", missed)
	}

	for _, n := range []int{0, MaxBatch + 1} {
		if _, err := svc.PushBatch(ctx, make([]PushItem, n)); !errors.Is(err, ErrInvalid) {
			t.Errorf("batch of %d: err = %v, want ErrInvalid", n, err)
		}
	}
}

// batchRouter is a fakeRouter that delivers batches in one call, or fails.
type batchRouter struct {
	*fakeRouter
	calls int
	fail  error
}

func (b *batchRouter) Deliver(ctx context.Context, ds []Delivery) ([]int, error) {
	b.calls++
	counts := make([]int, len(ds))
	if b.fail != nil {
		return counts, b.fail
	}
	for i, d := range ds {
		counts[i], _ = b.ToSession(ctx, d.SessionID, d.Frame)
	}
	return counts, nil
}

// A router that batches gets the valid pushes in one call; when it fails,
// every push it carried fails as unavailable, the invalid ones as invalid.
func TestPushBatchThroughBatchRouter(t *testing.T) {
	br := &batchRouter{fakeRouter: newRouter()}
	svc := NewService(slog.New(slog.NewTextHandler(io.Discard, nil)), Config{TTL: time.Minute}, NewMemory(time.Minute),
		map[Flow]QRIssuer{FlowOA: &fakeQR{}}, fakeMinter{}, br, nopObserver{})
	ctx := context.Background()
	st, _ := svc.Start(ctx, Request{Flow: FlowOA})
	br.attach(st.Session.ID)
	items := []PushItem{
		{To: Target{SessionID: st.Session.ID}, Event: "a"},
		{To: Target{}, Event: "b"},
		{To: Target{SessionID: st.Session.ID}, Event: "c"},
	}
	outs, err := svc.PushBatch(ctx, items)
	if err != nil || br.calls != 1 || outs[0].Delivered != 1 || !errors.Is(outs[1].Err, ErrInvalid) || outs[2].Delivered != 1 {
		t.Fatalf("batch = %+v, %v after %d calls", outs, err, br.calls)
	}
	if got := br.messages(st.Session.ID); len(got) != 2 || !is(got[0], browser.KindMessage) {
		t.Fatalf("session got %q", got)
	}

	br.fail = ErrUnavailable
	outs, _ = svc.PushBatch(ctx, items)
	if !errors.Is(outs[0].Err, ErrUnavailable) || !errors.Is(outs[1].Err, ErrInvalid) || !errors.Is(outs[2].Err, ErrUnavailable) {
		t.Fatalf("failing router: %+v", outs)
	}
}
