package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
)

// gcHeadroom is how much the tool's memory may grow while its collector is
// paused before the collector runs anyway.
const gcHeadroom = 2 << 30

var pauseGCOnce sync.Once

// pauseGC turns the tool's own garbage collector off for the rest of the
// process, once its connections are open. With 10,000 connections its
// collections stalled the tool for 16-34 ms at a time (the lateness of a
// 1 ms sleep), and every frame that arrived meanwhile was timed late: Push
// p99 2.5-4.4 ms against 1.2-1.7 ms with the collector off, the same
// server (docs/benchmarks.md). A run allocates a few hundred MB at most; a
// memory limit of what the process uses now plus gcHeadroom lets the
// collector run again should it need to. GOGC in the environment keeps the
// collector as that says.
func pauseGC() {
	pauseGCOnce.Do(func() { pauseGCUnless(os.Getenv) })
}

func pauseGCUnless(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	debug.SetMemoryLimit(int64(ms.Sys-ms.HeapReleased) + gcHeadroom)
	debug.SetGCPercent(-1)
	return true
}
