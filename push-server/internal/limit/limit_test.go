package limit

import (
	"context"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	now := time.Unix(0, 0)
	b := NewBuckets(Rate{N: 2, Per: time.Minute})
	b.now = func() time.Time { return now }
	ctx := context.Background()
	allow := func(key string) bool { ok, _ := b.Allow(ctx, key); return ok }
	if !allow("a") || !allow("a") || allow("a") {
		t.Fatal("want 2 allowed then refused")
	}
	if !allow("b") {
		t.Fatal("keys share a bucket")
	}
	now = now.Add(30 * time.Second)
	if !allow("a") || allow("a") {
		t.Fatal("want one token back after half the period")
	}
	now = now.Add(time.Hour)
	b.Sweep()
	if len(b.m) != 0 {
		t.Errorf("%d full buckets kept after Sweep", len(b.m))
	}
	if ok, _ := NewBuckets(Rate{}).Allow(ctx, "x"); !ok {
		t.Error("zero rate must not limit")
	}
}

func TestConns(t *testing.T) {
	c := NewConns(2)
	if !c.Acquire("ip") || !c.Acquire("ip") || c.Acquire("ip") {
		t.Fatal("want 2 slots")
	}
	c.Release("ip")
	if !c.Acquire("ip") {
		t.Fatal("slot not given back")
	}
	c.Release("ip")
	c.Release("ip")
	if len(c.n) != 0 {
		t.Errorf("counts left: %v", c.n)
	}
	u := NewConns(0)
	for range 1000 {
		if !u.Acquire("ip") {
			t.Fatal("0 must mean no limit")
		}
	}
}
