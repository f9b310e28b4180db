package gctune_test

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/nitrosigner/nitrosigner/internal/gctune"
)

func TestApply(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	t.Setenv("GOGC", "")
	assert.Equal(t, gctune.DefaultPercent, gctune.Apply())
	assert.Equal(t, gctune.DefaultPercent, debug.SetGCPercent(gctune.DefaultPercent))

	// An explicit GOGC wins: Apply leaves the runtime's value alone.
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	assert.Equal(t, 150, gctune.Apply())
	assert.Equal(t, 150, debug.SetGCPercent(150))
}
