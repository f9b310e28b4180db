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
	gctune.Apply()
	assert.Equal(t, gctune.DefaultPercent, debug.SetGCPercent(100), "the default applies without GOGC")

	// An explicit GOGC wins: Apply leaves the runtime's value alone.
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	gctune.Apply()
	assert.Equal(t, 150, debug.SetGCPercent(150))
}
