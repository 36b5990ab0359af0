// Package gcpace sets the garbage collector's GOGC to what the process is
// doing: a low value while it is idle, so idle memory stays small, and a
// higher one while it allocates fast, so collections are rarer under load.
//
// push-server keeps a live heap of about 2 KiB per connection. While
// requests flow, a collection every few seconds has to mark all of it,
// 20-40 ms on one P, and the requests that arrive meanwhile are the slow
// ones: at 2,000 Push/s on 10,000 connections, Push p99 was 1.0-1.7 ms with
// GOGC=100 and 0.68 ms with no collection at all (docs/benchmarks.md). A
// high GOGC at all times would instead leave idle servers holding garbage:
// 4.7 KiB of RSS per idle connection at GOGC=400 against 3.6 KiB.
//
// GOGC goes lower still while a wave of connections arrives (Options.Hold
// and Wave; push-server uses 50): frequent collections during the wave let
// what the connections keep fill the slots that the garbage of their
// handshakes left, and the heap stays dense. With GOGC=400 during the wave
// it spread over more pages, which stayed resident after the garbage was
// gone (4.8 KiB per idle connection); 10,000 connections cost 3.81-4.06 KiB
// each at GOGC=100 during the wave and 3.50-3.81 KiB at 50, for about 5 %
// more CPU while they connected.
//
// wechat-callback runs it with no Hold: its live heap is small (5 MB), so
// at GOGC=100 it collected ten times a second at 2,000 scans/s.
package gcpace

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Options tune the controller. Zero fields take the defaults.
type Options struct {
	// Idle is GOGC while the process allocates slowly; default 100, Go's.
	Idle int
	// Busy is GOGC while it allocates fast; default 400. It is lowered so
	// that the heap may outgrow the live heap by at most Headroom.
	Busy int
	// Headroom bounds the memory Busy may add; default 256 MiB.
	Headroom uint64
	// Interval is how often the allocation rate is read; default 1s.
	Interval time.Duration
	// CalmAfter: intervals in a row of slow allocation before going back to
	// Idle; default 5.
	CalmAfter int
	// Hold, when set, keeps GOGC at Wave while it reports true: push-server
	// holds it while a wave of connections arrives. (The live heap, read
	// only after each collection, shows a slow wave late or not at all; and
	// the callback's grows with its duplicate memory while it is busy.)
	Hold func() bool
	// Wave is GOGC while Hold reports true; default Idle. When the hold
	// ends GOGC goes back to Idle at once, without freeing memory: what the
	// wave left is for its owner to give back (push-server does).
	Wave int
}

func (o Options) withDefaults() Options {
	if o.Idle <= 0 {
		o.Idle = 100
	}
	if o.Busy <= 0 {
		o.Busy = 400
	}
	if o.Headroom == 0 {
		o.Headroom = 256 << 20
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.CalmAfter <= 0 {
		o.CalmAfter = 5
	}
	if o.Wave <= 0 {
		o.Wave = o.Idle
	}
	return o
}

// minRate is the allocation rate, in bytes a second, below which the
// process counts as idle whatever its heap: small heaps would otherwise
// look busy at any rate.
const minRate = 1 << 20

// controller decides GOGC from the bytes allocated over each interval.
type controller struct {
	o       Options
	gogc    int  // now
	calm    int  // intervals in a row of slow allocation while busy
	holding bool // Hold reported true at the last step
}

// busyWithin: the process is busy when, at Idle, the collector would run
// at least once every busyWithin intervals (it runs each time the heap grows
// by Idle per cent of the live heap). Pings and pongs of idle connections
// stay far below that.
const busyWithin = 10

func (c *controller) busy(allocated, live uint64) bool {
	perInterval := uint64(minRate * c.o.Interval.Seconds())
	return allocated >= perInterval && allocated*busyWithin >= live*uint64(c.o.Idle)/100
}

// step takes the bytes allocated over the last interval and the live heap
// (as of the last collection), and returns GOGC for the next interval, and
// whether the process just calmed down (time to give memory back).
func (c *controller) step(allocated, live uint64) (gogc int, calmed bool) {
	if c.o.Hold != nil && c.o.Hold() {
		c.gogc, c.calm, c.holding = c.o.Wave, 0, true
		return c.gogc, false
	}
	// The live heap is unknown before the first collection.
	busy := live != 0 && c.busy(allocated, live)
	if live == 0 || c.holding && !busy {
		c.gogc, c.calm, c.holding = c.o.Idle, 0, false
		return c.gogc, false
	}
	c.holding = false
	if busy {
		c.calm = 0
		c.gogc = c.busyGOGC(live)
		return c.gogc, false
	}
	if c.gogc == c.o.Idle {
		return c.gogc, false
	}
	c.calm++
	if c.calm < c.o.CalmAfter {
		return c.gogc, false
	}
	c.gogc, c.calm = c.o.Idle, 0
	return c.gogc, true
}

// busyGOGC is Busy, lowered (not below Idle) so that live × GOGC/100 stays
// within Headroom. live is not 0 (step holds Idle until it is known).
func (c *controller) busyGOGC(live uint64) int {
	return max(int(min(uint64(c.o.Busy), c.o.Headroom*100/live)), c.o.Idle)
}

// Run sets GOGC until ctx ends, and puts back Idle when it returns. It does
// nothing when the operator chose GOGC (getenv("GOGC") is set).
func Run(ctx context.Context, log *slog.Logger, getenv func(string) string, o Options) {
	if v := getenv("GOGC"); v != "" {
		log.Debug("GOGC set; gcpace left alone", "gogc", v)
		return
	}
	run(ctx, log, o.withDefaults(), readHeap, debug.SetGCPercent, func() { debug.FreeOSMemory() })
}

// run is Run with the heap readings and the knobs injected, for tests.
func run(ctx context.Context, log *slog.Logger, o Options, read func() (allocated, live uint64), set func(int) int, free func()) {
	c := &controller{o: o, gogc: o.Idle}
	set(o.Idle)
	defer set(o.Idle)
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	prev, _ := read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			total, live := read()
			before := c.gogc
			g, calmed := c.step(total-prev, live)
			prev = total
			if g != before {
				set(g)
				log.Debug("GOGC changed", "from", before, "to", g, "live_bytes", live)
			}
			if calmed {
				free() // the garbage the busy GOGC let pile up
			}
		}
	}
}

// readHeap returns the bytes allocated since the process started and the
// live heap after the last collection.
func readHeap() (allocated, live uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		allocated = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		live = s[1].Value.Uint64()
	}
	return allocated, live
}
