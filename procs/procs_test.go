package procs

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
	o := Options{Max: 4, Up: 0.6, Down: 0.7, DownAfter: 3}.withDefaults()
	tests := []struct {
		name  string
		cores []float64
		want  []int
	}{
		{"light load stays on one P", []float64{0.1, 0.5, 0.59}, []int{1, 1, 1}},
		{"load above Up takes every P at once", []float64{0.2, 0.65}, []int{1, 4}},
		{"back to one P only after DownAfter low intervals", []float64{0.9, 0.1, 0.1, 0.1}, []int{4, 4, 4, 1}},
		{"one busy interval restarts the count", []float64{0.9, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1}, []int{4, 4, 4, 4, 4, 4, 1}},
		{"busy on every P stays on every P", []float64{0.9, 0.75, 0.75, 0.75, 0.75}, []int{4, 4, 4, 4, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &controller{o: o, procs: 1}
			for i, x := range tt.cores {
				if got := c.step(x); got != tt.want[i] {
					t.Fatalf("step %d (%.2f cores) = %d Ps, want %d", i, x, got, tt.want[i])
				}
			}
		})
	}
}

// TestRun drives run with a scripted CPU clock: it starts on one P, goes to
// Max when the process gets busy, and puts Max back when it returns.
func TestRun(t *testing.T) {
	var (
		mu   sync.Mutex
		used time.Duration
		sets []int
	)
	cpu := func() (time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		return used, true
	}
	set := func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		sets = append(sets, n)
		return 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	o := Options{Max: 3, Interval: 10 * time.Millisecond}.withDefaults()
	go func() {
		run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), o, cpu, set)
		close(done)
	}()
	// Busy: a whole second of CPU per interval.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		used += time.Second
		n := len(sets)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := []int{1, 3, 3}
	if len(sets) != len(want) {
		t.Fatalf("GOMAXPROCS set to %v, want %v", sets, want)
	}
	for i := range want {
		if sets[i] != want[i] {
			t.Fatalf("GOMAXPROCS set to %v, want %v", sets, want)
		}
	}
}

func TestRunLeavesAnOperatorsChoice(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func(k string) string {
		if k == "GOMAXPROCS" {
			return "2"
		}
		return ""
	}, Options{})
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS = %d after Run with GOMAXPROCS set, want %d", got, before)
	}
}

func TestCPUTimeAdvances(t *testing.T) {
	a, ok := cpuTime()
	if !ok {
		t.Skip("no process CPU time on this platform")
	}
	end := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(end); x++ {
		_ = x * x
	}
	b, _ := cpuTime()
	if b <= a {
		t.Fatalf("CPU time went from %v to %v over 50 ms of busy work", a, b)
	}
}
