package main

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// recordOp remembers the requests it gets; odd ones fail, and every
// request holds on for hold, so that several are in flight.
type recordOp struct {
	hold time.Duration
	mu   sync.Mutex
	seqs map[int]int
}

func (o *recordOp) do(_ context.Context, seq int, _ *Session) (time.Time, error) {
	start := time.Now()
	time.Sleep(o.hold)
	o.mu.Lock()
	o.seqs[seq]++
	o.mu.Unlock()
	if seq%2 == 1 {
		return start, errors.New("odd")
	}
	return start, nil
}

func (o *recordOp) Close() error { return nil }

func TestDriveMakesEachRequestOnce(t *testing.T) {
	o := &recordOp{hold: 2 * time.Millisecond, seqs: map[int]int{}}
	sessions := make([]Session, 300)
	for i := range sessions {
		sessions[i].Idx = i
	}
	d := drive(context.Background(), o, 300, 5000, 100, func(i int) *Session { return &sessions[i] }, true)
	if d.Sent != 300 || d.OK != 150 || d.Errors["odd"] != 150 {
		t.Fatalf("sent %d ok %d errors %v, want 300, 150, 150 odd", d.Sent, d.OK, d.Errors)
	}
	for i := range 300 {
		if o.seqs[i] != 1 {
			t.Fatalf("request %d made %d times", i, o.seqs[i])
		}
	}
	if len(d.Starts) != 150 {
		t.Errorf("%d start times kept, want one per success", len(d.Starts))
	}
	// At 5,000/s, requests that take 2 ms overlap; none waits for another.
	if d.Elapsed > 5*time.Second {
		t.Errorf("took %v for 60 ms of schedule", d.Elapsed)
	}
}
