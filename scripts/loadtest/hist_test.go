package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreContiguous(t *testing.T) {
	// Every value falls in a bucket whose range holds it, and bucket i+1
	// starts right after bucket i ends.
	prevHigh := int64(-1)
	for i := 0; i < histBuckets; i++ {
		high := bucketHigh(i)
		if high <= prevHigh {
			t.Fatalf("bucket %d: high %d ≤ previous %d", i, high, prevHigh)
		}
		if got := bucketOf(prevHigh + 1); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", prevHigh+1, got, i)
		}
		if got := bucketOf(high); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", high, got, i)
		}
		prevHigh = high
	}
	if prevHigh != math.MaxInt64 {
		t.Fatalf("last bucket ends at %d, want MaxInt64", prevHigh)
	}
}

func TestQuantilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Hist
	var vals []int64
	for range 100_000 {
		// Log-normal-ish latencies from 10 µs to seconds.
		v := int64(math.Exp(rng.NormFloat64()*1.5+12.5)) + 10_000
		vals = append(vals, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := int64(h.Quantile(q))
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 1.0/(1<<subBits) {
			t.Errorf("q%v = %d, exact %d: off by %.2f%%", q, got, want, rel*100)
		}
		if got < want {
			t.Errorf("q%v = %d below the exact %d: quantiles must not flatter", q, got, want)
		}
	}
	if h.Max() != time.Duration(vals[len(vals)-1]) {
		t.Errorf("max %v, want %v", h.Max(), vals[len(vals)-1])
	}
	if h.Count() != uint64(len(vals)) {
		t.Errorf("count %d", h.Count())
	}
}

func TestSmallValuesAreExact(t *testing.T) {
	var h Hist
	for v := range 100 {
		h.Record(time.Duration(v + 1))
	}
	if got := h.Quantile(0.5); got != 50 {
		t.Errorf("median of 1..100 = %v, want 50ns", got)
	}
	if got := h.Quantile(0.99); got != 99 {
		t.Errorf("p99 of 1..100 = %v, want 99ns", got)
	}
	var empty Hist
	if empty.Quantile(0.99) != 0 || empty.Summary().Count != 0 {
		t.Error("empty histogram should report zeros")
	}
	h.Record(-5 * time.Millisecond) // a clock step counts as zero
	if h.Quantile(0) != 0 {
		t.Error("negative value not recorded as 0")
	}
}

func TestMergeAndWire(t *testing.T) {
	var a, b, all Hist
	for i := range 1000 {
		d := time.Duration(i) * 37 * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	wa, err := FromWire(a.Wire())
	if err != nil {
		t.Fatal(err)
	}
	wb, err := FromWire(b.Wire())
	if err != nil {
		t.Fatal(err)
	}
	var m Hist
	m.Merge(wa)
	m.Merge(wb)
	if m.Summary() != all.Summary() {
		t.Errorf("merged %+v\nwant   %+v", m.Summary(), all.Summary())
	}
	if _, err := FromWire(HistWire{Buckets: [][2]uint64{{histBuckets, 1}}}); err == nil {
		t.Error("out-of-range bucket accepted")
	}
}

func TestParseStatCPU(t *testing.T) {
	// Field 2 may hold spaces and parentheses.
	stat := []byte("4242 (push (srv) x) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 50 0 0 20 0 9 0 1000 2000000 3000 18446744073709551615\n")
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("cpu = %v, want %v", got, want)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Error("garbage accepted")
	}
}
