package link

import (
	"context"
	"time"
)

// NewRequestContext exposes the lazy request context for tests.
func NewRequestContext(parent context.Context, deadline time.Time) (context.Context, func()) {
	c := newReqCtx(parent, deadline)
	return c, c.release
}
