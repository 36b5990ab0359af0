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
	d := drive(context.Background(), singles{o}, 300, 1, 5000, 100, func(i int) *Session { return &sessions[i] }, true)
	if d.Calls != 300 || d.Sent != 300 || d.OK != 150 || d.Errors["odd"] != 150 {
		t.Fatalf("calls %d sent %d ok %d errors %v, want 300, 300, 150, 150 odd", d.Calls, d.Sent, d.OK, d.Errors)
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

// recordBatch remembers the calls it gets: their first request and their
// sessions. In each call, requests whose number ends in 7 fail; a call
// whose first request is 200 fails as a whole.
type recordBatch struct {
	mu    sync.Mutex
	calls map[int][]int // first request → session indexes
}

func (o *recordBatch) doBatch(_ context.Context, seq int, ss []*Session) (time.Time, []error) {
	o.mu.Lock()
	for _, s := range ss {
		o.calls[seq] = append(o.calls[seq], s.Idx)
	}
	o.mu.Unlock()
	errs := make([]error, len(ss))
	for k := range ss {
		switch {
		case seq == 200:
			errs[k] = errors.New("call failed")
		case (seq+k)%10 == 7:
			errs[k] = errors.New("seven")
		}
	}
	return time.Now(), errs
}

func (o *recordBatch) Close() error { return nil }

func TestDriveSendsBatches(t *testing.T) {
	o := &recordBatch{calls: map[int][]int{}}
	sessions := make([]Session, 250)
	for i := range sessions {
		sessions[i].Idx = 1000 + i
	}
	// 250 requests of 100 a call: calls of 100, 100 and 50, at 5,000
	// requests a second (50 calls a second).
	d := drive(context.Background(), o, 250, 100, 5000, 10, func(i int) *Session { return &sessions[i] }, false)
	if d.Calls != 3 || d.Sent != 250 {
		t.Fatalf("calls %d sent %d, want 3 and 250", d.Calls, d.Sent)
	}
	for first, n := range map[int]int{0: 100, 100: 100, 200: 50} {
		got := o.calls[first]
		if len(got) != n {
			t.Fatalf("call from %d carried %d requests, want %d", first, len(got), n)
		}
		for k, idx := range got {
			if idx != 1000+first+k {
				t.Fatalf("call from %d: request %d went to session %d, want %d", first, k, idx, 1000+first+k)
			}
		}
	}
	if len(o.calls) != 3 {
		t.Errorf("calls %v", o.calls)
	}
	// Each request counts once: 20 sevens in the first two calls, the
	// third call's 50 all failed.
	if d.OK != 180 || d.Errors["seven"] != 20 || d.Errors["call failed"] != 50 {
		t.Errorf("ok %d errors %v, want 180 ok, 20 seven, 50 call failed", d.OK, d.Errors)
	}
}
