// Package testlog holds the log buffer that tests hand to the code they
// run, so that they can read its log lines while it still writes them.
package testlog

import (
	"strings"
	"sync"
)

// Buffer is an io.Writer that many goroutines may write to while a test
// reads what they wrote.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
