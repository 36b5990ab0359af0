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

// pauseGC turns the load tool's own garbage collector off for the rest of
// the process, once its connections are open: with thousands of
// connections its collections stalled the tool, and every frame that
// arrived meanwhile was timed late, so the tool measured itself rather than
// the server. A run allocates a few hundred MB at most; a memory limit of
// what the process uses now plus gcHeadroom lets the collector run again
// should it need to. GOGC in the environment keeps the collector as that
// says. This is a measuring tool's choice for its own process; the services
// never change runtime settings (docs/runtime.md).
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
