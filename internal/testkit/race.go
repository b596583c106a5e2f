//go:build race

package testkit

// Race reports whether the race detector is on: it makes goroutine
// stacks and allocations larger, so a test that measures memory needs a
// looser bound under it.
const Race = true
