package main

import (
	"fmt"
	"math/bits"
	"time"
)

// subBits sets the precision of a Hist: each power of two is split into
// 1<<subBits buckets, so a recorded value is known to within 1/128 (0.8 %).
const subBits = 7

// histBuckets covers every non-negative int64 nanosecond value.
const histBuckets = (64 - subBits) << subBits

// Hist is a log-linear latency histogram of nanosecond values, in the
// manner of HdrHistogram: fixed memory (64 KiB), O(1) Record, exact merge.
// Values below 128 ns are kept exactly. It is not safe for concurrent use.
type Hist struct {
	counts [histBuckets]uint64
	n      uint64
	min    int64
	max    int64
	sum    float64
}

// bucketOf returns the bucket index of v ≥ 0.
func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits - 1 // shift that leaves subBits+1 significant bits
	top := int(v >> e)                       // in [1<<subBits, 2<<subBits)
	return (e+1)<<subBits + top - 1<<subBits
}

// bucketHigh returns the largest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i>>subBits - 1
	top := int64(i&(1<<subBits-1) + 1<<subBits)
	return (top+1)<<e - 1
}

// Record adds one value; negative values (clock steps) count as 0.
func (h *Hist) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
}

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.n }

// Max is the largest recorded value, exactly.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Mean is the average recorded value.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value at or below which a fraction q of the
// recorded values lie (the highest value of that bucket, capped by the
// exact maximum); 0 when empty.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max))
		}
	}
	return time.Duration(h.max)
}

// Merge adds every value of o to h.
func (h *Hist) Merge(o *Hist) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
}

// HistWire is a Hist in transit between processes: only the buckets that
// hold values, as [index, count] pairs.
type HistWire struct {
	Buckets [][2]uint64 `json:"buckets"`
	Min     int64       `json:"min"`
	Max     int64       `json:"max"`
	Sum     float64     `json:"sum"`
}

// Wire returns h in its transit form.
func (h *Hist) Wire() HistWire {
	w := HistWire{Min: h.min, Max: h.max, Sum: h.sum, Buckets: [][2]uint64{}}
	for i, c := range h.counts {
		if c > 0 {
			w.Buckets = append(w.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return w
}

// FromWire rebuilds a Hist; it fails on a bucket index out of range.
func FromWire(w HistWire) (*Hist, error) {
	h := &Hist{min: w.Min, max: w.Max, sum: w.Sum}
	for _, b := range w.Buckets {
		if b[0] >= histBuckets {
			return nil, fmt.Errorf("histogram bucket %d out of range", b[0])
		}
		h.counts[b[0]] += b[1]
		h.n += b[1]
	}
	return h, nil
}

// Latency is a histogram summary as reported, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary reports h's percentiles.
func (h *Hist) Summary() Latency {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return Latency{
		Count: h.n,
		Mean:  ms(h.Mean()),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}
