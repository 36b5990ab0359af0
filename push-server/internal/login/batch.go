package login

import (
	"context"
	"fmt"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
)

// MaxBatch bounds the pushes of one PushBatch.
const MaxBatch = 1000

// PushItem is one push of a batch: the arguments of Push.
type PushItem struct {
	To    Target
	Event string
	Data  []byte // JSON; empty means null
}

// PushOutcome is what one push of a batch did: the results of Push, or
// its error (ErrInvalid, ErrNotFound, ErrUnavailable, ...).
type PushOutcome struct {
	Delivered int
	Stored    bool
	Err       error
}

// Delivery is one frame of a batch for the connections of a session or of
// a user (exactly one of SessionID and OpenID).
type Delivery struct {
	SessionID string
	OpenID    string
	Frame     browser.Frame
}

// BatchRouter is a Router that hands many frames at once, so that frames
// bound for the same place travel together. Counts are per delivery, in
// order; an error means the deliveries may have reached local connections
// only.
type BatchRouter interface {
	Deliver(ctx context.Context, ds []Delivery) ([]int, error)
}

// PushBatch makes 1 to MaxBatch pushes, each with the rules and results of
// Push, in order; one failing push does not fail the others. The error is
// for the batch as a whole (empty, too large: ErrInvalid).
func (s *Service) PushBatch(ctx context.Context, items []PushItem) ([]PushOutcome, error) {
	if len(items) == 0 || len(items) > MaxBatch {
		return nil, fmt.Errorf("%w: a batch holds 1 to %d pushes", ErrInvalid, MaxBatch)
	}
	out := make([]PushOutcome, len(items))
	ds := make([]Delivery, 0, len(items))
	idx := make([]int, 0, len(items)) // ds[j] is the push items[idx[j]]
	for i, it := range items {
		data := it.Data
		if len(data) == 0 {
			data = []byte("null")
		}
		if err := CheckPush(it.To, it.Event, data); err != nil {
			out[i].Err = err
			continue
		}
		ds = append(ds, Delivery{SessionID: it.To.SessionID, OpenID: it.To.OpenID, Frame: browser.PushFrame(it.Event, data)})
		idx = append(idx, i)
	}
	counts, errs := s.deliver(ctx, ds)
	for j, d := range ds {
		o := &out[idx[j]]
		n, err := counts[j], errs[j]
		switch {
		case err != nil:
			o.Err = fmt.Errorf("push: %w", err)
		case d.OpenID != "":
			o.Delivered = n
			s.obs.Pushed("user", n, false)
		case n > 0:
			o.Delivered = n
			s.obs.Pushed("session", n, false)
		default:
			o.Delivered, o.Stored, o.Err = s.keepPush(ctx, d.SessionID, d.Frame)
			if o.Err != nil {
				o.Err = fmt.Errorf("push to session: %w", o.Err)
			} else {
				s.obs.Pushed("session", o.Delivered, o.Stored)
			}
		}
	}
	return out, nil
}

// deliver hands ds to their connections: in one call when the router
// batches, else one by one.
func (s *Service) deliver(ctx context.Context, ds []Delivery) ([]int, []error) {
	errs := make([]error, len(ds))
	if br, ok := s.router.(BatchRouter); ok && len(ds) > 0 {
		counts, err := br.Deliver(ctx, ds)
		if err != nil {
			for j := range errs {
				errs[j] = err
			}
		}
		return counts, errs
	}
	counts := make([]int, len(ds))
	for j, d := range ds {
		if d.OpenID != "" {
			counts[j], errs[j] = s.router.ToUser(ctx, d.OpenID, d.Frame)
		} else {
			counts[j], errs[j] = s.router.ToSession(ctx, d.SessionID, d.Frame)
		}
	}
	return counts, errs
}
