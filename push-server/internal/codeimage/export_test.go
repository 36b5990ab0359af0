package codeimage

import "time"

// SetClock replaces the clock of s, for expiry tests.
func SetClock(s *Memory, now func() time.Time) { s.now = now }
