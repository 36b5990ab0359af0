package token

import (
	"testing"
	"time"
)

// BenchmarkMint measures minting one login token; docs/benchmarks.md keeps
// its history.
func BenchmarkMint(b *testing.B) {
	iss, err := New(GenerateKey(), "scanlogin", 5*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for b.Loop() {
		if _, err := iss.Mint("oABCDEFGHIJKLMNOPQRSTUVWXYZ0", "", "sid1234567890", now); err != nil {
			b.Fatal(err)
		}
	}
}
