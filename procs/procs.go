// Package procs sizes GOMAXPROCS to the load of a network service.
//
// A Push hands each request over between several goroutines (gRPC's
// reader, a stream worker, gRPC's writer). With more than one P, each
// hand-off to an idle P wakes an OS thread, which spins looking for work
// before it sleeps again: futex and nanosleep calls that cost more than the
// request itself while the load is light (docs/benchmarks.md: about a
// quarter of push-server's CPU per Push at 2,000/s on 2 cores). With one P
// the same hand-offs are run-queue operations. So the service runs its Go
// code on one P while it uses little CPU, and on all of them once it needs
// more.
//
// wechat-callback, which calls Notify for each event, runs it too since its
// sockets use raw system calls (rawsock). Before, with one P its Notify
// calls took 2.6–3.2 ms on average at 2,000 scans/s against 1.3–2.2 ms on
// every P; after, one P cost it 164–168 µs per scan against 229–231 µs on
// two, and scan-to-login p99 was 1.9–2.1 ms against 2.3–2.9 ms
// (docs/benchmarks.md).
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// Options tune the controller. Zero fields take the defaults.
type Options struct {
	// Max is the number of Ps under load; default runtime.GOMAXPROCS(0) at
	// the call of Run (the number of CPUs the process may use).
	Max int
	// Interval is how often the process's CPU time is read; default 1s
	// (shorter ones see a garbage collection as load).
	Interval time.Duration
	// Up: with one P, using more than this many cores over one interval
	// switches to Max; default 0.6, leaving headroom before one P saturates.
	Up float64
	// Down: with Max Ps, using less than this many cores for DownAfter
	// intervals in a row switches to one P; default 0.7. The same load
	// costs more CPU on several Ps than on one (the spinning): about 1.4
	// times at 2,000 Push/s on 2 cores. So Down may sit above Up: a load
	// just over Up on one P shows more than Down on Max Ps, and a load just
	// under Down on Max Ps shows less than Up on one P.
	Down float64
	// DownAfter: default 5.
	DownAfter int
}

func (o Options) withDefaults() Options {
	if o.Max <= 0 {
		o.Max = runtime.GOMAXPROCS(0)
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Up <= 0 {
		o.Up = 0.6
	}
	if o.Down <= 0 {
		o.Down = 0.7
	}
	if o.DownAfter <= 0 {
		o.DownAfter = 5
	}
	return o
}

// controller decides the number of Ps from the CPU used in each interval.
type controller struct {
	o     Options
	procs int // Ps now
	low   int // intervals in a row below Down, at Max
}

// step takes the cores used over the last interval and returns the number
// of Ps for the next one.
func (c *controller) step(cores float64) int {
	switch {
	case c.procs < c.o.Max && cores > c.o.Up:
		c.procs, c.low = c.o.Max, 0
	case c.procs == c.o.Max && cores < c.o.Down:
		c.low++
		if c.low >= c.o.DownAfter {
			c.procs, c.low = 1, 0
		}
	default:
		c.low = 0
	}
	return c.procs
}

// Run sizes GOMAXPROCS until ctx ends, starting with one P, and puts back
// Max when it returns. It does nothing when the operator chose GOMAXPROCS
// (getenv("GOMAXPROCS") is set), when there is only one CPU, or where the
// process's CPU time cannot be read.
func Run(ctx context.Context, log *slog.Logger, getenv func(string) string, o Options) {
	if getenv("GOMAXPROCS") != "" {
		log.Debug("GOMAXPROCS set; procs left alone", "gomaxprocs", runtime.GOMAXPROCS(0))
		return
	}
	o = o.withDefaults()
	if _, ok := cpuTime(); !ok || o.Max <= 1 {
		return
	}
	run(ctx, log, o, cpuTime, runtime.GOMAXPROCS)
}

// run is Run with the clock and the knob injected, for tests.
func run(ctx context.Context, log *slog.Logger, o Options, cpu func() (time.Duration, bool), set func(int) int) {
	c := &controller{o: o, procs: 1}
	set(1)
	defer set(o.Max)
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	prev, _ := cpu()
	prevAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used, _ := cpu()
			cores := (used - prev).Seconds() / now.Sub(prevAt).Seconds()
			prev, prevAt = used, now
			before := c.procs
			if p := c.step(cores); p != before {
				set(p)
				log.Debug("GOMAXPROCS changed", "from", before, "to", p, "cores", cores)
			}
		}
	}
}
