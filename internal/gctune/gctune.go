// Package gctune sets the garbage collector's target for the long-running
// binaries. Both the parent and the enclave keep small live heaps while
// allocating quickly per request, so Go's default (GOGC=100) runs a
// collection every few megabytes; a higher target trades a few megabytes of
// memory for markedly less CPU per request (measured with `make bench`).
package gctune

import (
	"os"
	"runtime/debug"
)

// DefaultPercent is the GOGC value applied when the environment sets none.
const DefaultPercent = 400

// Apply sets the GC percent to DefaultPercent unless GOGC is set in the
// environment, which always wins.
func Apply() {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(DefaultPercent)
}
