package gcpace

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	c := &controller{o: Options{}.withDefaults(), gogc: 100}
	const MiB = 1 << 20
	steps := []struct {
		allocated, live uint64
		gogc            int
		calmed          bool
	}{
		{30 * MiB, 0, 100, false},         // before the first collection
		{MiB / 2, 20 * MiB, 100, false},   // idle connections: below the floor rate
		{MiB, 20 * MiB, 100, false},       // a collection every 20 s at GOGC=100: idle
		{4 * MiB, 20 * MiB, 400, false},   // every 5 s: busy
		{MiB, 20 * MiB, 400, false},       // slow again, 1
		{MiB, 19 * MiB, 400, false},       // 2
		{6 * MiB, 19 * MiB, 400, false},   // busy again: the count starts over
		{0, 19 * MiB, 400, false},         // 1
		{0, 19 * MiB, 400, false},         // 2
		{0, 19 * MiB, 400, false},         // 3
		{0, 19 * MiB, 400, false},         // 4
		{0, 19 * MiB, 100, true},          // 5: calm, memory goes back
		{0, 19 * MiB, 100, false},         // stays
		{200 * MiB, 19 * MiB, 400, false}, // busy
		{200 * MiB, 40 * MiB, 400, false}, // a growing heap is no reason to stop (the callback's duplicate memory)
	}
	for i, s := range steps {
		g, calmed := c.step(s.allocated, s.live)
		if g != s.gogc || calmed != s.calmed {
			t.Fatalf("step %d (%d bytes, live %d): GOGC %d, calmed %v; want %d, %v", i, s.allocated, s.live, g, calmed, s.gogc, s.calmed)
		}
	}
}

func TestHoldKeepsIdle(t *testing.T) {
	hold := true
	c := &controller{o: Options{Hold: func() bool { return hold }}.withDefaults(), gogc: 100}
	if g, _ := c.step(100<<20, 20<<20); g != 100 {
		t.Fatalf("busy while held: GOGC %d, want 100", g)
	}
	hold = false
	if g, _ := c.step(100<<20, 20<<20); g != 400 {
		t.Fatalf("busy, not held: GOGC %d, want 400", g)
	}
	hold = true
	if g, _ := c.step(100<<20, 20<<20); g != 100 {
		t.Fatalf("held while busy: GOGC %d, want 100 at once", g)
	}
}

func TestWaveWhileHeld(t *testing.T) {
	hold := true
	c := &controller{o: Options{Hold: func() bool { return hold }, Wave: 50}.withDefaults(), gogc: 100}
	for _, step := range []struct {
		hold     bool
		alloc    uint64
		want     int
		wantFree bool
	}{
		{true, 100 << 20, 50, false}, // busy or not, the wave's value
		{true, 0, 50, false},
		{false, 0, 100, false},         // the wave is over: Idle at once, nothing freed
		{false, 0, 100, false},         // and it stays there
		{true, 100 << 20, 50, false},   // a second wave
		{false, 100 << 20, 400, false}, // followed by load
	} {
		hold = step.hold
		g, calmed := c.step(step.alloc, 20<<20)
		if g != step.want || calmed != step.wantFree {
			t.Fatalf("hold %v, %d MiB allocated: GOGC %d (calmed %v), want %d (%v)", step.hold, step.alloc>>20, g, calmed, step.want, step.wantFree)
		}
	}
}

func TestBusyGOGCStaysWithinHeadroom(t *testing.T) {
	c := &controller{o: Options{Headroom: 256 << 20}.withDefaults()}
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{20 << 20, 400},  // 80 MiB more at most
		{128 << 20, 200}, // 256 MiB more
		{1 << 30, 100},   // never below Idle
	} {
		if got := c.busyGOGC(tc.live); got != tc.want {
			t.Errorf("live %d MiB: GOGC %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

// run reads the heap each interval, sets GOGC, frees memory when the load
// ends, and puts Idle back when it returns.
func TestRun(t *testing.T) {
	var mu sync.Mutex
	var allocated uint64
	var set []int
	frees := 0
	read := func() (uint64, uint64) { mu.Lock(); defer mu.Unlock(); return allocated, 20 << 20 }
	alloc := func(n uint64) { mu.Lock(); allocated += n; mu.Unlock() }
	knob := func(g int) int { mu.Lock(); set = append(set, g); mu.Unlock(); return 0 }
	free := func() { mu.Lock(); frees++; mu.Unlock() }
	state := func() ([]int, int) { mu.Lock(); defer mu.Unlock(); return append([]int(nil), set...), frees }
	waitFor := func(what string, ok func(set []int, frees int) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s, f := state()
			if ok(s, f) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: GOGC set to %v, %d frees", what, s, f)
			}
			time.Sleep(time.Millisecond)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	o := Options{Interval: 5 * time.Millisecond, CalmAfter: 3}.withDefaults()
	go func() {
		run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), o, read, knob, free)
		close(done)
	}()
	waitFor("start", func(s []int, _ int) bool { return len(s) == 1 && s[0] == 100 })

	stop := make(chan struct{})
	go func() { // allocating fast until stopped
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				alloc(4 << 20)
			}
		}
	}()
	waitFor("under load", func(s []int, _ int) bool { return s[len(s)-1] == 400 })
	close(stop)
	waitFor("calm", func(s []int, f int) bool { return s[len(s)-1] == 100 && f == 1 })
	cancel()
	<-done
	if s, _ := state(); s[len(s)-1] != 100 {
		t.Fatalf("after Run: GOGC %d, want 100", s[len(s)-1])
	}
}

func TestRunLeavesAnOperatorsChoice(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func(k string) string {
			if k == "GOGC" {
				return "200"
			}
			return ""
		}, Options{})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return at once with GOGC set")
	}
}

func TestReadHeap(t *testing.T) {
	sink = make([]byte, 1<<20)
	runtime.GC() // the live heap is known after a collection
	a1, _ := readHeap()
	sink = make([]byte, 1<<20)
	a2, live := readHeap()
	if a2-a1 < 1<<20 || live == 0 {
		t.Fatalf("allocated %d → %d, live %d: want +1 MiB and a live heap", a1, a2, live)
	}
}

var sink []byte
