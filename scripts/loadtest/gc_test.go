package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

// Pausing the collector leaves a memory limit above what is in use, and
// GOGC in the environment keeps the collector on.
func TestPauseGCKeepsAMemoryLimit(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	defer debug.SetGCPercent(oldPercent)
	oldLimit := debug.SetMemoryLimit(-1) // -1 reads it
	defer debug.SetMemoryLimit(oldLimit)

	if pauseGCUnless(func(string) string { return "100" }) {
		t.Fatal("paused the collector although GOGC is set")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC %d after a refused pause, want 100", got)
	}

	if !pauseGCUnless(func(string) string { return "" }) {
		t.Fatal("did not pause the collector")
	}
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Fatalf("GOGC %d after the pause, want off (-1)", got)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 || limit < int64(ms.Sys-ms.HeapReleased)+gcHeadroom/2 {
		t.Fatalf("memory limit %d with %d in use: want about %d more", limit, ms.Sys-ms.HeapReleased, gcHeadroom)
	}
}
