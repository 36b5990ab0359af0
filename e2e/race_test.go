//go:build race

package e2e

// Under the race detector the programs are built with it too, so that a
// race in a program fails its test (through its exit status).
func init() { buildFlags = append(buildFlags, "-race") }
