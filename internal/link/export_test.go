package link

import (
	"context"
	"sync/atomic"
	"time"
)

// NewRequestContext exposes the lazy request context for tests.
func NewRequestContext(parent context.Context, deadline time.Time) (context.Context, func()) {
	c := newReqCtx(parent, deadline)
	return c, c.release
}

// CountYields makes servers started from now on count their workers'
// yields instead of making them, until the test ends.
func CountYields(t interface{ Cleanup(func()) }) *atomic.Int64 {
	var n atomic.Int64
	old := yieldCPU
	yieldCPU = func() { n.Add(1) }
	t.Cleanup(func() { yieldCPU = old })
	return &n
}

// SetRequestBudget makes servers started from now on hold at most n bytes
// of request payloads at once (or MaxFrame, if larger), until the test ends.
func SetRequestBudget(t interface{ Cleanup(func()) }, n int) {
	old := requestMemory
	requestMemory = n
	t.Cleanup(func() { requestMemory = old })
}
